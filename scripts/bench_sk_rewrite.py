"""What the SK select rewrite changes: node counts, TensorRT-RTX build time and engine size, and parity.

    .venv/bin/python scripts/bench_sk_rewrite.py build                 # SKNet-50, both exporters
    .venv/bin/python scripts/bench_sk_rewrite.py build --models sknet50 --exporters torchscript --json
    .venv/bin/python scripts/bench_sk_rewrite.py parity                # every SK model x exporter x batch mode

build:  each model is exported once per exporter (random weights, dynamic batch) with BatchNorm folded
        and the SK select as exported ("before"), then the SK rewrite runs on it ("after"). Both are
        built by `skdeploy build-engine --json` in a fresh process (TensorRT-RTX, CPU only, batch profile
        1/8/32), alternating before/after --repeats times, so build time and peak RSS are what a user's
        build costs and machine load drifts over both alike.
parity: `export_model` with all passes and a 1e-5 tolerance for every model, exporter, static and
        dynamic batch; prints PyTorch-vs-onnxruntime parity and what the passes did.
Prints Markdown tables (the ones in docs/graph-passes.md) or JSON.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "support" / "article_sknet.py"  # the article's SK module, loaded as a model spec
PARITY_MODELS = ["sknet-fmnist", "sknet26", "sknet50", "sknet101", "timm:skresnet18", "timm:skresnet34",
                 "timm:skresnext50_32x4d", "ref:M2s1", "ref:M2s2", "ref:M3s1", "ref:M3s2"]


def load(name):
    """A model with random weights and randomised BatchNorm."""
    import torch
    from bench_calibration import randomize_batchnorm

    from skdeploy.models import REGISTRY, load_model

    if name.startswith("ref:"):  # the reference SK unit: ref:M<branches>s<stride>
        M, stride = (int(v) for v in name[len("ref:M"):].split("s"))
        loaded = load_model(spec=f"{REFERENCE}:SKNet", input_shape=(64, 16, 16),
                            model_kwargs={"in_channels": 64, "out_channels": 64, "stride": stride, "M": M})
    else:
        loaded = load_model(**({"arch": name} if name in REGISTRY else {"spec": name}), pretrained=False)
    torch.manual_seed(0)
    randomize_batchnorm(loaded.module)
    return loaded


def block_audit(model) -> dict:
    """Ops TensorRT handles worst and the largest tensor rank, over the whole graph."""
    from skdeploy.onnx.io import node_counts
    from skdeploy.onnx.shapes import infer_types

    counts = node_counts(model)
    ranks = [len(t.shape) for t in infer_types(model, 1).values() if t.shape is not None]
    return {"shape_ops": sum(counts.get(op, 0) for op in ("Shape", "Gather", "ConstantOfShape", "Split")),
            "softmax": counts.get("Softmax", 0), "max_rank": max(ranks)}


def build(onnx_path, engine_path, compute_capability) -> dict:
    done = subprocess.run([str(Path(sys.executable).with_name("skdeploy")), "build-engine", str(onnx_path),
                           "--target", "rtx", "--compute-capability", compute_capability, "-o", str(engine_path),
                           "--force", "--json"], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{onnx_path.name}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def run_build(args):
    import onnx

    from skdeploy.graph import optimize_graph
    from skdeploy.onnx.io import node_counts
    from skdeploy.stages.export import ExportSettings, export_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.models.split(","):
            for exporter in args.exporters.split(","):
                before = tmp / f"{name}-{exporter}-before.onnx"
                export_model(load(name), before, ExportSettings(exporter=exporter, dynamic_batch=True,
                                                                sk_rewrite=False))
                model = onnx.load(str(before))
                counts_before = node_counts(model)
                started = time.time()
                model, reports = optimize_graph(model, fold_bn=False)
                rewrite_seconds = time.time() - started
                after = tmp / f"{name}-{exporter}-after.onnx"
                onnx.save(model, str(after))
                row = {"model": name, "exporter": exporter, "nodes_before": counts_before,
                       "nodes_after": node_counts(model), "rewrite_seconds": round(rewrite_seconds, 1),
                       "blocks": len(reports[0].rewritten)}
                for _ in range(args.repeats if exporter in args.build_exporters.split(",") else 0):
                    for side, path in (("before", before), ("after", after)):  # alternate: load drifts alike
                        engine = build(path, tmp / f"{path.stem}.engine", args.compute_capability)
                        entry = row.setdefault(side, {"build_seconds": [], **{key: engine[key] for key in (
                            "peak_rss_mb", "engine_bytes", "backend_version", "compute_capabilities")}})
                        entry["build_seconds"].append(engine["build_seconds"])
                rows.append(row)
                print(f"{name} {exporter}: {json.dumps(row)}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        ops = sorted(set(row["nodes_before"]) | set(row["nodes_after"]))
        print(f"\n{row['model']}, {row['exporter']} exporter, dynamic batch: {row['blocks']} SK blocks rewritten "
              f"in {row['rewrite_seconds']:.1f} s\n")
        print("| op | before | after |\n|---|---:|---:|")
        for op in ops:
            print(f"| {op} | {row['nodes_before'].get(op, 0)} | {row['nodes_after'].get(op, 0)} |")
        print(f"| **total** | {sum(row['nodes_before'].values())} | {sum(row['nodes_after'].values())} |")
    built = [row for row in rows if "before" in row]
    if built:
        first = built[0]["before"]
        print(f"\nTensorRT-RTX {first['backend_version']}, CPU only, compute capability "
              f"{', '.join(first['compute_capabilities'])}, FP32, batch profile 1/8/32\n")
        print(f"build time: median of {args.repeats} builds (each in a fresh process), all times in brackets\n")
        print("| model | exporter | build before (s) | build after (s) | engine before (MiB) | engine after (MiB) "
              "| peak RSS before / after (MiB) |\n|---|---|---:|---:|---:|---:|---:|")
        for row in built:
            b, a = row["before"], row["after"]
            times = {side: f"{statistics.median(e['build_seconds']):.1f} "
                           f"({', '.join(f'{t:.1f}' for t in e['build_seconds'])})" for side, e in (("b", b), ("a", a))}
            print(f"| {row['model']} | {row['exporter']} | {times['b']} | {times['a']} | "
                  f"{b['engine_bytes'] / 2**20:.1f} | {a['engine_bytes'] / 2**20:.1f} | "
                  f"{b['peak_rss_mb']:.0f} / {a['peak_rss_mb']:.0f} |")


def run_parity(args):
    import onnx

    from skdeploy.errors import SkdeployError
    from skdeploy.stages.export import ExportSettings, export_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for exporter in args.exporters.split(","):
                for dynamic in (False, True):
                    path = Path(tmp) / "model.onnx"
                    row = {"model": name, "exporter": exporter, "dynamic": dynamic}
                    started = time.time()
                    try:
                        result = export_model(load(name), path, ExportSettings(
                            exporter=exporter, dynamic_batch=dynamic, parity_tolerance=args.tolerance), force=True)
                    except SkdeployError as exc:
                        row["error"] = str(exc)
                    else:
                        sk = next(report for report in result.passes if report.name == "sk_rewrite")
                        row.update(max_rel=result.parity["max_rel"], batches=result.parity["batches"],
                                   found=sk.blocks_found, rewritten=len(sk.rewritten),
                                   M=sorted({r["M"] for r in sk.rewritten}), left=len(sk.left),
                                   batchnorms=result.node_counts.get("BatchNormalization", 0),
                                   **block_audit(onnx.load(str(path))))
                    row["seconds"] = round(time.time() - started, 1)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"parity after all passes vs PyTorch FP32 (onnxruntime CPU; max |diff| / max |reference|, "
          f"tolerance {args.tolerance:g})\n")
    print("| model | exporter | batch | SK blocks rewritten / found (M) | max rel | Shape/Gather/Split ops | "
          "Softmax | max rank | BatchNorm |\n|---|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        batch = "dynamic (1, 4)" if row["dynamic"] else "static 1"
        if "error" in row:
            print(f"| {row['model']} | {row['exporter']} | {batch} | failed: {row['error']} | | | | | |")
            continue
        print(f"| {row['model']} | {row['exporter']} | {batch} | {row['rewritten']} / {row['found']} "
              f"(M={','.join(map(str, row['M']))}) | {row['max_rel']:.2g} | {row['shape_ops']} | {row['softmax']} | "
              f"{row['max_rank']} | {row['batchnorms']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["build", "parity"])
    parser.add_argument("--models", help="comma-separated (build: sknet50; parity: every SK model)")
    parser.add_argument("--exporters", default="torchscript,dynamo")
    parser.add_argument("--build-exporters", default="torchscript,dynamo", help="build: which exports to build")
    parser.add_argument("--compute-capability", default="8.6")
    parser.add_argument("--repeats", type=int, default=3, help="build: builds per graph (median reported)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="parity: max relative error")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from skdeploy.log import QUIET, log

    with log.verbosity(QUIET):
        if args.mode == "build":
            args.models = args.models or "sknet50"
            run_build(args)
        else:
            args.models = args.models or ",".join(PARITY_MODELS)
            run_parity(args)


if __name__ == "__main__":
    main()
