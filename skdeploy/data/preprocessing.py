"""How a picture becomes a model input, as the manifest records it.

numpy and Pillow only, so calibration and validation run on a target without PyTorch.
"""
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UsageError

# 16-bit modes and their full scale; __call__ maps it onto 0..255 so `scale` (1/255) means the same
SIXTEEN_BIT_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


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

    def __post_init__(self):
        """Numbers that give finite inputs: a zero std divides by zero, and a NaN reaches the model as NaN
        inputs that read as the model overflowing."""
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
        """A PIL image -> float32 array (C, H, W). 8-bit modes convert as Pillow does; 16-bit gray is
        scaled by its full range onto 0..255 (Pillow's convert would saturate it)."""
        from PIL import Image

        image = _eight_bit_range(image)
        if image.mode != "F":
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
        if len(array) != self.channels:  # a 16-bit gray picture for a colour model
            array = np.repeat(array, self.channels, axis=0)
        if self.channel_order == "BGR":
            array = array[::-1]
        mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)
        return np.ascontiguousarray((array - mean) / std, dtype=np.float32)

    def batch(self, images) -> np.ndarray:
        """PIL images -> float32 (N, C, H, W)."""
        return np.stack([self(image) for image in images])

    def pixels(self, picture: np.ndarray) -> np.ndarray:
        """One uint8 picture (H, W) or (H, W, C) with C = 1, 3 or 4 -> float32 (C, H, W)."""
        from PIL import Image

        if picture.ndim == 3 and picture.shape[-1] == 1:
            picture = picture[..., 0]
        return self(Image.fromarray(picture))

    def arrays(self, pictures: np.ndarray) -> np.ndarray:
        """uint8 pictures (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W)."""
        return np.stack([self.pixels(p) for p in pictures]) if len(pictures) else \
            np.zeros((0, self.channels, *self.crop), np.float32)


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
