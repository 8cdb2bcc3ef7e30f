"""How a picture becomes a model input, as the manifest records it.

numpy and Pillow only, so calibration and validation run on a target without PyTorch.
"""
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import UsageError

LAYOUTS = ("NCHW", "NHWC")
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
        if self.layout not in LAYOUTS:
            raise UsageError(f"`layout` must be NCHW or NHWC, got {self.layout!r}")
        if self.raw_dtype not in RAW_DTYPES:
            raise UsageError(f"`raw_dtype` must be uint8 or float32, got {self.raw_dtype!r}")

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
                       scale=float(data.get("scale", 1.0 / 255.0)), layout=data.get("layout", "NCHW"),
                       in_graph=bool(data.get("in_graph", False)), raw_dtype=data.get("raw_dtype", "uint8"))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"preprocessing settings are incomplete or malformed ({exc!r})") from None

    @property
    def input_shape(self) -> tuple:
        """One model input's shape in the layout: (C, H, W) or (H, W, C)."""
        return (self.channels, *self.crop) if self.layout == "NCHW" else (*self.crop, self.channels)

    @property
    def input_dtype(self):
        return np.dtype(self.raw_dtype) if self.in_graph else np.dtype(np.float32)

    def raw_pixels(self, image) -> np.ndarray:
        """A PIL image (any mode) -> float32 pixel values 0-255 (C, H, W), resized, cropped, in channel order."""
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
        array = np.asarray(image, dtype=np.float32)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return array[::-1] if self.channel_order == "BGR" else array

    def normalized(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel values (..., C, H, W) -> float32 (pixels * scale - mean) / std: what the PyTorch model takes."""
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        return np.ascontiguousarray((np.asarray(pixels, np.float32) * self.scale - mean) / std, dtype=np.float32)

    def __call__(self, image) -> np.ndarray:
        """A PIL image (any mode) -> the model input in `layout`: normalized float32, or raw pixels of
        `raw_dtype` when the graph normalizes (`in_graph`)."""
        pixels = self.raw_pixels(image)
        array = pixels.astype(self.raw_dtype) if self.in_graph else self.normalized(pixels)
        return np.ascontiguousarray(array.transpose(1, 2, 0) if self.layout == "NHWC" else array)

    def reference_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Model inputs (N, ...) in this form -> the normalized float32 (N, C, H, W) the FP32 PyTorch model takes."""
        inputs = np.asarray(inputs)
        if self.layout == "NHWC":
            inputs = inputs.transpose(0, 3, 1, 2)
        return self.normalized(inputs) if self.in_graph else np.ascontiguousarray(inputs, dtype=np.float32)

    def in_graph_form(self, layout="NCHW", raw_dtype="uint8") -> "Preprocessing":
        """The same preprocessing, done by the graph: the model takes raw pixels in `layout`."""
        return replace(self, layout=layout, in_graph=True, raw_dtype=raw_dtype)

    def batch(self, images) -> np.ndarray:
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
