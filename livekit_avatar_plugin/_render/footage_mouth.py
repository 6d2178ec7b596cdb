"""The footage renderer's mouth: which atlas crop fits the lip-sync channels best (looking
a little ahead, holding still while the channels do), and how far a crop is reshaped
towards the channels where no crop fits exactly."""

from __future__ import annotations

import numpy as np

from livekit_avatar_plugin._face.footage import CHANNELS, MouthAtlas

class MouthChooser:
    """Picks the atlas crop for each frame: the closest measured shape to the channels
    (the opening within a band, the lip shape deciding inside it; closed lips for p/b/m),
    from a head pose like the frame's, preferring to hold or play on through consecutive
    source frames (real motion) over jumping, and, where the next frames' channels are
    known, a crop whose own next frames fit them."""

    WEIGHTS = np.array([2.0, 0.5, 3.0, 0.9, 0.2], np.float32)
    POSE_WEIGHT = 40.0
    POSE_TOLERANCE = 0.02  # face widths of yaw or pitch (nose against the eyes)
    HOLD_COST = 0.0
    FOLLOW_COST = 0.002
    JUMP_COST = 0.03
    AHEAD_WEIGHT = 0.5  # each frame further ahead counts half as much
    MAX_AHEAD = 2
    BLEND_ABOVE = 0.08  # no crop this close: blend the two nearest
    CLOSED_GAP = 0.02
    SHAPE_GAIN = 1.25  # rounding and spreading asked a little beyond the channels: seen, not guessed
    JAW_BAND = 0.08  # openings this close to the channel's are all fine: the lip shape decides
    JAW_BAND_WEIGHT = 20.0
    CLOSE_AT = 0.4  # lips_closed from here on takes closed crops only
    STEADY = 0.01  # channels that moved less than this since the last choice keep the mouth
    STEADY_POSE = 0.15  # ... unless the head turned this far from it

    def __init__(self, atlas: MouthAtlas) -> None:
        self.atlas = atlas
        self._chosen_for = np.full(len(CHANNELS), -1.0, np.float32)
        self._dissolve: int | None = None
        self._closed = atlas.shapes[:, 0] <= self.CLOSED_GAP
        self._prev: int | None = None
        # keys of the crop j source frames on from each crop (its last one where the run ends)
        n = len(atlas)
        nxt = np.arange(n)
        self._ahead_keys = []
        for _ in range(self.MAX_AHEAD):
            step = np.minimum(nxt + 1, n - 1)
            nxt = np.where(atlas.follows[step] & (step > nxt), step, nxt)
            self._ahead_keys.append(atlas.keys[nxt])

    def reset(self) -> None:
        self._prev = None
        self._dissolve = None

    def choose(self, targets: np.ndarray, pose: np.ndarray) -> tuple[int, int, float]:
        """(crop, second crop, weight of the second) for ``targets``: this frame's channels,
        then the next frames' where known. The second crop only when nothing is close."""
        a = self.atlas
        prev = self._prev
        steady = prev is not None and np.abs(targets[0] - self._chosen_for).max() < self.STEADY
        if self._dissolve is not None:  # the second half of a dissolve begun last frame
            i, self._dissolve = self._dissolve, None
            return i, i, 0.0
        if steady and prev is not None and np.abs(a.poses[prev] - pose).max() < self.STEADY_POSE:
            return prev, prev, 0.0  # the channels have not moved: neither does the mouth
        self._chosen_for[:] = targets[0]
        targets = targets.copy()
        np.clip(targets[:, 2:4] * self.SHAPE_GAIN, 0.0, 1.0, out=targets[:, 2:4])
        match = ((a.keys - targets[0]) ** 2 * self.WEIGHTS).sum(1)
        # an opening further off than the band costs steeply: the shape is chosen within it
        off = np.maximum(np.abs(a.keys[:, 0] - targets[0, 0]) - self.JAW_BAND, 0.0)
        match += self.JAW_BAND_WEIGHT * off**2
        if targets[0, 1] >= self.CLOSE_AT and self._closed.any():
            match[~self._closed] += 10.0  # p, b, m: the lips must meet
        # head poses this close look alike once warped: only a larger turn costs
        off = np.maximum(np.abs(a.poses - pose) - self.POSE_TOLERANCE, 0.0)
        cost = match + self.POSE_WEIGHT * (off**2).sum(1)
        for j, ahead in enumerate(targets[1: self.MAX_AHEAD + 1]):
            cost += self.AHEAD_WEIGHT ** (j + 1) * ((self._ahead_keys[j] - ahead) ** 2 * self.WEIGHTS).sum(1)
        if prev is not None:
            cost += self.JUMP_COST
            cost[prev] += self.HOLD_COST - self.JUMP_COST
            if prev + 1 < len(cost) and a.follows[prev + 1]:
                cost[prev + 1] += self.FOLLOW_COST - self.JUMP_COST
        i = int(np.argmin(cost))
        self._prev = i
        if steady and prev is not None and i != prev:
            # the head turned away from a mouth held still: dissolve over two frames, no pop
            self._dissolve = i
            return prev, i, 0.5
        if match[i] <= self.BLEND_ABOVE:
            return i, i, 0.0
        d_i = float(match[i])
        match[i] = np.inf
        j = int(np.argmin(match))
        w = min(0.5, d_i / (d_i + float(match[j]) + 1e-9))
        return i, j, w


class MouthShaper:
    """How much narrower or wider the drawn mouth should be than the crop chosen, and the
    warp that does it. An atlas from a short clip holds few rounded or spread mouths, so
    the nearest crop's width can miss the sound's; the rest is made up by squeezing or
    stretching the mouth sideways about its centre, fading to nothing well inside the blend
    mask (the cheeks and the seam stay where they were)."""

    STRENGTH = 0.8  # of the width missing, this much is made up
    LIMITS = (0.86, 1.08)  # narrower than an "oo" needs, wider than a smile
    MIN_CHANGE = 0.01  # closer than this to the crop's width: no warp
    INNER, OUTER = 1.2, 2.0  # the full squeeze out to this many half-widths, none beyond
    MIN_SLOPE = 0.05  # face widths of mouth width from fully spread to fully rounded, at least

    def __init__(self, atlas: MouthAtlas, face_width: float, gain: float) -> None:
        keys, width = atlas.keys, atlas.shapes[:, 1]
        # the person's width against the channels that shape it: lip shape and opening
        x = np.stack([np.ones(len(keys)), keys[:, 3] - keys[:, 2], keys[:, 0]], 1)
        ok = np.isfinite(width) & (width > 0)
        if ok.sum() >= 8:
            coef = np.linalg.lstsq(x[ok], width[ok], rcond=None)[0]
        else:
            coef = np.array([float(np.median(width[ok])) if ok.any() else 0.4, 0.0, 0.0])
        self._coef = coef.astype(np.float64)
        # a mouth that barely changed width in the clip still rounds for an "oo" (real
        # speakers span 0.07-0.17 face widths over the channels' range)
        self._coef[1] = max(self._coef[1], self.MIN_SLOPE)
        self._gain = gain
        self._width = width
        self._centre = atlas.mouth - (atlas.box[0] + 0.5, atlas.box[1] + 0.5)  # box pixels, as OpenCV counts them
        self._half = 0.5 * face_width * float(np.median(width[ok])) if ok.any() else 0.2 * face_width

    def factor(self, target: np.ndarray, i: int, j: int, w: float) -> float:
        """The sideways scale for the crop(s) drawn, from this frame's channels."""
        want = self._coef[0] + self._coef[1] * self._gain * (target[3] - target[2]) + self._coef[2] * target[0]
        have = (1.0 - w) * self._width[i] + w * self._width[j]
        if have <= 0:
            return 1.0
        s = float(np.clip(1.0 + self.STRENGTH * (want / have - 1.0), *self.LIMITS))
        return 1.0 if abs(s - 1.0) < self.MIN_CHANGE else s

    def maps(self, inv: np.ndarray, size: tuple[int, int], i: int, s: float,
             origin: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Where each region pixel samples the crop: the affine map ``inv`` (region -> the
        part of the box from ``origin``), then the squeeze about crop ``i``'s mouth centre."""
        w, h = size
        inv = inv.astype(np.float32)
        xs = np.arange(w, dtype=np.float32)
        ys = np.arange(h, dtype=np.float32)[:, None]
        u = inv[0, 0] * xs + (inv[0, 1] * ys + inv[0, 2])
        v = inv[1, 0] * xs + (inv[1, 1] * ys + inv[1, 2])
        cx, cy = self._centre[i] - origin
        du = u - np.float32(cx)
        r = np.sqrt(du * du + (1.6 * (v - np.float32(cy))) ** 2) * np.float32(1.0 / self._half)
        k = np.clip((self.OUTER - r) * np.float32(1.0 / (self.OUTER - self.INNER)), 0.0, 1.0)
        k *= k * (3.0 - 2.0 * k)  # smooth at both ends: no crease
        u += du * k * np.float32(1.0 / s - 1.0)
        return u, v
