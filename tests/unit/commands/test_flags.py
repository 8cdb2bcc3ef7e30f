"""The library speaks API argument names, the CLI speaks flags: the translation by hand, a scan of every
library message (each quoted argument is some command's flag; no message spells a flag itself), and
settings errors as the CLI prints them."""
import ast
import re
from pathlib import Path

import click
import pytest

from skdeploy.cli import COMMANDS
from skdeploy.commands.flags import ARGUMENT, flag_for, in_flags
from skdeploy.log import log
from tests.support.helpers import run_cli

PACKAGE = Path(__file__).resolve().parents[3] / "skdeploy"
EMITTERS = {"UsageError", "SkdeployError", "MissingDependency", "info", "warning", "status", "progress"}
# arguments only the API can pass wrongly: the CLI's own checks (flag values, click choices) come first
API_ONLY = {"count", "precision", "top_k", "images"}  # classify() has no command


@pytest.mark.parametrize("message, shown", [
    ("`calib_images` must be at least 1, got 0", "--calib-images must be at least 1, got 0"),
    ("`holdout_images` must be 0 or more and `batch_size` at least 1",
     "--holdout-images must be 0 or more and --batch-size at least 1"),
    ("x.onnx already exists; pass `force=True` to overwrite it", "x.onnx already exists; pass --force to overwrite it"),
    ("pass `reference=MODEL` `checkpoint=PATH`", "pass --reference MODEL --checkpoint PATH"),
    ("`calib_data=/data/my photos` does not exist", "--calib-data /data/my photos does not exist"),
    ("build it without `precision=fp16`, or", "build it without --fp16, or"),
    ("pass `precision=fp16` or `precision=int8`", "pass --fp16 or --int8"),
    ("`spec` file a.py does not exist", "--model file a.py does not exist"),
    ("give `candidates` (or `save_reference_to`)", "give --candidate (or --save-reference)"),
    ("takes no `compute_capabilities` list", "takes no --compute-capability list"),
    ("unknown `arch` 'x'", "unknown --arch 'x'"),
    ("no quoted argument, a 'quoted value' and --json stay as they are",
     "no quoted argument, a 'quoted value' and --json stay as they are"),
])
def test_in_flags_by_hand(message, shown):
    assert in_flags(message) == shown


def test_a_switch_set_false_keeps_its_value():
    assert (flag_for("gpu_fallback", "True"), flag_for("gpu_fallback", "False")) == ("--gpu-fallback",
                                                                                      "--gpu-fallback False")


def template(node) -> str:
    """The text of a message expression with every computed part as {}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(template(part) if isinstance(part, ast.Constant) else "{}" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return template(node.left) + template(node.right)
    return "{}"


def library_messages() -> list:
    """(file:line, template) of the first argument of every error raised and every message logged
    outside the CLI layer."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "cli.py" or "commands" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            func = getattr(node, "func", None)
            name = getattr(func, "id", None) or getattr(func, "attr", None)
            if isinstance(node, ast.Call) and name in EMITTERS and node.args:
                found.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", template(node.args[0])))
    return found


def cli_flags() -> set:
    flags = set()
    for module in COMMANDS.values():
        command = __import__(f"skdeploy.commands.{module}", fromlist=["command"]).command
        flags |= {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}
    return flags


def test_the_scan_sees_the_library_messages():
    messages = dict(library_messages())
    assert len(messages) > 100
    assert "`calib_images` must be at least 1, got {}" in messages.values()
    assert any(text.startswith("{} has a static batch; `min_batch`") for text in messages.values())


def test_every_argument_a_library_message_quotes_is_a_flag():
    flags, unknown = cli_flags(), []
    for where, text in library_messages():
        for match in ARGUMENT.finditer(text):
            argument, value = match.groups()
            if argument in API_ONLY:
                continue
            shown = flag_for(argument, value if value and "{}" not in value else None).split()[0]
            if shown not in flags:
                unknown.append(f"{where}: `{match.group(0)}` -> {shown}")
    assert unknown == []


def test_no_library_message_spells_a_flag():
    """Flags stay in the CLI layer; a message may still quote a whole skdeploy command line."""
    spelled = []
    for where, text in library_messages():
        without_commands = re.sub(r"skdeploy [a-z-]+[^;'()]*", "", text)
        if re.search(r"(?<![\w-])--[a-z{]", without_commands):
            spelled.append(f"{where}: {text}")
    assert spelled == []


@pytest.mark.parametrize("args, message", [
    (("bench", "m.onnx", "--iterations", "0"), "--iterations must be at least 1 and --warmup 0 or more"),
    (("bench", "m.onnx", "--batch", "8,0"), "--batch sizes must be positive integers, got (8, 0)"),
    (("calibrate", "m.onnx", "--int8", "-o", "o.onnx", "--calib-images", "0"),
     "--calib-images must be at least 1, got 0"),
    (("calibrate", "m.onnx", "--int8", "-o", "o.onnx", "--percentile", "0"),
     "--percentile must be in (0, 100], got 0.0"),
    (("calibrate", "m.onnx", "--int8", "-o", "o.onnx", "--holdout-images", "-1"),
     "--holdout-images must be 0 or more and --batch-size at least 1"),
    (("validate", "--limit", "0"), "--limit must be at least 1, got 0"),
    (("validate", "--max-top1-drop", "-1"), "--max-top1-drop must not be negative, got -1"),
    (("export", "--batch", "0", "-o", "o.onnx"), "--batch must be at least 1, got 0"),
    (("build-engine", "m.onnx", "--dla-core", "-1"), "--dla-core must be 0 or more, got -1"),
    (("build-engine", "m.onnx", "--gpu-fallback"), "--gpu-fallback applies only with --dla-core"),
    (("build-engine", "m.onnx", "--exclude-lean-runtime"),
     "--exclude-lean-runtime applies only with --version-compatible"),
    (("build-engine", "m.onnx", "--optimization-level", "6"), "--optimization-level must be 0..5, got 6"),
])
def test_settings_errors_show_as_flags_on_the_command_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # no file is needed: the settings refuse before anything is read or written
    result = run_cli(*args)
    assert (result.exit_code, result.stderr) == (2, f"error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_library_warnings_during_a_command_show_flags_and_only_then(monkeypatch, capsys):
    def list_models():
        log.warning("fewer than `calib_images=16`; see `spec`")
        return []

    monkeypatch.setattr("skdeploy.models.list_models", list_models)
    result = run_cli("models", "--json")
    assert result.exit_code == 0 and result.stderr == "warning: fewer than --calib-images 16; see --model\n"
    list_models()
    assert capsys.readouterr().err == "warning: fewer than `calib_images=16`; see `spec`\n"
