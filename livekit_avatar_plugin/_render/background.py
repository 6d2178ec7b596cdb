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
import time
from pathlib import Path
from typing import Any, Union

import numpy as np

from .._errors import AvatarError

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
    scaled = np.asarray(Image.fromarray(img).resize((rw, rh), Image.Resampling.LANCZOS))
    x0, y0 = (rw - width) // 2, (rh - height) // 2
    return np.ascontiguousarray(scaled[y0 : y0 + height, x0 : x0 + width])


def _blur(a: np.ndarray, r: float) -> np.ndarray:
    from .._face.photo_background import box_blur

    return box_blur(a, r)


def decontaminate(rgb: np.ndarray, alpha: np.ndarray, reach: float = 6.0) -> np.ndarray:
    """The person's own colour (float32 RGB) where the mask is soft: an edge pixel mixes the
    person with the old background, and blending it as it is over a new one would leave a
    rim of the old background (a halo). Mostly-person pixels solve ``I = a F + (1 - a) B``
    with ``B`` the nearby clear background; faint ones take the colour of the solid person
    pixels nearest them (normalised blurs of growing reach)."""
    img = rgb.astype(np.float32)
    a = alpha.astype(np.float32) / 255.0
    solid = (a > 0.96).astype(np.float32)
    clear = (a < 0.04).astype(np.float32)
    edge = (a > 0.0) & (a <= 0.96)
    if not edge.any():
        return img
    pulled = img.copy()
    behind = img.copy()
    for target, weight in ((pulled, solid), (behind, clear)):
        need = edge.copy()
        for r in (reach / 4, reach / 2, reach, 2 * reach, 4 * reach):
            den = _blur(weight, max(1.0, r))
            ok = need & (den > 0.05)
            if ok.any():
                for c in range(3):
                    target[..., c][ok] = _blur(img[..., c] * weight, max(1.0, r))[ok] / den[ok]
                need &= ~ok
            if not need.any():
                break
    # solving for F is stable only where the person dominates the pixel
    a3 = np.maximum(a, 1e-3)[..., None]
    solved = np.clip((img - (1 - a)[..., None] * behind) / a3, 0.0, 255.0)
    trust = np.clip((a - 0.5) / 0.4, 0.0, 1.0)[..., None]
    fg = solved * trust + pulled * (1 - trust)
    return np.where(edge[..., None], fg, img)


class BackgroundRenderer:
    """A renderer wrapped to draw the person over another background.

    For the photo renderer, the texture it warps is replaced (for this session only) by
    the decontaminated person premultiplied by the mask, so the warped output is already
    ``a * F`` with ``a`` in its alpha; each frame then adds ``(1 - a) * background`` over
    the head's region only, the rest of the frame being composited once at setup.
    Footage renderers give their frames' masks in alpha and a plate of the old
    background (``background_plate``), so ``out = I + (1 - a) (new - old)`` over the
    canvas (``roi``), the extension around it composited once.
    """

    _size: tuple[int, int]
    _static: np.ndarray
    _bg4: np.ndarray
    _tex: np.ndarray | None  # photo renderers: the premultiplied texture
    _old4: np.ndarray | None  # footage renderers: the old background plate

    def __init__(self, inner: Any, background: BackgroundSpec, *, shared: BackgroundRenderer | None = None):
        self.inner = inner
        self.background = parse_background(background)
        if self.background == "keep":
            raise ValueError("BackgroundRenderer needs a colour or an image, not 'keep'")
        h, w = int(inner.height), int(inner.width)
        self._photo = hasattr(inner, "pack_texture")
        if not self._photo:
            inner.enable_person_alpha()
        if shared is not None and shared.background == self.background and shared._size == (w, h):
            self._static, self._bg4, self._tex = shared._static, shared._bg4, shared._tex
            self._old4 = shared._old4
        else:
            self._prepare(w, h)
        self._size = (w, h)
        if self._photo:
            inner._tex = self._tex
        self._frames = [self._static.copy() for _ in range(4)]
        self._fi = 0
        self.compose_s = 0.0

    def _prepare(self, w: int, h: int) -> None:
        bg = background_frame(self.background, w, h)
        assert bg is not None
        self._bg4 = np.dstack([bg, np.full((h, w), 255, np.uint8)])
        self._old4 = None
        self._tex = None
        static = np.full((h, w, 4), 255, np.uint8)
        if self._photo:
            r = self.inner
            a = r.person
            fg = decontaminate(r.base, a, reach=max(2.0, 0.03 * float(r.fw)))
            af = a.astype(np.float32)[..., None] / 255.0
            premult = np.clip(fg * af + 0.5, 0, 255).astype(np.uint8)
            self._tex = r.pack_texture(premult, a)
            static[..., :3] = np.clip(fg * af + bg * (1 - af) + 0.5, 0, 255).astype(np.uint8)
        else:
            plate = self.inner.background_plate()
            self._old4 = np.dstack([plate, np.zeros((h, w), np.uint8)])  # alpha 0: out alpha 255
            self.compose_difference(self.inner.still(), self._old4, self._bg4, static)
        self._static = static

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def render(self, mouth, state, t: float, energy: float = 0.0) -> np.ndarray:
        return np.ascontiguousarray(self.render_rgba(mouth, state, t, energy)[..., :3])

    def render_rgba(self, mouth, state, t: float, energy: float = 0.0) -> np.ndarray:
        """The next frame, opaque RGBA, from a ring of four (overwritten four calls later)."""
        frame = self.inner.render_rgba(mouth, state, t, energy)
        t0 = time.perf_counter()
        out = self._frames[self._fi]
        self._fi = (self._fi + 1) % len(self._frames)
        x0, y0, x1, y1 = self.inner.roi  # the rest of the frame never changes
        if self._photo:
            self.compose_premultiplied(frame[y0:y1, x0:x1], self._bg4[y0:y1, x0:x1], out[y0:y1, x0:x1])
        else:
            assert self._old4 is not None  # _prepare set the plate for a footage renderer
            self.compose_difference(frame[y0:y1, x0:x1], self._old4[y0:y1, x0:x1], self._bg4[y0:y1, x0:x1],
                                    out[y0:y1, x0:x1])
        self.compose_s = time.perf_counter() - t0  # the background's own cost (bench)
        return out

    @staticmethod
    def compose_premultiplied(src: np.ndarray, bg4: np.ndarray, dst: np.ndarray) -> None:
        """``dst = src + (1 - src.a) * bg4`` for premultiplied RGBA uint8 ``src`` and an
        opaque RGBA ``bg4``: the alpha comes out 255."""
        import cv2  # here, not at the top: parsing options needs no OpenCV

        inv = cv2.bitwise_not(src[..., 3])
        cv2.add(src, cv2.multiply(bg4, cv2.merge((inv, inv, inv, inv)), scale=1 / 255), dst=dst)

    @staticmethod
    def compose_difference(src: np.ndarray, old4: np.ndarray, new4: np.ndarray, dst: np.ndarray) -> None:
        """``dst = src - (1 - src.a) * old + (1 - src.a) * new``: the old background that
        the frame's soft edges mix in is swapped for the new one, and ``new`` itself where
        the frame shows no person (RGBA uint8)."""
        import cv2

        a = src[..., 3]
        inv = cv2.bitwise_not(a)
        inv4 = cv2.merge((inv, inv, inv, inv))
        cv2.subtract(src, cv2.multiply(old4, inv4, scale=1 / 255), dst=dst)
        cv2.add(dst, cv2.multiply(new4, inv4, scale=1 / 255), dst=dst)
        # clear of the person the new background exactly: the frame's noise and light
        # changes against the plate stay behind
        cv2.copyTo(new4, cv2.compare(a, 0, cv2.CMP_EQ), dst)  # type: ignore[call-overload]  # cv2 stubs lack compare's scalar src2
