"""Which quantized layers cost accuracy, and the fewest to keep wide: the analysis behind
`skdeploy debug-precision`.

Per INT8 layer (a quantized Conv, Gemm, MatMul or residual Add, by its ONNX node name), against the FP32
model on held-out samples:

  accumulated  the whole quantized model's output of that layer vs FP32's: the error that reached it
  isolated     a copy of the layer fed the quantized form of FP32's own inputs vs FP32: its own error
  gain         top-1 agreement with FP32 of the model with only that layer kept wide, minus the model's

Both errors come out of one onnxruntime session per pass that holds the FP32 graph, the candidate's
graph (names prefixed) and the shadow layers, with the comparison done in the graph: only four numbers
per sample and layer (sums of d^2, x^2, x.y, y^2) leave it, batch by batch. A compared tensor stays alive
until its twin in the other graph exists, so each pass compares at most `tensors_per_pass` layers.

The fewest layers to keep wide: greedy in rank order until `min_agreement` holds, then a pruning pass
that drops every chosen layer the target does not need. The result is the `calibrate` flags that make it.
"""
import copy
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..compare import cosines_from_sums, snr_db
from ..data import InputShape, Preprocessing, default_calibration_path, open_source, select_calibration
from ..errors import SkdeployError, UsageError, require_finite
from ..fileio import PathLike, existing_file, sha256_file
from ..log import log
from ..manifest import last_stage, load_manifest, recorded_source
from ..onnx.build import NodeFactory
from ..onnx.index import GraphIndex
from ..onnx.io import load_onnx
from ..onnx.toposort import replace_nodes
from . import accuracy, cache
from .convert import int8_with_fallback, name_nodes
from .fp16 import FP16_MAX
from .qdq import INT8_MAX, QdqBuilder, plan_int8, shadow_node

CANDIDATE = "candidate::"  # prefix of the candidate graph's names inside the comparison model
SUMS = ("noise", "signal", "dot", "candidate")  # per sample: sum d^2, x^2, x*y, y^2 (x FP32, y compared)
DEFAULT_MIN_AGREEMENT = 0.99  # validate's default, when calibration recorded no budget


@dataclass
class PrecisionSettings:
    samples: int = 500  # held-out samples (after calibration's subset, or the first of `data` in seeded order)
    fp32: str | None = None  # the FP32 ONNX; None: the one the candidate's manifest was calibrated from
    data: str | None = None  # None: the calibration data the manifest records (its held-out part)
    seed: int | None = None  # None: calibration's seed
    min_agreement: float | None = None  # None: 1 - calibrate's max_top1_drop / 100, else DEFAULT_MIN_AGREEMENT
    fallback: str = "fp16"  # what a layer kept wide computes in: fp16 | fp32
    batch_size: int = 32
    tensors_per_pass: int = 8  # layers compared per pass over the samples

    def __post_init__(self):
        require_finite(min_agreement=self.min_agreement)
        if self.samples < 1:
            raise UsageError(f"`samples` must be at least 1, got {self.samples}")
        if self.batch_size < 1 or self.tensors_per_pass < 1:
            raise UsageError("`batch_size` and `tensors_per_pass` must be at least 1")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"`min_agreement` must be between 0 and 1, got {self.min_agreement:g}")
        if self.fallback not in accuracy.FALLBACKS:
            raise UsageError(f"`fallback` must be fp16 or fp32, got {self.fallback!r}")


@dataclass
class PrecisionReport:
    """What debug-precision measured; `record()` is its --json form."""

    candidate: str
    fp32: str
    fallback: str
    data: dict  # {path, samples, seed, split}
    reference: str  # what top-1 agreement is measured against
    agreement: float  # the candidate's top-1 agreement with FP32
    min_agreement: float
    layers: list  # [{rank, name, op, depth, accumulated {snr_db, cosine}, isolated {...}, agreement_gain}], ranked
    search: dict  # {steps [{action, layer, agreement}], minimal [names] | None, agreement, met}
    passes: int
    tensors_per_pass: int
    seconds: float
    calibration: dict = field(repr=False)  # the candidate's calibrate settings, for the flags and --write

    @property
    def minimal(self) -> list:
        return self.search["minimal"]

    def flags(self) -> list:
        """The calibrate flags that keep the minimal set wide (empty when none is needed or none was found)."""
        flag = "--keep-fp16" if self.fallback == "fp16" else "--keep-fp32"
        return [part for name in self.minimal or () for part in (flag, name)]

    def command(self) -> str:
        """The whole calibrate command line that rebuilds the candidate with the minimal set wide."""
        recorded = self.calibration
        parts = ["skdeploy", "calibrate", self.fp32, "--int8", "--method", recorded["method"]]
        for name in recorded.get("keep_fp32") or ():
            parts += ["--keep-fp32", name]
        for name in recorded.get("keep_fp16") or ():
            parts += ["--keep-fp16", name]
        if recorded.get("calib_data"):
            parts += ["--calib-data", recorded["calib_data"]]
        if recorded.get("calib_images") != 512:
            parts += ["--calib-images", str(recorded["calib_images"])]
        if recorded.get("seed"):
            parts += ["--seed", str(recorded["seed"])]
        return " ".join(_quoted(part) for part in parts + self.flags() + ["-o", "OUT.onnx"])

    def calibration_settings(self) -> dict:
        """The candidate's calibration settings plus the minimal set kept wide: what --write calibrates with."""
        settings = {key: tuple(value) if isinstance(value, list) else value for key, value in self.calibration.items()}
        key = "keep_fp16" if self.fallback == "fp16" else "keep_fp32"
        settings[key] = tuple(settings.get(key) or ()) + tuple(self.minimal or ())
        return settings

    def record(self) -> dict:
        record = asdict(self)
        record.pop("calibration")
        return dict(record, flags=self.flags(), command=self.command() if self.minimal else None)


def _quoted(part: str) -> str:
    return part if all(c.isalnum() or c in "-_./:=,+" for c in part) else "'" + part.replace("'", "'\\''") + "'"


# ---- what the candidate is -------------------------------------------------------------------------
@dataclass
class Candidate:
    """The INT8 candidate as the FP32 model plus how it was quantized, so variants can be rebuilt."""

    model: onnx.ModelProto
    units: list  # its quantized units, graph order
    keep_fp32: list  # units of the full plan it leaves FP32
    keep_fp16: list  # units of the full plan it computes in FP16
    amax: dict  # activation tensor -> range, from the candidate's scales
    absmax: dict  # tensor -> largest |x| on the calibration data (the ranges cache), {} when absent

    def variant(self, fp32_model: onnx.ModelProto, wide: Iterable[str], fallback: str,
                fp16_limit: float) -> onnx.ModelProto:
        """The candidate rebuilt from `fp32_model` with the units `wide` in `fallback` too."""
        settings = Fallback(fallback, fp16_limit, tuple(self.keep_fp16))
        return int8_with_fallback(fp32_model, self.keep_fp32, self.amax, self.absmax, settings, list(wide))


@dataclass
class Fallback:
    """The part of the calibration settings that rebuilding a variant reads."""

    fallback: str
    fp16_limit: float
    keep_fp16: tuple


def read_candidate(path: PathLike, candidate_model: onnx.ModelProto, fp32_model: onnx.ModelProto) -> Candidate:
    producers = {output: node for node in candidate_model.graph.node for output in node.output}
    nodes = {node.name: node for node in candidate_model.graph.node}

    def fed_by(name, op, to=None):
        return any(producers.get(tensor) is not None and producers[tensor].op_type == op
                   and (to is None or any(a.name == "to" and a.i == to for a in producers[tensor].attribute))
                   for tensor in nodes[name].input)

    full = plan_int8(fp32_model)
    present = [unit for unit in full.units if unit in nodes]
    quantized = [unit for unit in present if fed_by(unit, "DequantizeLinear")]
    half = [unit for unit in present if unit not in quantized and fed_by(unit, "Cast", TensorProto.FLOAT16)]
    keep_fp32 = [unit for unit in full.units if unit not in quantized and unit not in half]
    initializers = {init.name: init for init in candidate_model.graph.initializer}
    amax = {}
    for node in candidate_model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[1] in initializers:
            amax[node.input[0]] = float(numpy_helper.to_array(initializers[node.input[1]])) * INT8_MAX
    absmax = {}
    ranges_file = cache.ranges_path(path)
    try:
        tensors = json.loads(ranges_file.read_text()).get("tensors") or {}
        absmax = {name: float(entry["absmax"]) for name, entry in tensors.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        log.warning(f"no readable ranges cache {ranges_file}: layers kept in FP16 are not checked for overflow")
    rebuilt = plan_int8(fp32_model, exclude=set(keep_fp32) | set(half)).units
    if rebuilt != quantized:
        raise SkdeployError(f"{path}: its quantized layers do not follow skdeploy's Q/DQ placement for the FP32 "
                            "model (was it calibrated by skdeploy from this FP32 ONNX?)")
    if not quantized:
        raise UsageError(f"{path} has no INT8 layers to rank")
    return Candidate(candidate_model, quantized, keep_fp32, half, amax, absmax)


# ---- the comparison model ------------------------------------------------------------------------
def _prefixed(model, prefix: str, keep: set):
    """A copy of `model`'s graph with every name but those in `keep` (the shared input) prefixed."""
    graph = copy.deepcopy(model.graph)

    def rename(name):
        return name if not name or name in keep else prefix + name

    for node in graph.node:
        node.name = prefix + node.name
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
    for init in graph.initializer:
        init.name = rename(init.name)
    for output in graph.output:
        output.name = rename(output.name)
    return graph


def comparison_model(fp32_model: onnx.ModelProto, candidate: Candidate, units: list) -> tuple:
    """(model, {unit: {"accumulated": [4 sum outputs], "isolated": [...]}}): the FP32 graph, the candidate's
    graph and shadow copies of `units`, comparing in the graph."""
    merged = copy.deepcopy(fp32_model)
    graph = merged.graph
    inputs = {value.name for value in graph.input}
    other = _prefixed(candidate.model, CANDIDATE, inputs)
    nodes = list(graph.node) + list(other.node)
    graph.initializer.extend(other.initializer)
    index = GraphIndex(fp32_model)
    plan = plan_int8(fp32_model, exclude=set(candidate.keep_fp32) | set(candidate.keep_fp16))
    builder = QdqBuilder(index, candidate.amax)
    factory = NodeFactory("debug_precision", set(index.names()) | {node.name for node in nodes})
    axes = factory.constant("axes", np.array([1], np.int64))
    by_name = {node.name: node for node in fp32_model.graph.node}
    probes = {}
    for unit in units:
        node = by_name[unit]
        shadow, shadow_out = shadow_node(node, builder, plan)
        nodes.append(shadow)
        reference = node.output[0]
        probes[unit] = {"accumulated": _sums(factory, axes, reference, CANDIDATE + reference),
                        "isolated": _sums(factory, axes, reference, shadow_out)}
    graph.initializer.extend(builder.initializers + factory.initializers)
    replace_nodes(graph, nodes + builder.nodes + factory.nodes)
    del graph.output[:]
    del graph.value_info[:]
    names = [name for probe in probes.values() for sums in probe.values() for name in sums]
    graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names)
    return merged, probes


def _sums(factory: NodeFactory, axes: str, reference: str, compared: str) -> list:
    """Per-sample sum of d^2, x^2, x*y and y^2 for x = `reference`, y = `compared`, d = y - x (SUMS order)."""
    x = factory.node("Flatten", [reference], "flat", axis=1)
    y = factory.node("Flatten", [compared], "flat", axis=1)
    d = factory.node("Sub", [y, x], "difference")
    return [factory.node("ReduceSum", [factory.node("Mul", [a, b], "product"), axes], "sum", keepdims=0)
            for a, b in ((d, d), (x, x), (x, y), (y, y))]


class ErrorSums:
    """One layer's comparison, batch by batch: SNR over all samples, cosine averaged over samples."""

    def __init__(self):
        self.noise = self.signal = self.cosine = 0.0
        self.rows = 0

    def add(self, noise: np.ndarray, signal: np.ndarray, dot: np.ndarray, compared: np.ndarray) -> None:
        self.noise += float(np.sum(noise, dtype=np.float64))
        self.signal += float(np.sum(signal, dtype=np.float64))
        self.cosine += float(cosines_from_sums(dot, signal, compared).sum())
        self.rows += len(noise)

    def result(self) -> dict:
        snr = snr_db(self.signal, self.noise)
        return {"snr_db": round(snr, 3) if np.isfinite(snr) else None, "cosine": round(self.cosine / self.rows, 6)}


# ---- the analysis --------------------------------------------------------------------------------
def debug_precision(candidate_path: PathLike, settings: PrecisionSettings | None = None) -> PrecisionReport:
    """Rank `candidate_path`'s INT8 layers and find the fewest to keep wide for `min_agreement`."""
    started = time.time()
    settings = settings or PrecisionSettings()
    existing_file(candidate_path)
    manifest = load_manifest(candidate_path)
    if manifest is None:
        raise UsageError(f"{candidate_path} has no manifest; debug-precision reads its calibration from it")
    calibration = last_stage(manifest, "calibrate")
    if calibration is None or calibration.get("precision") != "int8":
        raise UsageError(f"{candidate_path} is not an INT8 model made by 'skdeploy calibrate --int8' (its manifest "
                         "has no INT8 calibrate stage)")
    recorded = calibration.get("settings") or {}
    fp32_path = _fp32_source(candidate_path, manifest, calibration, settings.fp32)
    fp32_model = load_onnx(fp32_path)
    name_nodes(fp32_model)
    candidate = read_candidate(candidate_path, load_onnx(candidate_path), fp32_model)
    selection, indices, data = _samples(fp32_model, manifest, recorded, settings)
    target = settings.min_agreement
    if target is None:
        budget = recorded.get("max_top1_drop")
        target = DEFAULT_MIN_AGREEMENT if budget is None else round(1.0 - budget / 100.0, 6)

    units = candidate.units
    chunks = [units[i:i + settings.tensors_per_pass] for i in range(0, len(units), settings.tensors_per_pass)]
    sums = {unit: {"accumulated": ErrorSums(), "isolated": ErrorSums()} for unit in units}
    for number, chunk in enumerate(chunks, start=1):
        model, probes = comparison_model(fp32_model, candidate, chunk)
        for outputs, real in accuracy.runs(model, selection, indices, settings.batch_size,
                                           f"comparing layers (pass {number}/{len(chunks)})", priority_order=True):
            for unit, probe in probes.items():
                for kind, names in probe.items():
                    sums[unit][kind].add(*(outputs[name][:real] for name in names))
        del model
    # top-1 from the models as they are: a compared tensor keeps onnxruntime from fusing its Q/DQ
    reference_top1 = accuracy.onnx_predictions(fp32_model, selection, indices, settings.batch_size, "FP32 reference")
    candidate_top1 = accuracy.onnx_predictions(candidate.model, selection, indices, settings.batch_size, "candidate")
    agreement = float(np.mean(candidate_top1 == reference_top1))
    log.info(f"candidate agreement with FP32 on {len(indices)} samples: {agreement:.2%}")

    def correct(wide, description):
        variant = candidate.variant(fp32_model, wide, settings.fallback, recorded.get("fp16_limit", FP16_MAX / 2))
        predictions = accuracy.onnx_predictions(variant, selection, indices, settings.batch_size, description)
        return int(np.sum(predictions == reference_top1))

    base = correct((), "rebuilt candidate")
    if base != int(np.sum(candidate_top1 == reference_top1)):
        log.warning("the candidate rebuilt from the FP32 model agrees with FP32 on a different number of samples "
                    f"({base} vs {int(np.sum(candidate_top1 == reference_top1))}); gains are against the rebuilt one")
    gains = {unit: correct([unit], f"{unit} in {settings.fallback}") - base for unit in units}
    layers = _ranked_layers(fp32_model, units, sums, gains, len(indices))
    search = _fewest_wide([layer["name"] for layer in layers], base, len(indices), target,
                          lambda wide, what: correct(wide, what), settings.fallback)
    return PrecisionReport(
        candidate=str(candidate_path), fp32=str(fp32_path), fallback=settings.fallback, data=data,
        reference="onnx-fp32", agreement=round(agreement, 6), min_agreement=target, layers=layers, search=search,
        passes=len(chunks), tensors_per_pass=settings.tensors_per_pass, seconds=round(time.time() - started, 2),
        calibration=dict(recorded, method=calibration.get("method") or recorded.get("method")))


def _ranked_layers(fp32_model, units, sums, gains, count) -> list:
    """Units ranked by agreement gain, then by their own (isolated) error, then by the accumulated one."""
    nodes = {node.name: node for node in fp32_model.graph.node}
    position = {name: depth for depth, name in enumerate(units)}
    rows = [{"name": unit, "op": nodes[unit].op_type, "depth": position[unit],
             "accumulated": sums[unit]["accumulated"].result(), "isolated": sums[unit]["isolated"].result(),
             "agreement_gain": round(gains[unit] / count, 6)} for unit in units]

    def snr(value):
        return float("inf") if value is None else value

    rows.sort(key=lambda row: (-row["agreement_gain"], snr(row["isolated"]["snr_db"]),
                               snr(row["accumulated"]["snr_db"]), row["depth"]))
    return [dict(row, rank=rank) for rank, row in enumerate(rows, start=1)]


def _fewest_wide(ranked, base: int, count: int, target: float, correct, fallback: str) -> dict:
    """Greedy in rank order until the agreement reaches `target`, then drop each chosen layer the target
    does not need (last chosen first). `correct(wide, description)` counts the samples that agree."""
    steps = [{"action": "start", "layer": None, "agreement": round(base / count, 6)}]
    log.info(f"agreement {base / count:.2%} with every layer INT8; target {target:.2%}")
    if base / count >= target:
        return {"steps": steps, "minimal": [], "agreement": round(base / count, 6), "met": True}
    chosen, reached = [], base
    for unit in ranked:
        chosen.append(unit)
        reached = correct(chosen, f"{len(chosen)} layer(s) in {fallback}")
        steps.append({"action": "add", "layer": unit, "agreement": round(reached / count, 6)})
        log.info(f"+ {unit}: agreement {reached / count:.2%}")
        if reached / count >= target:
            break
    else:
        return {"steps": steps, "minimal": None, "agreement": round(reached / count, 6), "met": False}
    for unit in reversed(chosen[:-1]):
        trial = [name for name in chosen if name != unit]
        without = correct(trial, f"without {unit}")
        needed = without / count < target
        steps.append({"action": "keep" if needed else "drop", "layer": unit, "agreement": round(without / count, 6)})
        log.info(f"{'keep' if needed else '- drop'} {unit}: agreement without it {without / count:.2%}")
        if not needed:
            chosen, reached = trial, without
    return {"steps": steps, "minimal": chosen, "agreement": round(reached / count, 6), "met": True}


def _fp32_source(candidate_path, manifest: dict, calibration: dict, given) -> Path:
    """The FP32 ONNX the candidate was calibrated from: `given`, else the manifest's record (as written, then
    beside the candidate). It must be the same file (sha256)."""
    source = recorded_source(manifest, calibration)
    recorded = source.get("file")
    path: Path | None
    if given:
        path = existing_file(given, "FP32 model")
    elif not recorded:
        raise UsageError(f"{candidate_path}'s manifest does not name its FP32 source; pass `fp32`")
    else:
        path = next((p for p in (Path(recorded), Path(candidate_path).parent / Path(recorded).name) if p.is_file()),
                    None)
        if path is None:
            raise UsageError(f"cannot find {recorded}, the FP32 model {candidate_path} was calibrated from; pass "
                             "`fp32`")
    if source.get("sha256") and sha256_file(path) != source["sha256"]:
        raise UsageError(f"{path} is not the FP32 model {candidate_path} was calibrated from (its sha256 differs)"
                         + ("" if given else "; pass the right one with `fp32`"))
    return path


def _samples(fp32_model, manifest: dict, recorded: dict, settings: PrecisionSettings) -> tuple:
    """(Selection, sample indices, data record): the calibration data's held-out samples, or the first
    `samples` of `data` in seeded order."""
    index = GraphIndex(fp32_model)
    dims = index.shape(index.inputs[0]) or []
    if len(index.inputs) != 1 or len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise UsageError("debug-precision feeds one (N, C, H, W) image input with fixed C, H, W")
    shape = InputShape(*dims[1:])
    preprocessing = manifest.get("preprocessing")
    if not preprocessing or preprocessing.get("in_graph"):
        raise UsageError("the candidate's manifest must record the preprocessing of a normalized-input model")
    resolve = lambda what: Preprocessing.from_dict(preprocessing)  # noqa: E731
    seed = recorded.get("seed", 0) if settings.seed is None else settings.seed
    if settings.data:
        source = open_source(settings.data, shape, resolve, argument="data")
        selection = select_calibration(source, shape, settings.samples, 0, seed)
        indices, path, split = selection.calibration, settings.data, "first in seeded order"
    else:
        path = recorded.get("calib_data") or default_calibration_path(manifest)
        if path is None:
            raise UsageError("`data` is required: the candidate's calibration data is not recorded")
        source = open_source(path, shape, resolve, argument="data")
        selection = select_calibration(source, shape, recorded.get("calib_images", 512), settings.samples, seed)
        indices, split = selection.holdout, "held out from calibration"
        if not indices:
            raise UsageError(f"{path} has no samples beyond the {len(selection.calibration)} that calibrated; "
                             "pass other samples with `data`")
    if len(indices) < settings.samples:
        log.warning(f"only {len(indices)} samples available, fewer than `samples={settings.samples}`")
    return selection, indices, {"path": str(path), "samples": len(indices), "seed": seed, "split": split}
