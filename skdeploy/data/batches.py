"""The one padding rule for a model with a static batch: fill a short last batch with copies of its
last sample.

Rows of an inference model do not mix, so the outputs for the real rows are the same whatever fills
the rest; copies of a real sample keep calibration statistics free of out-of-distribution rows (zeros
would be one), and callers drop the padded rows' outputs.
"""
import numpy as np

# the largest batch a run takes (bench, validation, calibration): larger ones add nothing to throughput and
# their activations outgrow any memory, so they are refused before anything is allocated
MAX_BATCH = 4096


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` grown to `size` rows by repeating its last row; a batch of `size` rows or more as it is."""
    if len(batch) >= size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - len(batch), axis=0)])
