"""Images in, model-ready arrays out: preprocessing from the manifest and the Fashion-MNIST files.

numpy and Pillow only, so calibration and validation run on a target without PyTorch.
"""
import gzip
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import SkdeployError, UsageError

FASHION_MNIST_DIR = Path(os.environ.get("SKDEPLOY_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DATASET_CLASSES = {"fashion-mnist": FASHION_MNIST_CLASSES}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes a model input: resize the shorter side, centre-crop, scale, normalise."""

    resize: int
    crop: tuple
    mean: tuple
    std: tuple
    channel_order: str = "RGB"  # RGB, BGR or GRAY
    interpolation: str = "bilinear"
    scale: float = 1.0 / 255.0
    layout: str = "NCHW"

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "GRAY" else 3

    def to_dict(self) -> dict:
        data = asdict(self)
        data["crop"] = list(self.crop)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        try:
            return cls(resize=int(data["resize"]), crop=tuple(int(v) for v in data["crop"]),
                       mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                       channel_order=data.get("channel_order", "RGB"),
                       interpolation=data.get("interpolation", "bilinear"),
                       scale=float(data.get("scale", 1.0 / 255.0)), layout=data.get("layout", "NCHW"))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"preprocessing settings are incomplete or malformed ({exc!r})") from None

    def __call__(self, image) -> np.ndarray:
        """A PIL image (any mode) -> float32 array (C, H, W)."""
        from PIL import Image

        image = image.convert("L" if self.channel_order == "GRAY" else "RGB")
        width, height = image.size
        ratio = self.resize / min(width, height)
        size = (max(self.crop[1], round(width * ratio)), max(self.crop[0], round(height * ratio)))
        if size != image.size:
            resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                        "nearest": Image.NEAREST}[self.interpolation]
            image = image.resize(size, resample)
        left = (size[0] - self.crop[1]) // 2
        top = (size[1] - self.crop[0]) // 2
        image = image.crop((left, top, left + self.crop[1], top + self.crop[0]))
        array = np.asarray(image, dtype=np.float32) * self.scale
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        if self.channel_order == "BGR":
            array = array[::-1]
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        return np.ascontiguousarray((array - mean) / std, dtype=np.float32)

    def batch(self, images) -> np.ndarray:
        return np.stack([self(image) for image in images])

    def arrays(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pictures (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W)."""
        from PIL import Image

        return np.stack([self(Image.fromarray(p)) for p in pixels]) if len(pixels) else \
            np.zeros((0, self.channels, *self.crop), np.float32)


def class_names_for(dataset):
    """Class names of a known dataset (as manifests name it), else None."""
    return DATASET_CLASSES.get(dataset)


def read_idx(path) -> np.ndarray:
    """An IDX file (the MNIST family's format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise SkdeployError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UsageError(f"{path} is not an IDX file")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UsageError(f"{path} is truncated: its header promises {ndim} dimensions")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    body = raw[4 + 4 * ndim:]
    if len(body) != count * dtype.itemsize:
        raise UsageError(f"{path} is truncated: header promises {dims}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def load_fashion_mnist(split: str = "test", root=None):
    """(images uint8 (N, 28, 28), labels int64 (N,)) for split 'train' or 't10k'/'test'."""
    root = Path(root or FASHION_MNIST_DIR)
    prefix = "train" if split == "train" else "t10k"
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.exists():
        raise SkdeployError(f"Fashion-MNIST not found in {root}; install it with: "
                            "sudo apt-get install dataset-fashion-mnist")
    return read_idx(images_path), read_idx(labels_path).astype(np.int64)
