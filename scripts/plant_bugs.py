"""Plant each of seven realistic one-line bugs, one at a time, in a scratch copy of the package, run
the unit tier against it, and print which tests kill it. Exit 1 if any planted bug survives.

    .venv/bin/python scripts/plant_bugs.py            # all bugs
    .venv/bin/python scripts/plant_bugs.py snr-signal # one by name

Each bug is an exact (file, original line, planted line) replacement; a replacement that no longer
matches the source is reported as stale rather than silently skipped.
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
                         "    with contextlib.suppress(FileNotFoundError):\n        os.unlink(path)\n",
                         "    pass\n"),
    "normalise-order": ("skdeploy/data/preprocessing.py",
                        "(np.asarray(pixels, np.float32) * self.scale - mean) / std",
                        "np.asarray(pixels, np.float32) * self.scale / std - mean"),
    "budget-rank-order": ("skdeploy/calib/accuracy.py",
                          "return sorted(errors, key=lambda unit: -errors[unit])",
                          "return sorted(errors, key=lambda unit: errors[unit])"),
    "bn-fold-no-eps": ("skdeploy/graph/fold_bn.py",
                       'np.sqrt(var + attribute(bn, "epsilon", 1e-5))',
                       "np.sqrt(var)"),
}


def plant(copy: Path, file: str, original: str, planted: str) -> bool:
    path = copy / file
    text = path.read_text()
    if text.count(original) != 1:
        return False
    path.write_text(text.replace(original, planted))
    return True


def failing_tests(copy: Path) -> list:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "--tb=no",
                             "-o", "addopts=", "tests/unit"], cwd=copy, capture_output=True, text=True)
    return re.findall(r"^FAILED (\S+)", result.stdout, flags=re.M)


def main(names) -> int:
    survivors = 0
    for name in names or BUGS:
        file, original, planted = BUGS[name]
        with tempfile.TemporaryDirectory(prefix=f"plant-{name}-") as folder:
            copy = Path(folder)
            for part in ("skdeploy", "tests", "calibration", "pyproject.toml"):
                source = REPO / part
                (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / part)
            if not plant(copy, file, original, planted):
                print(f"{name:18} STALE: {file} no longer holds the line to mutate")
                survivors += 1
                continue
            killed_by = failing_tests(copy)
        print(f"{name:18} {'killed by ' + killed_by[0] if killed_by else 'SURVIVED'}")
        survivors += not killed_by
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
