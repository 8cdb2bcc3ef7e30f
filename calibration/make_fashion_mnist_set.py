"""Rebuild fashion-mnist-train-2048.npz: 2048 seeded-random images (and labels) of the Fashion-MNIST
TRAIN split, the demo model's default calibration set. The test split is never read, so the
accuracy measured on it stays unbiased.

    .venv/bin/python calibration/make_fashion_mnist_set.py
"""
from pathlib import Path

import numpy as np

from skdeploy.data import load_fashion_mnist

COUNT = 2048
SEED = 2024


def main():
    images, labels = load_fashion_mnist("train")
    chosen = np.sort(np.random.default_rng(SEED).choice(len(images), COUNT, replace=False))
    target = Path(__file__).with_name(f"fashion-mnist-train-{COUNT}.npz")
    np.savez_compressed(target, images=images[chosen], labels=labels[chosen].astype(np.uint8),
                        train_indices=chosen.astype(np.int32))
    print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
