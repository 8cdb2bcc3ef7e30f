"""File checks and atomic output: inputs are checked before use, results appear whole under their final
name or not at all.

A command's outputs are one transaction (`output_transaction`): every one is checked before the work
starts, the set is locked against a second command writing it, each is written under a temporary name
beside its final one (`atomic_path` stages it), and all are renamed together when the work succeeds. On
any failure, KeyboardInterrupt included, every temporary file is removed and older files stay as they were.
"""
import contextlib
import contextvars
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from .errors import SkdeployError, UsageError

PathLike = str | os.PathLike  # what every function taking a file accepts


def existing_file(path, what: str = "") -> Path:
    """`path` as a Path when it names a file, else a one-line usage error ("checkpoint x.pt does not exist")."""
    path = Path(path)
    named = f"{what} {path}" if what else str(path)
    if not readable_path(path).exists():
        raise UsageError(f"{named} does not exist")
    if not readable_path(path).is_file():
        raise UsageError(f"{named} is not a file")
    return path


def check_output_path(path, force: bool) -> Path:
    """Refuse to overwrite unless `force` and fail early when the folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not a file name")
    check_replaceable(path, force)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SkdeployError(f"cannot create output folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise SkdeployError(f"output folder {folder} is not writable")
    return path


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
def atomic_path(path):
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


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path) -> str:
    """The file's sha256, read in 1 MiB blocks (an output staged by the running transaction: its new content)."""
    digest = hashlib.sha256()
    with open(readable_path(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_ACTIVE: contextvars.ContextVar["OutputTransaction | None"] = contextvars.ContextVar("skdeploy_output_transaction",
                                                                                   default=None)


def readable_path(path) -> Path:
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

    def __init__(self, paths, force: bool) -> None:
        self.paths: list[Path] = []
        self.staged: dict[Path, Path] = {}  # final path -> temporary path beside it
        self.include(paths, force)
        self.lock = OutputLock(self.paths[0])
        try:
            for path in self.paths:  # again under the lock: another command may have just finished
                check_replaceable(path, force)
        except BaseException:
            self.lock.release()
            raise

    def include(self, paths, force: bool) -> None:
        """Add outputs (a later stage of the same command), each checked before any work is done."""
        for path in map(Path, paths):
            if not self.holds(path):
                self.paths.append(check_output_path(path, force))

    def entry(self, path):
        """The output `path` names however it is spelled (relative or absolute), else None."""
        absolute = os.path.abspath(path)
        return next((own for own in self.paths if os.path.abspath(own) == absolute), None)

    def holds(self, path) -> bool:
        return self.entry(path) is not None

    def stage(self, path) -> Path:
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


@contextlib.contextmanager
def output_transaction(paths, force: bool = False):
    """Run a block whose writes to `paths` (through atomic_path, save_onnx, write_manifest...) appear
    together at its end, or not at all. Nested inside another, it adds its outputs to the outer one,
    which commits them all: a pipeline of stages is one command."""
    outer = _ACTIVE.get()
    if outer is not None:
        outer.include(paths, force)
        yield outer
        return
    transaction = OutputTransaction(paths, force)
    token = _ACTIVE.set(transaction)
    try:
        yield transaction
        transaction.commit()
    finally:
        _ACTIVE.reset(token)
        transaction.close()
