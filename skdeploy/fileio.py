"""File checks and atomic output: inputs are checked before use, results appear whole under their final
name or not at all."""
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from .errors import SkdeployError, UsageError


def existing_file(path, what: str = "") -> Path:
    """`path` as a Path when it names a file, else a one-line usage error ("checkpoint x.pt does not exist")."""
    path = Path(path)
    named = f"{what} {path}" if what else str(path)
    if not path.exists():
        raise UsageError(f"{named} does not exist")
    if not path.is_file():
        raise UsageError(f"{named} is not a file")
    return path


def check_output_path(path, force: bool) -> Path:
    """Refuse to overwrite unless `force` and fail early when the folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not a file name")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass `force=True` to overwrite it")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SkdeployError(f"cannot create output folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise SkdeployError(f"output folder {folder} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise SkdeployError(f"cannot write into {path.parent}: {exc.strerror}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):  # mkstemp makes 0600 files; results get the usual permissions
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk or a failed rename is a failure to report, not a bug
        raise SkdeployError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
