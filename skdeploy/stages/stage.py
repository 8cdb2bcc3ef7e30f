"""The skeleton every file-writing stage shares, written once: the stage's files appear together or not at
all, the work is timed, and the output's manifest gets the stage's record, written last.

    return run_stage("optimize", output, lambda: _optimize(source, output, ...), force=force)

`work()` writes the artifact (and any other files in `also`) and returns (result, manifest): the result's
`seconds` is set here, its `record()` appended to the manifest as the stage's entry.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fileio import output_transaction, sha256_file
from ..manifest import add_stage, manifest_path, write_manifest

if TYPE_CHECKING:
    from ..fileio import PathLike


def run_stage(name: str, output: PathLike, work: Callable[[], tuple], force: bool = False,
              also: Iterable[PathLike] = (), kind: str = "onnx", inputs: Iterable = ()) -> Any:
    """Run `work` inside one output transaction over `output`, `also` and the manifest, made from the files
    `inputs` (none of which an output may be); see the module doc."""
    output = Path(output)
    with output_transaction([output, *also, manifest_path(output)], force, inputs=inputs):
        started = time.time()
        result, manifest = work()
        result.seconds = round(time.time() - started, 2)
        add_stage(manifest, name, result.record())
        write_manifest(output, manifest, kind=kind)
    return result


def source_record(path: PathLike | None, sha256: str | None = None) -> dict:
    """A stage record's `source`: the input file and its sha256 (hashed here unless the caller has it)."""
    if path is None:
        return {"file": None, "sha256": None}
    return {"file": str(path), "sha256": sha256 or sha256_file(path)}


