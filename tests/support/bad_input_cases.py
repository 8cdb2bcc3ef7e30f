"""The bad-input suite's harness. One row (a `Case`) is a command, a way to break its input, the exit code
and the one-line message expected, and the promise that the command leaves no output and no temp file.

Rows live in `tests/e2e/test_bad_inputs_*.py`, one file per area; each runs its rows with
`run_case(case, workspace)`, where `workspace` (conftest) is a private copy of the demo artifacts."""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# the files in every workspace (conftest's `workspace`), made once per session from the shipped demo model
DEMO_ONNX = "demo.onnx"            # FP32, dynamic batch, with its manifest demo.onnx.json
DEMO_CHECKPOINT = "demo.pt"        # the shipped weights as a plain state_dict
DEMO_ENGINE = "demo.engine"        # TensorRT-RTX FP32 engine for compute capability 8.9, with demo.engine.json
DEMO_IMAGES = "images"             # a folder of 16 Fashion-MNIST test PNGs, named <label>_<index>.png


@dataclass(frozen=True)
class Case:
    """`args` may hold "{ws}" for the workspace folder. `prepare(workspace)` breaks the inputs first."""
    name: str
    args: tuple
    exit_code: int
    message: str  # a regular expression searched in the one `error:` line
    prepare: Callable[[Path], None] | None = None

    def __str__(self):
        return self.name


def snapshot(folder: Path) -> dict:
    """Every file under `folder` (hidden ones too) with the sha256 of its content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def check_failure(exit_code, stderr, case: Case, before: dict, workspace: Path) -> None:
    """The promise for a bad input: the expected exit code, exactly one `error:` line matching the
    message, no traceback, and the workspace exactly as it was (no output, no temp, nothing changed)."""
    assert "Traceback" not in stderr, stderr
    assert exit_code == case.exit_code, f"exit {exit_code}, wanted {case.exit_code}; stderr: {stderr}"
    errors = error_lines(stderr)
    assert len(errors) == 1, f"wanted one error line, got: {stderr!r}"
    assert re.search(case.message, errors[0]), f"{errors[0]!r} does not match {case.message!r}"
    assert snapshot(workspace) == before, "the command changed, left or removed files"


def run_case(case: Case, workspace: Path) -> None:
    """Run `case` in-process through the real CLI and check the promise."""
    from click.testing import CliRunner

    from skdeploy.cli import cli

    if case.prepare is not None:
        case.prepare(workspace)
    before = snapshot(workspace)
    args = [str(a).format(ws=workspace) for a in case.args]
    result = CliRunner().invoke(cli, args, prog_name="skdeploy")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{case.name}: raised {type(result.exception).__name__}: {result.exception}")
    check_failure(result.exit_code, result.stderr, case, before, workspace)


def checkout_environment() -> dict:
    """The environment for a child process that must import this checkout's skdeploy (not whichever one
    the virtual environment's editable install points at)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def run_case_in_subprocess(case: Case, workspace: Path, timeout=300, address_space=None,
                           env=None) -> subprocess.CompletedProcess:
    """Run `case` as a real process in `workspace` (for signals, environment and exit-code checks), with at
    most `address_space` bytes of virtual memory if given (as `ulimit -v` does) and `env` added."""
    import resource

    if case.prepare is not None:
        case.prepare(workspace)
    before = snapshot(workspace)
    args = [str(a).format(ws=workspace) for a in case.args]
    limit = None if address_space is None else \
        (lambda: resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space)))
    done = subprocess.run([sys.executable, "-m", "skdeploy", *args], cwd=workspace, capture_output=True,
                          text=True, timeout=timeout, env={**checkout_environment(), **(env or {})},
                          preexec_fn=limit)
    check_failure(done.returncode, done.stderr, case, before, workspace)
    return done


# ---- commands the file, output and limit rows share

FAST_CALIBRATION = ("--int8", "--calib-data", f"{{ws}}/{DEMO_IMAGES}", "--calib-images", "8", "--holdout-images", "0")
RTX_BUILD = ("--backend", "tensorrt-rtx", "--compute-capability", "8.9")


def calibrate_to(output):
    return ("calibrate", f"{{ws}}/{DEMO_ONNX}", *FAST_CALIBRATION, "-o", f"{{ws}}/{output}")


def build_int8_to(engine):
    return ("build-engine", f"{{ws}}/{DEMO_ONNX}", *RTX_BUILD, "--int8", "--calib-data", f"{{ws}}/{DEMO_IMAGES}",
            "--calib-images", "12", "-o", f"{{ws}}/{engine}")


def start(args, workspace):
    """The command as a real process with default SIGINT handling: pytest-xdist workers ignore SIGINT, and a
    child inherits an ignored signal (Python then installs no KeyboardInterrupt handler)."""
    return subprocess.Popen([sys.executable, "-m", "skdeploy", *[a.format(ws=workspace) for a in args]],
                            cwd=workspace, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=checkout_environment(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def interrupt_when(process, line_pattern, timeout=300, signum=signal.SIGINT) -> list:
    """Read stderr until a line matches, send `signum` (SIGINT), and return every stderr line."""
    lines, deadline = [], time.time() + timeout
    for line in process.stderr:
        lines.append(line)
        if re.search(line_pattern, line):
            process.send_signal(signum)
            break
        assert time.time() < deadline, f"no line matching {line_pattern!r} in time: {lines}"
    else:
        pytest.fail(f"the command ended before {line_pattern!r}: {lines}")
    lines.extend(process.stderr)
    process.wait(timeout=timeout)
    return lines

