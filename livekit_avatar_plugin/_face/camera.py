"""Camera shake in a talking clip: how the background moves from frame to frame.

A hand-held phone shakes; the head moves on its own as well, so the camera's motion is
read off the background beside and above the head: small patches, each matched to the
previous frame by phase correlation, and their median shift taken when they agree. Their
sum is the camera's path; what a one-second smoothing of that path leaves out is shake,
which the footage builder takes back out when it crops the loops. A clip from a tripod
has none, and is left as it is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

WIDTH = 192  # the frames are analysed at this width
PATCH = 24  # small enough for the strips beside a head that fills a third of the frame
MAX_SHIFT = 6.0  # analysis pixels between two frames; more is a cut or a blur, not shake
MIN_SHAKE_PX = 0.4  # RMS shake (frame pixels) under which a clip counts as steady


def _phase_shift(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> tuple[float, float, float]:
    """Shift of ``b`` against ``a`` (x, y, peak strength), to a tenth of a pixel."""
    fa = np.fft.rfft2((a - a.mean()) * window)
    fb = np.fft.rfft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    cross /= np.maximum(np.abs(cross), 1e-9)
    corr = np.fft.irfft2(cross, s=a.shape)
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    n = a.shape[0]

    def refine(c_m: float, c_0: float, c_p: float) -> float:
        den = c_m - 2 * c_0 + c_p
        return 0.5 * (c_m - c_p) / den if den < 0 else 0.0

    dy = refine(corr[iy - 1, ix], corr[iy, ix], corr[(iy + 1) % n, ix])
    dx = refine(corr[iy, ix - 1], corr[iy, ix], corr[iy, (ix + 1) % n])
    x = ix + dx if ix < n // 2 else ix + dx - n
    y = iy + dy if iy < n // 2 else iy + dy - n
    return float(x), float(y), float(corr[iy, ix])


class CameraMotion:
    """Feed frames in order; ``shifts`` holds each frame's background shift against the one
    before (frame pixels), NaN where it could not be read."""

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._window = np.outer(np.hanning(PATCH), np.hanning(PATCH)).astype(np.float32)
        self.shifts: list[tuple[float, float]] = []

    def update(self, rgb: np.ndarray, head: tuple[float, float, float, float] | None) -> None:
        """``head``: the head's box (x0, y0, x1, y1) in frame pixels, to stay clear of."""
        h, w = rgb.shape[:2]
        k = WIDTH / w
        small = np.asarray(Image.fromarray(rgb).convert("L").resize((WIDTH, max(PATCH, round(h * k))), Image.Resampling.BILINEAR),
                           np.float32)
        prev, self._prev = self._prev, small
        if prev is None or prev.shape != small.shape or head is None:
            self.shifts.append((np.nan, np.nan))
            return
        hx0, hy0, hx1 = head[0] * k, head[1] * k, head[2] * k
        sh, sw = small.shape
        found = []
        # patches above the head and beside it, clear of the head's box (the body is below)
        for x in range(0, sw - PATCH + 1, PATCH // 2):
            for y in range(0, sh - PATCH + 1, PATCH // 2):
                if y + PATCH > hy0 + 0.6 * (sh - hy0):
                    continue  # low in the frame: shoulders and chest
                if x + PATCH > hx0 and x < hx1 and y + PATCH > hy0:
                    continue
                a, b = prev[y: y + PATCH, x: x + PATCH], small[y: y + PATCH, x: x + PATCH]
                if a.std() < 4.0:
                    continue  # a flat wall: nothing to match
                dx, dy, peak = _phase_shift(a, b, self._window)
                if peak > 0.3 and abs(dx) <= MAX_SHIFT and abs(dy) <= MAX_SHIFT:
                    found.append((dx, dy))
        if len(found) < 2:
            self.shifts.append((np.nan, np.nan))
            return
        f = np.array(found)
        med = np.median(f, 0)
        agree = np.abs(f - med).max(1) < 1.0
        if agree.sum() < max(2, len(f) // 2):
            self.shifts.append((np.nan, np.nan))  # the patches disagree: a moving background
            return
        dx, dy = f[agree].mean(0) / k
        self.shifts.append((float(dx), float(dy)))

    def shake(self, fps: float) -> np.ndarray | None:
        """Per frame (x, y) shake in frame pixels, or None for a steady clip."""
        s = np.array(self.shifts, np.float64)
        if len(s) < 3:
            return None
        s = np.nan_to_num(s)
        path = np.cumsum(s, 0)
        sigma = fps  # one second
        r = int(3 * sigma)
        kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(path, ((r, r), (0, 0)), mode="edge")
        smooth = np.stack([np.convolve(padded[:, j], kernel, "valid") for j in range(2)], 1)
        shake = path - smooth
        if float(np.sqrt((shake**2).sum(1).mean())) < MIN_SHAKE_PX:
            return None
        return shake
