"""Images in and out: reading, colour modes, EXIF orientation, tiling and padding.

Documented behaviour per input mode (README, "Input images"):
  RGB, RGBX, YCbCr, CMYK, LAB, HSV, P, 1  → converted to RGB and coded as RGB
  L (8-bit grey)                          → coded as grey-replicated RGB, decoded back to L
  I;16 / I / F (16-bit, 32-bit grey)      → refused: sccodec codes 8-bit data only
  RGBA, LA, PA, P with transparency       → opaque alpha is dropped (nothing is lost);
                                             real transparency is refused with a clear error
  RGB, L with a transparent colour (tRNS)  → the same: refused if any pixel has that colour
EXIF orientation is applied before coding, so the decoded image is upright. An RGB (or, for
grey images, grey) ICC profile is carried unchanged in an ``iCCP`` chunk and attached to the
decoded image (PNG/JPEG output keep it); the pixels themselves are coded as they are, not
converted. CMYK pixels with a CMYK profile are converted to sRGB through it; any other
profile that does not describe the coded pixels (CMYK, Lab) is dropped.

A profile is carried only if it is valid (``validate_icc``): at most ``MAX_ICC_BYTES`` (1 MiB),
a 128-byte header whose size field is the profile's length and whose signature at offset 36
is ``acsp``, and littleCMS can open it. A broken profile does not fail the photo: it is
dropped with an ``ICCProfileWarning`` (the CLI prints it as one ``sccodec: warning:`` line),
and the pixels are coded as if the image had none. Decoders check a file's profile the same
way before attaching it to the decoded image.
"""
from __future__ import annotations

import contextlib
import io
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

from sccodec.errors import ImageInputError, LimitError

# Cap on a carried ICC profile. Real RGB and grey profiles are about 0.5-60 kB (sRGB 3 kB,
# Display P3 0.5 kB); some camera and scanner profiles with large lookup tables are a few
# hundred kB. 1 MiB keeps all of those and bounds what a file can make a decoder copy.
MAX_ICC_BYTES = 1 << 20
if TYPE_CHECKING:
    import torch

ImageLike = Union[Image.Image, np.ndarray, "torch.Tensor", str, Path, bytes, BinaryIO]
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


@dataclass(frozen=True)
class SourceImage:
    pixels: np.ndarray  # (H, W, 3) uint8
    mode: str  # "RGB" or "L": how to give the image back
    icc: bytes | None = None  # ICC profile, carried through unchanged

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]


def _open(source: ImageLike, max_pixels: int) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    elif not isinstance(source, (str, Path)) and not hasattr(source, "read"):
        raise ImageInputError(f"cannot read an image from {type(source).__name__} (give a PIL image, a uint8 "
                              "(H,W,3) array, a float (3,H,W) tensor, a path, bytes or a binary file object)")
    try:
        return _load(source, max_pixels)
    except FileNotFoundError:
        raise ImageInputError(f"no such file: {source}") from None
    except Image.UnidentifiedImageError:
        raise ImageInputError("not an image file (or in a format Pillow cannot read)") from None
    except (UnicodeDecodeError, TypeError):
        raise ImageInputError("cannot read the image: open the file in binary mode ('rb')") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageInputError(f"cannot read image: {e}") from None


def _load(source: str | Path | BinaryIO, max_pixels: int) -> Image.Image:
    """Read the header, check the pixel limit, then decode; the file is closed on any failure."""
    with _without_pillow_bomb_check():
        img = Image.open(source)  # lazy: reads the header only
    try:
        if img.width * img.height > max_pixels:
            raise LimitError(f"image is {img.width}x{img.height}, above the pixel limit of {max_pixels}")
        img.load()
    except BaseException:
        img.close()
        raise
    return img


_BOMB_GUARD_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_pillow_bomb_check() -> Iterator[None]:
    """Pillow's bomb guard is a module global (and warns below it); ``_open`` checks our own
    limit from the header instead, before any pixel is decoded. The lock keeps two threads from
    restoring each other's ``None`` (which would switch the guard off for good); only the header
    read runs under it."""
    with _BOMB_GUARD_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _is_tensor(a: object) -> bool:
    """A torch tensor, told without importing torch (the coding path never needs it)."""
    return type(a).__module__.partition(".")[0] == "torch" and hasattr(a, "detach")


def _from_tensor(t: "torch.Tensor") -> np.ndarray:
    """A float tensor (3,H,W) or (1,3,H,W) in [0, 1] -> uint8 (H,W,3)."""
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise ImageInputError(f"tensor images must be (3,H,W) or (1,3,H,W) floats in [0,1], got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ImageInputError(f"tensor images must be floating point in [0,1], got {t.dtype}; "
                              "pass 8-bit pixels as a uint8 (H,W,3) NumPy array")
    a = t.detach().cpu().float().numpy()
    if not np.isfinite(a).all():
        raise ImageInputError("tensor image has NaN or infinite values")
    return from_planes(a[None])


def _from_array(a: np.ndarray) -> SourceImage:
    if _is_tensor(a):
        a = _from_tensor(a)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ImageInputError(f"arrays must be uint8 (H,W,3), got {a.dtype} {a.shape}")
    if a.size == 0:
        raise ImageInputError(f"image has no pixels ({a.shape[0]}x{a.shape[1]})")
    return SourceImage(np.ascontiguousarray(a), "RGB")


def read_image(source: ImageLike, max_pixels: int) -> SourceImage:
    """Any supported input -> upright 8-bit RGB pixels and the mode to give back."""
    if isinstance(source, np.ndarray) or _is_tensor(source):
        img_array = _from_array(source)
        if img_array.width * img_array.height > max_pixels:
            raise LimitError(f"image is above the pixel limit of {max_pixels}")
        return img_array
    img = _open(source, max_pixels)
    if img.width == 0 or img.height == 0:
        raise ImageInputError(f"image has no pixels ({img.width}x{img.height})")
    if img.width * img.height > max_pixels:
        raise LimitError(f"image is {img.width}x{img.height}, above the pixel limit of {max_pixels}")
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not make the pixels unreadable
        pass
    if img.mode in _HIGH_DEPTH:
        raise ImageInputError(f"{img.mode} images (more than 8 bits per sample) are not supported; "
                              "convert to 8-bit first")
    if img.mode in ("RGBa", "La"):  # premultiplied alpha: Pillow has no "A" band, and no La -> RGB
        img = img.convert(img.mode[:-1] + "A")
    if "transparency" in img.info and img.mode in ("P", "RGB", "L"):  # one colour marked transparent (tRNS)
        img = img.convert("LA" if img.mode == "L" else "RGBA")
    if img.mode in _ALPHA_MODES:
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            raise ImageInputError("image has transparent pixels; sccodec codes opaque "
                                  "images only — flatten it onto a background first")
    mode = "L" if img.mode in ("L", "LA", "La") else "RGB"
    icc = img.info.get("icc_profile") or None
    if img.mode == "CMYK" and _icc_colour_space(icc) == b"CMYK":
        # only used for the conversion (littleCMS vets it there), never carried
        return SourceImage(np.asarray(_cmyk_to_srgb(img, icc)), mode)
    # A broken profile is dropped with a warning; a valid one that describes the pixels in
    # another colour space (CMYK, Lab) would mislabel the RGB that sccodec codes, so only a
    # matching profile is carried.
    icc = validate_icc(icc)
    keep = _icc_colour_space(icc) == (b"GRAY" if mode == "L" else b"RGB ")
    return SourceImage(np.asarray(img.convert("RGB")), mode, icc if keep else None)


class ICCProfileWarning(UserWarning):
    """An ICC profile was dropped because it is not a valid profile (the pixels are unaffected)."""


def icc_problem(data: bytes) -> str | None:
    """Why ``data`` is not an ICC profile sccodec carries, in plain words; None if it is fine."""
    if len(data) > MAX_ICC_BYTES:
        return f"it is {len(data)} bytes, above the limit of {MAX_ICC_BYTES}"
    if len(data) < 128:
        return f"it is {len(data)} bytes, shorter than the 128-byte ICC header"
    (declared,) = struct.unpack_from(">I", data, 0)
    if declared != len(data):
        return f"its header declares {declared} bytes but it has {len(data)}"
    if data[36:40] != b"acsp":
        return "the ICC signature 'acsp' is missing from its header"
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without littleCMS: the header checks only
        return None
    try:
        ImageCms.ImageCmsProfile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 (OSError, PyCMSError, ...: any refusal means "not a profile")
        return "littleCMS cannot read it"
    return None


def validate_icc(data: bytes | None) -> bytes | None:
    """``data`` if it is a valid ICC profile (see the module docstring), else None with an
    ``ICCProfileWarning`` saying why; None, silently, for no profile (None or empty)."""
    if not data:
        return None
    data = bytes(data)
    problem = icc_problem(data)
    if problem is None:
        return data
    warnings.warn(f"dropped the ICC profile: {problem}", ICCProfileWarning, stacklevel=2)
    return None


def _icc_colour_space(icc: bytes | None) -> bytes | None:
    """The profile's data colour space signature (ICC header bytes 16-19: b"RGB ", b"GRAY", ...)."""
    return icc[16:20] if icc and len(icc) >= 128 else None


def _cmyk_to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    """Colour-managed CMYK -> sRGB with the image's own profile (Pillow's plain conversion
    ignores it); the plain conversion if littleCMS cannot use the profile."""
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without littleCMS
        return img.convert("RGB")
    try:
        return ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                         ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (OSError, ValueError, ImageCms.PyCMSError):
        return img.convert("RGB")


def to_image(pixels: np.ndarray, mode: str) -> Image.Image:
    img = Image.fromarray(pixels, "RGB")
    return img.convert("L") if mode == "L" else img


def to_planes(pixels: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 -> (1,3,H,W) float32 in [0, 1]: what the networks take."""
    return np.ascontiguousarray((np.asarray(pixels, np.float32) / 255).transpose(2, 0, 1)[None])


def from_planes(x: np.ndarray) -> np.ndarray:
    """(1,3,H,W) float in [0, 1] -> (H,W,3) uint8, rounded to the nearest level. In place on one
    scaled copy, converted while it is written out pixel-interleaved: a quarter of the time of
    a chain of temporaries."""
    y = x[0] * 255
    np.round(y, out=y)
    np.clip(y, 0, 255, out=y)
    out = np.empty((*y.shape[1:], 3), dtype=np.uint8)
    out[...] = y.transpose(1, 2, 0)
    return out


def pad_to_multiple(pixels: np.ndarray, multiple: int) -> np.ndarray:
    """(H,W,C) pixels with their last row and column repeated so H and W are multiples of ``multiple``."""
    ph, pw = -pixels.shape[0] % multiple, -pixels.shape[1] % multiple
    return np.pad(pixels, ((0, ph), (0, pw), (0, 0)), mode="edge") if (ph or pw) else pixels


#: zlib's fast level: on decoded photos its files are no larger than the default level's (kodim01:
#: 669 kB at level 1 against 676 kB at level 6) and it writes them in a fifth of the time (28 vs 127 ms).
PNG_OPTIONS = {"compress_level": 1}


def image_file_bytes(image: Image.Image, image_format: str) -> bytes:
    """A decoded image as the bytes of an image file in Pillow's ``image_format`` (PNG at zlib's
    fast level). Its ICC profile is checked before it is carried over (a warning if dropped):
    Pillow's JPEG and WebP writers take a profile only as an argument, not from ``info``."""
    profile = validate_icc(image.info.pop("icc_profile", None))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"icc_profile": profile} if profile else {}),
               **(PNG_OPTIONS if image_format == "PNG" else {}))
    return buffer.getvalue()

