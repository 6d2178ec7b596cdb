"""Footage renderer: the person's own frames, with the lower face from their mouth atlas.

Per frame: the loop that fits the conversation state (idle, listening, talking) gives the
base frame, decoded from its compressed packets; where the loop's own mouth cannot show
(talking footage, which says other words), the atlas crop whose measured shape best fits
the lip-sync channels is warped onto the head by the frame's pose and blended in with a
feathered mask, clipped to the faces there and its colour matched to the frame around it.
A change of state crossfades into the new loop at the frame whose head pose is nearest,
within 240 ms.

One renderer per session (decoders hold state); the per-output-size framing and the
static extension around a canvas narrower than the output are shared through
``template``, as ``FaceRenderer`` does.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Mapping

import cv2
import numpy as np

from livekit_avatar_plugin._face.footage import (
    CHANNELS,
    KEY_INTERVAL,
    FootageAvatar,
    Loop,
    invert_affine,
)
from livekit_avatar_plugin._state import ConversationState

from .footage_loops import Layout, LoopPlayer
from .footage_mouth import MouthChooser, MouthShaper

if TYPE_CHECKING:
    pass

# One thread: sessions share the process's drawing thread, and OpenCV's pool would
# compete with the other sessions' work for the same cores.
cv2.setNumThreads(1)

CROSSFADE_FRAMES = 6  # 240 ms at 25 fps: a change of state never cuts
GAIN_LIMITS = (0.8, 1.25)
_LEVELS = np.arange(256, dtype=np.float32)
_STATE_LOOP = {ConversationState.SPEAKING: "talking", ConversationState.LISTENING: "listening"}
# What a closed, resting mouth looks like in the channels (lips together).
REST = np.array([0.0, 1.0, 0.0, 0.0, 0.0], np.float32)


class FootageRenderer:
    """Renders frames of one footage avatar at one output size. One per session."""

    layout: Layout

    def __init__(self, avatar: FootageAvatar, width: int = 512, height: int = 512, *,
                 ring: int = 8, template: FootageRenderer | None = None) -> None:
        self.avatar = avatar
        self.width, self.height = int(width), int(height)
        players: dict[str, LoopPlayer] = {}
        if template is not None:
            if template.avatar is not avatar or (template.width, template.height) != (self.width, self.height):
                raise ValueError("a template renderer must have the same avatar and output size")
            self.layout = template.layout
        else:
            self.layout = Layout(avatar, self.width, self.height)
            self.layout.extend(LoopPlayer(avatar.loops["idle"], self.layout).rgba(0))
        self._players = players
        for loop in avatar.loops.values():
            if loop.file not in players:
                players[loop.file] = LoopPlayer(loop, self.layout)
        self._frames = [self.layout.background.copy() for _ in range(max(1, ring))]
        self._fi = 0
        rows, cols = self.layout.dst
        self._faded = np.zeros((rows.stop - rows.start, cols.stop - cols.start, 4), np.uint8)  # the loop fading out
        self._chooser = MouthChooser(avatar.atlas)
        self._shaper = MouthShaper(avatar.atlas, avatar.face_width, MouthChooser.SHAPE_GAIN)
        self._crops: OrderedDict[int, np.ndarray] = OrderedDict()
        mask_shape = avatar.atlas.mask.shape
        self._rgba = np.empty((*mask_shape, 4), np.uint8)  # the crop and its alpha, for the warp
        self._clip = np.empty(mask_shape, np.uint8)
        self._mouth_x = float(np.median(avatar.atlas.oval[:, :, 0]))
        self._chin_floor = {loop.file: loop.oval[:, :, 1].max(0) for loop in avatar.loops.values()}
        side = int(round(np.sqrt(6 * (0.02 * avatar.face_width) ** 2 + 1))) | 1
        self._box = (side, side)
        self._lut = np.empty((1, 256, 4), np.float32)  # R, G and B scaled by their gains; alpha to 0-1
        self._lut[0, :, 3] = _LEVELS / 255.0
        self._pos: dict[str, float] = dict.fromkeys(players, 0.0)
        self._loop = "idle"
        self._from: str | None = None  # loop being faded out
        self._fade = 0  # frames into the crossfade
        self._targets = np.zeros((1 + MouthChooser.MAX_AHEAD, len(CHANNELS)), np.float32)
        self._known = 1  # rows of _targets known: this frame, then look_ahead's
        self._ahead_order: tuple[tuple[str, ...], np.ndarray] | None = None
        self._last_t: float | None = None
        # the last mouth drawn: box -> region map, its bounding box, the crop (for measuring)
        self._placed: tuple[np.ndarray, tuple[int, int, int, int], int] | None = None
        self._alpha_on = False  # write each frame's person mask into alpha (a background)

    def enable_person_alpha(self) -> None:
        """From now on each frame's alpha is the person mask stored with its loop frame, for
        a background compositor; packages built before person masks cannot."""
        if not self.avatar.has_masks:
            from livekit_avatar_plugin._render.background import BackgroundError

            raise BackgroundError(
                f"the footage avatar {self.avatar.path} has no person masks (built by an older "
                "version): rebuild it with livekit-avatar create to replace its background")
        if self._alpha_on:
            return
        self._alpha_on = True
        sw, sh = self.layout.scaled
        first = self.avatar.loops["idle"]
        m = cv2.resize(self.avatar.person_mask(first, 0), (sw, sh), interpolation=cv2.INTER_LINEAR)
        outside = self.layout.extended(m)
        for frame in self._frames:  # past the canvas: the first frame's person, extended
            frame[..., 3] = outside

    @property
    def roi(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the part of the output that changes frame to frame (the canvas)."""
        rows, cols = self.layout.dst
        return cols.start, rows.start, cols.stop, rows.stop

    def still(self) -> np.ndarray:
        """The output around ``roi``, which never changes (the canvas's extension), RGBA."""
        return self._frames[self._fi].copy()

    def background_plate(self) -> np.ndarray:
        """The footage's own background behind the person, (H, W, 3) uint8 at the output size."""
        sw, sh = self.layout.scaled
        assert self.avatar.plate is not None, "the footage has no background plate (has_masks)"
        plate = cv2.resize(self.avatar.plate, (sw, sh), interpolation=cv2.INTER_AREA)
        return self.layout.extended(plate)

    # ------------------------------------------------------------------ public API
    def reset_motion(self) -> None:
        """Interruption: the next mouth is chosen afresh, not continued."""
        self._chooser.reset()

    def look_ahead(self, channels: tuple[str, ...], rows: np.ndarray) -> None:
        """The mouth channels of the next frames (``rows``: (k, len(channels))), for the
        frame drawn next: a crop whose own next frames fit them is preferred."""
        if self._ahead_order is None or self._ahead_order[0] != channels:
            self._ahead_order = (channels, np.array([channels.index(c) if c in channels else -1 for c in CHANNELS]))
        order = self._ahead_order[1]
        k = min(len(rows), MouthChooser.MAX_AHEAD)
        self._targets[1: 1 + k] = np.where(order >= 0, rows[:k][:, np.maximum(order, 0)], 0.0)
        self._known = 1 + k

    def render(self, mouth: Mapping[str, float], state: ConversationState, t: float, energy: float = 0.0) -> np.ndarray:
        return np.ascontiguousarray(self.render_rgba(mouth, state, t, energy)[..., :3])

    def render_rgba(self, mouth: Mapping[str, float], state: ConversationState, t: float, energy: float = 0.0) -> np.ndarray:
        """One (H, W, 4) RGBA frame; it stays valid for the next ring - 1 calls."""
        step = self._advance(t)
        want = _STATE_LOOP.get(state, "idle")
        if want != self._loop:
            self._switch(want)
        speaking = state == ConversationState.SPEAKING
        for k, name in enumerate(CHANNELS):
            self._targets[0, k] = float(mouth.get(name, 0.0)) if speaking else REST[k]
        known = self._known if speaking else 1
        self._known = 1  # the look-ahead given was for this frame only
        out = self._frames[self._fi]
        self._fi = (self._fi + 1) % len(self._frames)
        region = out[self.layout.dst]
        self._draw(self._loop, region, known)
        if self._from is not None:
            self._fade += 1
            w = self._fade / (CROSSFADE_FRAMES + 1)
            self._draw(self._from, self._faded, known)
            cv2.addWeighted(self._faded, 1.0 - w, region, w, 0.0, dst=region)
            if self._fade >= CROSSFADE_FRAMES:
                self._from = None
        for file in self._pos:
            self._pos[file] += step
        return out

    # ------------------------------------------------------------------ internals
    def _advance(self, t: float) -> float:
        """Loop frames to move on by: one per call at the package's rate."""
        if self._last_t is None or t <= self._last_t:
            step = 1.0
        else:
            step = (t - self._last_t) * self.avatar.fps
        self._last_t = t
        return step

    def _frame_index(self, name: str) -> int:
        return int(self._pos[self.avatar.loops[name].file])

    def _switch(self, want: str) -> None:
        old, new = self.avatar.loops[self._loop], self.avatar.loops[want]
        if new.file != old.file:
            # enter the new loop at the key frame whose head pose is nearest the current one
            cur = old.transforms[self._frame_index(self._loop) % old.frames]
            keys = np.arange(0, new.frames, KEY_INTERVAL)
            d = np.abs(new.transforms[keys] - cur).sum((1, 2))
            if self._from == want:  # back before the fade ended: run it backwards from here
                self._from, self._fade = self._loop, CROSSFADE_FRAMES - self._fade
            else:
                self._pos[new.file] = float(keys[int(np.argmin(d))])
                self._from, self._fade = self._loop, 0
        self._loop = want

    def _draw(self, name: str, region: np.ndarray, known: int) -> None:
        loop = self.avatar.loops[name]
        player = self._players[loop.file]
        i = self._frame_index(name) % loop.frames
        frame = player.rgba(i)
        src = self.layout.src
        region[...] = frame[src]
        if self._alpha_on:
            m = cv2.resize(self.avatar.person_mask(loop, i), self.layout.scaled, interpolation=cv2.INTER_LINEAR)
            region[..., 3] = m[src]
        if not loop.own_mouth:
            self._mouth(loop, i, region, self._targets[:known])

    def _crop_rgb(self, i: int) -> np.ndarray:
        """Crop ``i``, (h, w, 3) uint8, decoded once while it is in use."""
        crop = self._crops.get(i)
        if crop is None:
            crop = self._crops[i] = self.avatar.atlas.crop(i)
            if len(self._crops) > 64:
                self._crops.popitem(last=False)
        else:
            self._crops.move_to_end(i)
        return crop

    def _alpha(self, loop: Loop, f: int, crops: tuple[int, ...]) -> np.ndarray:
        """The blend mask for ``crops`` (one, or the two blended) on frame ``f``: the
        package's mask, clipped to the faces' outlines. Beside the mouth the narrowest face
        bounds it (no face's background, hair or ear comes in: heads turn between frames);
        below, the lowest chin (no chin shows twice): the crop's, or the loop's lowest, so
        that the edge stays put while the footage's own jaw moves under it."""
        a = self.avatar.atlas
        fw = self.avatar.face_width
        ovals = np.stack([loop.oval[f], *(a.oval[i] for i in crops)])  # (faces, k, 2)
        cx = self._mouth_x
        nearest = np.argmin(np.abs(ovals[:, :, 0] - cx), axis=0)
        x = ovals[nearest, np.arange(ovals.shape[1]), 0]
        # off the face's edge by more than the feather, and further where the heads are
        # turned apart (their cheeks are lit and shaped differently)
        turned = max(float(np.abs(a.poses[i] - loop.poses[f]).max()) for i in crops)
        x = x - np.sign(x - cx) * ((0.05 + 0.75 * turned) * fw)
        y = np.maximum(ovals[1:, :, 1].max(0), self._chin_floor[loop.file]) + 0.04 * fw
        bx, by = a.box[0], a.box[1]
        poly = np.concatenate([[[x[0], by - 8.0]], np.stack([x, y], 1), [[x[-1], by - 8.0]]]) - (bx, by)
        clip = self._clip
        clip.fill(0)
        cv2.fillPoly(clip, [np.round(poly * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
        # two box blurs: a Gaussian's softness (sigma 0.02 face widths) at a seventh of its cost
        cv2.blur(clip, self._box, dst=clip)
        cv2.blur(clip, self._box, dst=clip)
        return np.minimum(clip, a.mask, out=clip)

    def _box_map(self, loop: Loop, f: int) -> np.ndarray:
        """The affine map from atlas-box pixels (continuous) to the drawn region on frame
        ``f``: box -> canonical -> canvas -> scaled canvas -> region."""
        a = self.avatar.atlas
        lay = self.layout
        m = loop.transforms[f].astype(np.float64)
        m = np.concatenate([m[:, :2], (m[:, 2] + m[:, :2] @ (a.box[0], a.box[1]))[:, None]], 1) * lay.scale
        m[:, 2] += (lay.offset[0] - lay.dst[1].start, lay.offset[1] - lay.dst[0].start)
        return m

    @staticmethod
    def _bounds(m: np.ndarray, part: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
        """The bounding box in the region (clipped to it) of ``part`` (x, y, w, h in box
        pixels) under the box map ``m``; None where it falls outside."""
        px, py, pw, ph = part
        corners = np.array([[px, py], [px + pw, py], [px, py + ph], [px + pw, py + ph]], np.float64) @ m[:, :2].T + m[:, 2]
        rh, rw = shape[:2]
        x0, y0 = max(0, int(np.floor(corners[:, 0].min()))), max(0, int(np.floor(corners[:, 1].min())))
        x1, y1 = min(rw, int(np.ceil(corners[:, 0].max()))), min(rh, int(np.ceil(corners[:, 1].max())))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _mouth(self, loop: Loop, f: int, region: np.ndarray, targets: np.ndarray) -> None:
        a = self.avatar.atlas
        i, j, w = self._chooser.choose(targets, loop.poses[f])
        m = self._box_map(loop, f)
        whole = self._bounds(m, (0, 0, a.box[2], a.box[3]), region.shape)
        self._placed = None if whole is None else (m, whole, i)
        if whole is None:
            return
        alpha = self._alpha(loop, f, (i, j) if w > 0 else (i,))
        # only the part of the box the mask covers this frame is drawn: a fifth less work
        bx, by, bw, bh = cv2.boundingRect(alpha)
        part = (bx, by, bw, bh)
        drawn = self._bounds(m, part, region.shape) if part[2] and part[3] else None
        if drawn is None:
            return
        x0, y0, x1, y1 = drawn
        px, py, pw, ph = part
        # the map from the part's own pixels, inverted: region pixel -> part pixel
        m = np.concatenate([m[:, :2], (m[:, 2] + m[:, :2] @ (px, py))[:, None]], 1)
        inv = invert_affine(m)
        inv[:, 2] += inv[:, :2] @ (x0, y0)
        # OpenCV counts pixel centres from 0; these maps count pixel edges
        inv[:, 2] += inv[:, :2] @ (0.5, 0.5) - 0.5
        rows, cols = slice(py, py + ph), slice(px, px + pw)
        crop = self._rgba[rows, cols]
        if w > 0:
            crop[..., :3] = cv2.addWeighted(self._crop_rgb(i)[rows, cols], 1.0 - w, self._crop_rgb(j)[rows, cols], w, 0.0)
        else:
            crop[..., :3] = self._crop_rgb(i)[rows, cols]
        crop[..., 3] = alpha[rows, cols]
        # colour matched to the skin around it (light drifts over a clip), at the exact gain
        # and in floating point to the end: a gain or a warp rounded on the way would
        # flicker as the light and the head drift
        gain = np.clip(loop.ring[f] / np.maximum(a.ring[i], 1.0), *GAIN_LIMITS)
        np.multiply(_LEVELS[:, None], gain, out=self._lut[0, :, :3])
        cf = cv2.LUT(crop, self._lut)  # gains applied, alpha to 0-1, as floats
        s = self._shaper.factor(targets[0], i, j, w)
        size = (x1 - x0, y1 - y0)
        if s == 1.0:
            warped = cv2.warpAffine(cf, inv, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        else:  # one resampling for the placement and the squeeze together
            mx, my = self._shaper.maps(inv, size, i, s, (px, py))
            warped = cv2.remap(cf, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        alpha = cv2.extractChannel(warped, 3)
        np.clip(alpha, 0.0, 1.0, out=alpha)  # cubic overshoots at the mask's edge
        dst = region[y0:y1, x0:x1]
        person = dst[..., 3].copy() if self._alpha_on else None
        mixed = cv2.blendLinear(warped, dst.astype(np.float32), alpha, 1.0 - alpha)
        cv2.convertScaleAbs(mixed, dst=dst)  # rounds once, at the end
        if person is None:
            dst[..., 3] = 255  # the frame stays opaque
        else:  # the pasted mouth is person; beside it the mask stays as it was
            dst[..., 3] = np.maximum(person, cv2.convertScaleAbs(alpha, alpha=255.0))
