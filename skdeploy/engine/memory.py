"""Peak resident memory of one build, sampled while it runs.

getrusage's ru_maxrss is the peak of the whole process life, so a second build in the same process
would report the first one's peak; a sampling thread sees the peak of this build alone.
"""
import os
import resource
import sys
import threading

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):  # not Linux: fall back to the lifetime peak
        return max_rss_bytes()


def max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """`with PeakMemory() as peak: ...; peak.mb` -> the highest RSS seen during the block, in MiB."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss_bytes())

    def __enter__(self):
        self._lifetime_peak = max_rss_bytes()
        self.peak = current_rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())
        if max_rss_bytes() > self._lifetime_peak:  # a new lifetime peak was set inside the block
            self.peak = max(self.peak, max_rss_bytes())

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)
