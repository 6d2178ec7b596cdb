"""Backgrounds behind the avatar: ``"keep"`` (the photo's or footage's own), a colour, or
an image file.

A renderer's RGBA output carries the person mask in its alpha channel (the photo
renderer warps it with the face, the footage renderer stores one per loop frame), so
replacing the background is one blend per pixel: ``out = fg * a + bg * (1 - a)``. Edge
pixels of the photo mix the person with the old background; their colour is replaced
once, at setup, by the person's colour pulled in from inside the mask (decontamination),
so a soft hair edge shows no halo of the old background.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import AvatarError

BackgroundSpec = Union[str, tuple[int, int, int]]
"""``"keep"``, a colour (``"#00ff00"``, ``"#0f0"`` or an ``(r, g, b)`` tuple of 0-255
integers) or the path of an image file (PNG, JPEG, WebP...)."""

_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class BackgroundError(AvatarError, ValueError):
    """A ``background`` that is neither ``"keep"``, a colour nor a readable image file."""


def parse_background(value: Any) -> BackgroundSpec:
    """The normalised background: ``"keep"``, an ``(r, g, b)`` tuple or an absolute image
    path (checked to exist and decode). Raises :class:`BackgroundError` naming the problem."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "keep"):
        return "keep"
    if isinstance(value, (tuple, list)):
        if len(value) != 3 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
        ):
            raise BackgroundError(f"background colour {value!r} must be three integers (r, g, b)")
        if not all(0 <= int(v) <= 255 for v in value):
            raise BackgroundError(f"background colour {tuple(value)!r} has a value outside 0-255")
        return (int(value[0]), int(value[1]), int(value[2]))
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise BackgroundError(
            f"background must be 'keep', a colour like '#00ff00' or (0, 255, 0), or an image "
            f"file path; got {value!r}"
        )
    text = value.strip()
    if text.startswith("#"):
        if not _HEX.match(text):
            raise BackgroundError(f"background colour {text!r} is not '#rgb' or '#rrggbb' hex")
        digits = text[1:]
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    path = Path(text).expanduser()
    if not path.is_file():
        raise BackgroundError(
            f"background image {str(path)!r} does not exist (give 'keep', a colour like "
            f"'#00ff00', or an image file)"
        )
    load_background_image(path)  # decodes it once now, so a broken file fails here
    return str(path.resolve())


def load_background_image(path: str | Path) -> np.ndarray:
    """An image file as ``(h, w, 3)`` uint8 RGB; :class:`BackgroundError` if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise BackgroundError(f"background image {str(path)!r} cannot be read: {exc}") from exc


def background_frame(spec: BackgroundSpec, width: int, height: int) -> np.ndarray | None:
    """The background at the output size as ``(h, w, 3)`` uint8 (an image is scaled to
    cover the frame and centre-cropped), or None for ``"keep"``."""
    spec = parse_background(spec)
    if spec == "keep":
        return None
    if isinstance(spec, tuple):
        return np.broadcast_to(np.array(spec, np.uint8), (height, width, 3)).copy()
    from PIL import Image

    img = load_background_image(spec)
    ih, iw = img.shape[:2]
    s = max(width / iw, height / ih)
    rw, rh = max(width, round(iw * s)), max(height, round(ih * s))
    scaled = np.asarray(Image.fromarray(img).resize((rw, rh), Image.LANCZOS))
    x0, y0 = (rw - width) // 2, (rh - height) // 2
    return np.ascontiguousarray(scaled[y0 : y0 + height, x0 : x0 + width])
