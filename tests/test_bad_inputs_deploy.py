"""Bad inputs of issue 12's options (`--raw-input`, `--layout`, `skdeploy deploy`): exit 2, one line, nothing
written (bad_input_cases harness)."""
import json

import pytest

from bad_input_cases import DEMO_ONNX, Case, run_case


def _not_onnx(workspace):
    (workspace / "notes.onnx").write_text("not a model")


def _drop_manifest(workspace):
    (workspace / f"{DEMO_ONNX}.json").unlink()


def _raw_manifest(workspace):
    manifest = json.loads((workspace / f"{DEMO_ONNX}.json").read_text())
    manifest["preprocessing"]["in_graph"] = True
    (workspace / f"{DEMO_ONNX}.json").write_text(json.dumps(manifest))


CASES = [
    Case("layout without raw input", ("optimize", "{ws}/demo.onnx", "-o", "{ws}/o.onnx", "--layout", "nhwc"), 2,
         r"--layout and --raw-dtype apply to a raw input: add --raw-input"),
    Case("raw input without a manifest", ("optimize", "{ws}/demo.onnx", "-o", "{ws}/o.onnx", "--no-fold-bn",
                                          "--no-sk-rewrite", "--raw-input"), 2,
         r"--raw-input needs the preprocessing, and demo.onnx has no manifest", _drop_manifest),
    Case("raw input twice", ("optimize", "{ws}/demo.onnx", "-o", "{ws}/o.onnx", "--raw-input"), 2,
         r"already takes raw pixels", _raw_manifest),
    Case("deploy onto an existing bundle", ("deploy", "-o", "{ws}/images"), 2, r"images exists; pass --force"),
    Case("deploy DLA on rtx", ("deploy", "--dla-core", "0", "-o", "{ws}/b"), 2,
         r"--dla-core applies to the jetson-orin target"),
    Case("deploy NHWC raw INT8", ("deploy", "--raw-input", "--layout", "nhwc", "--int8", "-o", "{ws}/b"), 2,
         r"calibration of a raw input needs --layout NCHW"),
    Case("deploy a missing ONNX", ("deploy", "{ws}/nope.onnx", "-o", "{ws}/b"), 2, r"ONNX .*nope\.onnx does not exist"),
    Case("deploy a missing checkpoint", ("deploy", "--checkpoint", "{ws}/nope.pt", "-o", "{ws}/b"), 2,
         r"checkpoint .*nope\.pt does not exist"),
    Case("deploy a file that is not ONNX", ("deploy", "{ws}/notes.onnx", "-o", "{ws}/b"), 1,
         r"notes\.onnx is not a readable ONNX model", _not_onnx),
    Case("deploy into a folder that cannot exist", ("deploy", "-o", "{ws}/demo.onnx/bundle"), 1,
         r"cannot create the work folder .*demo\.onnx/\.bundle\.work: Not a directory"),
    Case("deploy ONNX and arch", ("deploy", "{ws}/demo.onnx", "--arch", "sknet50", "-o", "{ws}/b"), 2,
         r"give one of --arch, --model or an ONNX file"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_deploy_and_raw_input_arguments(case, workspace):
    run_case(case, workspace)
