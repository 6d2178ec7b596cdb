"""Pass two of building a footage avatar, the mouth side: the mouth region and its
blend mask in canonical space, the skin ring that matches a crop's colour to the plate,
and the warps that put each frame's mouth into the atlas."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import landmarks as L
from .footage_analysis import Pose


def mouth_mask(pose: Pose) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The blend region in the canonical space (the face below the nose, inside the cheeks,
    and the chin with room below it for a jaw that opens further than the frame's own), its
    box, and the face-oval landmarks that bound it, from cheek round the chin to cheek: at
    run time they clip the region to the faces actually there."""
    good = np.flatnonzero(np.isfinite(pose.canonical[:, 0, 0]))
    med = np.median(pose.canonical[good], 0)
    fw = pose.face_width
    top = med[2, 1] + 0.02 * fw  # just under the nose
    centre = (med[61] + med[291]) / 2
    oval = med[list(L.FACE_OVAL)]
    below = oval[:, 1] >= top
    lower = oval[below]
    # pulled in towards the mouth, so the seam stays on the cheeks, off the face's edge
    d = lower - centre
    lower = centre + d * (1 - 0.07 * fw / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6))
    # round the chin from the left cheek to the right: angles measured from straight down,
    # so the turn-over (straight up, the nose) falls where there is no point
    order = np.argsort(np.arctan2(lower[:, 0] - centre[0], lower[:, 1] - centre[1]))
    poly = [(float(lower[order[0], 0]), top)] + [tuple(map(float, p)) for p in lower[order]]
    poly.append((float(lower[order[-1], 0]), top))
    chin = med[152]
    jaw = (chin[0] - 0.26 * fw, chin[1] - 0.14 * fw, chin[0] + 0.26 * fw, chin[1] + 0.2 * fw)
    feather = 0.04 * fw
    pts = np.array(poly + [jaw[:2], jaw[2:]])
    pad = 2 * feather + 2
    x0, y0 = int(math.floor(pts[:, 0].min() - pad)), int(math.floor(pts[:, 1].min() - pad))
    x1, y1 = int(math.ceil(pts[:, 0].max() + pad)), int(math.ceil(pts[:, 1].max() + pad))
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(img)
    draw.polygon([(x - x0, y - y0) for x, y in poly], fill=255)
    draw.ellipse((jaw[0] - x0, jaw[1] - y0, jaw[2] - x0, jaw[3] - y0), fill=255)
    # shrink by the feather so the blurred edge stays inside the drawn region
    img = img.filter(ImageFilter.MinFilter(int(0.6 * feather) | 1)).filter(ImageFilter.GaussianBlur(feather / 2))
    mask = np.asarray(img)
    ys, xs = np.nonzero(mask)
    tight = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    mask = np.ascontiguousarray(mask[tight[1]:tight[3], tight[0]:tight[2]])
    oval_index = np.array(L.FACE_OVAL)[below][order]
    return (x0 + tight[0], y0 + tight[1], tight[2] - tight[0], tight[3] - tight[1]), mask, oval_index


def ring_points(mask: np.ndarray, box: tuple[int, int, int, int], pose: Pose) -> np.ndarray:
    """Canonical points under the mask's soft edge where the skin does not depend on the
    mouth: beside and above the lips (below them, an open jaw brings neck shadow)."""
    good = np.flatnonzero(np.isfinite(pose.canonical[:, 0, 0]))
    mouth_y = float(np.median(pose.canonical[good][:, [61, 291], 1]))
    ys, xs = np.nonzero((mask > 25) & (mask < 200))
    keep = ys + box[1] + 0.5 < mouth_y
    xs, ys = xs[keep], ys[keep]
    step = max(1, len(xs) // 600)
    return np.stack([xs[::step] + box[0] + 0.5, ys[::step] + box[1] + 0.5], 1)


MASK_SCALE = 2  # person masks are stored at half the canvas size: soft edges upsample well


def mask_png(person: np.ndarray) -> bytes:
    """A loop frame's person mask (0..1) as a greyscale PNG at 1 / MASK_SCALE size."""
    h, w = person.shape
    small = Image.fromarray(np.clip(person * 255 + 0.5, 0, 255).astype(np.uint8)).resize(
        (max(1, w // MASK_SCALE), max(1, h // MASK_SCALE)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class PlateSampler:
    """The background behind the person over a loop's frames: each pixel's median over the
    sampled frames where it was clear of the person; where it never was, filled in from
    around (the background model of photo avatars). A new background replaces exactly
    this plate in the soft edges, so no rim of the old background shows."""

    EVERY, MAX = 6, 48

    def __init__(self, canvas: tuple[int, int]) -> None:
        self.canvas = canvas
        self.frames: list[np.ndarray] = []
        self.clear: list[np.ndarray] = []
        self._seen = 0

    def add(self, frame: np.ndarray, person: np.ndarray) -> None:
        self._seen += 1
        if (self._seen - 1) % self.EVERY or len(self.frames) >= self.MAX:
            return
        self.frames.append(frame)
        self.clear.append(person < 0.02)

    def png(self) -> bytes:
        from .photo_background import background_model

        w, h = self.canvas
        if not self.frames:
            plate = np.zeros((h, w, 3), np.uint8)
        else:
            stack = np.stack(self.frames).astype(np.float32)
            clear = np.stack(self.clear)
            stack[~clear] = np.nan
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: filled below
                med = np.nanmedian(stack, axis=0)
            ever = clear.any(0)
            med[~ever] = 0
            plate = background_model(np.clip(med + 0.5, 0, 255).astype(np.uint8), np.where(ever, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        Image.fromarray(plate).save(buf, format="PNG")
        return buf.getvalue()


def sample_mean(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Median colour of ``img`` at continuous points (robust to a stray highlight)."""
    h, w = img.shape[:2]
    x = np.clip(np.round(pts[:, 0] - 0.5).astype(int), 0, w - 1)
    y = np.clip(np.round(pts[:, 1] - 0.5).astype(int), 0, h - 1)
    return np.median(img[y, x].astype(np.float32), 0)


def warp_to(img: Image.Image, m_out_to_in: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic affine warp; ``m_out_to_in`` maps output to input in continuous pixel
    coordinates (pixel i spans [i, i + 1)), which is PIL's own convention."""
    m = m_out_to_in
    return np.asarray(img.transform(size, Image.Transform.AFFINE, tuple(m.reshape(-1)), resample=Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------- the builder
