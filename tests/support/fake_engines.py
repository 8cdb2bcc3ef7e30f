"""Fake TensorRT plans with sidecars for the runner tests: the recording fake of
tests/support/fake_tensorrt.py stands in for TensorRT (no GPU or classic TensorRT here)."""
import json

from skdeploy.runners import trt as trt_runner
from tests.support.fake_tensorrt import PLAN, FakeDeviceMemory, make_fake_trt


def engine_section(**overrides):
    section = {"backend": "tensorrt-rtx", "backend_version": "1.7.1.116", "compute_capabilities": ["8.6"],
               "hardware_compatibility": "none", "version_compatible": False, "dla_core": None, "precision": "fp32"}
    section.update(overrides)
    return section


def write_fake_engine(folder, monkeypatch, memory=None, section=None, **fake_options):
    """(engine path, fake trt module, fake memory): a fake plan with a sidecar (default: TensorRT-RTX 1.7.1 on
    sm_86); `fake_options` go to make_fake_trt."""
    memory = memory or FakeDeviceMemory()
    fake = make_fake_trt(memory=memory, **fake_options)
    monkeypatch.setattr(trt_runner, "load_backend", lambda backend: (fake, None))
    path = folder / "demo.engine"
    path.write_bytes(PLAN)
    sidecar = {"format": "skdeploy-manifest/1", "model": {}, "preprocessing": None, "stages": [],
               "engine": section or engine_section()}
    (folder / "demo.engine.json").write_text(json.dumps(sidecar))
    return path, fake, memory


def expected_logits(batch):
    return batch.reshape(len(batch), -1)[:, :10] * 2
