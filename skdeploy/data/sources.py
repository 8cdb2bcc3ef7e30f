"""Every reader of samples: image folders, .npy/.npz arrays, IDX files and the system's Fashion-MNIST,
read sample by sample and preprocessed as the manifest says (formats: calibration/README.md).

Samples are decoded one at a time, so a stage holds only what it asks for: calibration streams 1024
images at 224x224 in one batch of memory. Labels come with the data when it has them (an array named
labels, the IDX labels file, or one subfolder per class).
"""
from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SkdeployError, UsageError, require_memory

if TYPE_CHECKING:
    from .preprocessing import Preprocessing

# the usual picture suffixes, named in messages; every suffix Pillow can open is read (image_suffixes)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
IDX_IMAGES_MARK = "-images-idx3-ubyte"
IDX_LABELS_MARK = "-labels-idx1-ubyte"
ARRAY_KEYS = ("images", "inputs", "x", "data")
LABEL_KEYS = ("labels", "y", "targets")
ZIP_MAGIC = b"PK"  # a .npz is a zip archive
NPY_MAGIC = b"\x93NUMPY"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_DIR = Path(os.environ.get("SKDEPLOY_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DATASET_CLASSES = {"fashion-mnist": FASHION_MNIST_CLASSES}


def class_names_for(dataset: str | None) -> tuple | None:
    """Class names of a known dataset (as manifests name it), else None."""
    return DATASET_CLASSES.get(dataset)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (the MNIST family's format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:  # the header first: it says how much to read, so a gzip bomb is never decompressed whole
        with opener(path, "rb") as handle:
            magic = handle.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
                raise UsageError(f"{path} is not an IDX file")
            ndim = magic[3]
            header = handle.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise UsageError(f"{path} is truncated: its header promises {ndim} dimensions")
            dims = struct.unpack(f">{ndim}I", header)
            dtype = np.dtype(_IDX_DTYPES[magic[2]])
            size = int(np.prod(dims, dtype=object)) * dtype.itemsize
            require_memory(size, f"IDX file {path} (header {dims})")
            body = handle.read(size + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise SkdeployError(f"cannot read IDX file {path}: {exc}") from None
    if len(body) != size:  # short, or longer than its header says (a gzip bomb's endless zeros)
        raise UsageError(f"{path} is truncated or padded: header promises {dims}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def fashion_mnist_file(split: str, root: str | os.PathLike | None = None, mark: str = IDX_IMAGES_MARK) -> Path:
    """The gzipped IDX images (or, with IDX_LABELS_MARK, labels) of split 'train' or 't10k'/'test'."""
    prefix = "train" if split == "train" else "t10k"
    return Path(root or FASHION_MNIST_DIR) / f"{prefix}{mark}.gz"


def load_fashion_mnist(split: str = "test", root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) for split 'train' or 't10k'/'test'."""
    images_path = fashion_mnist_file(split, root)
    if not images_path.exists():
        raise SkdeployError(f"Fashion-MNIST not found in {images_path.parent}; install it with: "
                            "sudo apt-get install dataset-fashion-mnist")
    return read_idx(images_path), read_idx(fashion_mnist_file(split, root, IDX_LABELS_MARK)).astype(np.int64)


def image_suffixes() -> tuple:
    """Every file suffix Pillow opens (GIF, TIFF, PPM and the rest), so no picture in a folder is passed
    over for its format; Pillow is imported only when a folder is read."""
    from PIL import Image

    Image.init()
    return tuple(sorted({suffix for suffix, kind in Image.registered_extensions().items() if kind in Image.OPEN}
                        | set(IMAGE_SUFFIXES)))


def checked_labels(labels: np.ndarray, what: str) -> np.ndarray:
    """Labels as int64 class indices, one per sample; NaN, fractions, text or a 2-D array would score every
    sample wrong (or crash later), so they are refused here."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UsageError(f"{what}: labels must be one class index per sample (a 1-D array), got shape "
                         f"{labels.shape}")
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind != "f":
        raise UsageError(f"{what}: labels must be whole class indices, got dtype {labels.dtype}")
    bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
    if len(bad):
        raise UsageError(f"{what}: labels must be whole class indices, got {labels[bad[0]]} for sample "
                         f"{int(bad[0])}")
    return labels.astype(np.int64)


def check_label_range(labels: np.ndarray | None, classes: int | None, what: str) -> None:
    """A label outside [0, classes) can never be predicted: it would count as a wrong answer."""
    if labels is None or classes is None or not len(labels):
        return
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise UsageError(f"{what}: label {int(labels[bad[0]])} of sample {int(bad[0])} is outside the model's "
                         f"classes 0-{classes - 1}")


def _folded(name: str) -> str:
    """A class name as a folder may spell it: no case, no punctuation ('T-shirt/top' -> 'tshirttop')."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def folder_labels(folders: Iterable[str], class_names: Sequence[str] | None, classes: int | None,
                  where: object) -> np.ndarray:
    """The class index of each class folder name: the model's class of that name, or the index the name
    spells. Numbering folders by their position among those present would shift every label after a
    missing class, so a name that is neither is refused."""
    by_name = {_folded(name): index for index, name in enumerate(class_names or ())}
    classes = classes if classes is not None else (len(class_names) if class_names else None)
    indices = {}
    for folder in sorted(set(folders)):
        if _folded(folder) in by_name:
            indices[folder] = by_name[_folded(folder)]
        elif folder.isdigit() and (classes is None or int(folder) < classes):
            indices[folder] = int(folder)
        else:
            known = f"one of the model's classes ({', '.join(class_names)}) or" if class_names else "the model's"
            span = f" 0-{classes - 1}" if classes is not None else ""
            raise UsageError(f"class folder '{folder}' in {where} is not {known} class index{span}; name each "
                             "class folder by its class's name or index")
    return np.array([indices[folder] for folder in folders], np.int64)


class UnreadableSample(Exception):
    """A file that cannot be decoded; skipped and counted, never fatal on its own."""


@dataclass(frozen=True)
class InputShape:
    channels: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.channels}x{self.height}x{self.width}"


class Source:
    """Numbered samples of one kind; `sample(i)` returns float32 (C, H, W) ready for the model."""

    description = ""
    labels = None  # int64 array aligned with sample numbers, or None
    class_names = None  # names of the label values, when the data says them
    pictures = None  # the original pictures (uint8 array or file paths) aligned with sample numbers

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, index: int) -> np.ndarray:
        raise NotImplementedError


DECODE_WORKERS = min(8, os.cpu_count() or 1)


def read_batches(source: Source, indices: Sequence[int], batch_size: int,
                 workers: int = DECODE_WORKERS) -> Iterator[np.ndarray]:
    """Batches (n, ...) of `source`'s samples at `indices`, in order, decoded by read_samples one batch ahead of
    the caller and copied into each batch as they come, so about two batches are in memory; an
    UnreadableSample reaches the caller when its batch does."""
    samples = read_samples(source, indices, workers, ahead=batch_size)
    for start in range(0, len(indices), batch_size):
        size, batch = min(batch_size, len(indices) - start), None
        for row in range(size):
            _, sample = next(samples)
            if isinstance(sample, UnreadableSample):
                raise sample
            if batch is None:
                batch = np.empty((size, *sample.shape), sample.dtype)
            batch[row] = sample
        yield batch


def read_samples(source: Source, indices: Iterable[int], workers: int = DECODE_WORKERS,
                 ahead: int = 0) -> Iterator[tuple]:
    """(index, sample or the UnreadableSample it raised) for each of `indices`, in order. A thread pool
    decodes the files (Pillow and numpy release the GIL while they work) `ahead` samples (at least two per
    worker) beyond the one the caller has; stopping early wastes at most those."""
    indices = iter(indices)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
        pending = deque()

        def submit() -> None:
            index = next(indices, None)
            if index is not None:
                index = int(index)
                pending.append((index, pool.submit(_sample_or_reason, source, index)))

        for _ in range(max(ahead, 2 * max(1, workers))):
            submit()
        while pending:
            index, future = pending.popleft()
            submit()
            yield index, future.result()


def _sample_or_reason(source: Source, index: int):
    try:
        return source.sample(index)
    except UnreadableSample as exc:
        return exc


class ImageFolder(Source):
    """Every picture below `folder`; when each sits in a first-level subfolder, that folder names its class
    (folder_labels, against the model's `class_names` and number of `classes` when known). Files Pillow
    cannot open by their suffix are counted and reported."""

    def __init__(self, folder: Path, preprocessing_for, class_names=None, classes=None) -> None:
        from ..log import log

        suffixes = image_suffixes()
        found = sorted(p for p in folder.rglob("*") if p.is_file())
        self.files = [p for p in found if p.suffix.lower() in suffixes]
        others = [p for p in found if p.suffix.lower() not in suffixes and not p.name.startswith(".")]
        if not self.files:
            hint = ""
            if any(IDX_IMAGES_MARK in p.name for p in folder.iterdir() if p.is_file()):
                hint = "; for IDX files pass the *-images-idx3-ubyte file itself"
            raise UsageError(f"no images in {folder} (looked recursively for the picture formats Pillow reads, "
                             f"{', '.join(IMAGE_SUFFIXES)} and more; found {len(others)} other "
                             f"file{'s' if len(others) != 1 else ''}){hint}")
        if others:
            log.warning(f"skipped {len(others)} file{'s' if len(others) != 1 else ''} in {folder} that "
                        f"{'are' if len(others) != 1 else 'is'} not a picture format Pillow reads (first: "
                        f"{others[0].relative_to(folder)})")
        self.skipped_files = len(others)
        self.folder = folder  # the files' paths below it are what a copy of the pictures keeps
        self.preprocessing = preprocessing_for(f"images in {folder}")
        self.description = f"image folder {folder} ({len(self.files)} images)"
        self.pictures = [str(p) for p in self.files]
        if all(p.parent.parent == folder for p in self.files):
            self.labels = folder_labels([p.parent.name for p in self.files], class_names, classes, folder)
            self.class_names = tuple(class_names) if class_names else None

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        file = self.files[index]
        try:
            with Image.open(file) as image:
                if min(image.size) < 1:
                    raise UsageError(f"{file} is a picture of {image.size[0]}x{image.size[1]} pixels; there is "
                                     "nothing to resize")
                image.load()
                try:
                    return self.preprocessing(image)
                except UsageError as exc:  # a picture no preprocessing can take (a float TIFF)
                    raise UsageError(f"{file}: {exc}") from None
        except Image.DecompressionBombError as exc:
            raise UsageError(f"{file} is too large to decode safely: {str(exc).rstrip('.')}") from None
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise UnreadableSample(f"{file}: {exc}") from None


class ArraySamples(Source):
    """uint8 pictures (N, H, W[, C]) go through preprocessing; float arrays must already be (N, C, H, W)."""

    def __init__(self, array: np.ndarray, labels, what: str, shape: InputShape, preprocessing_for) -> None:
        self.array, self.labels, self.shape = array, labels, shape
        self.preprocessing = None
        if array.dtype == np.uint8:
            picture = array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (1, 3, 4))
            if not picture:
                raise UsageError(f"{what} holds uint8 pictures of shape {array.shape[1:]}; expected (H, W) or "
                                 "(H, W, C) with C = 1, 3 or 4 channels")
            if min(array.shape[1:3]) < 1:
                raise UsageError(f"{what} holds pictures of {array.shape[2]}x{array.shape[1]} pixels; there is "
                                 "nothing to resize")
            self.preprocessing = preprocessing_for(f"uint8 pictures in {what}")
            self.pictures = array
        elif np.issubdtype(array.dtype, np.floating):
            expected = (shape.channels, shape.height, shape.width)
            if array.ndim != 4 or tuple(array.shape[1:]) != expected:
                raise UsageError(f"{what} holds float arrays of shape {tuple(array.shape)}; the model takes "
                                 f"(N, {', '.join(map(str, expected))}) already preprocessed, or give uint8 "
                                 "pictures (N, H, W[, C]) to be preprocessed")
        else:
            raise UsageError(f"{what} has dtype {array.dtype}; expected uint8 pictures or float32 model inputs")
        if labels is not None:
            labels = self.labels = checked_labels(labels, what)
            if len(labels) != len(array):
                raise UsageError(f"{what}: {len(labels)} labels for {len(array)} samples")
        self.description = f"{what} ({len(array)} samples)"

    def __len__(self) -> int:
        return len(self.array)

    def sample(self, index: int) -> np.ndarray:
        if self.preprocessing is None:
            return np.ascontiguousarray(self.array[index], dtype=np.float32)
        return self.preprocessing.pixels(self.array[index])


def read_arrays(path: str | os.PathLike) -> Any:
    """A .npy file's array, or a .npz archive's arrays as {name: array}, all read now. What starts like
    neither is refused (numpy would try it as a pickle), and a damaged archive is a usage error."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(NPY_MAGIC))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not start.startswith(ZIP_MAGIC) and start != NPY_MAGIC:
        raise UsageError(f"cannot read {path} as a numpy file: it is not a .npz archive or a .npy array")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return loaded
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UsageError(f"cannot read {path} as a numpy file: it is damaged ({exc})") from None


def _load_array_file(path: Path, shape: InputShape, preprocessing_for) -> ArraySamples:
    loaded = read_arrays(path)
    labels = None
    if isinstance(loaded, dict):
        key = next((k for k in ARRAY_KEYS if k in loaded), None)
        if key is None and len(loaded) == 1:
            key = next(iter(loaded))
        if key is None:
            raise UsageError(f"{path} has arrays {list(loaded)}; name the samples one of {list(ARRAY_KEYS)}")
        array = loaded[key]
        label_key = next((k for k in LABEL_KEYS if k in loaded), None)
        labels = loaded[label_key] if label_key else None
    else:
        array = loaded
    return ArraySamples(array, labels, str(path), shape, preprocessing_for)


def _load_idx_file(path: Path, shape: InputShape, preprocessing_for) -> ArraySamples:
    images = read_idx(path)
    labels_path = path.with_name(path.name.replace(IDX_IMAGES_MARK, IDX_LABELS_MARK))
    labels = read_idx(labels_path) if labels_path.exists() and labels_path != path else None
    return ArraySamples(np.asarray(images), labels, str(path), shape, preprocessing_for)


def open_source(path: str | os.PathLike, shape: InputShape, preprocessing_for: Callable[[str], Preprocessing],
                argument: str = "calib_data", class_names: Sequence[str] | None = None,
                classes: int | None = None) -> Source:
    """Pick the reader by what `path` is. `preprocessing_for(what)` returns the Preprocessing or raises;
    `argument` names the API argument `path` came from, in messages. The model's `class_names` and number
    of `classes`, when known, are what labels must name: labels outside them are refused."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"`{argument}={path}` does not exist")
    if path.is_dir():
        source = ImageFolder(path, preprocessing_for, class_names, classes)
    else:
        source = _open_file(path, shape, preprocessing_for, argument)
    check_label_range(source.labels, classes if classes is not None else
                      (len(class_names) if class_names else None), str(path))
    return source


def _open_file(path: Path, shape: InputShape, preprocessing_for, argument) -> Source:
    name = path.name.lower()
    if name.endswith((".npy", ".npz")):
        return _load_array_file(path, shape, preprocessing_for)
    if IDX_IMAGES_MARK in name or name.endswith((".idx", ".idx.gz")):
        return _load_idx_file(path, shape, preprocessing_for)
    if name.endswith(image_suffixes()):
        raise UsageError(f"`{argument}={path}` is a single image; give the folder that holds the images")
    raise UsageError(f"`{argument}={path}`: unknown format (accepted: a folder of images, .npy, .npz, "
                     "or a *-images-idx3-ubyte[.gz] file)")
