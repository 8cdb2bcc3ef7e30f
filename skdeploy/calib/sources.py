"""Calibration data: image folders, .npy/.npz arrays and IDX files, preprocessed as the manifest says.

Samples are loaded one at a time and never all held at once, so 1024 images at 224x224 cost one batch
of memory. A seeded permutation picks the calibration subset; the samples after it form the held-out
split the accuracy check uses, so the two never overlap.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import ui
from ..data import read_idx
from ..errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IDX_IMAGES_MARK = "-images-idx3-ubyte"
ARRAY_KEYS = ("images", "x", "data")
LABEL_KEYS = ("labels", "y", "targets")
REPO_CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "calibration"
DEMO_CALIBRATION_FILE = "fashion-mnist-train-2048.npz"


class UnreadableSample(Exception):
    """A file that cannot be decoded; skipped and counted, never fatal on its own."""


@dataclass(frozen=True)
class InputShape:
    channels: int
    height: int
    width: int

    def __str__(self):
        return f"{self.channels}x{self.height}x{self.width}"


class Source:
    """Numbered samples of one kind; `sample(i)` returns float32 (C, H, W) ready for the model."""

    description = ""
    labels = None  # int64 array aligned with sample numbers, or None

    def __len__(self):
        raise NotImplementedError

    def sample(self, index: int) -> np.ndarray:
        raise NotImplementedError


class ImageFolder(Source):
    def __init__(self, folder: Path, preprocessing_for):
        self.files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            others = sum(1 for p in folder.rglob("*") if p.is_file())
            hint = ""
            if any(IDX_IMAGES_MARK in p.name for p in folder.iterdir() if p.is_file()):
                hint = "; for IDX files pass the *-images-idx3-ubyte file itself"
            raise UsageError(f"no images in {folder} (looked recursively for {', '.join(IMAGE_SUFFIXES)}; "
                             f"found {others} other file{'s' if others != 1 else ''}){hint}")
        self.preprocessing = preprocessing_for(f"images in {folder}")
        self.description = f"image folder {folder} ({len(self.files)} images)"

    def __len__(self):
        return len(self.files)

    def sample(self, index):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[index]) as image:
                image.load()
                return self.preprocessing(image)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise UnreadableSample(f"{self.files[index]}: {exc}") from None


class ArraySamples(Source):
    """uint8 pictures (N, H, W[, C]) go through preprocessing; float arrays must already be (N, C, H, W)."""

    def __init__(self, array: np.ndarray, labels, what: str, shape: InputShape, preprocessing_for):
        self.array, self.labels, self.shape = array, labels, shape
        self.preprocessing = None
        if array.dtype == np.uint8:
            picture = array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (1, 3, 4))
            if not picture:
                raise UsageError(f"{what} holds uint8 pictures of shape {array.shape[1:]}; expected (H, W) or "
                                 "(H, W, C) with C = 1, 3 or 4 channels")
            self.preprocessing = preprocessing_for(f"uint8 pictures in {what}")
        elif np.issubdtype(array.dtype, np.floating):
            expected = (shape.channels, shape.height, shape.width)
            if array.ndim != 4 or tuple(array.shape[1:]) != expected:
                raise UsageError(f"{what} holds float arrays of shape {tuple(array.shape)}; the model takes "
                                 f"(N, {', '.join(map(str, expected))}) already preprocessed, or give uint8 "
                                 "pictures (N, H, W[, C]) to be preprocessed")
        else:
            raise UsageError(f"{what} has dtype {array.dtype}; expected uint8 pictures or float32 model inputs")
        if labels is not None and len(labels) != len(array):
            raise UsageError(f"{what}: {len(labels)} labels for {len(array)} samples")
        self.description = f"{what} ({len(array)} samples)"

    def __len__(self):
        return len(self.array)

    def sample(self, index):
        if self.preprocessing is None:
            return np.ascontiguousarray(self.array[index], dtype=np.float32)
        from PIL import Image

        picture = self.array[index]
        if picture.ndim == 3 and picture.shape[-1] == 1:
            picture = picture[..., 0]
        return self.preprocessing(Image.fromarray(picture))


def _load_array_file(path: Path, shape: InputShape, preprocessing_for) -> ArraySamples:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"cannot read {path} as a numpy file: {exc}") from None
    labels = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            key = next((k for k in ARRAY_KEYS if k in loaded.files), None)
            if key is None and len(loaded.files) == 1:
                key = loaded.files[0]
            if key is None:
                raise UsageError(f"{path} has arrays {loaded.files}; name the samples one of {list(ARRAY_KEYS)}")
            array = loaded[key]
            label_key = next((k for k in LABEL_KEYS if k in loaded.files), None)
            labels = loaded[label_key].astype(np.int64) if label_key else None
    else:
        array = loaded
    return ArraySamples(array, labels, str(path), shape, preprocessing_for)


def _load_idx_file(path: Path, shape: InputShape, preprocessing_for) -> ArraySamples:
    images = read_idx(path)
    labels_path = path.with_name(path.name.replace(IDX_IMAGES_MARK, "-labels-idx1-ubyte"))
    labels = read_idx(labels_path).astype(np.int64) if labels_path.exists() and labels_path != path else None
    return ArraySamples(np.asarray(images), labels, str(path), shape, preprocessing_for)


def open_source(path, shape: InputShape, preprocessing_for) -> Source:
    """Pick the reader by what `path` is. `preprocessing_for(what)` returns the Preprocessing or raises."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"calibration data {path} does not exist")
    if path.is_dir():
        return ImageFolder(path, preprocessing_for)
    name = path.name.lower()
    if name.endswith((".npy", ".npz")):
        return _load_array_file(path, shape, preprocessing_for)
    if IDX_IMAGES_MARK in name or name.endswith((".idx", ".idx.gz")):
        return _load_idx_file(path, shape, preprocessing_for)
    if name.endswith(IMAGE_SUFFIXES):
        raise UsageError(f"--calib-data {path} is a single image; give the folder that holds the images")
    raise UsageError(f"--calib-data {path}: unknown format (accepted: a folder of images, .npy, .npz, "
                     "or a *-images-idx3-ubyte[.gz] file)")


def default_data_path(manifest):
    """The shipped calibration set for the demo model (Fashion-MNIST train split), else None."""
    if not manifest or (manifest.get("model") or {}).get("dataset") != "fashion-mnist":
        return None
    shipped = REPO_CALIBRATION_DIR / DEMO_CALIBRATION_FILE
    if shipped.exists():
        return shipped
    from ..data import FASHION_MNIST_DIR

    system = FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz"
    return system if system.exists() else None


@dataclass
class Selection:
    """The samples chosen for calibration and for the held-out check, both in a seeded order."""

    source: Source
    calibration: list
    holdout: list
    skipped: int
    sha256: str  # of the preprocessed calibration tensors, in order

    def batches(self, indices, batch_size):
        """(float32 batch, labels or None) in order; samples are decoded again, never cached."""
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            labels = self.source.labels[chunk] if self.source.labels is not None else None
            yield np.stack([self.source.sample(i) for i in chunk]), labels


def select(source: Source, shape: InputShape, count: int, holdout: int, seed: int) -> Selection:
    """Walk a seeded permutation: the first `count` readable samples calibrate, the next `holdout` check."""
    if count < 1:
        raise UsageError(f"--calib-images must be at least 1, got {count}")
    order = np.random.default_rng(seed).permutation(len(source))
    digest = hashlib.sha256()
    chosen, held, skipped, reasons = [], [], 0, []
    expected = (shape.channels, shape.height, shape.width)
    for index in order:
        if len(chosen) >= count and len(held) >= holdout:
            break
        try:
            sample = source.sample(int(index))
        except UnreadableSample as exc:
            skipped += 1
            reasons.append(str(exc))
            continue
        if sample.shape != expected:
            raise UsageError(f"preprocessing makes samples of shape {sample.shape}, the model takes {expected}; "
                             "check the crop size and channel order")
        if len(chosen) < count:
            digest.update(sample.tobytes())
            chosen.append(int(index))
        else:
            held.append(int(index))
    if skipped:
        ui.warn(f"skipped {skipped} unreadable file{'s' if skipped != 1 else ''} in the calibration data "
                f"(first: {reasons[0]})")
    if not chosen:
        raise UsageError(f"no usable calibration samples in {source.description}: all {skipped} files were "
                         "unreadable")
    if len(chosen) < count:
        ui.warn(f"calibration data has {len(chosen)} usable samples, fewer than --calib-images {count}; "
                "using all of them and none is held out")
    return Selection(source, chosen, held, skipped, digest.hexdigest())

