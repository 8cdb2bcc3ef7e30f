"""Calibration and held-out samples: the shipped default set, and a seeded choice of both.

A seeded permutation picks the calibration subset; the samples after it form the held-out split the
accuracy check uses, so the two never overlap. Samples are decoded again for every pass, never cached.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..log import log
from .sources import InputShape, Source, UnreadableSample, read_batches, read_samples

DEMO_CALIBRATION_FILE = "fashion-mnist-train-2048.npz"


def default_calibration_path(manifest: dict | None):
    """The calibration set shipped in the package for the demo model (Fashion-MNIST train split), else None.
    Package data skdeploy/data/calibration/ links to the repository's calibration/ folder, the one copy
    the wheel's file is built from."""
    if not manifest or (manifest.get("model") or {}).get("dataset") != "fashion-mnist":
        return None
    return Path(str(resources.files("skdeploy.data") / "calibration" / DEMO_CALIBRATION_FILE))


@dataclass
class Selection:
    """The samples chosen for calibration and for the held-out check, both in a seeded order."""

    source: Source
    calibration: list
    holdout: list
    skipped: int
    sha256: str  # of the preprocessed calibration tensors, in order

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[tuple]:
        """(float32 batch, labels or None) in order; samples are decoded again, never cached."""
        starts = range(0, len(indices), batch_size)
        for start, batch in zip(starts, read_batches(self.source, indices, batch_size), strict=True):
            chunk = indices[start:start + batch_size]
            labels = self.source.labels[chunk] if self.source.labels is not None else None
            yield batch, labels


def select_calibration(source: Source, shape: InputShape, count: int, holdout: int, seed: int) -> Selection:
    """Walk a seeded permutation: the first `count` readable samples calibrate, the next `holdout` check."""
    if count < 1:
        raise UsageError(f"`count` must be at least 1, got {count}")
    order = np.random.default_rng(seed).permutation(len(source))
    digest = hashlib.sha256()
    chosen, held, skipped, reasons = [], [], 0, []
    expected = (shape.channels, shape.height, shape.width)
    for index, sample in read_samples(source, order):
        if len(chosen) >= count and len(held) >= holdout:
            break
        if isinstance(sample, UnreadableSample):
            skipped += 1
            reasons.append(str(sample))
            continue
        if sample.shape != expected:
            raise UsageError(f"preprocessing makes samples of shape {sample.shape}, the model takes {expected}; "
                             "check the crop size and channel order")
        if len(chosen) < count:
            digest.update(sample.tobytes())
            chosen.append(index)
        else:
            held.append(index)
    if skipped:
        log.warning(f"skipped {skipped} unreadable file{'s' if skipped != 1 else ''} in the calibration data "
                    f"(first: {reasons[0]})")
    if not chosen:
        raise UsageError(f"no usable calibration samples in {source.description}: all {skipped} files were "
                         "unreadable")
    if len(chosen) < count:
        log.warning(f"calibration data has {len(chosen)} usable samples, fewer than `calib_images={count}`; "
                    "using all of them and none is held out")
    return Selection(source, chosen, held, skipped, digest.hexdigest())

