"""Bad inputs of `--raw-input`, `--layout` and `skdeploy deploy`: exit 2, one line, nothing written
(bad_input_cases harness). Deploy never deletes what it did not make: `--force` replaces only a folder with
deploy's marker, never the current folder, a folder above it or one holding an input; `--name` is a Triton
model name; a format whose runtime cannot load the target's engines is refused."""
import json

import pytest

from tests.support.bad_input_cases import DEMO_ONNX, Case, run_case


def _not_onnx(workspace):
    (workspace / "notes.onnx").write_text("not a model")


def _drop_manifest(workspace):
    (workspace / f"{DEMO_ONNX}.json").unlink()


def _user_folder(workspace):
    (workspace / "mine").mkdir()
    (workspace / "mine" / "notes.txt").write_text("the user's own file")


def _no_preprocessing(workspace):
    manifest = json.loads((workspace / f"{DEMO_ONNX}.json").read_text())
    (workspace / f"{DEMO_ONNX}.json").write_text(json.dumps(dict(manifest, preprocessing=None)))


def _centre_crop(workspace):
    manifest = json.loads((workspace / f"{DEMO_ONNX}.json").read_text())
    manifest["preprocessing"].update(resize=36, crop=[32, 32])
    (workspace / f"{DEMO_ONNX}.json").write_text(json.dumps(manifest))


def _raw_manifest(workspace):
    manifest = json.loads((workspace / f"{DEMO_ONNX}.json").read_text())
    manifest["preprocessing"]["in_graph"] = True
    (workspace / f"{DEMO_ONNX}.json").write_text(json.dumps(manifest))


# the demo ONNX deployed as one made elsewhere, from image folders
FOREIGN = ("deploy", "{ws}/demo.onnx", "--target", "desktop", "--fp16", "--calib-data", "{ws}/images", "--data",
           "{ws}/images", "-o", "{ws}/b")

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
    Case("deploy --force over a folder deploy did not make", ("deploy", "-o", "{ws}/mine", "--force"), 2,
         r"mine is not a bundle deploy wrote \(it has no \.skdeploy-bundle\)", _user_folder),
    Case("deploy -o the ONNX's folder", ("deploy", "{ws}/demo.onnx", "-o", "{ws}"), 2,
         r"--output .* holds the ONNX .*demo\.onnx"),
    Case("deploy -o the ONNX's folder with --force", ("deploy", "{ws}/demo.onnx", "-o", "{ws}", "--force"), 2,
         r"--output .* holds the ONNX .*demo\.onnx"),
    Case("deploy -o the data folder", ("deploy", "--data", "{ws}/images", "-o", "{ws}/images", "--force"), 2,
         r"--output .*images holds the validation data"),
    Case("deploy -o a folder above the checkpoint", ("deploy", "--checkpoint", "{ws}/demo.pt", "-o", "{ws}/..",
                                                     "--force"), 2, r"holds the checkpoint"),
    Case("deploy --name with separators", ("deploy", "--name", "../../../x", "-o", "{ws}/b"), 2,
         r"--name '\.\./\.\./\.\./x' is not a Triton model name"),
    Case("deploy --name absolute", ("deploy", "--name", "{ws}/elsewhere", "-o", "{ws}/b"), 2,
         r"is not a Triton model name"),
    Case("deploy --name with a quote", ("deploy", "--name", 'my"model', "-o", "{ws}/b"), 2,
         r"is not a Triton model name"),
    Case("deploy --name ..", ("deploy", "--name", "..", "-o", "{ws}/b"), 2, r"is not a Triton model name"),
    Case("deploy Triton on rtx", ("deploy", "--format", "triton", "-o", "{ws}/b"), 2,
         r"--format triton cannot use --target rtx: .* classic TensorRT engines only"),
    Case("deploy DeepStream on rtx", ("deploy", "--format", "deepstream", "-o", "{ws}/b"), 2,
         r"--format deepstream cannot use --target rtx"),
    Case("deploy DeepStream after a centre crop", ("deploy", "{ws}/demo.onnx", "--target", "desktop", "--format",
                                                   "deepstream", "-o", "{ws}/b"), 2,
         r"centre-crops 32x32 after resizing to 36, which nvinfer cannot do", _centre_crop),
    Case("deploy a foreign ONNX without preprocessing flags", FOREIGN, 2,
         r"^error: .*demo\.onnx has no manifest, so its preprocessing is unknown; its calibration and validation need "
         r"--mean and --std \(plus --resize/--crop/--channel-order if not 32x32 GRAY\)$", _drop_manifest),
    Case("deploy an ONNX whose manifest records no preprocessing", FOREIGN, 2,
         r"^error: .*demo\.onnx: its manifest records no preprocessing, so its preprocessing is unknown; its "
         r"calibration and validation need --mean and --std", _no_preprocessing),
    Case("deploy --mean over a recorded preprocessing", (*FOREIGN, "--mean", "0.3", "--std", "0.35"), 2,
         r"demo\.onnx has a manifest that records its preprocessing; --mean, --std are only for models without one"),
    Case("deploy --mean for a PyTorch model", ("deploy", "--mean", "0.3", "--std", "0.35", "-o", "{ws}/b"), 2,
         r"--mean, --std apply to an ONNX made elsewhere; a model given by --arch or --model has its own"),
    Case("deploy three means for a grey ONNX", (*FOREIGN, "--mean", "0.4,0.4,0.4", "--std", "0.3"), 2,
         r"--mean needs 1 values \(one per input channel\), got 3", _drop_manifest),
    Case("deploy RGB order for a grey ONNX", (*FOREIGN, "--mean", "0.3", "--std", "0.35", "--channel-order", "RGB"),
         2, r"--channel-order RGB does not fit a 1-channel input", _drop_manifest),
    Case("deploy --resize without --mean", (*FOREIGN, "--resize", "36"), 2, r"preprocessing needs --mean and --std",
         _drop_manifest),
    Case("deploy a foreign ONNX without --data", ("deploy", "{ws}/demo.onnx", "--target", "desktop", "--mean", "0.3",
                                                  "--std", "0.35", "-o", "{ws}/b"), 2,
         r"--data is required: .*demo\.onnx names no dataset to validate on", _drop_manifest),
]


def _bundle_marker(folder):
    folder.mkdir(exist_ok=True)
    (folder / ".skdeploy-bundle").write_text("{}\n")


@pytest.mark.parametrize("output", [".", ".."], ids=["the current folder", "a folder above it"])
def test_force_never_replaces_the_current_folder_or_one_above_it(output, workspace, monkeypatch):
    """Even one that carries deploy's marker: the refusal comes before any work."""
    here = workspace / "here"
    _bundle_marker(here)
    _bundle_marker(workspace)
    monkeypatch.chdir(here)
    run_case(Case(f"deploy --force -o {output}", ("deploy", "-o", output, "--force"), 2,
                  r"is the current folder or holds it; --force never replaces it"), workspace)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_deploy_and_raw_input_arguments(case, workspace):
    run_case(case, workspace)
