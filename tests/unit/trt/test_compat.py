"""Compute capabilities across every GPU generation TensorRT lists, 7.2 (Jetson Xavier) to 12.0 (Blackwell
RTX): named, sorted, accepted and matched as numbers. Compared as text, "10.0" < "8.0" and "12.0" < "8.6",
which turns Blackwell and Thor away; these tests put two-digit majors through every comparison.

The TensorRT module here is a namespace with a ComputeCapability enum's members: the bindings of every
release are not installed, and only the members' names matter to the code under test."""
import types

import pytest

from skdeploy.engine.builder import _compute_capabilities, normalize_cc
from skdeploy.engine.targets import get_target
from skdeploy.errors import UsageError
from skdeploy.stages.build import BuildSettings
from skdeploy.trt import compat
from skdeploy.trt.capabilities import capabilities_of, cc_tuple, compute_capability_name

# (compute capability, the GPU it is): every one TensorRT 10.x/11.x and TensorRT-RTX list, oldest first
GENERATIONS = [("7.2", "Jetson AGX Xavier"), ("7.5", "T4"), ("8.0", "A100"), ("8.6", "RTX A6000"),
               ("8.7", "Jetson AGX Orin"), ("8.9", "L4"), ("9.0", "H100"), ("10.0", "B200"), ("11.0", "Jetson Thor"),
               ("12.0", "RTX 5090")]
CCS = [cc for cc, _ in GENERATIONS]
AMPERE_OR_NEWER = CCS[2:]


def gpu(cc):
    return {"name": dict(GENERATIONS)[cc], "compute_capability": cc}


def rtx_module(ccs=CCS):
    """tensorrt_rtx as far as capabilities_of reads it, its enum members listed out of order."""
    members = {"SM" + cc.replace(".", ""): object() for cc in reversed(ccs)}
    members["NONE"] = object()
    return types.SimpleNamespace(__version__="1.7.1.116", ComputeCapability=types.SimpleNamespace(__members__=members))


def section(**overrides):
    engine = {"backend": "tensorrt-rtx", "backend_version": "1.7.1.116", "compute_capabilities": ["8.6"],
              "hardware_compatibility": "none", "version_compatible": False, "dla_core": None}
    return {**engine, **overrides}


def test_the_order_of_generations_is_numeric():
    assert [cc_tuple(cc) for cc in CCS] == sorted(cc_tuple(cc) for cc in CCS)
    assert sorted(CCS, key=cc_tuple) == CCS and sorted(CCS) != CCS  # text order would put 10.0 first


@pytest.mark.parametrize("cc", CCS)
def test_each_capability_is_named_spelled_and_parsed_the_same_way(cc):
    member = "SM" + cc.replace(".", "")
    assert compute_capability_name(member) == cc
    assert normalize_cc(cc) == normalize_cc(member) == normalize_cc("sm_" + cc.replace(".", "")) == cc
    assert compat.sm(cc) == "sm_" + cc.replace(".", "")
    assert cc_tuple(cc) == tuple(int(part) for part in cc.split("."))


def test_a_backend_lists_its_capabilities_oldest_first():
    caps = capabilities_of(rtx_module(), "tensorrt-rtx")
    assert list(caps.compute_capabilities) == CCS


@pytest.mark.parametrize("cc", CCS)
def test_an_rtx_build_takes_every_listed_capability(cc):
    caps = capabilities_of(rtx_module(), "tensorrt-rtx")
    settings = BuildSettings(backend="tensorrt-rtx", compute_capabilities=[cc])
    assert _compute_capabilities(settings, caps, get_target("rtx")) == [cc]


def test_an_rtx_build_refuses_a_capability_its_release_does_not_list():
    caps = capabilities_of(rtx_module(CCS[:-1]), "tensorrt-rtx")  # a release before Blackwell RTX
    settings = BuildSettings(backend="tensorrt-rtx", compute_capabilities=["12.0"])
    with pytest.raises(UsageError, match=r"cannot build for compute capability 12\.0; it builds for 7\.2, .*, 11\.0$"):
        _compute_capabilities(settings, caps, get_target("rtx"))


@pytest.mark.parametrize("cc", CCS)
def test_an_ampere_plus_engine_runs_on_ampere_and_every_newer_generation(cc):
    engine = section(backend="tensorrt", backend_version="10.3.0", compute_capabilities=[],
                     hardware_compatibility="ampere-plus")
    problems = compat.check_compatibility(engine, gpu(cc), "10.3.0")
    if cc in AMPERE_OR_NEWER:
        assert problems == []
    else:
        assert problems == [f"this GPU is {compat.sm(cc)} ({dict(GENERATIONS)[cc]}), older than the Ampere GPUs an "
                            "ampere-plus engine needs"]


@pytest.mark.parametrize("built_for", CCS)
def test_an_engine_built_for_one_capability_runs_on_that_one_only(built_for):
    engine = section(compute_capabilities=[built_for])
    runs_on = [cc for cc in CCS if not compat.check_compatibility(engine, gpu(cc), "1.7.1.116")]
    assert runs_on == [built_for]


def test_an_engine_for_several_capabilities_names_them_in_its_description():
    engine = section(compute_capabilities=["8.6", "10.0", "12.0"])
    assert compat.describe_targets(engine) == "sm_86, sm_100, sm_120"
    assert [cc for cc in CCS if not compat.check_compatibility(engine, gpu(cc), "1.7.1.116")] == ["8.6", "10.0", "12.0"]


@pytest.mark.parametrize("text", ["8", "x.6", "8.x", "", "sm"])
def test_what_is_not_a_capability_is_refused(text):
    with pytest.raises(UsageError, match="is not like 8.6"):
        normalize_cc(text)
