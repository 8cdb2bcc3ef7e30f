"""File checks and atomic output: inputs are checked before use, results appear whole under their final
name or not at all.

A command's outputs are one transaction (`output_transaction`): every one is checked before the work
starts, the set is locked against a second command writing it, each is written under a temporary name
beside its final one (`atomic_path` stages it), and all are renamed together when the work succeeds. On
any failure, KeyboardInterrupt included, every temporary file is removed and older files stay as they were.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import glob
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import SkdeployError, UsageError

PathLike = str | os.PathLike  # what every function taking a file accepts


def existing_file(path: str | os.PathLike, what: str = "") -> Path:
    """`path` as a Path when it names a file, else a one-line usage error ("checkpoint x.pt does not exist")."""
    path = Path(path)
    named = f"{what} {path}" if what else str(path)
    if not readable_path(path).exists():
        raise UsageError(f"{named} does not exist")
    if not readable_path(path).is_file():
        raise UsageError(f"{named} is not a file")
    return path


def check_output_path(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to overwrite unless `force`, refuse names no file can have here, and fail early when the
    folder cannot be written (a missing folder is made by the command's output transaction)."""
    check_output_name(path)
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not a file name")
    check_replaceable(path, force)
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise SkdeployError(f"cannot create output folder {path.parent}: {os.strerror(errno.ENOTDIR)}")
    if not os.access(folder, os.W_OK):
        raise SkdeployError(f"output folder {folder} is not writable")
    return path


# the longest suffix the transaction adds to an output's name: ".NAME.XXXXXXXX.tmp" (mkstemp) or ".NAME.lock"
_TEMPORARY_EXTRA = len("..XXXXXXXX.tmp")


def check_output_name(path: str | os.PathLike) -> None:
    """An output name the file system can hold together with its temporary name, given as text a manifest
    can record: `-` (stdout is no file here), a trailing slash (a folder), a name that is too long or not
    UTF-8 are refused before any work, not met as an internal error once the work is done."""
    text = os.fsdecode(path)
    shown = printable(text)
    if text == "-":
        raise UsageError("an output cannot be '-' (stdout); give a file name")
    if text.endswith((os.sep, "/.")) or text in (".", ".."):
        raise UsageError(f"output {shown} names a folder; give a file name inside it, e.g. {shown.rstrip('/')}/"
                         "out.onnx")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"output name {shown} is not valid UTF-8; manifests record names as UTF-8 text") from None
    name = os.fsencode(Path(text).name)
    limit = _name_max(Path(text).parent)
    if len(name) + _TEMPORARY_EXTRA > limit:
        raise UsageError(f"output name {printable(name)[:40]}... is {len(name)} bytes long; with its temporary name "
                         f"(written first) it must stay within {limit - _TEMPORARY_EXTRA} bytes")


def printable(text) -> str:
    """`text` (a path, perhaps with undecodable bytes) as a message can print it."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(_nearest_existing(folder), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _nearest_existing(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def make_folders(folder: Path) -> list:
    """Make `folder` and its missing parents; returns those made, deepest first, for remove_folders."""
    missing, current = [], Path(os.path.abspath(folder))
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SkdeployError(f"cannot create output folder {folder}: {exc.strerror}") from None
    return missing


def remove_folders(made: Iterable[Path]) -> None:
    """Remove the folders make_folders made (deepest first) that stayed empty: a failed command leaves none."""
    for folder in made:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def check_replaceable(path: Path, force: bool) -> None:
    """An existing `path` needs `force`, and even then only a regular file (or a link to one) is replaced:
    never a device such as /dev/full, a fifo or a folder."""
    if not os.path.lexists(path):
        return
    if not force:
        raise UsageError(f"{path} already exists; pass `force=True` to overwrite it")
    if not path.is_file():
        raise UsageError(f"{path} is not a regular file; `force=True` replaces only regular files")


def _temporary_beside(path: Path) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise SkdeployError(f"cannot write into {path.parent}: {exc.strerror}") from None
    os.close(fd)
    return Path(tmp)


def _give_usual_permissions(tmp) -> None:
    """mkstemp makes 0600 files; results get what open() would give them under the umask."""
    umask = os.umask(0)
    os.umask(umask)
    if os.path.exists(tmp):
        os.chmod(tmp, 0o666 & ~umask)


def _remove(path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds. Inside an
    output transaction that holds `path`, the temporary file waits for the transaction's commit instead."""
    path = Path(path)
    transaction = _ACTIVE.get()
    staged = transaction is not None and transaction.holds(path)
    tmp = transaction.stage(path) if transaction is not None and staged else _temporary_beside(path)
    try:
        yield tmp
        _give_usual_permissions(tmp)
        if not staged:
            os.replace(tmp, path)
    except OSError as exc:  # a full disk or a failed rename is a failure to report, not a bug
        raise SkdeployError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if not staged:
            _remove(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike, limit: int, what: str) -> Any:
    """The JSON document in the regular file `path`, read up to `limit` bytes: a file that is larger (or a
    link to /dev/zero, which never ends) or nested too deeply to parse is refused in one line, not read until
    memory runs out or met as a RecursionError."""
    import json
    import stat

    try:
        # non-blocking, so a fifo in its place is refused instead of waited on (no effect on a regular file)
        with os.fdopen(os.open(readable_path(path), os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UsageError(f"{what} {printable(path)} is not a regular file")
            text = handle.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"{what} {printable(path)} is unreadable: {exc.strerror or exc}") from None
    if len(text) > limit:
        raise UsageError(f"{what} {printable(path)} is larger than {limit >> 20} MiB; it is not one skdeploy writes")
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageError(f"{what} {printable(path)} is nested too deeply to be one skdeploy writes") from None
    except ValueError as exc:
        raise UsageError(f"{what} {printable(path)} is unreadable: {exc}") from None


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256, read in 1 MiB blocks (an output staged by the running transaction: its new content)."""
    digest = hashlib.sha256()
    with open(readable_path(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_ACTIVE: contextvars.ContextVar[OutputTransaction | None] = contextvars.ContextVar("skdeploy_output_transaction",
                                                                                   default=None)


def readable_path(path: str | os.PathLike) -> Path:
    """Where `path`'s content is now: its temporary file while the running transaction has it staged (a
    later step of the same command reads it there), else `path` itself."""
    transaction = _ACTIVE.get()
    own = transaction.entry(path) if transaction is not None else None
    return transaction.staged.get(own, Path(path)) if transaction is not None and own is not None else Path(path)


class OutputLock:
    """An exclusive lock on a command's output set: `.NAME.lock` beside its first output, flock'ed and
    removed on release. A second command on the same output fails at once instead of mixing files."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(f".{output.name}.lock")
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as exc:
                raise SkdeployError(f"cannot lock {output}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise SkdeployError(f"another skdeploy command is writing {output} now; "
                                    "wait for it to finish, or choose another output") from None
            if self._still_named(fd):
                self.fd = fd
                return
            os.close(fd)  # the holder removed this lock file as it finished: lock the current one

    def _still_named(self, fd) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        _remove(self.path)  # while still locked, so no one holds a lock on a file no longer named
        os.close(self.fd)


class OutputTransaction:
    """The outputs of one command: checked, locked, staged under temporary names, committed together."""

    def __init__(self, paths, force: bool, inputs=()) -> None:
        self.paths: list[Path] = []
        self.staged: dict[Path, Path] = {}  # final path -> temporary path beside it
        self.inputs: dict[str, Path] = {}  # real path -> the input as given (with its manifest beside it)
        self.made: list[Path] = []  # folders the outputs needed, made by this transaction: removed unless it commits
        self.committed = False
        self.include(paths, force, inputs)
        self.lock = OutputLock(self.paths[0])
        try:
            for path in self.paths:  # again under the lock: another command may have just finished
                check_replaceable(path, force)
            for path in self.paths:
                remove_stale_temporaries(path)
        except BaseException:
            self.lock.release()
            remove_folders(self.made)
            raise

    def include(self, paths: Iterable, force: bool, inputs: Iterable = ()) -> None:
        """Add outputs (a later stage of the same command), each checked before any work is done, and the
        inputs they are made from: no output may be another output or an input, however it is spelled."""
        paths = [Path(path) for path in paths]
        for path in paths:
            check_output_name(path)
        self._check_apart(paths, [input for input in inputs if input is not None])
        for path in paths:
            if not self.holds(path):
                self.paths.append(check_output_path(path, force))
        for path in paths:
            self.made += make_folders(path.parent)

    def _check_apart(self, paths, inputs) -> None:
        outputs: dict[str, object] = {}
        for path in paths:  # one call names each output once; a later stage may name its own again
            real = os.path.realpath(path)
            if real in outputs:
                same = f"{printable(path)} is named" if str(path) == str(outputs[real]) else \
                    f"{printable(outputs[real])} and {printable(path)} are one file,"
                raise UsageError(f"{same} for two outputs; give each output its own path")
            outputs[real] = path
        outputs.update({os.path.realpath(own): own for own in self.paths})
        for given in inputs:
            for source in (Path(given), Path(f"{given}.json")):  # an artifact is read with its manifest
                self.inputs.setdefault(os.path.realpath(source), source)
        for real, source in self.inputs.items():  # an output this command already wrote is its own to read
            if real in outputs and self.entry(outputs[real]) not in self.staged:
                raise UsageError(f"output {printable(outputs[real])} would overwrite the input "
                                 f"{printable(source)}; write the output elsewhere")

    def entry(self, path):
        """The output `path` names however it is spelled (relative or absolute), else None."""
        absolute = os.path.abspath(path)
        return next((own for own in self.paths if os.path.abspath(own) == absolute), None)

    def holds(self, path: str | os.PathLike) -> bool:
        return self.entry(path) is not None

    def stage(self, path: str | os.PathLike) -> Path:
        own = self.entry(path)
        if own not in self.staged:
            self.staged[own] = _temporary_beside(own)
        return self.staged[own]

    def commit(self) -> None:
        """Rename every staged file into place; if one rename fails, put back what was there before."""
        order = [path for path in self.paths if path in self.staged]
        backups, placed, current = {}, [], None
        try:
            for current in order:  # hard links keep the older files until every rename is done
                if os.path.isfile(current):
                    backups[current] = _temporary_beside(current)
                    os.unlink(backups[current])
                    os.link(current, backups[current])
            for current in order:
                os.replace(self.staged[current], current)
                placed.append(current)
        except BaseException as exc:
            for path in reversed(placed):
                if path in backups:
                    os.replace(backups[path], path)
                else:
                    _remove(path)
            if isinstance(exc, OSError):
                raise SkdeployError(f"cannot write {current}: {exc.strerror or exc}") from None
            raise
        finally:
            for backup in backups.values():
                _remove(backup)

    def close(self) -> None:
        for tmp in self.staged.values():
            _remove(tmp)
        self.lock.release()
        if not self.committed:
            remove_folders(reversed(sorted(set(self.made), key=lambda folder: len(folder.parts))))


def remove_stale_temporaries(path: Path) -> None:
    """Temporary files of `path` that a killed command left (`.NAME.XXXXXXXX.tmp`): the caller holds the
    output lock, so no running command owns them."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.{'[a-z0-9_]' * 8}.tmp"):
        _remove(leftover)


@contextlib.contextmanager
def output_transaction(paths: Iterable, force: bool = False, inputs: Iterable = ()) -> Iterator[OutputTransaction]:
    """Run a block whose writes to `paths` (through atomic_path, save_onnx, write_manifest...) appear
    together at its end, or not at all. Nested inside another, it adds its outputs to the outer one,
    which commits them all: a pipeline of stages is one command. `inputs` are the files (and folders) the
    block reads: an output on any of them, or on an input's manifest, is refused before the work starts."""
    outer = _ACTIVE.get()
    if outer is not None:
        outer.include(paths, force, inputs)
        yield outer
        return
    transaction = OutputTransaction(paths, force, inputs)
    token = _ACTIVE.set(transaction)
    try:
        yield transaction
        transaction.commit()
        transaction.committed = True
    finally:
        _ACTIVE.reset(token)
        transaction.close()
