"""Real-time face renderer: jaw/lip warp, mouth interior, blinks, head motion. numpy only.

Design (for speed): everything that depends only on the output size is precomputed in
``__init__``: the framed base frame, a head ROI with its motion fields, a lower-face box
with the jaw/lip fields, and the base frame around the ROI upsampled 4x and packed as
RGBA words. Per frame: two broadcasts and two small boxes give the smooth displacement
(head motion, brows), the lids are drawn per eye, the lower-face box adds the jaw/lip
displacement with a split at the lip line (which is what opens a gap), one gather of the
nearest upsampled texel per pixel samples the base frame (bilinear to 1/4 px), the gap is
filled with a shaded mouth interior, and the ROI is written into a preallocated RGBA
frame. Pixels outside the person mask (dilated a few px) never move, so flat backgrounds
stay untouched.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from livekit_avatar_plugin.face import landmarks as L
from livekit_avatar_plugin.face.avatar import Avatar, _blurf, _polygon_mask, extend_outside
from livekit_avatar_plugin.state import ConversationState

FACE_SHARE = (0.32, 0.40)  # face width over the output's shorter side: head-and-shoulders
EYES_AT = 0.40  # the eyes' height, from the top, over the output's height
EYE_CORNERS = (33, 133, 362, 263)
ROUND_GAIN = 0.20  # each corner's inward pull at full rounding, over the mouth width
REST_CLOSE, CLOSE_BELOW = 1.0, 0.4  # while speaking, openings below CLOSE_BELOW close the photo's lips
PRESS = 1.0  # closed lips meet and press: the photo's gap closed this many times over
SPREAD_K = 1.0  # spreading (lip_spread) widens the mouth as much as rounding narrows it


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


def _interp_curve(pts: np.ndarray, xs: np.ndarray) -> np.ndarray:
    order = np.argsort(pts[:, 0])
    return np.interp(xs, pts[order, 0], pts[order, 1])


class FaceRenderer:
    """Renders frames of one avatar at one output size. One per session; not thread-safe."""

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
        rgba = np.dstack([self.base, np.full((self.height, self.width, 1), 255, np.uint8)])
        self._frames = [rgba.copy() for _ in range(max(1, ring))]
        self._rgb = [self.base.copy() for _ in range(max(1, ring))]
        self._fi = 0
        self._last_t: float | None = None
        self._p = np.zeros(8, np.float64)  # smoothed motion parameters
        self._mouth = np.zeros(3, np.float64)
        self._energy = 0.0
        self._next_blink = float(self.rng.uniform(1.0, 3.0))
        self._blink_start = -10.0
        self._blink_dur = 0.15
        self._next_nod = 0.0
        self._nod_start = -10.0
        self._brow_start = -10.0
        self._next_brow = 0.0
        self._phases = self.rng.uniform(0, 2 * np.pi, 8)
        self.blink_log: list[tuple[float, float]] = []  # (start, duration) of every blink
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
            src = np.asarray(Image.fromarray(av.image).resize((max(1, round(iw * pre)), max(1, round(ih * pre))), Image.BOX))
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
        d = max(2, int(round(4 * fw / 170)))
        dil = person.copy()
        for _ in range(d):
            dil = np.maximum(dil, np.maximum.reduce([np.roll(dil, 1, 0), np.roll(dil, -1, 0), np.roll(dil, 1, 1), np.roll(dil, -1, 1)]))
        dil = np.clip(_blurf(dil, 1.5) * 1.5 - 0.25, 0, 1) * (dil > 0)
        # zero weight at the ROI border so the ROI edge never shows a seam
        border = np.minimum.reduce([xs - x0, x1 - 1 - xs, ys - y0, y1 - 1 - ys])
        edge = _smoothstep(border / 6.0)
        wh = (head * dil * edge).astype(np.float32)
        self.w_head = wh
        face = _polygon_mask((W, H), P[list(L.FACE_OVAL), :2])[y0:y1, x0:x1].astype(np.float32) / 255
        face = _blurf(face, 0.08 * fw) * wh
        pcx, pcy = cx, chin[1] + 0.3 * fw  # pivot for roll: the neck
        # Head motion is [tx, ty, roll, nod (face dy), yaw-ish (face dx), brow raise]:
        #   dx = wh * (tx - roll * (y - pivot_y)) + yaw * face
        #   dy = wh * (ty + roll * (x - pivot_x)) + nod * face + brow * brow_field
        # so per frame it is two broadcasts over the ROI plus small boxes for the face and
        # brows (blinks are drawn per eye, not as a displacement field).
        brow_dy = self._brow_field(xs, ys)
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
        planes = np.full((len(fc), up, n_x), 0xFF << 24, np.uint32)
        src = self.base[ty0:ty1, tx0:tx1]
        for c in range(3):
            ch = src[..., c].astype(np.float32)
            rows = ch[:, i0x] * (1 - ax) + ch[:, i1x] * ax  # (th, (tw - 1) * up + 1)
            val = np.clip(rows[i0y] * (1 - ay) + rows[i1y] * ay + 0.5, 0, 255).astype(np.uint32)
            for a in range(up):
                phase = val[:, a::up]
                planes[:, a, : phase.shape[1]] |= phase << (8 * c)
        self._tex = planes.ravel()
        self._tex_plane = n_x
        self._tex_row = up * n_x
        self._tex_max = (float(len(fr) - 1), float(len(fc) - 1))

    def _brow_field(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Displacement per px of brow raise: the brows and the skin around them move up,
        fading out with the head weight."""
        fw = self.fw
        field = np.zeros_like(xs)
        for brow in (L.RIGHT_BROW, L.LEFT_BROW):
            bx, by = self.pts[list(brow), :2].mean(0)
            r = np.sqrt(((xs - bx) / (0.35 * fw)) ** 2 + ((ys - by) / (0.22 * fw)) ** 2)
            field -= 1 - _smoothstep(r - 0.2)
        return (field * np.clip(self.w_head, 0, 1)).astype(np.float32)

    def _setup_eyes(self, xs: np.ndarray, ys: np.ndarray) -> None:
        """Per-eye boxes for the lid: the upper lid slides down over the eye (occluding it)
        while the skin above compresses; computed per frame because it is not linear in
        the blink amount."""
        P = self.pts
        fw = self.fw
        x0, y0, x1, y1 = self.roi
        self.eyes = []
        for upper, lower in ((L.RIGHT_EYE_UPPER, L.RIGHT_EYE_LOWER), (L.LEFT_EYE_UPPER, L.LEFT_EYE_LOWER)):
            up = P[list(upper), :2]
            lo = P[list(lower), :2]
            ex0, ex1 = up[:, 0].min(), up[:, 0].max()
            ew = ex1 - ex0
            lid = 0.10 * fw
            bx0 = int(max(x0, math.floor(ex0 - 0.25 * ew)))
            bx1 = int(min(x1, math.ceil(ex1 + 0.25 * ew)))
            by0 = int(max(y0, math.floor(up[:, 1].min() - lid - 2)))
            by1 = int(min(y1, math.ceil(lo[:, 1].max() + 3)))
            sl = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
            ex = xs[sl]
            ey = ys[sl]
            xc = np.clip(ex, ex0, ex1)
            top = _interp_curve(up, xc)
            bot = np.maximum(_interp_curve(lo, xc), top + 0.5)
            taper = 1 - _smoothstep((np.abs(ex - (ex0 + ex1) / 2) - ew / 2) / (0.2 * ew))
            travel = (bot - top) * taper
            edge = _smoothstep(np.minimum.reduce([ex - bx0, bx1 - 1 - ex, ey - by0, by1 - 1 - ey]) / 3.0)
            self.eyes.append((sl, (ey - top).astype(np.float32), travel.astype(np.float32), float(lid),
                              (self.w_head[sl] * edge).astype(np.float32)))

    def _lids(self, dy: np.ndarray, blink: float) -> None:
        """``dy`` is in texture units (``_up`` per pixel)."""
        if blink <= 1e-4:
            return
        u = self._up
        for sl, rel, travel, lid, wgt in self.eyes:
            r = rel - dy[sl] / u  # position relative to the (moved) upper lid
            bt = blink * travel
            inside = (r >= -lid) & (r < bt)
            dy[sl] += np.where(inside, (r + lid) * (bt * u) / (lid + bt + 1e-6), 0.0) * wgt

    def _setup_mouth_fields(self, xs: np.ndarray, ys: np.ndarray) -> None:
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
        # lower-face box
        bx0 = int(max(x0, math.floor(mcx - 0.62 * fw)))
        bx1 = int(min(x1, math.ceil(mcx + 0.62 * fw)))
        by0 = int(max(y0, math.floor(nose[1] + 0.02 * fw)))
        by1 = int(min(y1, math.ceil(chin[1] + 0.25 * fw)))
        self.mbox = (bx0, by0, bx1, by1)
        sl = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
        mx = xs[sl]
        my = ys[sl]
        xcl = np.clip(mx, iu[:, 0].min(), iu[:, 0].max())
        top = _interp_curve(iu, xcl)
        bot = _interp_curve(il, xcl)
        bot = np.maximum(bot, top)
        mid = (top + bot) / 2
        self.m_sdist = (my - mid).astype(np.float32)
        rest_gap = (bot - top)
        # profiles along x
        u = np.clip((mx - mcx) / (mw / 2), -1.5, 1.5)
        lens = np.sqrt(np.clip(1 - u ** 2, 0, 1))
        inside = 1 - _smoothstep((np.abs(u) - 0.85) / 0.4)
        # vertical extents
        upper_lip_h = max(2.0, float(np.median(_interp_curve(iu, np.clip(mx[0], iu[:, 0].min(), iu[:, 0].max())) - _interp_curve(ou, np.clip(mx[0], ou[:, 0].min(), ou[:, 0].max())))))
        lower_lip_h = max(2.0, float(np.median(_interp_curve(ol, np.clip(mx[0], ol[:, 0].min(), ol[:, 0].max())) - _interp_curve(il, np.clip(mx[0], il[:, 0].min(), il[:, 0].max())))))
        d = self.m_sdist
        gmax = float(np.max(rest_gap * inside)) if rest_gap.size else 0.0
        upper_lip_h = max(upper_lip_h, 0.06 * fw) + gmax / 2
        lower_lip_h = max(lower_lip_h, 0.07 * fw) + gmax / 2
        # upper region weight: 1 at the lip line, fading over ~1.6 upper-lip heights
        w_up = (1 - _smoothstep((-d) / (upper_lip_h * 1.8))) * inside
        # lower lip: 1 at the line, fading towards the chin
        w_lolip = (1 - _smoothstep(d / (lower_lip_h * 2.2 + 0.08 * fw))) * inside
        # jaw: the lower face below the line, fading at the cheeks and below the chin
        jx = 1 - _smoothstep((np.abs(mx - mcx) - 0.32 * fw) / (0.22 * fw))
        jy = 1 - _smoothstep((my - chin[1]) / (0.22 * fw))
        w_jaw = jx * jy
        self.m_inside = inside.astype(np.float32)
        wh = self.w_head[sl]
        # opening profile: a lens between the corners
        self.m_open_up = (lens * w_up).astype(np.float32)  # upward displacement per px of opening
        self.m_open_lo = (lens * w_lolip).astype(np.float32)
        # closing the photo's own lip gap: rest_gap already falls to 0 at the inner corners
        self.m_close_up = (rest_gap / 2 * (1 - _smoothstep((-d) / (upper_lip_h * 1.8)))).astype(np.float32)
        self.m_close_lo = (rest_gap / 2 * (1 - _smoothstep(d / (lower_lip_h * 2.2 + 0.08 * fw)))).astype(np.float32)
        # chin moves; at the lip line the jaw moves nothing (the opening is handled apart),
        # so lips pressed together stay together whatever the jaw does
        w_lo_vert = 1 - _smoothstep(d / (lower_lip_h * 2.2 + 0.08 * fw))
        self.m_jaw = (w_jaw * (1 - w_lo_vert)).astype(np.float32)
        # rounding: corners move inward, lips push out vertically a little
        ur = np.clip((mx - mcx) / (mw / 2), -1.0, 1.0)
        fall_x = 1 - _smoothstep((np.abs((mx - mcx) / (mw / 2)) - 1.0) / 0.7)
        self.m_round_dx = (-ur * fall_x * (1 - _smoothstep((np.abs(d) - 0.04 * fw) / (0.16 * fw)))).astype(np.float32)
        # fade every mouth field to zero at the box edges (no seams)
        bh, bw = mx.shape
        by = np.arange(bh, dtype=np.float32)[:, None]
        bxx = np.arange(bw, dtype=np.float32)[None, :]
        edge = _smoothstep(np.minimum(np.minimum(by, bh - 1 - by), np.minimum(bxx, bw - 1 - bxx)) / (0.06 * fw))
        self.m_wh = (wh * edge).astype(np.float32)
        self.mouth_width = mw
        self.max_open = 0.24 * fw  # inner lip gap at jaw_open=1
        self.max_jaw = 0.10 * fw
        self.rest_gap = float(np.max(rest_gap * inside))
        self.m_u = u.astype(np.float32)
        self.m_rest_half = (rest_gap / 2).astype(np.float32)
        self.upper_lip_h = upper_lip_h
        self.m_sl = sl

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
        """Interruption hook: drop energy-driven motion; smoothed values decay (no pop)."""
        self._energy = 0.0
        self._nod_start = -10.0

    def _targets(self, state: ConversationState, t: float, energy: float) -> np.ndarray:
        ph = self._phases
        fw = self.fw
        k = fw / 170.0  # motion scales with the face size
        tgt = np.zeros(8)
        # idle sway + breathing (always present, small)
        tgt[0] = k * (1.2 * math.sin(0.31 * t + ph[0]) + 0.6 * math.sin(0.73 * t + ph[1]))
        tgt[1] = k * (0.8 * math.sin(2 * math.pi * t / 4.2 + ph[2]))  # breathing
        tgt[2] = 0.007 * math.sin(0.23 * t + ph[3]) + 0.004 * math.sin(0.61 * t + ph[4])
        tgt[3] = k * 0.6 * math.sin(0.41 * t + ph[5])
        tgt[4] = k * 1.0 * math.sin(0.27 * t + ph[6])
        if state == ConversationState.LISTENING:
            if t >= self._next_nod:
                self._nod_start = t
                self._next_nod = t + float(self.rng.uniform(2.0, 4.5))
            if t >= self._next_brow:
                self._brow_start = t
                self._next_brow = t + float(self.rng.uniform(3.0, 7.0))
            nd = t - self._nod_start
            if nd < 0.9:
                tgt[3] += k * 3.0 * math.sin(math.pi * nd / 0.9) ** 2
            bd = t - self._brow_start
            if bd < 1.2:
                tgt[6] = k * 2.5 * math.sin(math.pi * bd / 1.2)
            tgt[2] += 0.012  # slight attentive tilt
        elif state == ConversationState.THINKING:
            tgt[4] += k * 2.0
            tgt[3] -= k * 1.0
            tgt[6] = k * 1.0
        elif state == ConversationState.SPEAKING:
            e = self._energy
            tgt[3] += k * 4.0 * e * math.sin(2 * math.pi * 1.6 * t + ph[7])
            tgt[2] += 0.015 * e * math.sin(2 * math.pi * 0.5 * t + ph[2])
            tgt[0] += k * 1.5 * e * math.sin(2 * math.pi * 0.35 * t + ph[3])
            tgt[6] = k * 2.0 * max(0.0, e - 0.4)
        return tgt

    def _blink(self, t: float) -> float:
        if t >= self._next_blink and t - self._blink_start > self._blink_dur:
            self._blink_start = t
            self._blink_dur = float(self.rng.uniform(0.10, 0.20))
            self.blink_log.append((t, self._blink_dur))
            self._next_blink = t + self._blink_dur + float(self.rng.uniform(2.0, 6.0)) - self._blink_dur
        p = (t - self._blink_start) / self._blink_dur
        if 0 <= p <= 1:
            return 0.5 - 0.5 * math.cos(2 * math.pi * p)
        return 0.0

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
        e_in = float(np.clip(energy, 0, 1)) if state == ConversationState.SPEAKING else 0.0
        a_e = 1 - math.exp(-dt / (0.08 if e_in > self._energy else 0.35))
        self._energy += (e_in - self._energy) * a_e
        tgt = self._targets(state, t, e_in)
        a = 1.0 if first else 1 - math.exp(-dt / 0.18)
        self._p += (tgt - self._p) * a
        jaw_in = float(np.clip(mouth.get("jaw_open", 0.0) or 0.0, 0, 1))
        closed_in = float(np.clip(mouth.get("lips_closed", 0.0) or 0.0, 0, 1))
        if state == ConversationState.SPEAKING:
            # speech's nearly shut mouth is shut: the photo's own parted lips (a smile's
            # teeth) close as the opening falls to nothing, not only at p/b/m
            closed_in = max(closed_in, REST_CLOSE * (1.0 - jaw_in / CLOSE_BELOW) if jaw_in < CLOSE_BELOW else 0.0)
        m_in = np.array([jaw_in, closed_in,
                         float(np.clip(mouth.get("lip_round", 0.0) or 0.0, 0, 1))
                         - SPREAD_K * float(np.clip(mouth.get("lip_spread", 0.0) or 0.0, 0, 1))])
        am = 1.0 if first else 1 - math.exp(-dt / 0.025)
        self._mouth += (m_in - self._mouth) * am
        blink = self._blink(t)
        return self._draw(self._mouth, blink)

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
        self._lids(dy, blink)
        # ---- lower face: jaw/lips with the split at the (moving) lip line (pixel units)
        jaw, closed, rnd = (float(v) for v in mouth)
        sl = self.m_sl
        open_px = jaw * (1 - closed) * self.max_open
        jaw_px = jaw * self.max_jaw * (1 - 0.5 * closed)
        sd = self.m_sdist - dy[sl] * (1 / u)  # signed distance to the lip line, after head motion
        lower = sd >= 0
        # the jaw moves nothing above the lip line
        up_disp = -(open_px * 0.3) * self.m_open_up + (PRESS * closed) * self.m_close_up
        lo_disp = (open_px * 0.7) * self.m_open_lo - (PRESS * closed) * self.m_close_lo + jaw_px * self.m_jaw
        mdy = np.where(lower, lo_disp, up_disp) * self.m_wh
        if rnd:
            dx[sl] += (rnd * ROUND_GAIN * self.mouth_width * u) * self.m_round_dx * self.m_wh
        dy[sl] += mdy * u
        # gap: pixels whose source lies across the lip line (soft edge of 1 px)
        src_sd = sd - mdy
        depth = np.where(lower, -src_sd, src_sd)
        alpha = np.clip(depth - 0.02, 0.0, 1.0) * self.m_inside
        if self.debug_mouth:
            vis = (self.m_inside > 0.9) & (np.abs(src_sd) < self.m_rest_half - 0.75) & (alpha == 0)
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
        # ---- mouth interior where the lips parted
        if alpha.max() > 0:
            self._interior(res, sl, sd, alpha, up_disp * self.m_wh, lo_disp * self.m_wh, open_px)
            self.debug["gap_px"] = float(alpha.sum(0).max())
        else:
            self.debug["gap_px"] = 0.0
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

    def _interior(self, res, sl, sd, alpha, up_disp, lo_disp, open_px) -> None:
        ys, xs = np.nonzero(alpha > 0)
        a = alpha[ys, xs]
        top = up_disp[ys, xs]  # the upper inner edge (relative to the line; negative = above)
        bot = lo_disp[ys, xs]
        gap = np.maximum(bot - top, 1e-3)
        v = np.clip((sd[ys, xs] - top) / gap, 0, 1)  # 0 at the upper lip, 1 at the lower
        u = np.abs(self.m_u[ys, xs])
        depth_from_top = sd[ys, xs] - top
        teeth_h = min(0.045 * self.fw, 0.3 * max(open_px, 1.0) + 0.15 * self.rest_gap)
        c = np.broadcast_to(self.c_cavity, (len(ys), 3)).copy()
        # tongue in the lower part for wider openings
        tw = np.clip((v - 0.45) / 0.35, 0, 1) ** 0.8 * np.clip(open_px / (0.10 * self.fw), 0, 1)
        tw *= np.clip((0.85 - u) / 0.3, 0, 1)  # the tongue is narrower than the mouth
        c += (self.c_tongue - self.c_cavity) * tw[:, None]
        # upper teeth just under the upper lip, with faint gaps between teeth
        tooth = np.clip((teeth_h - depth_from_top) / 1.2, 0, 1) * np.clip((1.0 - u) / 0.2, 0, 1)
        period = 0.075 * self.fw
        xsx = (xs + sl[1].start) * 1.0
        ridge = 0.88 + 0.12 * np.abs(np.cos(np.pi * (xsx - (self.m_u.shape[1] / 2 + sl[1].start)) / period))
        tcol = self.c_teeth[None] * ridge[:, None] * (1 - 0.12 * (depth_from_top / max(teeth_h, 1))[:, None])
        c = c * (1 - tooth[:, None]) + tcol * tooth[:, None]
        # light: darker towards the corners and deep inside, shadow under the upper lip
        shade = (1 - 0.35 * u ** 2) * (0.75 + 0.25 * np.exp(-np.maximum(depth_from_top, 0) / (0.5 * self.upper_lip_h + 1)))
        c *= shade[:, None]
        sub = res[sl]
        old = sub[ys, xs].view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float32)
        mixed = old + (np.clip(c, 0, 255) - old) * a[:, None] + 0.5
        rgba = np.full((len(ys), 4), 255, np.uint8)
        rgba[:, :3] = mixed
        sub[ys, xs] = rgba.view(np.uint32)[:, 0]
