"""How a picture becomes a model input, as the manifest records it.

numpy and Pillow only, so calibration and validation run on a target without PyTorch.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

# 16-bit modes and their full scale; __call__ maps it onto 0..255 so `scale` (1/255) means the same
SIXTEEN_BIT_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}
LAYOUTS = ("NCHW", "NHWC")
# the fields that say in which form the model takes its inputs, not what values they hold
FORM_FIELDS = ("layout", "in_graph", "raw_dtype")
RAW_DTYPES = ("uint8", "float32")


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
    layout: str = "NCHW"  # of the model input: NCHW or NHWC
    in_graph: bool = False  # the graph does scale, mean and std itself: the model input is raw pixels
    raw_dtype: str = "uint8"  # what raw pixels are fed as when in_graph: uint8 or float32 (0-255)

    def __post_init__(self):
        """Numbers that give finite inputs: a zero std divides by zero, and a NaN reaches the model as NaN
        inputs that read as the model overflowing."""
        if self.layout not in LAYOUTS:
            raise UsageError(f"`layout` must be NCHW or NHWC, got {self.layout!r}")
        if self.raw_dtype not in RAW_DTYPES:
            raise UsageError(f"`raw_dtype` must be uint8 or float32, got {self.raw_dtype!r}")
        if not self.mean or len(self.mean) != len(self.std):
            raise UsageError(f"`mean` and `std` need the same number of values (one per channel), got "
                             f"{self.mean} and {self.std}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if not all(np.isfinite(values)):
                raise UsageError(f"`{name}` must be finite numbers, got {values}")
        if min(self.std) <= 0:
            raise UsageError(f"`std` must be positive, got {self.std}")
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise UsageError(f"the preprocessing scale must be a positive number, got {self.scale}")
        if self.resize < 1 or len(self.crop) != 2 or min(self.crop) < 1:
            raise UsageError(f"`resize` must be positive and `crop` two positive sizes, got {self.resize} and "
                             f"{self.crop}")

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
    def from_dict(cls, data: dict) -> Preprocessing:
        try:
            return cls(resize=int(data["resize"]), crop=tuple(int(v) for v in data["crop"]),
                       mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                       channel_order=data.get("channel_order", "RGB"),
                       interpolation=data.get("interpolation", "bilinear"),
                       scale=float(data.get("scale", 1.0 / 255.0)), layout=data.get("layout", "NCHW"),
                       in_graph=bool(data.get("in_graph", False)), raw_dtype=data.get("raw_dtype", "uint8"))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"preprocessing settings are incomplete or malformed ({exc!r})") from None

    @property
    def input_shape(self) -> tuple:
        """One model input's shape in the layout: (C, H, W) or (H, W, C)."""
        return (self.channels, *self.crop) if self.layout == "NCHW" else (*self.crop, self.channels)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.raw_dtype) if self.in_graph else np.dtype(np.float32)

    def raw_pixels(self, image: Image.Image) -> np.ndarray:
        """A PIL image -> float32 pixel values 0-255 (C, H, W), resized, cropped, in channel order. 8-bit
        modes convert as Pillow does; 16-bit gray is scaled by its full range onto 0..255 (Pillow's
        convert would saturate it)."""
        from PIL import Image

        image = _eight_bit_range(image)
        if image.mode != "F":
            image = image.convert("L" if self.channel_order == "GRAY" else "RGB")
        width, height = image.size
        if min(width, height) < 1:
            raise UsageError(f"a picture of {width}x{height} pixels has nothing to resize")
        ratio = self.resize / min(width, height)
        size = (max(self.crop[1], round(width * ratio)), max(self.crop[0], round(height * ratio)))
        if size != image.size:
            resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                        "nearest": Image.NEAREST}[self.interpolation]
            image = image.resize(size, resample)
        left = (size[0] - self.crop[1]) // 2
        top = (size[1] - self.crop[0]) // 2
        image = image.crop((left, top, left + self.crop[1], top + self.crop[0]))
        array = np.asarray(image, dtype=np.float32)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        if len(array) != self.channels:  # a 16-bit gray picture for a colour model
            array = np.repeat(array, self.channels, axis=0)
        return array[::-1] if self.channel_order == "BGR" else array

    def as_raw(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel values 0-255 as the raw graph takes them: rounded to whole levels for uint8."""
        if self.raw_dtype == "uint8":
            return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        return np.asarray(pixels, np.float32)

    def normalized(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel values (..., C, H, W) -> float32 (pixels * scale - mean) / std: what the PyTorch model takes."""
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        return np.ascontiguousarray((np.asarray(pixels, np.float32) * self.scale - mean) / std, dtype=np.float32)

    def __call__(self, image) -> np.ndarray:
        """A PIL image (any mode) -> the model input in `layout`: normalized float32, or raw pixels of
        `raw_dtype` when the graph normalizes (`in_graph`)."""
        pixels = self.raw_pixels(image)
        array = self.as_raw(pixels) if self.in_graph else self.normalized(pixels)
        return np.ascontiguousarray(array.transpose(1, 2, 0) if self.layout == "NHWC" else array)

    def reference_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Model inputs (N, ...) in this form -> the normalized float32 (N, C, H, W) the FP32 PyTorch model takes."""
        return np.ascontiguousarray(self.convert(inputs, replace(self, layout="NCHW", in_graph=False)),
                                    dtype=np.float32)

    def convert(self, inputs: np.ndarray, form: Preprocessing) -> np.ndarray:
        """Model inputs (N, ...) prepared by this preprocessing -> the same samples in `form`'s layout,
        raw or normalized, and dtype (this preprocessing's numbers)."""
        if all(getattr(form, name) == getattr(self, name) for name in FORM_FIELDS):
            return inputs
        inputs = np.asarray(inputs)
        if self.layout == "NHWC":
            inputs = inputs.transpose(0, 3, 1, 2)
        if (form.in_graph, form.raw_dtype) == (self.in_graph, self.raw_dtype):  # the layout alone differs
            return np.ascontiguousarray(inputs.transpose(0, 2, 3, 1) if form.layout == "NHWC" else inputs)
        if self.in_graph:
            pixels = inputs.astype(np.float32)
        else:  # undo the normalization: pixel values 0-255 again
            mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
            std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
            pixels = (inputs.astype(np.float32) * std + mean) / np.float32(self.scale)
        target = replace(self, **{name: getattr(form, name) for name in FORM_FIELDS})
        array = target.as_raw(pixels) if target.in_graph else target.normalized(pixels)
        return np.ascontiguousarray(array.transpose(0, 2, 3, 1) if target.layout == "NHWC" else array)

    def in_graph_form(self, layout: str = "NCHW", raw_dtype: str = "uint8") -> Preprocessing:
        """The same preprocessing, done by the graph: the model takes raw pixels in `layout`."""
        return replace(self, layout=layout, in_graph=True, raw_dtype=raw_dtype)

    def batch(self, images: Iterable[Image.Image]) -> np.ndarray:
        """PIL images -> model inputs (N, ...)."""
        return np.stack([self(image) for image in images])

    def pixels(self, picture: np.ndarray) -> np.ndarray:
        """One uint8 picture (H, W) or (H, W, C) with C = 1, 3 or 4 -> the model input."""
        from PIL import Image

        if picture.ndim == 3 and picture.shape[-1] == 1:
            picture = picture[..., 0]
        return self(Image.fromarray(picture))

    def arrays(self, pictures: np.ndarray) -> np.ndarray:
        """uint8 pictures (N, H, W) or (N, H, W, C) -> model inputs (N, ...)."""
        return np.stack([self.pixels(p) for p in pictures]) if len(pictures) else \
            np.zeros((0, *self.input_shape), self.input_dtype)


def _eight_bit_range(image):
    """A 16-bit gray image as a float ("F") image on the 8-bit scale; 8-bit images unchanged. 32-bit
    integer and float pictures have no known full scale: refused rather than guessed."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float32) * np.float32(255.0 / SIXTEEN_BIT_MODES[image.mode])
        return Image.fromarray(pixels)  # float32 -> mode "F", which resize and crop keep
    if image.mode in ("I", "F"):
        raise UsageError(f"a {'32-bit integer' if image.mode == 'I' else 'floating-point'} picture (mode "
                         f"{image.mode}) has no known full scale; convert it to 8 or 16 bits per channel")
    return image
