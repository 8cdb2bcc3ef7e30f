"""One-shot deployment: export, graph passes, calibration, engine build and validation, then a bundle the
device runs from (docs/deploy.md).

    from skdeploy import deploy
    result = deploy("bundles/demo", DeploySettings(target="rtx", precision="int8", formats=("triton",)))
    result.bundle, result.reused, result.validation.passed

The work happens in a folder beside the bundle (`.NAME.work/`). Every step's output keeps its manifest
there, and a later run reuses an artifact when its manifest records the same inputs (by sha256) and the
same settings, so a second run rebuilds nothing. The bundle is assembled in a temporary folder and renamed
into place only after validation passes: a failing model leaves no bundle.
"""
import contextlib
import json
import tempfile
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data import DataOrigin
from .deps import available
from .engine import TARGETS
from .errors import SkdeployError, UsageError, check_field_types
from .fileio import existing_file, sha256_file
from .graph.rewrite import TOLERANCE
from .log import log
from .manifest import PRECISIONS, load_manifest, manifest_path, recorded_source
from .models.entry import ModelEntry
from .stages.build import BuildSettings

FORMATS = ("plain", "triton", "deepstream")
DEPLOY_TARGETS = ("jetson-orin", "rtx", "desktop")
# Which engines each bundle format's runtime loads (docs/deploy.md shows this table). Triton's tensorrt_plan
# backend (and the TensorRT accelerator of its onnxruntime backend) and DeepStream's nvinfer link classic
# TensorRT (libnvinfer): a TensorRT-RTX plan is foreign to them.
RUNTIME_ENGINES = {
    "plain": ("skdeploy's runners (load_runner / classify)", ("tensorrt", "tensorrt-rtx")),
    "triton": ("Triton Inference Server (tensorrt_plan; onnxruntime_onnx + TensorRT accelerator)", ("tensorrt",)),
    "deepstream": ("DeepStream Gst-nvinfer", ("tensorrt",)),
}


@dataclass
class DeploySettings:
    arch: str | None = None  # a registered model name; with `spec` and `onnx` absent: the demo model
    spec: str | None = None  # timm:NAME, file.py:factory, package.module:factory
    # an ONNX exported elsewhere (the graph passes run on it; FP32 reference without a PyTorch model)
    onnx: str | None = None
    checkpoint: str | None = None
    target: str = "rtx"  # jetson-orin | rtx | desktop
    precision: str = "fp32"  # fp32 | fp16 | int8
    calib_data: str | None = None  # default: the demo model's shipped calibration set
    calib_images: int = 512
    holdout_images: int = 1000  # calibration's accuracy check against FP32 on held-out samples
    data: str | None = None  # validation data; default: the model's dataset
    limit: int = 1000  # validation subset (and the saved reference's size)
    formats: tuple = ("plain",)  # plain, triton, deepstream
    raw_input: bool = False  # preprocessing inside the graph; forced for DeepStream when std differs per channel
    layout: str = "NCHW"
    raw_dtype: str = "uint8"  # float32 whenever DeepStream is a format (nvinfer feeds float pixels)
    compute_capabilities: list | None = None  # rtx target; default: the target's
    max_batch: int = 8
    dla_core: int | None = None  # jetson-orin
    min_agreement: float = 0.99
    max_top1_drop: float = 0.5
    name: str | None = None  # the served model's name; default: the model spec
    # INT8: the device's TensorRT; <= 10 (or `dla_core`) means implicit INT8 from a table
    trt_version: str | None = None
    # an ONNX whose manifest records no preprocessing (or that has none): mean, std and optionally resize, crop,
    # channel_order, as `calibrate` takes them; it is recorded in the optimized ONNX's manifest
    preprocessing: dict = field(default_factory=dict)
    random_weights: bool = False  # deploy a model without trained weights (kept in the work folder to validate)

    def __post_init__(self):
        check_field_types(self)
        self._check_source()
        if self.target not in DEPLOY_TARGETS:
            raise UsageError(f"`target` must be one of {', '.join(DEPLOY_TARGETS)}, got {self.target!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        self.formats = tuple(dict.fromkeys(self.formats or ("plain",)))
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise UsageError(f"unknown `formats` {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
        if self.layout not in ("NCHW", "NHWC") or self.raw_dtype not in ("uint8", "float32"):
            raise UsageError("`layout` must be NCHW or NHWC and `raw_dtype` uint8 or float32")
        if self.raw_input and self.layout == "NHWC" and self.precision != "fp32":
            raise UsageError("INT8/FP16 calibration of a raw input needs `layout=NCHW`")
        if self.limit < 1 or self.max_batch < 1:
            raise UsageError("`limit` and `max_batch` must be at least 1")
        if self.dla_core is not None and self.target != "jetson-orin":
            raise UsageError("`dla_core` applies to the jetson-orin target")
        self._check_trt_version()
        self.preprocessing = {key: value for key, value in (self.preprocessing or {}).items() if value}
        if self.preprocessing and not self.onnx:
            raise UsageError(", ".join(f"`{key}`" for key in self.preprocessing) + " apply to an ONNX made "
                             "elsewhere; a model given by `arch` or `spec` has its own preprocessing")
        check_runtime_matrix(self.target, self.formats)
        if self.name is not None:
            from .serving.triton import check_model_name

            check_model_name(self.name)
        if self.raw_input and "deepstream" in self.formats:
            self.raw_dtype = "float32"  # nvinfer feeds the network float pixels

    def _check_source(self) -> None:
        if sum(bool(v) for v in (self.arch, self.spec, self.onnx)) > 1:
            raise UsageError("give one of `arch`, `spec` or an ONNX file")
        if self.onnx and self.checkpoint:
            raise UsageError("`checkpoint` applies to `arch`/`spec`, not to an ONNX")

    def _check_trt_version(self) -> None:
        if self.trt_version is None:
            return
        from .stages.calibrate import TRT_VERSION

        if self.precision != "int8" or not TRT_VERSION.fullmatch(str(self.trt_version)):
            raise UsageError(f"`trt_version` applies to `precision=int8` and looks like 10.3.0 or 8.6, got "
                             f"{self.trt_version!r}")


def check_runtime_matrix(target: str, formats: tuple) -> None:
    """UsageError for a format whose runtime cannot load the target's engines (RUNTIME_ENGINES)."""
    backend = TARGETS[target].backend
    for kind in formats:
        runtime, engines = RUNTIME_ENGINES[kind]
        if backend not in engines:
            raise UsageError(f"`formats={kind}` cannot use `target={target}`: {runtime} loads classic TensorRT "
                             f"engines only, never a TensorRT-RTX plan; use `target=desktop` or "
                             f"`target=jetson-orin`")


@dataclass
class DeployResult:
    bundle: Path
    onnx: Path  # the deployed ONNX inside the bundle
    engine: Path  # inside the bundle, or None when the device builds it
    build_command: str  # the device's build-engine command when the engine is built there, else None
    validation: object  # validate.ValidationResult
    reused: list = field(default_factory=list)  # steps whose artifacts were reused
    built: list = field(default_factory=list)  # steps that ran
    seconds: float = 0.0
    runtime: dict = field(default_factory=dict)  # top-1 agreement under each runtime's own preprocessing

    def record(self) -> dict:
        return {"bundle": str(self.bundle), "onnx": str(self.onnx), "engine": str(self.engine) if self.engine else None,
                "build_command": self.build_command, "reused": self.reused, "built": self.built,
                "passed": self.validation.passed, "validation": self.validation.record(), "runtime": self.runtime,
                "seconds": self.seconds}


def work_folder(bundle: Path) -> Path:
    return bundle.parent / f".{bundle.name}.work"


def _current(artifact: Path, stage: str, source_sha256, settings: dict, spec: str | None = None) -> bool:
    """Whether `artifact` exists, is what its manifest hashed, and its newest stage is `stage` made from
    `source_sha256` with `settings` (and, for an export, from the model `spec`; its checkpoint only when one
    is given)."""
    if not artifact.exists() or not manifest_path(artifact).exists():
        return False
    try:
        manifest = load_manifest(artifact)
    except UsageError:
        return False
    entry = manifest["stages"][-1] if manifest.get("stages") else None
    return (entry is not None and entry["stage"] == stage and manifest["artifact"]["sha256"] == sha256_file(artifact)
            and (source_sha256 is None or recorded_source(manifest, entry).get("sha256") == source_sha256)
            and (spec is None or ModelEntry.from_manifest(manifest).spec == spec)
            and entry.get("settings") == json.loads(json.dumps(settings)))  # as the manifest stores it


class Steps:
    """Runs each step unless its artifact is current, and remembers which ran."""

    def __init__(self) -> None:
        self.reused, self.built = [], []

    def run(self, name: str, artifact: Path, current: bool, make):
        if current:
            log.info(f"deploy: reusing {artifact.name} ({name}: same inputs by sha256, same settings)")
            self.reused.append(name)
        else:
            log.info(f"deploy: {name} -> {artifact.name}")
            make()
            self.built.append(name)
        return artifact


def _export(settings: DeploySettings, work: Path, steps: Steps, preprocessing: dict | None = None) -> Path:
    """The FP32 ONNX: exported from PyTorch, or the given ONNX through the graph passes (its manifest then
    records `preprocessing` when given)."""
    output = work / "model.onnx"
    if settings.onnx:
        from .stages.optimize import optimize_onnx

        options = {"fold_bn": True, "sk_rewrite": True}
        recorded = dict(options, tolerance=TOLERANCE, sizes={}, raw_input=None)  # as optimize records them
        if preprocessing:
            recorded["preprocessing"] = preprocessing
        current = _current(output, "optimize", sha256_file(settings.onnx), recorded)
        return steps.run("optimize", output, current, lambda: optimize_onnx(
            settings.onnx, output, force=True, preprocessing=preprocessing, **options))
    from .stages.export import ExportSettings, export_model

    export_settings = ExportSettings(dynamic_batch=True)
    spec = settings.spec or settings.arch
    checkpoint = sha256_file(settings.checkpoint) if settings.checkpoint else None

    def make() -> None:
        from .models import load_model

        loaded = load_model(arch=settings.arch, spec=settings.spec, checkpoint=settings.checkpoint)
        if loaded.random_weights:
            _refuse_random_weights(settings, f"{loaded.spec} has random weights ({loaded.random_weights})")
            import torch  # saved, so validation rebuilds the very model that was exported

            torch.save(loaded.module.state_dict(), work / "random_weights.pt")
            reason = loaded.random_weights
            loaded = load_model(arch=settings.arch, spec=settings.spec, checkpoint=work / "random_weights.pt")
            loaded.random_weights = reason
        export_model(loaded, output, export_settings, force=True)

    from .models import DEMO_MODEL

    current = _current(output, "export", checkpoint, asdict(export_settings), spec=spec or DEMO_MODEL)
    return steps.run("export", output, current, make)


def _refuse_random_weights(settings: DeploySettings, why: str) -> None:
    if not settings.random_weights:
        raise UsageError(f"{why}; a bundle of an untrained model classifies noise. Give `checkpoint`, or pass "
                         "`random_weights=True` to deploy it anyway")


def _check_trained(settings: DeploySettings) -> None:
    """Before any work: a model deployed without trained weights is refused unless asked for."""
    if settings.onnx:
        manifest = load_manifest(settings.onnx, required=False, verify=False)  # later steps verify it
        export = next((s for s in (manifest or {}).get("stages", []) if s.get("stage") == "export"), {})
        if export.get("random_weights"):
            _refuse_random_weights(settings, f"{settings.onnx} was exported with random weights "
                                             f"({export['random_weights']})")
        return
    if settings.checkpoint:
        return
    from .models import DEMO_MODEL, REGISTRY

    name = settings.arch or settings.spec or DEMO_MODEL
    if name not in REGISTRY or REGISTRY[name].weights is None:
        _refuse_random_weights(settings, f"no `checkpoint` given and {name} ships no weights")


def _raw_input(onnx_path: Path, settings: DeploySettings, work: Path, steps: Steps) -> Path:
    from .stages.optimize import optimize_onnx

    output = work / "model.raw.onnx"
    raw = {"layout": settings.layout, "raw_dtype": settings.raw_dtype}
    options = {"fold_bn": False, "sk_rewrite": False}
    current = _current(output, "optimize", sha256_file(onnx_path), dict(options, tolerance=TOLERANCE, sizes={},
                                                                         raw_input=raw))
    return steps.run("raw input", output, current,
                     lambda: optimize_onnx(onnx_path, output, force=True, raw_input=raw, **options))


def _calibrate(onnx_path: Path, settings: DeploySettings, work: Path, steps: Steps) -> Path:
    from .stages.calibrate import CalibrationSettings, calibrate_model

    output = work / f"model.{settings.precision}.onnx"
    version = {"trt_version": settings.trt_version} if settings.trt_version else {}
    calibration = CalibrationSettings(precision=settings.precision, calib_data=settings.calib_data,
                                      calib_images=settings.calib_images, holdout_images=settings.holdout_images,
                                      **version)
    current = _current(output, "calibrate", sha256_file(onnx_path), asdict(calibration))
    return steps.run("calibrate", output, current, lambda: calibrate_model(onnx_path, output, calibration, force=True))


def implicit_int8(settings: DeploySettings) -> bool:
    """INT8 that TensorRT calibrates from a table on an FP32 graph (no Q/DQ): DLA, or TensorRT <= 10 named
    by `trt_version`. Such a bundle carries the FP32 ONNX with its table; an explicit Q/DQ bundle no table."""
    if settings.precision != "int8":
        return False
    return settings.dla_core is not None or (settings.trt_version is not None
                                             and int(str(settings.trt_version).split(".")[0]) <= 10)


def trtexec_command(settings: DeploySettings, manifest: dict, onnx_name: str, table: str, engine_name: str) -> str:
    """The device's implicit-INT8 build: trtexec on the FP32 ONNX with its calibration table."""
    image = manifest["inputs"][0]
    dims = "x".join(str(d) for d in image["shape"][1:])
    smallest = settings.max_batch if settings.dla_core is not None else 1  # DLA builds static shapes
    command = (f"trtexec --onnx={onnx_name} --int8 --fp16 --calib={table} "
               f"--minShapes={image['name']}:{smallest}x{dims} --optShapes={image['name']}:{settings.max_batch}x{dims} "
               f"--maxShapes={image['name']}:{settings.max_batch}x{dims}")
    if settings.dla_core is not None:
        command += f" --useDLACore={settings.dla_core} --allowGPUFallback"
    return command + f" --saveEngine={engine_name}"


def build_settings(settings: DeploySettings) -> BuildSettings:
    backend = TARGETS[settings.target].backend
    return BuildSettings(backend=backend, target=settings.target, max_batch=settings.max_batch,
                         opt_batch=settings.max_batch, compute_capabilities=settings.compute_capabilities
                         if backend == "tensorrt-rtx" else None, dla_core=settings.dla_core,
                         gpu_fallback=settings.dla_core is not None)


def device_build_command(settings: DeploySettings, onnx_name: str, engine_name: str) -> str:
    """The exact command that builds the engine on a classic-TensorRT device from the bundle's folder."""
    command = f"skdeploy build-engine {onnx_name} --target {settings.target} --max-batch {settings.max_batch} " \
              f"--opt-batch {settings.max_batch}"
    if settings.dla_core is not None:
        command += f" --dla-core {settings.dla_core} --gpu-fallback"
    return command + f" -o {engine_name}"


def _engine(onnx_path: Path, settings: DeploySettings, work: Path, steps: Steps):
    """(engine path, None) when this machine can build it, else (None, the device's build command)."""
    engine_settings = build_settings(settings)
    module = "tensorrt_rtx" if engine_settings.backend == "tensorrt-rtx" else "tensorrt"
    if not available(module):
        if engine_settings.backend == "tensorrt-rtx":
            raise SkdeployError("the rtx target builds here and needs TensorRT-RTX (skdeploy[rtx])")
        log.warning(f"classic TensorRT is not installed: the bundle carries the ONNX and the command that builds "
                    f"the {settings.target} engine on the device")
        return None, device_build_command(settings, onnx_path.name, "model.engine")
    from .stages.build import build as build_stage

    output = work / "model.engine"
    current = _current(output, "build-engine", sha256_file(onnx_path), asdict(engine_settings))
    steps.run("build-engine", output, current, lambda: build_stage(onnx_path, output, engine_settings, force=True))
    return output, None


def _validate(onnx_path: Path, settings: DeploySettings, work: Path):
    """The deployed ONNX against FP32: the PyTorch model its manifest records, or for an ONNX made
    elsewhere (no PyTorch model behind it) that ONNX as given, run in onnxruntime."""
    from .reference import is_foreign_onnx
    from .stages.validate import ValidateSettings, validate

    reference = work / "reference.npz"
    checks = ValidateSettings(min_agreement=settings.min_agreement, max_top1_drop=settings.max_top1_drop,
                              limit=settings.limit)
    fp32 = settings.onnx if settings.onnx and is_foreign_onnx(settings.onnx) else None
    with log.status(f"validating against FP32 {'ONNX (onnxruntime)' if fp32 else 'PyTorch'}"):
        return validate([onnx_path], reference=fp32, data=settings.data, settings=checks,
                        save_reference_to=reference, force=True)


def deploy(bundle, settings: DeploySettings | None = None, force: bool = False) -> DeployResult:
    """Export, passes, calibration, engine build and validation into `bundle` (a folder); see the module doc."""
    started = time.time()
    settings = settings or DeploySettings()
    bundle = Path(bundle)
    check_bundle_output(bundle, settings, force)
    for path, what in ((settings.onnx, "ONNX"), (settings.checkpoint, "checkpoint")):
        if path:
            existing_file(path, what)
    _check_trained(settings)
    preprocessing = _foreign_preprocessing(settings) if settings.onnx else None
    with _work_kept_once_used(work_folder(bundle)) as work:
        steps = Steps()
        onnx_path = _export(settings, work, steps, preprocessing)
        _check_deepstream_preprocessing(settings, onnx_path)
        if "deepstream" in settings.formats and not settings.raw_input:
            settings = _raw_input_for_deepstream(settings, load_manifest(onnx_path))
        if settings.raw_input:
            onnx_path = _raw_input(onnx_path, settings, work, steps)
        fp32_onnx = onnx_path
        if settings.precision != "fp32":
            onnx_path = _calibrate(onnx_path, settings, work, steps)
        engine, command = _engine(onnx_path, settings, work, steps)
        validation = _validate(onnx_path, settings, work)
        if not validation.passed:
            raise validation_failure(validation, work)
        from .serving.bundle import assemble

        plan = _plan(settings, onnx_path, command, validation, fp32_onnx)
        assemble(bundle, plan, onnx_path, engine, validation, work / "reference.npz",
                 runtime_check=_runtime_check(settings, validation, work / "reference.npz"))
        result = DeployResult(bundle, bundle / onnx_path.name, bundle / "model.engine" if engine else None,
                              plan["build_command"],
                              validation, steps.reused, steps.built, round(time.time() - started, 2),
                              json.loads((bundle / "validation.json").read_text()).get("runtime", {}))
        log.info(f"deploy: wrote {bundle} (built: {', '.join(steps.built) or 'nothing'}; "
                 f"reused: {', '.join(steps.reused) or 'nothing'})")
        return result


def validation_failure(validation, work: Path) -> SkdeployError:
    """The one line a failed validation ends deploy with: each failed check as it describes itself."""
    return SkdeployError(f"validation failed ({validation.candidates[0].failure_reasons()}); no bundle written, "
                         f"work kept in {work} for a rerun")


@contextlib.contextmanager
def _work_kept_once_used(work: Path):
    """The work folder stays after a failure once it holds something a rerun can reuse; an empty one goes."""
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SkdeployError(f"cannot create the work folder {work}: {exc.strerror}") from None
    try:
        yield work
    except BaseException:
        if not any(work.iterdir()):
            work.rmdir()
        raise


def check_bundle_output(bundle: Path, settings: DeploySettings, force: bool) -> None:
    """Before any work: the bundle folder holds no input, and `force` replaces only an earlier bundle that
    deploy wrote (its marker), never the current folder or a folder above it."""
    from .serving.bundle import MARKER, is_bundle

    target = bundle.resolve()
    for path, what in ((settings.onnx, "ONNX"), (settings.checkpoint, "checkpoint"),
                       (settings.calib_data, "calibration data"), (settings.data, "validation data")):
        if not path:
            continue
        resolved = Path(path).resolve()
        if target == resolved or target in resolved.parents:
            raise UsageError(f"`output` {bundle} holds the {what} {path}; write the bundle to a folder of its own")
    if not bundle.exists():
        return
    if not force:
        raise UsageError(f"{bundle} exists; pass `force` to replace it")
    if not bundle.is_dir():
        raise UsageError(f"{bundle} is a file; the bundle is a folder")
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise UsageError(f"`output` {bundle} is the current folder or holds it; `force` never replaces it")
    if not is_bundle(bundle):
        raise UsageError(f"{bundle} is not a bundle deploy wrote (it has no {MARKER}); `force` replaces only "
                         "those: choose another `output` or remove the folder yourself")


def _check_deepstream_preprocessing(settings: DeploySettings, artifact, recorded: dict | None = None) -> None:
    """For DeepStream, preprocessing nvinfer can do (serving.deepstream), checked as soon as it is known."""
    if "deepstream" not in settings.formats:
        return
    from .data import Preprocessing
    from .serving.deepstream import check_nvinfer_can_prepare

    recorded = recorded or (load_manifest(artifact, required=False) or {}).get("preprocessing")
    if recorded:
        check_nvinfer_can_prepare(Preprocessing.from_dict(recorded))


def _foreign_preprocessing(settings: DeploySettings):
    """Before any work, for an ONNX: the preprocessing `settings.preprocessing` gives when its manifest records
    none (a Preprocessing dict), None when the manifest records it. Refuses neither or both, and data that
    cannot default (only the demo model's dataset does)."""
    from .calib.convert import model_input, preprocessing_resolver
    from .data import default_calibration_path
    from .onnx.io import load_onnx

    manifest = load_manifest(settings.onnx, required=False)
    _, shape = model_input(load_onnx(settings.onnx, load_weights=False), manifest)
    resolved = preprocessing_resolver(settings.onnx, manifest, settings, shape)("its calibration and validation")
    if settings.precision != "fp32" and not settings.calib_data and default_calibration_path(manifest) is None:
        raise UsageError(f"`calib_data` is required: {settings.onnx} is not the demo model, whose calibration set "
                         "is shipped")
    if not settings.data and ModelEntry.from_manifest(manifest).dataset != "fashion-mnist":
        raise UsageError(f"`data` is required: {settings.onnx} names no dataset to validate on")
    _check_deepstream_preprocessing(settings, settings.onnx, resolved.to_dict())
    return None if (manifest or {}).get("preprocessing") else resolved.to_dict()


def _plan(settings: DeploySettings, onnx_path: Path, command, validation, fp32_onnx: Path) -> dict:
    """What the bundle is made of and the exact commands its README gives (serving.bundle writes it)."""
    import shlex

    from .serving.bundle import bundled_samples, triton_folders

    name = settings.name or _served_name(onnx_path)
    implicit = implicit_int8(settings)
    table = fp32_onnx.name + ".calib.table" if implicit else None
    if implicit and command is not None:
        command = trtexec_command(settings, load_manifest(fp32_onnx), fp32_onnx.name, table, "model.engine")
    samples = bundled_samples(validation.samples.source)
    plan = dict(asdict(settings), name=name, onnx=onnx_path.name, engine="model.engine", build_command=command,
                calibration_table=table, implicit_onnx=str(fp32_onnx) if implicit else None,
                calibration_table_source=str(onnx_path.with_name(onnx_path.name + ".calib.table")) if table else None,
                model=load_manifest(onnx_path)["model"]["spec"], data=DataOrigin.parse(validation.data["source"]).path,
                count=validation.data["count"], samples=samples, reference_kind=validation.reference["kind"])
    plan["data_arg"] = samples or shlex.quote(plan["data"])
    classic = command is not None
    plan["triton_build_command"] = device_build_command(settings, onnx_path.name, triton_folders(plan)["plan_file"]) \
        if classic and "triton" in settings.formats else None
    plan["deepstream_build_command"] = None
    if "deepstream" in settings.formats:
        plan["deepstream_build_command"] = trtexec_command(
            settings, load_manifest(fp32_onnx), "deepstream/model_softmax.onnx", table,
            "deepstream/model_softmax.engine") if implicit else device_build_command(
            settings, "deepstream/model_softmax.onnx", "deepstream/model_softmax.engine")
    return plan


def _runtime_check(settings: DeploySettings, validation, reference: Path):
    """The bundle's admission under its runtimes' own preprocessing (serving.runtime_check): top-1
    agreement with FP32 of what each runtime runs, on the validation pictures prepared as that runtime
    prepares them, beside the figure under the reference preprocessing. Below `min_agreement`: no bundle."""
    def check(staging: Path, plan: dict) -> dict:
        with tempfile.TemporaryDirectory(prefix="skdeploy-runtime-") as folder:
            scratch.name = folder
            return measure(staging, plan)

    scratch = types.SimpleNamespace(name=None)

    def measure(staging: Path, plan: dict) -> dict:
        import numpy as np

        from .data import Preprocessing
        from .serving.runtime_check import client_module, nvinfer_inputs, runtime_agreement

        samples = validation.samples
        pictures = [samples.picture(index) for index in range(len(samples))]
        logits = np.load(reference)["logits"]
        figures = {"reference_preprocessing": validation.candidates[0].metrics["agreement"]}
        if "deepstream" in settings.formats:
            model = staging / "deepstream" / "model_softmax.onnx"
            if plan["implicit_onnx"]:  # nvinfer calibrates the FP32 graph from the table: the Q/DQ graph stands in
                from .serving.deepstream import softmax_onnx

                model = softmax_onnx(staging / plan["onnx"], Path(scratch.name) / "model_softmax.onnx")
            preprocessing = Preprocessing.from_dict(load_manifest(model)["preprocessing"])
            with log.status("validating as DeepStream runs it (nvinfer's transform, emulated)"):
                figures["deepstream_nvinfer"] = runtime_agreement(
                    model, pictures, lambda picture: nvinfer_inputs(picture, preprocessing), logits)
        if "triton" in settings.formats:
            client = client_module(staging / "triton" / "client.py")
            with log.status("validating as the Triton client prepares pictures (client.py's prepare_image)"):
                figures["triton_client"] = runtime_agreement(staging / plan["onnx"], pictures, client.prepare_image,
                                                             logits)
        low = [f"{name} {value:.2%}" for name, value in figures.items() if value < settings.min_agreement]
        if low:
            raise SkdeployError(f"validation as deployed failed (top-1 agreement {', '.join(low)} vs limit "
                                f"{settings.min_agreement:g}); no bundle written")
        for name, value in figures.items():
            log.info(f"deploy: top-1 agreement with FP32 under {name.replace('_', ' ')}: {value:.2%}")
        return figures

    return check


def _served_name(onnx_path: Path) -> str:
    """The model's name for Triton and DeepStream file names: its spec, made file-safe."""
    spec = load_manifest(onnx_path)["model"]["spec"]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in spec.split(":")[-1])


def _raw_input_for_deepstream(settings: DeploySettings, manifest) -> DeploySettings:
    """nvinfer has one scale factor: a model whose std differs per channel gets the raw-input graph (float32)."""
    from dataclasses import replace

    if len(set((manifest.get("preprocessing") or {}).get("std", ()))) <= 1:
        return settings
    log.info("deploy: std differs per channel, which nvinfer cannot reproduce; the preprocessing goes into the graph "
             "(raw float32 input, net-scale-factor 1, offsets 0)")
    return replace(settings, raw_input=True, raw_dtype="float32")
