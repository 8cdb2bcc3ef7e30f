"""The base runner: activate on enter, check inputs against the model's spec, free on exit.

Threads: one runner may be shared; its infer() calls run one at a time under the runner's lock, and
deactivate() waits for a running infer(). For parallel inference give each thread its own runner.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data import pad_batch
from ..errors import UsageError


def check_threads(threads: int) -> int:
    """A runner's CPU thread count: 0 leaves it to the runtime, a negative count means nothing."""
    if threads < 0:
        raise UsageError(f"`threads` must be 0 (the default) or more, got {threads}")
    return threads


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or None / a string for a dynamic dimension
    dtype: np.dtype

    def accepts(self, array: np.ndarray) -> str:
        """Empty string when `array` fits, else why not."""
        if np.dtype(array.dtype) != np.dtype(self.dtype):
            return f"input '{self.name}' must be {np.dtype(self.dtype).name}, got {array.dtype}"
        if len(array.shape) != len(self.shape):
            return f"input '{self.name}' must have {len(self.shape)} dims {self.shape_text}, got {array.shape}"
        for got, want in zip(array.shape, self.shape, strict=True):
            if isinstance(want, int) and want >= 0 and got != want:
                return f"input '{self.name}' must have shape {self.shape_text}, got {tuple(array.shape)}"
        return ""

    @property
    def shape_text(self) -> str:
        return "(" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "N" for d in self.shape) + ")"


class Runner:
    """load on __enter__/activate, infer(feed) -> {name: array}, release on __exit__/deactivate."""

    name = "runner"
    # what a runner knows only once its model is loaded: each subclass's own version is wrapped to refuse
    # an inactive runner with a UsageError (not an AttributeError from a session that is not there yet)
    NEEDS_ACTIVE = ("input_specs", "output_names", "batch_limits")

    def __init__(self) -> None:
        self.is_active = False
        self.lock = threading.RLock()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for method in cls.NEEDS_ACTIVE:
            if method in cls.__dict__:
                setattr(cls, method, _when_active(cls.__dict__[method]))

    def require_active(self) -> None:
        if not self.is_active:
            raise UsageError(f"{self.name} is not active; use it in a 'with' block or call activate()")

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        with self.lock:
            if not self.is_active:
                self.activate_impl()
                self.is_active = True

    def deactivate(self) -> None:
        with self.lock:
            if self.is_active:
                self.deactivate_impl()
                self.is_active = False

    def batch_limits(self) -> tuple:
        """(smallest, largest) batch the model takes; largest None when unbounded."""
        self.require_active()
        shape = self.input_specs()[0].shape
        first = shape[0] if shape else None
        return (first, first) if isinstance(first, int) and first > 0 else (1, None)

    def input_specs(self) -> list:
        raise NotImplementedError

    def output_names(self) -> list:
        raise NotImplementedError

    def infer(self, feed: dict | np.ndarray) -> dict:
        """Check `feed` (a dict, or one array for single-input models) and run it."""
        with self.lock:
            return self._checked_infer(feed)

    def run_batched(self, inputs: np.ndarray, batch: int,
                    progress: Callable[[int], object] | None = None) -> np.ndarray:
        """The first output over all `inputs` (float32), in chunks of `batch` or of what the model's batch
        limits accept: a fixed-batch model gets its own batch, the last chunk padded (data.pad_batch) and the padding's
        outputs dropped. Every stage that runs a model over a data set runs it through here;
        `progress(count)` follows each chunk."""
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise UsageError(f"`batch` must be a whole number of samples, at least 1, got {batch!r}")
        if len(inputs) == 0:
            raise UsageError("no samples to run: the inputs are empty")
        low, high = self.batch_limits()
        step = low if low == high else min(batch, high or batch)
        name = self.output_names()[0]
        outputs = []
        for start in range(0, len(inputs), step):
            chunk = inputs[start:start + step]
            count = len(chunk)
            outputs.append(self.infer(pad_batch(chunk, low))[name][:count])
            if progress:
                progress(count)
        return np.concatenate(outputs).astype(np.float32)

    def _checked_infer(self, feed) -> dict:
        self.require_active()
        specs = self.input_specs()
        if not isinstance(feed, dict):
            if len(specs) != 1:
                raise UsageError(f"{self.name} has {len(specs)} inputs; pass a dict of name -> array")
            feed = {specs[0].name: feed}
        expected = {spec.name for spec in specs}
        if set(feed) != expected:
            raise UsageError(f"{self.name} expects inputs {sorted(expected)}, got {sorted(feed)}")
        for spec in specs:
            problem = spec.accepts(np.asarray(feed[spec.name]))
            if problem:
                raise UsageError(problem)
        return self.infer_impl({k: np.ascontiguousarray(v) for k, v in feed.items()})

    def activate_impl(self) -> None:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feed: dict) -> dict:
        raise NotImplementedError


def _when_active(method):
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        self.require_active()
        return method(self, *args, **kwargs)
    return checked
