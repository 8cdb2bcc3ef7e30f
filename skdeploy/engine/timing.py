"""A timing cache file shared by builds: load it if present, merge what this build learned, save.

The file is re-read just before saving and the build's cache combined into it, so two builds that
share one cache file (CI jobs, several targets) add to each other instead of the last one winning.
"""
from pathlib import Path

from ..errors import SkdeployError
from ..fileio import write_bytes_atomic
from ..log import log


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes() if path.exists() else b""
    except OSError as exc:
        raise SkdeployError(f"cannot read timing cache {path}: {exc.strerror}") from None


class TimingCache:
    def __init__(self, trt, config, path) -> None:
        self.config, self.path = config, Path(path)
        data = _read(self.path)
        self.loaded_bytes = len(data)
        self.cache = config.create_timing_cache(data)
        if self.cache is None or not config.set_timing_cache(self.cache, ignore_mismatch=False):
            raise SkdeployError(f"timing cache {self.path} does not fit this TensorRT version or GPU; "
                                "delete it or pass another `timing_cache`")
        self.saved_bytes = 0

    def save(self) -> None:
        """Merge this build's cache into the file as it is now, then write it atomically. A file that another
        TensorRT version or GPU rewrote meanwhile cannot take the entries (combine() says False): it is left
        as it is, with a warning, rather than replaced by this build's entries alone."""
        built = self.config.get_timing_cache()
        on_disk = _read(self.path)
        merged = self.config.create_timing_cache(on_disk) if on_disk else built
        if on_disk and not merged.combine(built, False):
            log.warning(f"timing cache {self.path} now holds another TensorRT version's or GPU's entries; "
                        "this build's were not added to it")
            return
        data = bytes(memoryview(merged.serialize()))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, data)
        self.saved_bytes = len(data)

    def summary(self) -> dict:
        return {"file": str(self.path), "loaded_bytes": self.loaded_bytes, "saved_bytes": self.saved_bytes}
