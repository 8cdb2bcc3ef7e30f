"""Docs that run: every ```sh, ```console and ```python block of README.md and docs/*.md runs as written.

Each block runs on its own, in a fresh copy of one workspace laid out as `make demo` leaves a checkout
(out/demo/sknet-fmnist{,.int8,.fp16}.onnx, engines/sknet-fmnist-rtx-{fp32,fp16,int8}.engine, all made with
the CLI), plus the user files the docs name: `theirs.onnx` (a plain torch.onnx.export of the demo model),
`my_net.py` (a small module with a `build` factory), `shoe.png`, `photos/` (Fashion-MNIST test pictures) and
`val/` (labelled test pictures, one folder per class index).
`skdeploy` and `.venv/bin/python` there run this checkout. A shell block runs under `bash -eo pipefail`, so
every line must succeed; in a ```console block only the `$ ` lines run. A block that cannot run here goes in
SKIP with its reason, which the test output shows; a block that takes long goes in SLOW. Every other block
that fails fails its test. Any other fenced block must name a language that is not run (text, json, ...),
so that no runnable example hides in an unlabelled fence.
"""
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = next(folder for folder in Path(__file__).resolve().parents if (folder / "pyproject.toml").exists())
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = {"sh", "console", "python"}
NOT_RUN = {"text", "json", "toml", "ini", "yaml", "diff", "pbtxt"}
BLOCK_TIMEOUT_S = 3600  # seconds; an idle machine needs a minute for the slowest block, a crowded one far more


@dataclass(frozen=True)
class Entry:
    """Blocks of `page` (relative to the repository) whose text contains `contains`, and why."""
    page: str
    contains: str
    reason: str


SKIP = [
    Entry("README.md", "make demo", "make demo sets up a machine (apt, venv) and runs the pipeline this test's "
                                    "workspace already holds; make test runs this test"),
    Entry("docs/engines.md", "--target jetson-orin", "needs classic TensorRT on a Jetson or a GPU machine"),
    Entry("docs/deploy.md", "sknet50.pth", "needs your SKNet-50 checkpoint and image folders"),
    Entry("docs/benchmarks.md", "venv-modelopt", "builds a separate ModelOpt venv from a package index"),
    Entry("docs/benchmarks.md", "bench_engine_quality.py", "runs in the separate ModelOpt venv"),
    Entry("docs/testing.md", "tests/e2e/test_docs.py", "runs this test itself"),
    Entry("docs/testing.md", "make mutation", "mutmut over the core modules: 20-40 minutes, after make's set-up"),
    Entry("docs/validation.md", "--candidate engines/", "runs a TensorRT-RTX engine: needs an RTX 30/40 GPU"),
    Entry("docs/embedding.md", ".engine\")", "runs a TensorRT-RTX engine: needs an RTX 30/40 GPU"),
]

SLOW = [
    Entry("README.md", "skdeploy deploy", "every stage, with validation"),
    Entry("docs/deploy.md", "skdeploy deploy", "every stage, twice"),
    Entry("docs/deploy.md", "DeploySettings", "every stage"),
    Entry("docs/graph-passes.md", "--arch sknet50", "exports the paper-size SKNet-50"),
    Entry("docs/precision.md", "--arch sknet50", "exports and calibrates the paper-size SKNet-50"),
    Entry("docs/precision.md", "--method percentile", "calibrates four times"),
    Entry("docs/precision.md", "debug-precision", "ranks every INT8 layer and searches, three times"),
    Entry("docs/precision.md", "max_top1_drop=0.3", "calibrates within an accuracy budget"),
    Entry("docs/validation.md", "|| exit 1", "PyTorch and the INT8 candidate on 10,000 images"),
    Entry("docs/testing.md", "plant_bugs.py", "runs the unit tier once per planted bug"),
]


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"

    def matching(self, entries) -> list:
        return [entry for entry in entries if entry.page == self.page and entry.contains in self.text]


def fenced_blocks(path: Path) -> list:
    """Every fenced block of a Markdown page, with the line its fence opens on and its language."""
    blocks, lines, number = [], path.read_text().splitlines(), 0
    page = str(path.relative_to(REPO))
    while number < len(lines):
        opening = re.match(r"^(\s*)(`{3,})\s*([\w-]*)", lines[number])
        if not opening:
            number += 1
            continue
        indent, fence, language = opening.groups()
        end = number + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[number + 1:end])
        blocks.append(Block(page, number + 1, language.lower(), body + "\n"))
        number = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in fenced_blocks(page)]
RUNNABLE = [block for block in BLOCKS if block.language in RUN]


def as_script(block: Block) -> str:
    """What to run: the block itself, or a console block's `$ ` commands."""
    if block.language != "console":
        return block.text
    commands = [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
    return "\n".join(commands) + "\n"


def run(command, cwd, env, timeout=BLOCK_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def workspace_env(folder: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env["PATH"] = f"{folder / 'bin'}{os.pathsep}{env['PATH']}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def install_commands(folder: Path) -> None:
    """`skdeploy` on PATH and `.venv/bin/python` in the workspace run this Python with this checkout."""
    for path, line in ((folder / "bin" / "skdeploy", f'exec "{sys.executable}" -m skdeploy "$@"'),
                       (folder / ".venv" / "bin" / "python", f'exec "{sys.executable}" "$@"'),
                       (folder / ".venv" / "bin" / "skdeploy", f'exec "{sys.executable}" -m skdeploy "$@"')):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)
    (folder / "scripts").symlink_to(REPO / "scripts")
    (folder / "calibration").symlink_to(REPO / "calibration")


DEMO = """\
skdeploy export --dynamic-batch -o out/demo/sknet-fmnist.onnx
skdeploy calibrate out/demo/sknet-fmnist.onnx --int8 -o out/demo/sknet-fmnist.int8.onnx
skdeploy calibrate out/demo/sknet-fmnist.onnx --fp16 -o out/demo/sknet-fmnist.fp16.onnx
for precision in fp32 fp16 int8; do
    source=out/demo/sknet-fmnist.onnx
    [ "$precision" = fp32 ] || source="out/demo/sknet-fmnist.$precision.onnx"
    skdeploy build-engine "$source" --backend tensorrt-rtx --target rtx --compute-capability 8.6,8.9 \\
        -o "engines/sknet-fmnist-rtx-$precision.engine"
done
"""

USER_FILES = """\
from pathlib import Path

import numpy as np, torch
from PIL import Image
from skdeploy.data import load_fashion_mnist
from skdeploy.models import build_model

torch.onnx.export(build_model(), torch.zeros(1, 1, 32, 32), "theirs.onnx", dynamo=False, opset_version=17,
                  input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}})
pictures, labels = load_fashion_mnist("test")
Image.fromarray(pictures[0]).save("shoe.png")
for index, picture in enumerate(pictures[:16]):
    Image.fromarray(picture).save(f"photos/{index:02d}.png")
for index in range(16, 76):  # val/: labelled pictures, one folder per class index
    folder = Path("val") / str(labels[index])
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pictures[index]).save(folder / f"{index:02d}.png")
"""

MY_NET = '''\
"""A user's own model: `--model my_net.py:build --model-kwargs '{"width": 64}'`."""
import torch


def build(width=32, num_classes=10):
    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, stride=2), torch.nn.BatchNorm2d(width), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, num_classes))
'''


@pytest.fixture(scope="session")
def docs_workspace(tmp_path_factory) -> Path:
    """The demo artifacts, made once per session with the CLI as `make demo` names them, and the user files.
    SKDEPLOY_DOCS_WORKSPACE names one made by an earlier session instead, for iterating on the docs."""
    earlier = os.environ.get("SKDEPLOY_DOCS_WORKSPACE")
    if earlier:
        return Path(earlier)
    folder = tmp_path_factory.mktemp("docs-workspace")
    install_commands(folder)
    (folder / "out" / "demo").mkdir(parents=True)
    (folder / "engines").mkdir()
    (folder / "photos").mkdir()
    (folder / "my_net.py").write_text(MY_NET)
    env = workspace_env(folder)
    for command in (["bash", "-eo", "pipefail", "-c", DEMO], [sys.executable, "-c", USER_FILES]):
        made = run(command, folder, env)
        assert made.returncode == 0, f"building the docs workspace failed:\n{made.stderr[-4000:]}"
    return folder


def test_every_fenced_block_names_its_language():
    unnamed = [block.name for block in BLOCKS if block.language not in RUN | NOT_RUN]
    assert not unnamed, (f"fenced blocks need a language: sh, console or python (run by this test) or one of "
                         f"{sorted(NOT_RUN)} (not run): {unnamed}")


def test_every_skip_and_slow_entry_still_matches_a_block():
    stale = [entry for entry in SKIP + SLOW if not any(block.matching([entry]) for block in RUNNABLE)]
    assert not stale, f"entries that match no runnable block (the doc changed?): {stale}"


def block_param(block: Block):
    marks = [pytest.mark.slow] if block.matching(SLOW) else []
    return pytest.param(block, id=block.name, marks=marks)


@pytest.mark.parametrize("block", [block_param(block) for block in RUNNABLE])
def test_doc_block_runs(block, request, tmp_path):
    skipped = block.matching(SKIP)
    if skipped:
        pytest.skip(f"{block.name}: {'; '.join(entry.reason for entry in skipped)}")
    folder = tmp_path / "workspace"
    shutil.copytree(request.getfixturevalue("docs_workspace"), folder, symlinks=True)
    env = workspace_env(folder)
    if block.language == "python":
        (folder / "doc_block.py").write_text(block.text)
        command = [sys.executable, "doc_block.py"]
    else:
        command = ["bash", "-eo", "pipefail", "-c", as_script(block)]
    done = run(command, folder, env)
    if done.returncode != 0:
        pytest.fail(f"{block.name} ({block.language}) exited {done.returncode}:\n{textwrap.indent(block.text, '    ')}"
                    f"\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}", pytrace=False)
