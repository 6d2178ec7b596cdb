"""A photo's person and what lies behind them: the soft person mask, the clean plate
(the background with the person filled in), and the background extended past the
photo's edges where the canvas is larger than the photo."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from . import landmarks as L

def polygon_mask(size: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).polygon([(float(x), float(y)) for x, y in pts], fill=255)
    return np.asarray(m)


def background_model(img: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Clean plate: the person region filled by normalised blurring of the background."""
    bgmask = (person < 128).astype(np.float32)
    out = img.astype(np.float32).copy()
    filled = np.zeros_like(out)
    weight = np.zeros(bgmask.shape, np.float32)
    h, w = bgmask.shape
    # progressively larger blurs fill larger holes; small radii keep background detail
    for radius in (4, 12, 36, 100, 300):
        small = max(1, int(radius // 4))
        sw, sh = max(1, w // small), max(1, h // small)
        m = np.asarray(Image.fromarray((bgmask * 255).astype(np.uint8)).resize((sw, sh), Image.Resampling.BILINEAR)).astype(np.float32) / 255
        c = np.asarray(Image.fromarray(img).resize((sw, sh), Image.Resampling.BILINEAR)).astype(np.float32)
        r = max(1.0, radius / small)
        num = np.stack([box_blur(c[..., k] * m, r) for k in range(3)], -1)
        den = box_blur(m, r)
        est = num / np.maximum(den, 1e-4)[..., None]
        est = np.asarray(Image.fromarray(np.clip(est, 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)).astype(np.float32)
        denu = np.asarray(Image.fromarray(np.clip(den * 255, 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)).astype(np.float32) / 255
        ok = (denu > 0.05) & (weight == 0) & (bgmask < 0.5)
        filled[ok] = est[ok]
        weight[ok] = 1
    rest = (weight == 0) & (bgmask < 0.5)
    if rest.any():
        filled[rest] = np.median(img[bgmask > 0.5], 0) if (bgmask > 0.5).any() else 128
    out[bgmask < 0.5] = filled[bgmask < 0.5]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def box_blur(a: np.ndarray, r: float) -> np.ndarray:
    """Gaussian-ish blur of a float image (three box passes, separable, numpy)."""
    k = max(1, int(round(r)))
    out = a.astype(np.float32)
    for axis in (0, 1):
        for _ in range(3):
            pad = [(0, 0), (0, 0)]
            pad[axis] = (k, k)
            p = np.pad(out, pad, mode="edge")
            c = np.cumsum(p, axis=axis, dtype=np.float64)
            c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
            n = out.shape[axis]
            hi = np.take(c, np.arange(2 * k + 1, 2 * k + 1 + n), axis=axis)
            lo = np.take(c, np.arange(0, n), axis=axis)
            out = ((hi - lo) / (2 * k + 1)).astype(np.float32)
    return out


def person_mask(img: np.ndarray, pts: np.ndarray, fw: float) -> np.ndarray:
    """Soft person mask (uint8, 255 = person): the selfie segmentation model, with a sharper
    pass around the head for the hair, always person on the face oval, and nothing outside
    a generous head-and-torso region (another person or a poster stays background)."""
    from .segmentation import segment_person

    h, w = img.shape[:2]
    cx, cy = float(pts[:468, 0].mean()), float(pts[:468, 1].mean())
    head_box = (cx - 1.3 * fw, cy - 1.6 * fw, cx + 1.3 * fw, cy + 1.2 * fw)
    mask = segment_person(img, head_box, edge_px=max(2.0, fw / 40))
    face = polygon_mask((w, h), pts[list(L.FACE_OVAL), :2]).astype(np.float32) / 255.0
    mask = np.maximum(mask, box_blur(face, 0.02 * fw) * (face > 0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    head = ((xx - cx) / (1.3 * fw)) ** 2 + ((yy - (cy - 0.25 * fw)) / (1.6 * fw)) ** 2 <= 1
    torso = (yy > cy) & (np.abs(xx - cx) < 1.3 * fw + np.clip(yy - cy, 0, None) * 3.0)
    region = np.clip(box_blur((head | torso)[::4, ::4].astype(np.float32), 0.025 * fw) * 2.0, 0.0, 1.0)
    region = np.asarray(Image.fromarray(region, mode="F").resize((w, h), Image.Resampling.BILINEAR))  # smooth: a quarter size will do
    # the guided filter's faint tails to exactly 0 and 1: the background stays background
    mask = np.clip((mask * region - 0.03) / 0.94, 0.0, 1.0)
    return np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8)


def extend_outside(base: np.ndarray, person: np.ndarray, outside: np.ndarray, radius: float) -> np.ndarray:
    """Where a picture was sampled past its edge (``outside``), the sampler repeated the
    edge pixels in streaks: there, blur them into a soft extension, the person and the
    background each from their own pixels (normalised blurs), so a flat background stays
    exactly flat beside a person cut by the photo's edge."""
    # the background from its clean pixels only: those beside the person blend into it
    clear = 1.0 - person
    clear *= box_blur(clear, 3) > 0.98
    soft = []
    for w, r in ((person, 0.5 * radius), (clear, 2.0 * radius)):
        norm = box_blur(w, r)
        ok = norm > 1e-3
        soft.append(np.stack([np.where(ok, box_blur(base[..., k] * w, r) / np.maximum(norm, 1e-3), base[..., k])
                              for k in range(3)], -1))
    # the person's streaks softened, the background smoothed, and the two blended over a
    # short reach of the person's edge: no blocks, and no person colour far out
    near = np.clip(box_blur(person, 0.25 * radius), 0.0, 1.0)[..., None]
    soft = soft[0] * near + soft[1] * (1 - near)
    # feathered outwards only: the picture itself is kept as it is
    ramp = np.clip(2.0 * box_blur(outside.astype(np.float32), 4) - 1.0, 0.0, 1.0)[..., None]
    return base * (1 - ramp) + soft * ramp
