"""Reading the user's photo file: recognised by its first bytes, size-checked before it is
decoded (no decompression bombs), and converted to 8-bit RGB whatever its mode."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .creation_errors import CorruptImageError, ImageTooLargeError, NotAnImageError

MAX_PIXELS = 40_000_000

IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP")


def looks_like_image(head: bytes) -> bool:
    if head[:4] == b"RIFF":
        return head[8:12] == b"WEBP"
    return any(head.startswith(m) for m in IMAGE_MAGIC)


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """Decode a photo to RGB uint8: EXIF orientation, RGBA/LA/P, greyscale, CMYK, 16-bit."""
    path = Path(path)
    try:
        head = path.open("rb").read(16)
    except OSError as exc:
        raise NotAnImageError(f"cannot read {path}: {exc}") from exc
    image_like = looks_like_image(head)
    try:
        # PIL refuses headers claiming far more pixels than we allow (a decompression
        # bomb) before decoding anything; its global limit is left as it is.
        im: Image.Image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{path} claims an absurd size (a decompression bomb?): {exc}") from exc
    except Exception as exc:
        if image_like:
            raise CorruptImageError(f"{path} looks like an image but cannot be decoded: {exc}") from exc
        raise NotAnImageError(f"{path} is neither an image nor a video (a photo, or an MP4, MOV, WebM or MKV clip)") from exc
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(f"{path} is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP")
    try:
        with warnings.catch_warnings():
            # Between PIL's warning and error limits; our own limit above already applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
            im = ImageOps.exif_transpose(im)
        return to_rgb(im)
    except Exception as exc:
        raise CorruptImageError(f"{path} is corrupt or truncated: {exc}") from exc


def to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    a: np.ndarray  # float64 or float32 per branch
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if a.max() > 255 or mode.startswith("I;16") else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[..., None], 3, 2))
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = np.clip(a / max(a.max(), 1e-9) * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[..., None], 3, 2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA")).astype(np.float32)
        a = rgba[..., 3:4] / 255.0
        grey = np.float32(235.0)  # transparent areas become a flat light background
        return (rgba[..., :3] * a + grey * (1 - a) + 0.5).astype(np.uint8)
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im))
    if mode.startswith("RGB") and ";16" in mode:
        a = np.asarray(im).astype(np.float64) / 257.0
        return (a + 0.5).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))
