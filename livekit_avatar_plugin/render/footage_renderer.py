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
from PIL import Image

from livekit_avatar_plugin.face.footage import (
    CHANNELS,
    KEY_INTERVAL,
    FootageAvatar,
    Loop,
    MouthAtlas,
    invert_affine,
)
from livekit_avatar_plugin.state import ConversationState

if TYPE_CHECKING:
    import av

# One thread: sessions share the process's drawing thread, and OpenCV's pool would
# compete with the other sessions' work for the same cores.
cv2.setNumThreads(1)

CROSSFADE_FRAMES = 6  # 240 ms at 25 fps: a change of state never cuts
GAIN_LIMITS = (0.8, 1.25)
_LEVELS = np.arange(256, dtype=np.float32)
_STATE_LOOP = {ConversationState.SPEAKING: "talking", ConversationState.LISTENING: "listening"}
# What a closed, resting mouth looks like in the channels (lips together).
REST = np.array([0.0, 1.0, 0.0, 0.0, 0.0], np.float32)


class _Layout:
    """Where the canvas sits in one output size, and the still background around it."""

    def __init__(self, avatar: FootageAvatar, width: int, height: int) -> None:
        cw, ch = avatar.canvas
        fw = avatar.face_width
        centre = avatar.template.mean(0)
        # the head, with hair above and the chin below, must stay inside the output
        head_w, head_h = 1.7 * fw, 2.1 * fw
        cover = max(width / cw, height / ch)
        contain = min(width / cw, height / ch)
        fits = min(width / head_w, height / head_h)
        s = max(contain, min(cover, fits))
        # multiples of 8: swscale is 6x slower at odd widths, and its YUV scaling leaves
        # the last columns black at widths that are not a multiple of 8
        sw, sh = max(8, 8 * round(cw * s / 8)), max(8, 8 * round(ch * s / 8))
        s = sw / cw
        eyes_y = centre[1] - 0.12 * fw
        ox = (width - sw) / 2 if sw <= width else float(np.clip(width / 2 - s * centre[0], width - sw, 0))
        oy = (height - sh) / 2 if sh <= height else float(np.clip(0.40 * height - s * eyes_y, height - sh, 0))
        self.scale = s
        self.offset = (int(round(ox)), int(round(oy)))
        self.scaled = (sw, sh)
        self.size = (width, height)
        # canvas pixels that land inside the output, and where
        x0, y0 = self.offset
        self.dst = (slice(max(0, y0), min(height, y0 + sh)), slice(max(0, x0), min(width, x0 + sw)))
        self.src = (slice(max(0, -y0), max(0, -y0) + self.dst[0].stop - self.dst[0].start),
                    slice(max(0, -x0), max(0, -x0) + self.dst[1].stop - self.dst[1].start))
        self.background = np.zeros((height, width, 4), np.uint8)

    def extend(self, first: np.ndarray) -> None:
        """The output filled around the canvas by its edges, stretched and blurred: a flat
        background stays flat, and no scenery is invented."""
        out = self.extended(first)
        out[..., 3] = 255
        self.background = out

    def extended(self, scaled: np.ndarray) -> np.ndarray:
        """``scaled`` (the canvas at the layout's scale, any channels) placed in the output
        and extended past the canvas as ``extend`` does."""
        from PIL import ImageFilter

        w, h = self.size
        rows, cols = self.dst
        pad = ((rows.start, h - rows.stop), (cols.start, w - cols.stop)) + ((0, 0),) * (scaled.ndim - 2)
        out = np.ascontiguousarray(np.pad(scaled[self.src], pad, mode="edge"))
        if any(p for side in pad[:2] for p in side):
            keep: np.ndarray = np.zeros((h, w), np.uint8)  # then float32 weights
            keep[self.dst] = 255
            keep = np.asarray(Image.fromarray(keep).filter(ImageFilter.GaussianBlur(4)), np.float32) / 255
            radius = max(8, min(w, h) // 12)
            planes = [out] if out.ndim == 2 else [out[..., c] for c in range(min(3, out.shape[2]))]
            for plane in planes:
                soft = np.asarray(Image.fromarray(plane).filter(ImageFilter.GaussianBlur(radius)), np.float32)
                plane[...] = (plane * keep + soft * (1 - keep) + 0.5).astype(np.uint8)
        return out


class _LoopPlayer:
    """Decodes one loop file's frames on demand; seeks by restarting at a key frame."""

    def __init__(self, loop: Loop, layout: _Layout) -> None:
        import av

        self.loop = loop
        self._ctx = av.CodecContext.create("h264", "r")
        if loop.extradata:
            self._ctx.extradata = loop.extradata
        self._ctx.thread_count = 1  # frame threads would hold frames back
        self._packet = av.Packet
        self._next = 0
        self._index = -1
        self._frame: np.ndarray | None = None  # frame _index as RGBA
        self._size = layout.scaled

    def rgba(self, i: int) -> np.ndarray:
        """Frame ``i`` of the loop (wrapping), scaled to the layout, as RGBA."""
        n = self.loop.frames
        i %= n
        if i != self._index:
            if i < self._next - 1 or i - self._next >= KEY_INTERVAL or self._frame is None and i % KEY_INTERVAL:
                self._ctx.flush_buffers()
                self._next = i - i % KEY_INTERVAL
            frame: av.VideoFrame | None = None
            while self._next <= i:
                for out in self._ctx.decode(self._packet(self.loop.packets[self._next])):
                    frame = out
                self._next += 1
            if frame is None:
                raise RuntimeError(f"loop {self.loop.file} did not decode frame {i}")
            if (frame.width, frame.height) != self._size:  # scale in YUV: a quarter of the samples
                frame = frame.reformat(width=self._size[0], height=self._size[1], interpolation="BICUBIC")
            rgba = frame.to_ndarray(format="rgba")
            self._frame = rgba
            self._index = i
            return rgba
        assert self._frame is not None  # _index >= 0: a frame was decoded
        return self._frame


class _MouthChooser:
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


class _MouthShaper:
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


class FootageRenderer:
    """Renders frames of one footage avatar at one output size. One per session."""

    layout: _Layout

    def __init__(self, avatar: FootageAvatar, width: int = 512, height: int = 512, *,
                 ring: int = 8, template: FootageRenderer | None = None) -> None:
        self.avatar = avatar
        self.width, self.height = int(width), int(height)
        players: dict[str, _LoopPlayer] = {}
        if template is not None:
            if template.avatar is not avatar or (template.width, template.height) != (self.width, self.height):
                raise ValueError("a template renderer must have the same avatar and output size")
            self.layout = template.layout
        else:
            self.layout = _Layout(avatar, self.width, self.height)
            self.layout.extend(_LoopPlayer(avatar.loops["idle"], self.layout).rgba(0))
        self._players = players
        for loop in avatar.loops.values():
            if loop.file not in players:
                players[loop.file] = _LoopPlayer(loop, self.layout)
        self._frames = [self.layout.background.copy() for _ in range(max(1, ring))]
        self._fi = 0
        rows, cols = self.layout.dst
        self._faded = np.zeros((rows.stop - rows.start, cols.stop - cols.start, 4), np.uint8)  # the loop fading out
        self._chooser = _MouthChooser(avatar.atlas)
        self._shaper = _MouthShaper(avatar.atlas, avatar.face_width, _MouthChooser.SHAPE_GAIN)
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
        self._targets = np.zeros((1 + _MouthChooser.MAX_AHEAD, len(CHANNELS)), np.float32)
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
            from livekit_avatar_plugin.render.background import BackgroundError

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
        k = min(len(rows), _MouthChooser.MAX_AHEAD)
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
