"""Plant realistic one-line bugs, one at a time, in a scratch copy of the package, run the unit tier
against each, and print which tests kill it and the kill rate. Exit 1 if any planted bug survives.

    .venv/bin/python scripts/plant_bugs.py            # all bugs
    .venv/bin/python scripts/plant_bugs.py snr-signal # one by name
    .venv/bin/python scripts/plant_bugs.py --check    # only check that every anchor is still in the source

Each bug is an exact (file, original text, planted text) replacement. Before anything is planted, every
anchor (the original text) must occur exactly once in its file: a stale one (the code moved on) is
named and the script exits 2, rather than reporting a bug that was never planted.
"""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUGS = {
    "snr-signal": ("skdeploy/compare.py",
                   "signal = float(np.sum(reference ** 2))",
                   "signal = float(np.sum(candidate ** 2))"),
    "drop-sign": ("skdeploy/stages/validate.py",
                  'drop = (reference_top1 - metrics["top1"]) * 100.0',
                  'drop = (metrics["top1"] - reference_top1) * 100.0'),
    "gemm-transb-axis": ("skdeploy/calib/qdq.py",
                         'return 0 if attribute(node, "transB", 0) else 1',
                         'return 1 if attribute(node, "transB", 0) else 1'),
    "atomic-temp-left": ("skdeploy/fileio.py",
                         "    finally:\n        if not staged:\n            _remove(tmp)\n",
                         "    finally:\n        pass\n"),
    "normalise-order": ("skdeploy/data/preprocessing.py",
                        "(np.asarray(pixels, np.float32) * self.scale - mean) / std",
                        "np.asarray(pixels, np.float32) * self.scale / std - mean"),
    "budget-rank-order": ("skdeploy/calib/accuracy.py",
                          "return sorted(errors, key=lambda unit: -errors[unit])",
                          "return sorted(errors, key=lambda unit: errors[unit])"),
    "bn-fold-no-eps": ("skdeploy/graph/fold_bn.py",
                       'np.sqrt(var + attribute(bn, "epsilon", 1e-5))',
                       "np.sqrt(var)"),
    "cc-as-text": ("skdeploy/trt/compat.py",
                   "if cc_tuple(cc) < AMPERE:",
                   'if str(cc) < "8.0":'),
    "triton-batch-dim-kept": ("skdeploy/serving/triton.py",
                              'dims = tensor["shape"][1:] if batched else tensor["shape"]',
                              'dims = tensor["shape"]'),
    "deepstream-offsets-unscaled": ("skdeploy/serving/deepstream.py",
                                    "tuple(m / preprocessing.scale for m in preprocessing.mean)",
                                    "tuple(m * preprocessing.scale for m in preprocessing.mean)"),
    "labels-sorted": ("skdeploy/serving/labels.py",
                      "        return list(names)",
                      "        return sorted(names)"),
    "padding-binned": ("skdeploy/calib/collect.py",
                       "        values = values[:real]",
                       "        values = values"),
    "holdout-overlaps-calibration": ("skdeploy/data/splits.py",
                                     "        else:\n            held.append(index)\n",
                                     "        held.append(index)\n"),
    "signed-max-ignores-min": ("skdeploy/calib/collect.py",
                               "absmax = {name: max(abs(high), abs(low)) for",
                               "absmax = {name: abs(high) for"),
}


def stale_anchors(bugs=None, root=REPO) -> list:
    """The names of bugs whose original text is not exactly once in its file under `root`."""
    stale = []
    for name, (file, original, _) in (bugs or BUGS).items():
        path = root / file
        if not path.is_file() or path.read_text().count(original) != 1:
            stale.append(name)
    return stale


def plant(copy: Path, file: str, original: str, planted: str) -> None:
    path = copy / file
    path.write_text(path.read_text().replace(original, planted))


def failing_tests(copy: Path) -> list:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "--tb=no",
                             "-o", "addopts=", "tests/unit"], cwd=copy, capture_output=True, text=True)
    return re.findall(r"^FAILED (\S+)", result.stdout, flags=re.M)


def main(names) -> int:
    check_only = "--check" in names
    names = [name for name in names if name != "--check"]
    unknown = [name for name in names if name not in BUGS]
    if unknown:
        print(f"unknown bug {', '.join(unknown)}; known: {', '.join(BUGS)}")
        return 2
    stale = stale_anchors({name: BUGS[name] for name in names or BUGS})
    for name in stale:
        print(f"{name:28} STALE: {BUGS[name][0]} no longer holds the text to mutate exactly once")
    if stale or check_only:
        return 2 if stale else 0
    survivors = 0
    names = names or list(BUGS)
    for name in names:
        file, original, planted = BUGS[name]
        with tempfile.TemporaryDirectory(prefix=f"plant-{name}-") as folder:
            copy = Path(folder)
            for part in ("skdeploy", "tests", "calibration", "pyproject.toml"):
                source = REPO / part
                (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / part)
            plant(copy, file, original, planted)
            killed_by = failing_tests(copy)
        print(f"{name:28} {'killed by ' + killed_by[0] if killed_by else 'SURVIVED'}", flush=True)
        survivors += not killed_by
    print(f"killed {len(names) - survivors} of {len(names)} planted bugs "
          f"({100 * (len(names) - survivors) / len(names):.0f}%) with the unit tier")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
