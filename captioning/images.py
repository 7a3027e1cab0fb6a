"""Image input and preprocessing: the one place where pixels become model input.

Everything that feeds the encoder (API, batch pipeline, video frames, training feature
cache) goes through :func:`load_image` and :class:`Preprocessing`, so train and test
images are made the same way.
"""
from __future__ import annotations

import functools
import io
import os
import stat
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

# Refuse images above this many pixels: 120 MP covers medium-format photos; decompression
# bombs (a few KB of PNG that inflate to gigabytes) are far bigger.
MAX_IMAGE_PIXELS = 120_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Refuse image files above this size: a 120 MP image stored uncompressed at 4 bytes a pixel
# (RGBA BMP/TIFF, 480 MB) still fits; anything bigger is not a photo this guard lets through.
MAX_FILE_BYTES = 512 * 2**20

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that cannot be turned into an RGB image; the message names the source."""


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes encoder input; stored in every bundle's manifest."""

    size: int = 224  # output side; images are resized to size x size (aspect ratio not kept,
    #                  as the Flickr8k training photos were made)
    resample: str = "bilinear"  # PIL resampling filter name used by the resize
    mean: float = 127.0  # subtracted from 0..255 RGB values (EfficientNet-Lite convention)
    std: float = 128.0  # divisor after subtracting the mean

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resize(self, image: Image.Image) -> Image.Image:
        if image.size == (self.size, self.size):
            return image
        return image.resize((self.size, self.size), resample=Image.Resampling[self.resample.upper()])

    def load(self, src: ImageInput) -> Image.Image:
        """``src`` read for this preprocessing: as :func:`load_image`, a large JPEG decoded straight at
        a reduced scale that is still at least ``size`` on both sides (``reduce_to``)."""
        return load_image(src, reduce_to=self.size)

    def to_array(self, image: Image.Image) -> np.ndarray:
        """Resized uint8 array (size, size, 3): cheap to ship between processes."""
        return np.asarray(self.resize(image), dtype=np.uint8)

    def to_tensor(self, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
        """Batch of RGB images (PIL or resized uint8 HxWx3) -> normalised (B, 3, size, size)."""
        arrays = [im if isinstance(im, np.ndarray) and im.shape[:2] == (self.size, self.size)
                  else self.to_array(im if isinstance(im, Image.Image) else Image.fromarray(im))
                  for im in images]
        import torch  # here, not at import: reading and resizing images needs no torch

        # in numpy: 5-8x faster than torch's strided conversion of a batch, and the same numbers
        x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32)  # (B, H, W, 3) uint8 -> (B, 3, H, W)
        x -= np.float32(self.mean)
        x /= np.float32(self.std)
        return torch.from_numpy(x)


_NOT_REGULAR = ((stat.S_ISDIR, "is a directory, not an image"), (stat.S_ISFIFO, "not a regular file (a named pipe)"),
                (stat.S_ISCHR, "not a regular file (a character device)"),
                (stat.S_ISBLK, "not a regular file (a block device)"), (stat.S_ISSOCK, "not a regular file (a socket)"))


def read_image_file(path: str | os.PathLike, *, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of an image file. Only a regular file of at most ``limit`` bytes is read: a
    FIFO would block and a link to ``/dev/zero`` never ends. Raises :class:`ImageError`
    with a one-line message naming the file."""
    try:
        return _read_regular_file(path, limit)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None


def _read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO opens at once
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        raise ImageError(f"cannot read file ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)  # the file opened, not whatever the path names by now
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(next((why for is_kind, why in _NOT_REGULAR if is_kind(st.st_mode)), "not a regular file"))
        if st.st_size == 0:
            raise ImageError("empty file (0 bytes)")
        if st.st_size > limit:
            raise ImageError(f"file too large ({st.st_size / 2**20:.0f} MB; the limit is {limit / 2**20:.0f} MB)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ImageError(f"cannot read file ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while being read
        raise ImageError(f"file too large (more than {limit / 2**20:.0f} MB)")
    return data


def _describe(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, bytes):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


def load_image(src: ImageInput, *, reduce_to: int = 0) -> Image.Image:
    """Open any supported input as an upright 8-bit RGB PIL image.

    Accepts a path, raw encoded bytes, a PIL image, or a numpy array (HxW gray, HxWx3 RGB,
    HxWx4 RGBA; uint8, uint16 or float in 0..1). EXIF orientation is applied; grayscale,
    RGBA/LA (composited on white), palette, CMYK and 16-bit images become RGB. Raises
    :class:`ImageError` with a one-line message naming the input on anything else.

    ``reduce_to`` > 0: a JPEG file or bytes is decoded at the smallest of libjpeg's 1/8, 1/4 and 1/2
    scales that keeps both sides at least ``reduce_to`` pixels (PIL's ``draft``: the DCT does the
    first, antialiased, part of a downscale; a 12-megapixel photo for a 260x260 input decodes ~4x
    faster). ``image.info["full_size"]`` is always the upright size before any reduction.
    """
    name = _describe(src)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _load(src, name, reduce_to)


def _load(src: ImageInput, name: str, reduce_to: int = 0) -> Image.Image:
    try:
        if isinstance(src, np.ndarray):
            return _from_array(src)
        if isinstance(src, Image.Image):
            image = src
        elif isinstance(src, bytes):
            if not src:
                raise ImageError("empty input (0 bytes)")
            _heif_opener()
            image = Image.open(io.BytesIO(src))
        elif isinstance(src, (str, os.PathLike)):
            _heif_opener()
            image = Image.open(io.BytesIO(_read_regular_file(src, MAX_FILE_BYTES)))
        else:
            raise ImageError(f"unsupported input type {type(src).__name__}")
        full = image.size
        if reduce_to > 0 and image.format == "JPEG":
            image.draft(None, (reduce_to, reduce_to))  # only while not yet decoded: files and bytes
        image.load()  # decode now so truncation / corruption surfaces here
        upright = _to_rgb(ImageOps.exif_transpose(image))
        turned = upright.size == image.size[::-1] != image.size  # a quarter turn
        upright.info["full_size"] = full[::-1] if turned else full
        return upright
    except ImageError as e:
        raise ImageError(f"{name}: {e}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (unrecognised format)") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None


@functools.lru_cache(maxsize=1)
def _heif_opener() -> None:
    """PIL reads HEIC/HEIF (phones' photos) once pillow-heif has registered its opener: on first use, not at import."""
    from pillow_heif import register_heif_opener

    register_heif_opener()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray((arr / peak * 255).clip(0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        return Image.fromarray((arr.clip(0, 1) * 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise ImageError(f"array of shape {arr.shape} is not an HxW, HxWx3 or HxWx4 image")
    if arr.shape[0] * arr.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageError(f"image too large ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = (np.nan_to_num(arr).clip(0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        raise ImageError(f"unsupported array dtype {arr.dtype}")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(arr)))
