import re
from dataclasses import asdict
from pathlib import Path

import click

from .. import ui
from ..engine.layers import summary_line
from ..engine.targets import TARGETS
from ..errors import UsageError
from . import force_option, json_option, precision_options, verify_option

DEFAULT_FOLDER = Path("engines")
# binary (KiB, MiB, GiB) and decimal (KB, MB, GB) units, any case; trtexec's bare K/M/G are left out because
# they are binary there and decimal elsewhere
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
UNIT_NAMES = "B, KB, MB, GB, KiB, MiB, GiB"


def parse_size(text) -> int:
    """'2GiB' -> 2147483648, '512MB' -> 512000000. A number without a unit is bytes, and refused below 1 MiB:
    `--workspace 2048` meant as megabytes would otherwise give the builder 2 KiB and a cryptic failure."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or (match.group(2) and match.group(2).lower() not in _UNITS):
        raise UsageError(f"--workspace must be a size with a unit ({UNIT_NAMES}), e.g. 2GiB or 512MiB; "
                         f"got {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    if not unit and number < 2**20:
        raise UsageError(f"--workspace {match.group(1)} is {match.group(1)} bytes, below 1 MiB; give a unit, "
                         f"e.g. {match.group(1)}MiB ({UNIT_NAMES})")
    return int(number * _UNITS[unit or "b"])


def default_output(onnx_path, target, precision) -> Path:
    stem = Path(onnx_path).name.removesuffix(".onnx")
    return DEFAULT_FOLDER / f"{stem}-{target or 'auto'}{'-' + precision if precision else ''}.engine"


@click.command("build-engine")
@click.argument("onnx_path", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@precision_options(int8="INT8 engine; an FP32 ONNX is calibrated first.",
                   fp16="FP16 engine; an FP32 ONNX is converted first (TensorRT 8.6/10.x use the FP16 builder "
                   "flag instead).")
@click.option("--calib-data", help="Calibration data for --int8/--fp16 on an FP32 ONNX: a folder of images, "
              ".npy/.npz or IDX (default: the demo model's shipped set; see 'skdeploy calibrate').")
@click.option("--calib-images", type=int, help="How many calibration samples to use (calibration stage default).")
@click.option("--backend", type=click.Choice(["auto", "tensorrt", "tensorrt-rtx"]), default="auto", show_default=True,
              help="auto: the target's backend, else tensorrt if installed, else tensorrt-rtx.")
@click.option("--target", type=click.Choice(list(TARGETS)), help="Deployment target (default: rtx for tensorrt-rtx, "
              "desktop for tensorrt).")
@click.option("--compute-capability", "compute_capabilities", metavar="8.6,8.9,...",
              help="TensorRT-RTX: compute capabilities to build for, without a GPU (default 8.6,8.9,12.0: "
              "RTX 30/40/50 series).")
@click.option("--min-batch", type=int, help="Smallest batch of the optimization profile (default 1).")
@click.option("--opt-batch", type=int, help="Batch the builder tunes for (default 8).")
@click.option("--max-batch", type=int, help="Largest batch (default 32). Ignored for static models.")
@click.option("--workspace", metavar="SIZE", help="Builder workspace limit with a unit: 512MiB, 2GiB, 4GB "
              f"({UNIT_NAMES}; a bare number is bytes and must be at least 1 MiB).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="Timing cache file: loaded, merged, saved.")
@click.option("--dla-core", type=int, help="Jetson: build for this DLA core (static shapes).")
@click.option("--gpu-fallback", is_flag=True, help="DLA: run layers the DLA cannot on the GPU.")
@click.option("--version-compatible", is_flag=True, help="Engine loadable by later TensorRT versions (lean runtime).")
@click.option("--exclude-lean-runtime", is_flag=True, help="With --version-compatible: leave the lean runtime out "
              "of the engine (the application ships it).")
@click.option("--hardware-compatibility", type=click.Choice(["none", "ampere-plus", "same-cc"]), default="none",
              show_default=True, help="Build for GPUs other than the build GPU.")
@click.option("--optimization-level", type=int, help="Builder optimization level 0..5 (builder default 3).")
@click.option("--strongly-typed/--weakly-typed", "strongly_typed", default=None,
              help="TensorRT 10.x only (default: strongly typed when the ONNX carries its precision).")
@click.option("--strict-precision", is_flag=True, help="Fail when a Conv the ONNX quantizes runs in FP16/FP32 in "
              "the engine (by default the build warns and lists them).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Engine path (default engines/MODEL-TARGET[-PRECISION].engine); the sidecar is OUTPUT.json.")
@force_option
@verify_option
@json_option
def command(onnx_path, precision, calib_data, calib_images, backend, target, compute_capabilities, min_batch, opt_batch,
            max_batch, workspace, timing_cache, dla_core, gpu_fallback, version_compatible, exclude_lean_runtime,
            hardware_compatibility, optimization_level, strongly_typed, strict_precision, output, force,
            as_json) -> None:
    """Build a TensorRT engine from an ONNX model, with its sidecar manifest ENGINE.json.

    The engine is the builder's output as is (trtexec and DeepStream load it); ENGINE.json records the
    backend, target, compute capabilities, precision, profiles, IO tensors, source ONNX and build costs,
    and a summary of the engine's layers (full list: OUTPUT.layers.json, see 'skdeploy inspect --layers').
    TensorRT 11 and TensorRT-RTX take precision from the ONNX (Q/DQ for INT8, FP16 tensors): --int8/--fp16
    on an FP32 ONNX run the calibration stage first.

    \b
    Examples:
      skdeploy build-engine out/demo.int8.onnx --target rtx --compute-capability 8.6,8.9
      skdeploy build-engine out/demo.onnx --int8 -o engines/demo.engine       # shipped calibration set
      skdeploy build-engine sknet50.onnx --int8 --calib-data photos/ --target rtx
      skdeploy build-engine sknet50.onnx --fp16 --target desktop --workspace 2GiB --timing-cache engines/cache
      skdeploy build-engine sknet50.onnx --int8 --target jetson-orin --dla-core 0 --gpu-fallback
      skdeploy build-engine out/demo.int8.onnx --strict-precision   # every quantized Conv must run INT8
    """
    from ..stages.build import BuildSettings, build

    settings = BuildSettings(
        backend=backend, target=target, precision=precision, calib_data=calib_data, calib_images=calib_images,
        compute_capabilities=([c for c in compute_capabilities.split(",") if c.strip()]
                              if compute_capabilities else None),
        min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
        workspace=parse_size(workspace) if workspace else None, timing_cache=timing_cache, dla_core=dla_core,
        gpu_fallback=gpu_fallback, version_compatible=version_compatible, exclude_lean_runtime=exclude_lean_runtime,
        hardware_compatibility=hardware_compatibility, optimization_level=optimization_level,
        strongly_typed=strongly_typed, strict_precision=strict_precision)
    output = Path(output) if output else default_output(onnx_path, target or _default_target(backend), precision)
    engine = build(onnx_path, output, settings, force=force).engine
    if as_json:
        ui.emit_json({"engine": str(output), "sidecar": f"{output}.json", **asdict(engine)})
        return
    ccs = ", ".join(engine.compute_capabilities) or "the build GPU"
    ui.out.print(f"wrote {output} ({engine.engine_bytes / 2**20:.1f} MiB) + sidecar {output}.json")
    ui.out.print(f"{engine.backend} {engine.backend_version}, target {engine.target} ({ccs}), "
                 f"{engine.precision}, built in {engine.build_seconds:.1f} s, peak {engine.peak_rss_mb:.0f} MiB"
                 + (f", {len(engine.warnings)} builder warnings" if engine.warnings else ""))
    if engine.layers:
        ui.out.print("layers: " + summary_line(engine.layers))



def _default_target(backend):
    return {"tensorrt-rtx": "rtx", "tensorrt": "desktop"}.get(backend)
