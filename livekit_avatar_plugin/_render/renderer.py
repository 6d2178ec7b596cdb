"""Real-time face renderer: jaw/lip warp, mouth interior, blinks, head motion. numpy only.

Design (for speed): everything that depends only on the output size is precomputed in
``__init__``: the framed base frame, a head ROI with its motion fields, a lower-face box
with the jaw/lip fields, and the base frame around the ROI upsampled 4x and packed as
RGBA words. Per frame: the pose comes from ``motion.HeadMotion``; two broadcasts and two
small boxes give the smooth displacement (head motion, brows), the gaze and the lids move
per eye, the lower-face box adds the jaw/lip
displacement with a split at the lip line (which is what opens a gap), one gather of the
nearest upsampled texel per pixel samples the base frame (bilinear to 1/4 px), the gap is
filled with a shaded mouth interior, and the ROI is written into a preallocated RGBA
frame. Pixels outside the person mask (dilated a few px) never move, so flat backgrounds
stay untouched.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import numpy as np

from livekit_avatar_plugin._face import landmarks as L
from livekit_avatar_plugin._face.avatar import Avatar
from livekit_avatar_plugin._face.photo_background import box_blur, extend_outside, polygon_mask
from livekit_avatar_plugin._render.motion import GAZE_X, GAZE_Y, LOWER_LID, PITCH_KEY, HeadMotion
from livekit_avatar_plugin._state import ConversationState

FACE_SHARE = (0.32, 0.40)  # face width over the output's shorter side: head-and-shoulders
EYES_AT = 0.40  # the eyes' height, from the top, over the output's height
EYE_CORNERS = (33, 133, 362, 263)
ROUND_GAIN = 0.28  # each corner's inward pull at full rounding, over the mouth width
REST_CLOSE, CLOSE_BELOW = 1.0, 0.4  # while speaking, openings below CLOSE_BELOW close the photo's lips
CLOSE_GAIN = 1.5
SPREAD_K = 1.0  # spreading (lip_spread) widens the mouth as much as rounding narrows it
UP_RAISE, JAW_DROP = 0.035, 0.11  # face widths at jaw_open = 1: upper lip up, lower lip (and the jaw with it) down
CHIN_K = 1.5  # the chin drops by the lower lip's drop times this: further from the hinge, and the skin between stretches
ROUND_OPEN, O_WIDTH = 0.05, 0.6  # at full rounding the lips part this much (face widths) in an O this wide (of the mouth)
TEETH_SPLIT = 0.6  # where a toothy photo's gap splits, from its middle towards the lower lip (of the half gap)
PRESS_PX = 1.2  # closed lips overlap by this much, so the seam samples lip, not the teeth behind
SEAM, SEAM_W, CREASE = 0.75, 1.3, 0.65  # closed lips' crease: strength, half-width (px), darkening
RELAX = 1.25  # share of a smile's corner lift that closed or rounded lips drop
LABIO_RAISE, LABIO_GAP, LABIO_TUCK = 0.012, 0.75, 0.02  # f/v: upper lip rise (fw), teeth shown (of their height), tuck (fw)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _support(field: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    """The bounding box of a field's non-zero values, and the field cropped to it."""
    rows = np.flatnonzero(np.abs(field).max(1) > 1e-4)
    cols = np.flatnonzero(np.abs(field).max(0) > 1e-4)
    if rows.size == 0:
        box = (slice(0, 0), slice(0, 0))
    else:
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    return box, np.ascontiguousarray(field[box], dtype=np.float32)


_WHOLE = (slice(None), slice(None))


class _Eye(NamedTuple):
    sl: tuple[slice, slice]  # the eye's box in the ROI
    rel_top: np.ndarray  # px below the upper lid
    rel_bot: np.ndarray  # px below the lower lid
    travel: np.ndarray  # px the lids close over, per column
    lid: float  # px of skin above the eye that slides down with the upper lid
    lid_lo: float  # ... and below it, rising with the lower lid
    wgt: np.ndarray
    gaze: np.ndarray  # share of the gaze shift per px: the iris and its surround, inside the opening
    reach_x: float  # px the iris moves at gaze 1
    reach_y: float


def _interp_curve(pts: np.ndarray, xs: np.ndarray) -> np.ndarray:
    order = np.argsort(pts[:, 0])
    return np.interp(xs, pts[order, 0], pts[order, 1])


# The lip-sync channels the mouth reads, each clipped to 0..1.
_CHANNELS = ("jaw_open", "lips_closed", "lip_round", "lip_spread", "labiodental")


class FaceRenderer:
    """Renders frames of one avatar at one output size. One per session; not thread-safe."""

    follows_pitch = True  # the generator passes each speech frame's f0: brows follow the intonation
    _shared: tuple[str, ...]  # attributes a template renderer's copies share (set in __init__)

    def __init__(
        self,
        avatar: Avatar,
        width: int = 512,
        height: int = 512,
        seed: int = 0,
        ring: int = 8,
        *,
        template: FaceRenderer | None = None,
    ):
        """``template``: a renderer of the same avatar and size whose precomputed, read-only
        part (framing, motion fields, texture: ~0.3 s of work and ~15 MB at 512x512) this one
        shares instead of rebuilding; only the per-session state and buffers are new."""
        self.avatar = avatar
        self.width, self.height = int(width), int(height)
        if template is not None:
            if template.avatar is not avatar or (template.width, template.height) != (self.width, self.height):
                raise ValueError("a template renderer must have the same avatar and output size")
            self.__dict__.update({k: getattr(template, k) for k in template._shared})
        else:
            before = set(vars(self))
            self._setup_framing()
            self._setup_fields()
            self._setup_interior()
            self._shared = tuple(k for k in vars(self) if k not in before)
        self._allocate_buffers()
        self.rng = np.random.default_rng(seed)
        rgba = np.dstack([self.base, np.clip(self.person + 0.5, 0, 255).astype(np.uint8)])  # alpha: the person mask
        self._frames = [rgba.copy() for _ in range(max(1, ring))]
        self._rgb = [self.base.copy() for _ in range(max(1, ring))]
        self._fi = 0
        self._last_t: float | None = None
        self.motion = HeadMotion(self.fw, self.rng)
        self._p = self.motion.pose  # tx, ty, roll, nod, yaw, gaze x, brow, gaze y
        self._mouth = np.zeros(4, np.float64)  # jaw, closed, round - spread, labiodental
        self.debug: dict[str, float] = {}
        self.debug_mouth = False  # tests: also count rest-pose teeth pixels still visible

    # ------------------------------------------------------------------ precomputation
    def _setup_framing(self) -> None:
        """Head-and-shoulders in any output size: the face FACE_SHARE of the output's
        shorter side (wider where the photo then covers more of the frame), centred, the
        eyes 40 % from the top; where the photo lacks room the background is extended (its
        edges, heavily blurred: a flat colour stays flat) rather than the head cut."""
        av = self.avatar
        W, H = self.width, self.height
        fw0 = av.face_width
        cx0, _ = av.face_center
        eyes0 = float(av.landmarks[list(EYE_CORNERS), 1].mean())
        ih, iw = av.image.shape[:2]
        bx0, by0, bx1, by1 = av.manifest.get("photo_box") or [0, 0, iw, ih]

        def place(share: float) -> tuple[float, float, float]:
            s = share * min(W, H) / fw0
            return s, W / 2 - cx0 * s, EYES_AT * H - eyes0 * s

        def covered(share: float) -> float:  # the share of the output the real photo fills
            s, ox, oy = place(share)
            x0, x1 = max(0.0, ox + bx0 * s), min(float(W), ox + bx1 * s)
            y0, y1 = max(0.0, oy + by0 * s), min(float(H), oy + by1 * s)
            return max(0.0, x1 - x0) * max(0.0, y1 - y0) / (W * H)

        shares = np.linspace(*FACE_SHARE, 11)
        cover = np.array([covered(k) for k in shares])
        # the smallest face that shows as much of the real photo as any allowed size does
        share = float(shares[int(np.argmax(cover >= cover.max() - 0.005))])
        s, ox, oy = place(share)
        self.scale = s
        self.fw = fw0 * s
        self.ox, self.oy = ox, oy
        m = to_photo = np.array([[1 / s, 0, (0.5 - ox) / s - 0.5], [0, 1 / s, (0.5 - oy) / s - 0.5]])
        src = av.image
        if s < 0.6:  # area pre-shrink
            from PIL import Image

            pre = s * 1.5
            src = np.asarray(Image.fromarray(av.image).resize((max(1, round(iw * pre)), max(1, round(ih * pre))), Image.Resampling.BOX))
            m = np.array([[pre / s, 0, ((0.5 - ox) / s) * pre - 0.5], [0, pre / s, ((0.5 - oy) / s) * pre - 0.5]])
        base = L.warp_affine(src, m, (W, H))
        msk = np.ascontiguousarray(L.warp_affine(av.person[..., None], to_photo, (W, H))[..., 0])
        ys, xs = np.mgrid[0:H, 0:W]
        sx, sy = (xs + 0.5 - ox) / s, (ys + 0.5 - oy) / s  # pixel edges in the package image
        outside = (sx < 0) | (sy < 0) | (sx > iw) | (sy > ih)
        if outside.any():
            base = extend_outside(base, msk.astype(np.float32) / 255.0, outside, 0.25 * self.fw)
        self.base = np.ascontiguousarray(np.clip(base + 0.5, 0, 255).astype(np.uint8))
        self.person = msk
        self.pts = av.landmarks.copy()
        self.pts[:, 0] = av.landmarks[:, 0] * s + ox
        self.pts[:, 1] = av.landmarks[:, 1] * s + oy
        self.pts[:, 2] = av.landmarks[:, 2] * s

    def _setup_fields(self) -> None:
        W, H = self.width, self.height
        P = self.pts
        fw = self.fw
        cx, cy = P[:468, 0].mean(), P[:468, 1].mean()
        chin = P[L.CHIN, :2]
        # head ROI: head ellipse + margin, clipped to frame
        x0 = int(max(0, math.floor(cx - 0.95 * fw)))
        x1 = int(min(W, math.ceil(cx + 0.95 * fw)))
        y0 = int(max(0, math.floor(cy - 1.15 * fw)))
        y1 = int(min(H, math.ceil(chin[1] + 0.4 * fw)))
        self.roi = (x0, y0, x1, y1)
        h, w = y1 - y0, x1 - x0
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        # head weight: head ellipse (incl. hair) fading down the neck, limited to the
        # person mask dilated by ~4 px and feathered: background beyond never moves
        e = ((xs - cx) / (0.95 * fw)) ** 2 + ((ys - (cy - 0.2 * fw)) / (1.25 * fw)) ** 2
        head = 1 - _smoothstep((np.sqrt(e) - 0.8) / 0.25)
        neck = 1 - _smoothstep((ys - chin[1]) / (0.35 * fw))
        head = np.maximum(head * neck, 0)
        person = self.person[y0:y1, x0:x1].astype(np.float32) / 255.0
        # the mask is soft at the hair: its outer half moves fully, then 2 px more so the
        # soft edge's mix of person and background moves with the person
        d = max(1, int(round(2 * fw / 170)))
        dil = np.clip(person * 2.0, 0.0, 1.0)
        for _ in range(d):  # 4-neighbour dilation without wrapping (np.roll would bring the torso to the top)
            p = np.pad(dil, 1)
            dil = np.maximum.reduce([dil, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        dil = np.clip(box_blur(dil, 1.0) * 1.5 - 0.25, 0, 1) * (dil > 0)
        # zero weight at the ROI border so the ROI edge never shows a seam
        border = np.minimum.reduce([xs - x0, x1 - 1 - xs, ys - y0, y1 - 1 - ys])
        edge = _smoothstep(border / 6.0)
        wh = (head * dil * edge).astype(np.float32)
        self.w_head = wh
        face = polygon_mask((W, H), P[list(L.FACE_OVAL), :2])[y0:y1, x0:x1].astype(np.float32) / 255
        face = box_blur(face, 0.08 * fw) * wh
        pcx, pcy = cx, chin[1] + 0.3 * fw  # pivot for roll: the neck
        # Head motion is [tx, ty, roll, nod (face dy), yaw-ish (face dx), brow raise]:
        #   dx = wh * (tx - roll * (y - pivot_y)) + yaw * face
        #   dy = wh * (ty + roll * (x - pivot_x)) + nod * face + brow * brow_field
        # so per frame it is two broadcasts over the ROI plus small boxes for the face and
        # brows (blinks are drawn per eye, not as a displacement field).
        brow_dy = self._make_brow_field(xs, ys)
        self._setup_eyes(xs, ys)
        self._row_from_pivot = (ys[:, 0] - pcy).astype(np.float32)
        self._col_from_pivot = (xs[0] - pcx).astype(np.float32)
        self._face_box, self._face_field = _support(face)
        self._brow_box, self._brow_field = _support(brow_dy)
        self.roi_shape = (h, w)
        self._setup_mouth_fields(xs, ys)
        self._setup_texture(x0, y0, x1, y1)
        u = float(self._up)
        # where each ROI pixel samples the texture when nothing moves (+0.5: truncation
        # then rounds to the nearest texel)
        tx0, ty0 = self._tex_origin
        self._gx = ((xs - tx0) * u + 0.5).astype(np.float32)
        self._gy = ((ys - ty0) * u + 0.5).astype(np.float32)

    def _allocate_buffers(self) -> None:
        h, w = self.roi_shape
        self._dx = np.empty((h, w), np.float32)
        self._dy = np.empty((h, w), np.float32)
        self._ix = np.empty((h, w), np.int32)
        self._iy = np.empty((h, w), np.int32)
        self._phase = np.empty((h, w), np.int32)
        self._res = np.empty((h, w), np.uint32)
        self._scratch = np.empty(max(self._face_field.size, self._brow_field.size), np.float32)

    def _setup_texture(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """The base frame around the ROI, bilinearly upsampled ``_up`` times and packed as
        RGBA words: a per-frame bilinear warp becomes one gather per pixel. Positions snap
        to 1/4 px (1/2 px for very large outputs, to bound the texture's memory)."""
        W, H = self.width, self.height
        m = 2
        tx0, ty0 = max(0, x0 - m), max(0, y0 - m)
        tx1, ty1 = min(W, x1 + m), min(H, y1 + m)
        tw, th = tx1 - tx0, ty1 - ty0
        up = 4 if (tw * th * 16 * 4) <= (32 << 20) else 2
        self._up = up
        self._tex_origin = (tx0, ty0)
        self._tex_box = (tx0, ty0, tx1, ty1)
        # the alpha channel carries the person mask: the warped output's alpha is the moving
        # person, which a background compositor blends with (render/background.py)
        self._tex = self.pack_texture(self.base, self.person)

    def pack_texture(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``rgb`` (H, W, 3) and ``alpha`` (H, W) uint8 around the ROI, upsampled and packed
        in the texture's layout (sets the texture's size attributes)."""
        tx0, ty0, tx1, ty1 = self._tex_box
        tw, th = tx1 - tx0, ty1 - ty0
        up = self._up
        fr = np.arange((tw - 1) * up + 1, dtype=np.float32) / up
        fc = np.arange((th - 1) * up + 1, dtype=np.float32) / up
        i0x = np.minimum(fr.astype(np.int32), tw - 2) if tw > 1 else np.zeros(fr.shape, np.int32)
        i0y = np.minimum(fc.astype(np.int32), th - 2) if th > 1 else np.zeros(fc.shape, np.int32)
        ax = (fr - i0x)[None, :]
        ay = (fc - i0y)[:, None]
        i1x = np.minimum(i0x + 1, tw - 1)
        i1y = np.minimum(i0y + 1, th - 1)
        # Layout [texture row][x phase][x]: neighbouring pixels that share a phase (the
        # displacement is smooth, so most do) read neighbouring words, a quarter of the
        # cache lines a plain [row][4x + phase] layout would touch.
        n_x = tw
        planes = np.zeros((len(fc), up, n_x), np.uint32)
        src = np.dstack([rgb[ty0:ty1, tx0:tx1], alpha[ty0:ty1, tx0:tx1]])
        for c in range(4):
            ch = src[..., c].astype(np.float32)
            rows = ch[:, i0x] * (1 - ax) + ch[:, i1x] * ax  # (th, (tw - 1) * up + 1)
            val = np.clip(rows[i0y] * (1 - ay) + rows[i1y] * ay + 0.5, 0, 255).astype(np.uint32)
            for a in range(up):
                phase = val[:, a::up]
                planes[:, a, : phase.shape[1]] |= phase << (8 * c)
        self._tex_plane = n_x
        self._tex_row = up * n_x
        self._tex_max = (float(len(fr) - 1), float(len(fc) - 1))
        return planes.ravel()

    def _make_brow_field(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Displacement per px of brow raise: each brow and the forehead above it move up;
        below, the skin stretches down to the upper lid's fold, and the eyes stay put."""
        fw = self.fw
        P = self.pts
        field = np.zeros_like(xs)
        for brow, lid in ((L.RIGHT_BROW, L.RIGHT_EYE_UPPER), (L.LEFT_BROW, L.LEFT_EYE_UPPER)):
            b = P[list(brow), :2]
            bx, by = b.mean(0)
            half = (b[:, 0].max() - b[:, 0].min()) / 2
            fold = P[list(lid), 1].min() - 0.02 * fw  # just above the upper lid
            wx = 1 - _smoothstep((np.abs(xs - bx) - half) / (0.12 * fw))
            wy = np.where(ys <= by, 1 - _smoothstep((by - ys) / (0.35 * fw)),
                          1 - _smoothstep((ys - by) / max(fold - by, 2.0)))
            field = np.minimum(field, -wx * wy)
        return (field * np.clip(self.w_head, 0, 1)).astype(np.float32)

    def _setup_eyes(self, xs: np.ndarray, ys: np.ndarray) -> None:
        """Per-eye boxes: the upper lid slides down over the eye while the skin above
        compresses, the lower lid rises a little to meet it (per frame, as it is not
        linear in the blink amount), and a gaze field carries the iris within the opening."""
        P = self.pts
        fw = self.fw
        x0, y0, x1, y1 = self.roi
        self.eyes = []
        irises = (P[468:473, :2], P[473:478, :2]) if len(P) >= 478 else (None, None)
        for (upper, lower), iris in zip(((L.RIGHT_EYE_UPPER, L.RIGHT_EYE_LOWER), (L.LEFT_EYE_UPPER, L.LEFT_EYE_LOWER)), irises):
            up = P[list(upper), :2]
            lo = P[list(lower), :2]
            ex0, ex1 = up[:, 0].min(), up[:, 0].max()
            ew = ex1 - ex0
            lid, lid_lo = 0.08 * fw, 0.05 * fw  # skin above and below the eye that slides with the lids (short of the brow)
            bx0 = int(max(x0, math.floor(ex0 - 0.25 * ew)))
            bx1 = int(min(x1, math.ceil(ex1 + 0.25 * ew)))
            by0 = int(max(y0, math.floor(up[:, 1].min() - lid - 2)))
            by1 = int(min(y1, math.ceil(lo[:, 1].max() + lid_lo + 2)))
            sl = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
            ex = xs[sl]
            ey = ys[sl]
            xc = np.clip(ex, ex0, ex1)
            top = _interp_curve(up, xc)
            bot = np.maximum(_interp_curve(lo, xc), top + 0.5)
            # the lids meet a little below the mesh's lower-lid line, which runs on the white
            shut = bot + np.maximum(1.0, 0.15 * (bot - top))
            taper = 1 - _smoothstep((np.abs(ex - (ex0 + ex1) / 2) - ew / 2) / (0.2 * ew))
            travel = (shut - top) * taper
            edge = _smoothstep(np.minimum.reduce([ex - bx0, bx1 - 1 - ex, ey - by0, by1 - 1 - ey]) / 3.0)
            wgt = (self.w_head[sl] * edge).astype(np.float32)
            # the iris (the package's landmarks; the eye's middle if they are implausible)
            mid = np.array([(ex0 + ex1) / 2, (top.min() + bot.max()) / 2])
            ic, ir = mid, 0.2 * ew
            if iris is not None and np.isfinite(iris).all():
                c, r = iris[0], float(np.linalg.norm(iris[1:] - iris[0], axis=1).mean())
                if ex0 < c[0] < ex1 and 0.1 * ew < r < 0.4 * ew:
                    ic, ir = c, r
            d = np.hypot(ex - ic[0], ey - ic[1])
            opening = np.clip(ey - top + 0.5, 0, 1) * np.clip(bot - ey + 0.5, 0, 1) * (np.abs(ex - (ex0 + ex1) / 2) < ew / 2)
            gaze = (1 - _smoothstep((d - 1.05 * ir) / (1.2 * ir))) * opening * wgt
            reach = min(0.15 * ew, 0.6 * ir)  # px of iris travel at gaze 1; the field stays invertible
            self.eyes.append(_Eye(sl, (ey - top).astype(np.float32), (ey - shut).astype(np.float32),
                                  travel.astype(np.float32), float(lid), float(lid_lo), wgt,
                                  gaze.astype(np.float32), float(reach), float(0.5 * reach)))

    def _eyes_move(self, dx: np.ndarray, dy: np.ndarray, blink: float) -> None:
        """Gaze, then lids. ``dx``/``dy`` are in texture units (``_up`` per pixel)."""
        u = self._up
        gx, gy = float(self._p[GAZE_X]), float(self._p[GAZE_Y])
        for eye in self.eyes:
            self._add_scaled(dx[eye.sl], _WHOLE, eye.gaze, u * gx * eye.reach_x)
            self._add_scaled(dy[eye.sl], _WHOLE, eye.gaze, u * gy * eye.reach_y)
        if blink <= 1e-4:
            return
        for eye in self.eyes:
            sl, lid, lid_lo = eye.sl, eye.lid, eye.lid_lo
            shift = dy[sl] / u
            r = eye.rel_top - shift  # position relative to the (moved) upper lid
            bt = (blink * (1 - LOWER_LID)) * eye.travel
            inside = (r >= -lid) & (r < bt)
            move = np.where(inside, (r + lid) * (bt * u) / (lid + bt + 1e-6), 0.0)
            r = eye.rel_bot - shift  # ... and to the lower lid, which rises to meet it
            bl = (blink * LOWER_LID) * eye.travel
            below = (r > -bl) & (r <= lid_lo) & ~inside
            move -= np.where(below, (lid_lo - r) * (bl * u) / (lid_lo + bl + 1e-6), 0.0)
            dy[sl] += move * eye.wgt

    def _setup_mouth_fields(self, xs: np.ndarray, ys: np.ndarray) -> None:
        """The lower-face box's displacement fields, per unit of each mouth movement (px),
        and the interior's per-column tooth pattern."""
        P = self.pts
        fw = self.fw
        x0, y0, x1, y1 = self.roi
        iu = P[list(L.INNER_UPPER), :2]
        il = P[list(L.INNER_LOWER), :2]
        ou = P[list(L.OUTER_UPPER), :2]
        ol = P[list(L.OUTER_LOWER), :2]
        mc0, mc1 = P[61, :2], P[291, :2]
        mcx = (mc0[0] + mc1[0]) / 2
        mw = mc1[0] - mc0[0]
        chin = P[L.CHIN, :2]
        nose = P[2, :2]  # below the nose, where the upper lip's skin begins
        # lower-face box: down past the chin by the jaw's travel
        bx0 = int(max(x0, math.floor(mcx - 0.62 * fw)))
        bx1 = int(min(x1, math.ceil(mcx + 0.62 * fw)))
        by0 = int(max(y0, math.floor(nose[1] + 0.02 * fw)))
        by1 = int(min(y1, math.ceil(chin[1] + 0.45 * fw)))
        self.mbox = (bx0, by0, bx1, by1)
        sl = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
        mx = xs[sl]
        my = ys[sl]
        top, bot = self._photo_gap(mx[0], iu, il)
        top, bot = np.broadcast_to(top, mx.shape), np.broadcast_to(bot, mx.shape)
        # the inner corners: the fits need not meet exactly, and past them there is no gap
        icx, ihw = (iu[:, 0].min() + iu[:, 0].max()) / 2, max(1.0, (iu[:, 0].max() - iu[:, 0].min()) / 2)
        ui = np.clip((mx - icx) / ihw, -1.5, 1.5)
        lens = np.sqrt(np.clip(1 - ui ** 2, 0, 1))
        rest_gap = (bot - top) * np.minimum(1.0, 3.0 * lens)
        # A photo that shows its teeth keeps them: they part with their lips, split low in the
        # gap (the upper teeth fill most of a smile) and only the gap between is drawn.
        u0 = (mx[0] - mcx) / (mw / 2)
        self.rest_gap = float(np.max(rest_gap[0] * (1 - _smoothstep((np.abs(u0) - 0.85) / 0.4))))
        self.photo_teeth = self.rest_gap > 0.02 * fw
        a = TEETH_SPLIT if self.photo_teeth else 0.0
        self.m_sdist = (my - (top + bot) / 2 - a * rest_gap / 2).astype(np.float32)
        # profiles along x
        u = np.clip((mx - mcx) / (mw / 2), -1.5, 1.5)
        # (the opening ends at the inner corners, short of a smile's outer ones)
        inside = 1 - _smoothstep((np.abs(ui) - 0.85) / 0.4)
        # vertical extents
        def thickness(outer, inner):
            xc = mx[0]
            a = _interp_curve(outer, np.clip(xc, outer[:, 0].min(), outer[:, 0].max()))
            b = _interp_curve(inner, np.clip(xc, inner[:, 0].min(), inner[:, 0].max()))
            return float(np.median(np.abs(b - a)))
        lip_up, lip_lo = max(2.0, thickness(ou, iu)), max(2.0, thickness(ol, il))
        d = self.m_sdist
        gmax = float(np.max(rest_gap * inside)) if rest_gap.size else 0.0
        upper_lip_h = max(lip_up, 0.06 * fw) + gmax / 2
        lower_lip_h = max(lip_lo, 0.07 * fw) + gmax / 2
        # lower lip: 1 at the line, fading towards the chin
        w_lo_vert = 1 - _smoothstep(d / (lower_lip_h * 2.2 + 0.08 * fw))
        # The jaw turns about a hinge by the ears: seen from the front a point drops by its
        # depth in front of the hinge, most at the chin, nothing at the face's sides.
        reach = np.clip(1 - ((mx - mcx) / (0.5 * fw)) ** 2, 0, 1)  # (still at the outline: no kink at the background)
        below_chin = 1 - _smoothstep((my - chin[1] - 0.08 * fw) / (0.25 * fw))  # the neck stays
        wh = self.w_head[sl]
        # The lips' fields are a profile across the mouth (per column; rounding narrows it
        # each frame) times a vertical fade: displacement per px of each movement.
        self.m_cols = mx[0].astype(np.float64)
        self.p_lens = (lens * inside)[0].astype(np.float64)  # the opening: a lens between the corners
        self.p_inside = inside[0].astype(np.float64)
        # the photo's own gap above and below the split, 0 at the corners
        self.p_rest_up = ((1 + a) * rest_gap / 2)[0].astype(np.float64)
        self.p_rest_lo = ((1 - a) * rest_gap / 2)[0].astype(np.float64)
        self.p_u = u[0].astype(np.float64)
        self.v_up = (1 - _smoothstep((-d) / (upper_lip_h * 1.8))).astype(np.float32)
        # the lower lip rides on the jaw: lip and chin drop together (a rigid jaw)
        self.v_lo = (w_lo_vert * reach).astype(np.float32)
        self.v_both = (self.v_up * w_lo_vert).astype(np.float32)  # both lips, near the line
        # The chin is not held back by the head weight's fade down the neck (it would squash
        # the chin onto the neck); the person mask in that weight still bounds it.
        neck = np.maximum(1 - _smoothstep((my - chin[1]) / (0.35 * fw)), 0.05)
        box_edge = _smoothstep(np.minimum.reduce([my - by0, by1 - 1 - my, mx - bx0, bx1 - 1 - mx]) / (0.06 * fw))
        self.m_jaw = (reach * below_chin * (1 - w_lo_vert) * np.minimum(1.0, wh / neck) * box_edge).astype(np.float32)
        # labiodental: the lower lip's top rolls in under the upper teeth
        self.v_tuck = (1 - _smoothstep(d / (lip_lo + 0.02 * fw))).astype(np.float32)
        self.mcx = float(mcx)
        # rounding: corners move inward with the skin around them
        ur = np.clip((mx - mcx) / (mw / 2), -1.0, 1.0)
        fall_x = 1 - _smoothstep((np.abs((mx - mcx) / (mw / 2)) - 1.0) / 0.7)
        fall_y = 1 - _smoothstep((np.abs(d) - 0.06 * fw) / (0.3 * fw))
        # nothing pulls at the face's outline (the background would show inside it)
        oval = polygon_mask((self.width, self.height), P[list(L.FACE_OVAL), :2])[by0:by1, bx0:bx1].astype(np.float32) / 255
        in_face = _smoothstep((box_blur(oval, 0.04 * fw) - 0.6) / 0.3)
        self.m_round_dx = (-ur * fall_x * fall_y * in_face).astype(np.float32)
        self.p_round = (ur * fall_x)[0].astype(np.float64)  # on the lip line: where each column samples, per px of pull
        # a smile's raised corners come down to the lip line (closed lips, an O)
        corner_y = (mc0[1] + mc1[1]) / 2
        centre_y = float(((top + bot) / 2)[0, np.argmin(np.abs(mx[0] - mcx))]) if mx.size else corner_y
        self.smile_lift = max(0.0, float(centre_y - corner_y))
        corner = np.clip(np.abs(u), 0, 1) ** 2 * (1 - _smoothstep((np.abs(u) - 1.0) / 0.8))
        self.m_relax = (corner * (1 - _smoothstep((np.abs(d) - 0.02 * fw) / (0.16 * fw))) * in_face).astype(np.float32)
        # fade every mouth field to zero at the box edges (no seams)
        bh, bw = mx.shape
        by = np.arange(bh, dtype=np.float32)[:, None]
        bxx = np.arange(bw, dtype=np.float32)[None, :]
        edge = _smoothstep(np.minimum(np.minimum(by, bh - 1 - by), np.minimum(bxx, bw - 1 - bxx)) / (0.06 * fw))
        self.m_wh = (wh * edge).astype(np.float32)
        # the fields the lips and corners move by, weighted once here rather than per frame
        self.v_up = self.v_up * self.m_wh
        self.v_lo = self.v_lo * self.m_wh
        self.v_both = self.v_both * self.m_wh
        self.m_relax = self.m_relax * self.m_wh
        self.m_round_dx = self.m_round_dx * self.m_wh
        self.mouth_width = mw
        self.upper_lip_h = upper_lip_h
        self.m_sl = sl
        # the interior: teeth across the dental arch, narrower towards the corners
        self.teeth_h = 0.05 * fw
        self.m_soft = max(1.5, 0.8 * self.scale)  # the photo's own edge softness, in output px
        arch = 0.55 * mw
        phi = np.arcsin(np.clip((mx[0] - mcx) / arch, -0.999, 0.999))
        step = math.asin(min(0.9, 0.06 * fw / arch))  # a central incisor's angle on the arch
        f = np.abs(phi) / step
        edge_px = np.abs(f - np.round(f)) * step * arch * np.cos(phi)  # px to the nearest tooth edge
        self.m_tooth_gap = (0.10 * np.exp(-(edge_px / (0.5 * self.m_soft + 0.3)) ** 2)).astype(np.float32)
        frac = f - np.floor(f)
        self.m_tooth_tip = (0.05 * self.teeth_h * (2 * frac - 1) ** 2).astype(np.float32)

    def _photo_gap(self, cols, iu, il) -> tuple[np.ndarray, np.ndarray]:
        """Per column: the photo's inner lip edges (rows), smooth fits through the mesh's
        inner-lip points (straight interpolation's kinks would show as a wavy seam)."""
        def fit(pts):
            p = pts[np.argsort(pts[:, 0])]
            x0 = p[:, 0].mean()
            c = np.polyfit(p[:, 0] - x0, p[:, 1], min(4, len(p) - 1))
            return np.polyval(c, np.clip(cols, p[0, 0], p[-1, 0]) - x0)

        top, bot = fit(iu), fit(il)
        bot = np.maximum(bot, top)
        return top, bot

    def _setup_interior(self) -> None:
        av = self.avatar
        img = av.image.astype(np.float32)
        face = av.face > 127
        skin = np.median(img[face], 0) if face.any() else np.array([180, 140, 120], np.float32)
        lum = float(skin.mean()) / 170.0
        lum = float(np.clip(lum, 0.45, 1.3))
        # teeth colour: if the photo shows teeth (bright pixels inside the mouth), use them
        mouth = av.mouth > 127
        teeth = np.array([236, 230, 215], np.float32) * lum
        if mouth.any():
            mp = img[mouth]
            bright = mp[mp.mean(1) > np.percentile(mp.mean(1), 85)]
            if len(bright) and bright.mean() > skin.mean():
                teeth = np.clip(bright.mean(0) * 1.0, 0, 255)
        tint = skin / max(skin.mean(), 1)
        self.c_teeth = np.clip(teeth, 0, 255).astype(np.float32)
        self.c_cavity = np.clip(np.array([52, 14, 17], np.float32) * lum * (0.7 + 0.3 * tint), 0, 255)
        self.c_tongue = np.clip(np.array([178, 86, 88], np.float32) * lum * (0.8 + 0.2 * tint), 0, 255)

    # ------------------------------------------------------------------ motion
    def reset_motion(self) -> None:
        """Interruption hook: the speech's pending nods and brows drop; the pose glides on."""
        self.motion.reset()

    # ------------------------------------------------------------------ per frame
    def render(self, mouth: Mapping[str, float], state: ConversationState, t: float, energy: float = 0.0) -> np.ndarray:
        """The next frame as ``(height, width, 3)`` RGB, from a ring like ``render_rgba``'s."""
        rgba = self.render_rgba(mouth, state, t, energy)
        rgb = self._rgb[self._fi]  # _fi already points past the frame just drawn
        x0, y0, x1, y1 = self.roi
        np.copyto(rgb[y0:y1, x0:x1], rgba[y0:y1, x0:x1, :3])  # only the ROI ever changes
        return rgb

    def render_rgba(
        self, mouth: Mapping[str, float], state: ConversationState, t: float, energy: float = 0.0
    ) -> np.ndarray:
        """The next frame as ``(height, width, 4)`` RGBA, without a copy: the array belongs to
        a ring of ``ring`` frames and is overwritten that many calls later."""
        t = float(t)
        dt = 0.04 if self._last_t is None else min(max(t - self._last_t, 0.0), 0.25)
        first = self._last_t is None
        self._last_t = t
        state = ConversationState(state)
        self.motion.step(state, t, energy, float(mouth.get(PITCH_KEY, 0.0) or 0.0))
        jaw_in, closed_in, round_in, spread_in, labio_in = (
            min(max(float(mouth.get(name, 0.0) or 0.0), 0.0), 1.0) for name in _CHANNELS
        )
        if state == ConversationState.SPEAKING:
            # speech's nearly shut mouth is shut: the photo's own parted lips (a smile's
            # teeth) close as the opening falls to nothing, not only at p/b/m
            rest = REST_CLOSE * (1.0 - jaw_in / CLOSE_BELOW) * (1.0 - 0.6 * spread_in) if jaw_in < CLOSE_BELOW else 0.0
            # ("ee" keeps the photo's smile: its teeth show; "oo" its small O: rounded lips
            # part in the middle, with the jaw nearly shut, unless the model hints at a closure)
            closed_in = max(closed_in, rest * (1.0 - round_in * max(0.0, 1.0 - closed_in / 0.1)))
        closed_in = min(1.0, CLOSE_GAIN * closed_in)  # a closure the model only half signals still shuts
        m_in = np.array([jaw_in, closed_in, round_in - SPREAD_K * spread_in, labio_in])
        am = 1.0 if first else 1 - math.exp(-dt / 0.025)
        self._mouth += (m_in - self._mouth) * am
        if closed_in > self._mouth[1]:  # lips shut in one frame: a p/b/m is often only one frame long
            self._mouth[1] = closed_in
        return self._draw(self._mouth, self.motion.blink)

    def _draw(self, mouth: np.ndarray, blink: float) -> np.ndarray:
        """Returns the next RGBA frame of the ring."""
        p = self._p
        u = float(self._up)
        x0, y0, x1, y1 = self.roi
        dx, dy = self._dx, self._dy  # texture units
        np.multiply(self.w_head, (u * (p[0] - p[2] * self._row_from_pivot))[:, None], out=dx)
        np.multiply(self.w_head, (u * (p[1] + p[2] * self._col_from_pivot))[None, :], out=dy)
        self._add_scaled(dx, self._face_box, self._face_field, u * p[4])
        self._add_scaled(dy, self._face_box, self._face_field, u * p[3])
        self._add_scaled(dy, self._brow_box, self._brow_field, u * p[6])
        self._eyes_move(dx, dy, blink)
        # ---- lower face: jaw/lips with the split at the (moving) lip line (pixel units)
        jaw, closed, rnd, labio = (float(v) for v in mouth)
        closed *= 1 - labio  # f/v parts the lips onto the teeth
        sl = self.m_sl
        fw = self.fw
        opening = jaw * (1 - closed)
        rnd_in = max(rnd, 0.0)
        o_round = rnd_in * (1 - closed) * ROUND_OPEN  # an O, unless the lips are shut
        up_px = (opening * UP_RAISE + labio * LABIO_RAISE + 0.4 * o_round) * fw
        lo_px = (opening * JAW_DROP + o_round) * fw
        parting = min(1.0, (up_px + lo_px) / 1.5)
        # a photo's own teeth part with their lips; without them the drawn inside covers the
        # photo's gap as soon as the lips part
        k = 0.0 if self.photo_teeth else parting
        cover = max(closed, rnd_in)  # closed or rounded lips cover the photo's teeth
        if self.photo_teeth and up_px + lo_px > 0:
            # the photo's smile is already an opening: the upper lip rises only past it (the
            # teeth are together: the lower lip drops with the jaw, but spread lips keep the
            # smile, or "ee" draws a slit under the teeth like an outline)
            keep = max(0.0, 1.0 - self.rest_gap * (1.0 - cover) / (up_px + lo_px))
            up_px *= keep
            lo_px *= 1.0 - min(1.0, max(-rnd, 0.0)) * (1.0 - keep)
            o_round *= keep
        # the jaw carries the lower lip and the chin together (a chin that outruns the lip
        # stretches the lip into a smear); pressed lips stretch instead, the chin half as far
        jaw_px = jaw * JAW_DROP * fw * (1 - 0.5 * closed)
        chin_px = CHIN_K * max(lo_px, jaw_px)
        open_px = up_px + lo_px + self.rest_gap * k
        sd = self.m_sdist - dy[sl] * (1 / u)  # signed distance to the lip line, after head motion
        # rounding narrows the lips' profiles as the texture's corners are pulled in
        if rnd:
            src = self.m_cols + (rnd * ROUND_GAIN * self.mouth_width) * self.p_round
            p_lens = np.interp(src, self.m_cols, self.p_lens)
            p_rest_up = np.interp(src, self.m_cols, self.p_rest_up)
            p_rest_lo = np.interp(src, self.m_cols, self.p_rest_lo)
            p_in = np.interp(src, self.m_cols, self.p_inside)
            p_o = np.interp(self.mcx + (src - self.mcx) / O_WIDTH, self.m_cols, self.p_lens)  # the O's opening
            p_u = np.clip((src - self.mcx) / (self.mouth_width / 2), -1.5, 1.5)
        else:
            p_lens, p_in, p_u = self.p_lens, self.p_inside, self.p_u
            p_o = p_lens
            p_rest_up, p_rest_lo = self.p_rest_up, self.p_rest_lo
        # The line itself moves, both lips with it (so it moves the split, like head motion):
        # a smile's corners come down, covered teeth close at the gap's middle, and the jaw
        # carries the chin (nothing above the line).
        relax = self.smile_lift * min(1.0, max(closed * min(1.0, 1.0 + rnd), rnd_in))  # spread lips keep the smile
        shift = None
        if relax:
            shift = (relax * RELAX) * self.m_relax
        if cover and self.photo_teeth:
            mid = (cover * 0.5 * (p_rest_lo - p_rest_up)).astype(np.float32) * self.v_both
            shift = mid if shift is None else shift + mid
        if chin_px:
            shift = chin_px * self.m_jaw if shift is None else shift + chin_px * self.m_jaw
        if shift is not None:
            sd -= shift
        lower = sd >= 0
        # closed lips meet and overlap a little, so the seam shows lip, not the teeth behind
        o_px = o_round * fw  # the O opens in the middle only: the pursed lips stay shut beside it
        # rounded lips part where the O is: the jaw's opening goes there too, not into a slit
        # out to the corners
        p_open = p_lens + rnd_in * (p_o - p_lens) if rnd_in else p_lens
        up_row = closed * PRESS_PX * p_lens - (up_px - 0.4 * o_px) * p_open - 0.4 * o_px * p_o + cover * p_rest_up
        lo_row = (lo_px - o_px) * p_open + o_px * p_o - closed * PRESS_PX * p_lens - cover * p_rest_lo
        # how far inside each lip its visible edge lies (source px): covered teeth are hidden
        kk = max(k, cover)
        up_off = kk * p_rest_up * p_in
        lo_off = kk * p_rest_lo * p_in
        if labio:
            # f/v: the lower lip's top tucks under the upper teeth (its visible edge is a line
            # inside it, the photo's lower teeth hidden too) and that edge meets the teeth
            lo_off = lo_off + labio * (LABIO_TUCK * fw * p_lens + (1 - kk) * p_rest_lo * p_in)
            teeth_tip = up_row - up_off + (LABIO_GAP * self.teeth_h if not self.photo_teeth else -1.0) * p_lens
            lo_row = (1 - labio) * lo_row + labio * (teeth_tip - lo_off)
        up_disp = up_row.astype(np.float32) * self.v_up
        lo_disp = lo_row.astype(np.float32) * self.v_lo
        mdy = np.where(lower, lo_disp, up_disp)
        if rnd:
            dx[sl] += (rnd * ROUND_GAIN * self.mouth_width * u) * self.m_round_dx
        moved = mdy if shift is None else mdy + shift
        moved *= u
        dy[sl] += moved
        # the interior where a pixel's source lies between the (parted) lips' visible edges,
        # with a coverage ramp as soft as the photo's edges (its half-pixel centring fading
        # out at the corners' tips)
        src_sd = sd - mdy
        if kk or labio:
            depth = np.where(lower, lo_off.astype(np.float32) * self.m_wh - src_sd, src_sd + up_off.astype(np.float32) * self.m_wh)
        else:
            depth = np.where(lower, -src_sd, src_sd)
        depth *= 1 / self.m_soft
        depth += (0.5 * parting * np.minimum(1.0, 4.0 * p_lens)).astype(np.float32)
        alpha = np.clip(depth, 0.0, 1.0, out=depth)
        if self.debug_mouth:
            self.debug["gap_px"] = float(alpha.sum(0).max())
        if closed:
            # closed lips meet in a soft dark crease, drawn over the split's pixel steps
            seam = np.clip(1.0 - np.abs(sd) * (1 / SEAM_W), 0.0, 1.0)
            seam *= (SEAM * closed * (1.0 - 0.7 * rnd_in) * p_in).astype(np.float32)  # pursed lips beside an O barely crease
            np.maximum(alpha, seam, out=alpha)
        if self.debug_mouth:
            self.debug_alpha = alpha.copy()  # tests: the inside's coverage over the mouth box
            vis = (p_in > 0.9) & (src_sd > 0.75 - p_rest_up) & (src_sd < p_rest_lo - 0.75) & (alpha == 0)
            self.debug["teeth_px"] = float(vis.sum())
        # ---- nearest texel of the upsampled base frame = bilinear sample of the base
        ix, iy, res = self._ix, self._iy, self._res
        np.subtract(self._gx, dx, out=dx)
        np.subtract(self._gy, dy, out=dy)
        np.clip(dx, 0.0, self._tex_max[0], out=dx)
        np.clip(dy, 0.0, self._tex_max[1], out=dy)
        np.copyto(ix, dx, casting="unsafe")
        np.copyto(iy, dy, casting="unsafe")
        phase = self._phase
        np.bitwise_and(ix, self._up - 1, out=phase)
        np.multiply(phase, self._tex_plane, out=phase)
        np.right_shift(ix, self._up.bit_length() - 1, out=ix)
        np.multiply(iy, self._tex_row, out=iy)
        np.add(iy, phase, out=iy)
        np.add(iy, ix, out=iy)
        np.take(self._tex, iy, out=res, mode="clip")
        # ---- the lip line anti-aliased: pixels it crosses mix both lips' samples by coverage
        self._seam(res, sl, sd, mdy, up_disp, lo_disp)
        # ---- mouth interior where the lips parted
        if alpha.max() > 0:
            self._interior(res, sl, sd, alpha, up_disp, lo_disp, up_off.astype(np.float32),
                           lo_off.astype(np.float32), p_u.astype(np.float32), open_px, labio, rnd_in)
        out = self._frames[self._fi]
        self._fi = (self._fi + 1) % len(self._frames)
        out.view(np.uint32)[y0:y1, x0:x1, 0] = res
        return out

    def _add_scaled(self, dst: np.ndarray, box: tuple[slice, slice], field: np.ndarray, k: float) -> None:
        if k == 0.0 or field.size == 0:
            return
        tmp = self._scratch[: field.size].reshape(field.shape)
        np.multiply(field, k, out=tmp)
        dst[box] += tmp

    def _seam(self, res, sl, sd, mdy, up_disp, lo_disp) -> None:
        """Pixels within half a pixel of the split sampled one lip only; each gets the other
        lip's sample mixed in by the share of the pixel on that side, so a curved seam shows
        no staircase."""
        ys, xs = np.nonzero((sd > -0.5) & (sd < 0.5))
        if ys.size == 0:
            return
        u = self._up
        s = sd[ys, xs]
        other = np.where(s >= 0, up_disp[ys, xs], lo_disp[ys, xs])
        sy = self._dy[sl][ys, xs]  # the texture rows read (the buffer holds positions by now)
        sy_o = np.clip(sy + (mdy[ys, xs] - other) * u, 0.0, self._tex_max[1])
        idx = self._iy[sl][ys, xs] + (sy_o.astype(np.int32) - sy.astype(np.int32)) * self._tex_row
        theirs = self._tex[np.clip(idx, 0, self._tex.size - 1)].view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float32)
        sub = res[sl]
        words = sub[ys, xs]
        mine = words.view(np.uint8).reshape(-1, 4)
        w = (0.5 - np.abs(s))[:, None]
        mixed = mine.copy()
        mixed[:, :3] = np.clip(mine[:, :3] + (theirs - mine[:, :3]) * w + 0.5, 0, 255)
        sub[ys, xs] = mixed.view(np.uint32)[:, 0]

    def _interior(self, res, sl, sd, alpha, top_f, bot_f, up_off, lo_off, p_u, open_px, labio, rnd) -> None:
        """Shades the mouth's inside into ``res`` where ``alpha`` > 0: cavity, tongue, upper
        and lower teeth, and the dark crease of closed lips; ``top_f``/``bot_f`` are the lips'
        displacement fields, ``up_off``/``lo_off`` (per column) how far from the line the lips'
        visible edges lie, ``p_u`` each column's place across the mouth (-1 and 1 at the corners)."""
        ys, xs = np.nonzero(alpha > 0)
        a = alpha[ys, xs]
        wh = self.m_wh[ys, xs]
        top = top_f[ys, xs] - up_off[xs] * wh  # the upper lip's visible edge (sd units; negative = above)
        bot = bot_f[ys, xs] + lo_off[xs] * wh
        s = sd[ys, xs]
        gap = bot - top
        dt = s - top  # below the upper lip's edge
        db = bot - s  # above the lower lip's edge
        u = np.abs(p_u[xs])
        soft = self.m_soft
        fw = self.fw
        v = np.clip(dt / np.maximum(gap, 1e-3), 0, 1)
        c = np.empty((len(ys), 3), np.float32)
        c[:] = self.c_cavity
        # the tongue: low in the mouth, narrower than it, lit on its top
        tw = _smoothstep((v - 0.45) / 0.4) * min(1.0, open_px / (0.09 * fw)) * np.clip((0.8 - u) / 0.35, 0, 1)
        c += (self.c_tongue - self.c_cavity) * (tw * (0.75 + 0.25 * _smoothstep((1 - v) / 0.5)))[:, None]
        # upper teeth across the middle of the mouth (the corners are in the cheeks' shadow);
        # lower teeth only when the jaw is well open; an O hides most of them; for f/v the
        # upper ones reach the lower lip
        col = xs
        tip = self.m_tooth_tip[col]
        t_up = (self.teeth_h * (1 - 0.6 * rnd) + labio * np.maximum(gap, 0)) * (1 - 0.45 * u ** 2) - tip
        up_cov = np.clip((t_up - dt) / soft + 0.5, 0, 1) * np.clip((0.85 - u) / 0.3, 0, 1)
        if self.photo_teeth:
            up_cov *= labio  # the photo's own upper teeth are there, except for f/v's reach down
        t_lo = np.minimum(0.025 * fw, np.maximum(0.0, gap - t_up - 2 * soft)) * ((1 - labio) * (1 - rnd)) * (1 - 0.5 * u ** 2) - tip
        lo_cov = np.clip((t_lo - db) / soft + 0.5, 0, 1) * np.clip((0.7 - u) / 0.3, 0, 1) * (not self.photo_teeth)
        ridge = 1.0 - self.m_tooth_gap[col]
        teeth = self.c_teeth[None] * ridge[:, None]
        c += (teeth * (0.95 - 0.1 * np.clip(dt / (self.teeth_h + 1), 0, 1))[:, None] - c) * up_cov[:, None]
        c += (teeth * 0.75 - c) * lo_cov[:, None]
        # light: the corners and a narrow slit are in shadow, the upper lip shades the teeth's roots
        shade = (1 - 0.6 * u ** 2) * np.clip(gap / (0.05 * fw), min(1.0, 0.45 + labio), 1.0)
        shade *= 1 - 0.3 * np.exp(-np.maximum(dt, 0) / (0.25 * self.teeth_h + soft))
        c *= shade[:, None]
        sub = res[sl]
        words = sub[ys, xs]
        old = words.view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float32)
        # where the lips touch, the inside is only a crease: the lips' own colour, darkened
        w_in = np.clip(gap / (2 * soft), 0, 1)[:, None]
        c = c * w_in + old * (CREASE * (1 - w_in))
        mixed = old + (c - old) * a[:, None] + 0.5
        rgba = words.view(np.uint8).reshape(-1, 4).copy()  # keeps the texel's alpha
        rgba[:, :3] = np.clip(mixed, 0, 255)
        sub[ys, xs] = rgba.view(np.uint32)[:, 0]
