"""Build a footage avatar from the user's own talking clip (``livekit-avatar create CLIP``).

Two passes over the clip:

1. track the face in every frame (25 fps), read the audio, and decide everything: which
   frames are lost, the A/V offset of the clip, its parts (idle, listening, talking), the
   framing of the canvas, the head pose of every frame, the mouth shape measured on every
   frame and how those shapes map onto the lip-sync model's channels;
2. decode again and write what was decided: the base loops, cropped to the canvas and
   made seamless, and the mouth atlas, every crop warped into the canonical space.

The package is written atomically (``package.write_package``); nothing is left behind on
an error.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import landmarks as L
from . import video as V
from .avatar import MIN_FACE_PX, CorruptVideoError, FaceTooSmallError, NoFaceError, PartRangeError, StillVideoError
from .camera import CameraMotion
from .segmentation import segment_frame
from .footage import (
    CHANNELS,
    FOOTAGE_VERSION,
    KEY_INTERVAL,
    LOOP_NAMES,
    MOUTH_POINTS,
    STABLE_POINTS,
    FootageAvatar,
    apply_affine,
    fit_similarity,
    invert_affine,
    load_footage_avatar,
)
from .package import write_package
from .tracking import FaceTracker

log = logging.getLogger(__name__)

FPS = 25.0
TRACK_MAX_SIDE = 1280
MIN_TALKING_S = 30.0  # under this, more footage would give better mouths
LOOP_MAX_S = {"idle": 12.0, "listening": 12.0, "talking": 24.0}
MIN_PART_S = 2.0
ATLAS_MAX = 4500
CROSSFADE = 8  # frames blended at a loop's end so that it runs on into its start
FACE_FRACTION = 0.36  # face width over canvas width, where the clip has room
EYES_FROM_TOP = 0.40
JPEG_QUALITY = 90
LOOP_CRF = "20"

Progress = Callable[[str, float], None]


@dataclass
class _Track:
    points: np.ndarray  # (n, 468, 3) float32 in (downscaled) frame pixels; NaN where lost
    found: np.ndarray  # (n,) bool
    thumbs: np.ndarray  # (n, 24, 24) float32 grey, for motion and stillness
    frame_size: tuple[int, int]
    max_faces: int
    shake: np.ndarray | None  # (n, 2) camera shake in frame pixels; None: a steady camera


# ----------------------------------------------------------------------------- pass 1


def _track(info: V.ClipInfo, progress: Progress) -> _Track:
    tracker = FaceTracker()
    camera = CameraMotion()
    expected = max(1, int(info.duration_s * FPS))
    points, found, thumbs = [], [], []
    size = (0, 0)
    head = None
    for i, rgb in enumerate(V.read_frames(info, FPS, max_side=TRACK_MAX_SIDE)):
        size = (rgb.shape[1], rgb.shape[0])
        face = tracker.update(rgb)
        found.append(face is not None)
        points.append(face.points if face is not None else np.full((468, 3), np.nan, np.float32))
        if face is not None:  # the head with its hair, which the background patches avoid
            p = face.points[:, :2]
            fw = float(p[:, 0].max() - p[:, 0].min())
            head = (p[:, 0].min() - 0.35 * fw, p[:, 1].min() - 0.6 * fw, p[:, 0].max() + 0.35 * fw, p[:, 1].max())
        camera.update(rgb, head)
        thumbs.append(np.asarray(Image.fromarray(rgb).convert("L").resize((24, 24), Image.Resampling.BILINEAR), np.float32))
        if i % 10 == 0:
            progress("tracking the face", min(1.0, i / expected))
    if not found:
        raise StillVideoError(f"{info.path.name} holds no frames")
    return _Track(np.stack(points), np.array(found), np.stack(thumbs), size, tracker.max_faces, camera.shake(FPS))


def _check_track(info: V.ClipInfo, tr: _Track) -> None:
    name = info.path.name
    n = len(tr.found)
    motion = np.abs(tr.thumbs - tr.thumbs[0]).mean((1, 2)).max()
    if motion < 0.5:
        raise StillVideoError(f"nothing moves in {name}: it is a still image in a video container; "
                              "use the photo itself, or record a clip of yourself talking")
    if not tr.found.any():
        raise NoFaceError(f"no face found in {name}")
    fw = np.linalg.norm(tr.points[tr.found][:, 234, :2] - tr.points[tr.found][:, 454, :2], axis=1)
    if float(np.median(fw)) < MIN_FACE_PX:
        raise FaceTooSmallError(f"the face in {name} is {np.median(fw):.0f} px wide; at least {MIN_FACE_PX} px is needed "
                                "(frame the head and shoulders)")
    if tr.found.sum() / FPS < V.MIN_DURATION_S:
        raise NoFaceError(f"a face is visible in only {tr.found.sum() / FPS:.1f} s of {name}; "
                          f"at least {V.MIN_DURATION_S:g} s is needed")
    if tr.max_faces > 1:
        log.warning("%d faces in %s: using the largest", tr.max_faces, name)
    lost = int(n - tr.found.sum())
    if lost:
        log.warning("the face was lost in %d of %d frames of %s (%.1f %%); those frames are dropped",
                    lost, n, name, 100.0 * lost / n)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True."""
    m = np.concatenate([[False], mask.astype(bool), [False]])
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(d[::2], d[1::2])]


def _smooth(x: np.ndarray, sigma: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Gaussian smoothing along axis 0, within each run of valid frames."""
    if sigma <= 0:
        return x.copy()
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    out = x.copy()
    runs = _runs(valid) if valid is not None else [(0, len(x))]
    for a, b in runs:
        seg = x[a:b].reshape(b - a, -1)
        pad = np.pad(seg, ((r, r), (0, 0)), mode="edge")
        sm = np.stack([np.convolve(pad[:, j], k, "valid") for j in range(seg.shape[1])], 1) / k.sum()
        out[a:b] = sm.reshape(x[a:b].shape)
    return out


# ----------------------------------------------------------------------------- framing and pose


@dataclass
class _Framing:
    x0: float
    y0: float
    scale: float  # canvas pixels per frame pixel
    canvas: tuple[int, int]
    shift: np.ndarray  # (n, 2): the crop follows the camera's shake, frame by frame

    def origin(self, i: int) -> tuple[float, float]:
        return self.x0 + float(self.shift[i, 0]), self.y0 + float(self.shift[i, 1])

    def to_canvas(self, pts: np.ndarray) -> np.ndarray:
        """Every frame's points (n, k, >=2) in its canvas."""
        out = pts[..., :2].astype(np.float64)
        out[..., 0] = (out[..., 0] - self.x0 - self.shift[:, None, 0]) * self.scale
        out[..., 1] = (out[..., 1] - self.y0 - self.shift[:, None, 1]) * self.scale
        return out

    def box(self, i: int) -> tuple[float, float, float, float]:
        w, h = self.canvas
        x0, y0 = self.origin(i)
        return x0, y0, x0 + w / self.scale, y0 + h / self.scale


def _frame_canvas(tr: _Track, canvas: tuple[int, int]) -> _Framing:
    """Head and shoulders: the face a third of the canvas wide where the clip has room,
    eyes 40 % from the top, the whole head inside the canvas in every frame."""
    W, H = canvas
    fw_, fh_ = tr.frame_size
    p = tr.points[tr.found]
    fw = float(np.median(np.linalg.norm(p[:, 234, :2] - p[:, 454, :2], axis=1)))
    cx = float(np.median(p[:, :, 0].mean(1)))
    eyes = float(np.median(p[:, [33, 133, 362, 263], 1].mean(1)))
    # the head's extent over the whole clip, with hair and chin room
    left = float(np.percentile(p[:, :, 0].min(1), 1)) - 0.25 * fw
    right = float(np.percentile(p[:, :, 0].max(1), 99)) + 0.25 * fw
    top = float(np.percentile(p[:, :, 1].min(1), 1)) - 0.45 * fw
    bottom = float(np.percentile(p[:, :, 1].max(1), 99)) + 0.25 * fw
    # a shaking camera is followed by the crop, which then needs room to move in
    mx, my = (np.percentile(np.abs(tr.shake), 99, axis=0) if tr.shake is not None else (0.0, 0.0))
    s = FACE_FRACTION * W / fw
    s = min(s, W / max(right - left, 1.0), H / max(bottom - top, 1.0))  # whole head inside
    s = max(s, W / max(fw_ - 2 * mx, 1.0), H / max(fh_ - 2 * my, 1.0))  # never wider than the clip
    cw, ch = W / s, H / s
    x0 = min(max(cx - cw / 2, mx), max(fw_ - cw - mx, mx))
    y0 = min(max(eyes - EYES_FROM_TOP * ch, my), max(fh_ - ch - my, my))
    n = len(tr.found)
    shift = np.zeros((n, 2))
    if tr.shake is not None:
        shift[:, 0] = np.clip(tr.shake[:, 0], -x0, max(fw_ - cw - x0, -x0))
        shift[:, 1] = np.clip(tr.shake[:, 1], -y0, max(fh_ - ch - y0, -y0))
    return _Framing(x0, y0, s, canvas, shift)


@dataclass
class _Pose:
    transforms: np.ndarray  # (n, 2, 3) canonical -> canvas
    template: np.ndarray  # (k, 2) canonical stable points
    canonical: np.ndarray  # (n, 468, 2) every frame's mesh in the canonical space
    face_width: float  # canonical face width
    poses: np.ndarray  # (n, 2) yaw and pitch proxies


def _head_pose(tr: _Track, framing: _Framing) -> _Pose:
    pts = framing.to_canvas(tr.points)  # (n, 468, 2), NaN where lost
    found = tr.found
    stable = pts[:, list(STABLE_POINTS)]
    good = np.flatnonzero(found)
    ref = stable[good[len(good) // 2]]
    template = ref.copy()
    for _ in range(3):  # Procrustes mean of the stable points
        to_tpl = fit_similarity(template, stable[good])
        aligned = np.einsum("nij,nkj->nki", invert_affine(to_tpl)[:, :, :2], stable[good]) + invert_affine(to_tpl)[:, None, :, 2]
        template = aligned.mean(0)
    # place the template where the head sits on average
    template = apply_affine(fit_similarity(template, stable[good].mean(0)[None])[0], template)
    tf = np.full((len(found), 2, 3), np.nan)
    tf[good] = fit_similarity(template, stable[good])
    # landmark jitter would make a pasted mouth swim against the head: smooth the pose
    tf[good] = _smooth(tf, 1.0, found)[good]
    inv = invert_affine(tf[good])
    canonical = np.full(pts.shape, np.nan)
    canonical[good] = np.einsum("nij,nkj->nki", inv[:, :, :2], pts[good]) + inv[:, None, :, 2]
    med = np.median(canonical[good], 0)
    face_width = float(np.linalg.norm(med[234] - med[454]))
    eyes = canonical[:, [33, 133, 362, 263]].mean(1)
    poses = np.full((len(found), 2), np.nan)
    poses[good] = (canonical[good, 1] - eyes[good]) / face_width  # nose tip against the eyes
    poses[good] -= np.median(poses[good], 0)
    poses[good] = _smooth(poses, 2.0, found)[good]  # a head turns smoothly; the rest is mesh noise
    return _Pose(tf, template, canonical, face_width, poses)


# ----------------------------------------------------------------------------- mouth shapes


def _shapes(pose: _Pose) -> np.ndarray:
    """Per frame: inner-lip gap, mouth width and lower-lip thickness, in face widths."""
    q = pose.canonical
    fw = pose.face_width
    gap = np.linalg.norm(q[:, 13] - q[:, 14], axis=1) / fw
    width = np.linalg.norm(q[:, 61] - q[:, 291], axis=1) / fw
    lower = np.linalg.norm(q[:, 14] - q[:, 17], axis=1) / fw
    return np.stack([gap, width, lower], 1)


def _channels_at_frames(channels: np.ndarray, fps_model: float, n: int, shift_s: float) -> np.ndarray:
    """The lip-sync channels the frames show: frame i shows audio time i/FPS - shift_s."""
    t = np.arange(n) / FPS - shift_s
    tm = np.arange(len(channels)) / fps_model
    return np.stack([np.interp(t, tm, channels[:, k], left=channels[0, k], right=channels[-1, k])
                     for k in range(channels.shape[1])], 1)


def estimate_offset(jaw: np.ndarray, fps_model: float, gap: np.ndarray, found: np.ndarray) -> tuple[float, float]:
    """How much later the picture is than the sound (ms), from the lip-sync model's opening on
    the clip's audio against the measured lip gap, and the peak correlation behind it."""
    t_model = np.arange(len(jaw)) / fps_model
    frames = np.flatnonzero(found)
    g = np.interp(t_model, frames / FPS, gap[frames])
    ok = np.interp(t_model, np.arange(len(found)) / FPS, found.astype(float)) > 0.5
    w = int(round(0.8 * fps_model))
    box = np.ones(w) / w

    def highpass(x: np.ndarray) -> np.ndarray:  # slow drift (posture, smiles) is not speech
        return x - np.convolve(np.pad(x, (w // 2, w - 1 - w // 2), mode="edge"), box, "valid")

    a, b = highpass(g), highpass(jaw)
    max_lag = int(round(0.5 * fps_model))
    lags = np.arange(-max_lag, max_lag + 1)
    r = np.full(len(lags), -1.0)
    for i, lag in enumerate(lags):  # picture at t + lag against sound at t
        if lag >= 0:
            x, y, m = a[lag:], b[: len(b) - lag], ok[lag:]
        else:
            x, y, m = a[:lag], b[-lag:], ok[:lag]
        if m.sum() > fps_model:
            xs, ys = x[m], y[m]
            if xs.std() > 0 and ys.std() > 0:
                r[i] = float(np.corrcoef(xs, ys)[0, 1])
    k = int(np.argmax(r))
    best = float(lags[k])
    if 0 < k < len(r) - 1:  # parabolic peak between samples
        den = r[k - 1] - 2 * r[k] + r[k + 1]
        if den < 0:
            best += 0.5 * (r[k - 1] - r[k + 1]) / den
    return best / fps_model * 1000.0, float(r[k])


@dataclass
class _Calibration:
    keys: np.ndarray  # (n, 5) per frame
    meta: dict


def _calibrate(shapes: np.ndarray, found: np.ndarray, talking: np.ndarray, audio_ch: np.ndarray | None) -> _Calibration:
    """Channel keys for every frame's measured mouth. The opening and the lip shape are
    mapped onto the clip's own channel distributions (computed from its audio), so the
    person's widest mouth means the model's widest opening; without audio, fixed ranges."""
    gap, width, lower = shapes[:, 0], shapes[:, 1], shapes[:, 2]
    ok = found & np.isfinite(gap)
    # a narrower mouth than the person's usual is rounder, a wider one more spread (the raw
    # width, as a viewer sees it: taking out the narrowing of an open jaw measured worse)
    lip_shape = width - float(np.median(width[ok]))
    keys = np.zeros((len(gap), len(CHANNELS)), np.float32)
    closed = np.clip((0.03 - gap) / 0.015, 0, 1)
    med_lower = float(np.median(lower[ok]))
    labio = np.clip((1 - lower / max(med_lower, 1e-6)) / 0.35, 0, 1) * (gap < 0.03)
    q = np.linspace(0, 100, 51)
    sel = ok & talking if (ok & talking).sum() >= 25 else ok
    meta: dict = {"median_width": round(float(np.median(width[ok])), 4)}
    if audio_ch is not None:
        def mapped(feature: np.ndarray, channel: np.ndarray) -> np.ndarray:
            return np.interp(feature, np.percentile(feature[sel], q), np.percentile(channel[sel], q))

        jaw = mapped(gap, audio_ch[:, 0])
        rnd = mapped(-lip_shape, audio_ch[:, 2])
        spread = mapped(lip_shape, audio_ch[:, 3])
        meta["method"] = "the clip's measured mouth shapes mapped onto its audio's channel distributions"
    else:
        jaw = np.clip((gap - 0.01) / 0.09, 0, 1)
        rnd = np.clip(-lip_shape / 0.04, 0, 1)
        spread = np.clip(lip_shape / 0.04, 0, 1)
        meta["method"] = "default ranges (the clip has no audio)"
    keys[:, 0], keys[:, 1], keys[:, 2], keys[:, 3], keys[:, 4] = jaw, closed, rnd, spread, labio
    keys[~ok] = 0
    if audio_ch is not None:
        fit = {}
        for k, name in enumerate(CHANNELS):
            a, b = keys[sel, k], audio_ch[sel, k]
            fit[name] = round(float(np.corrcoef(a, b)[0, 1]), 3) if a.std() > 0 and b.std() > 0 else None
        meta["fit_r"] = fit  # keys against the audio's channels: real mouths follow sound loosely
    return _Calibration(keys, meta)


# ----------------------------------------------------------------------------- parts


def _voiced(audio: np.ndarray, n: int) -> np.ndarray:
    """Voice activity per frame from the audio's loudness, with hangover and gap closing."""
    hop = 16000 / FPS
    db = np.full(n, -120.0)
    for i in range(n):
        seg = audio[int(i * hop): int((i + 1) * hop)]
        if len(seg):
            db[i] = 10 * np.log10(float(np.mean(seg.astype(np.float64) ** 2)) + 1e-12)
    floor, top = np.percentile(db, 10), np.percentile(db, 95)
    if top - floor < 10:  # one level throughout: all speech or all silence
        return np.full(n, top > -45)
    v = db > floor + max(10.0, 0.35 * (top - floor))
    v = _close(v, int(0.6 * FPS))
    for a, b in _runs(v):
        if b - a < 0.3 * FPS:
            v[a:b] = False
    return _dilate(v, int(0.15 * FPS))


def _close(v: np.ndarray, gap: int) -> np.ndarray:
    v = v.copy()
    for a, b in _runs(~v):
        if 0 < a and b < len(v) and b - a < gap:
            v[a:b] = True
    return v


def _dilate(v: np.ndarray, r: int) -> np.ndarray:
    out = v.copy()
    for a, b in _runs(v):
        out[max(0, a - r): b + r] = True
    return out


def _moving_mouth(gap: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Talking without audio: the lip gap keeps changing."""
    g = np.where(found, gap, np.nan)
    w = int(FPS)
    sd = np.array([np.nanstd(g[max(0, i - w // 2): i + w // 2 + 1]) if found[i] else 0.0 for i in range(len(g))])
    return _close(np.nan_to_num(sd) > 0.008, int(0.6 * FPS))


def _expressiveness(pose: _Pose, frames: np.ndarray) -> float:
    """Brow raises, smiles and nods: how much a silent stretch shows attention."""
    q = pose.canonical[frames] / pose.face_width
    brows = (q[:, [105, 334], 1].mean(1) - q[:, [159, 386], 1].mean(1))
    width = np.linalg.norm(q[:, 61] - q[:, 291], axis=1)
    return float(np.std(brows) + np.std(width) + np.std(pose.poses[frames, 1]))


def _parts(
    found: np.ndarray, talking: np.ndarray, pose: _Pose, user: dict[str, tuple[float, float]]
) -> dict[str, np.ndarray | None]:
    """Frames for idle, listening and talking (None: the clip lacks that part)."""
    n = len(found)
    parts: dict[str, np.ndarray | None] = {}
    claimed = np.zeros(n, bool)
    for name, (a, b) in user.items():
        m = np.zeros(n, bool)
        m[int(a * FPS + 0.5): int(b * FPS + 0.5)] = True
        if not (m & found).any():
            raise PartRangeError(f"--{name} {a:g}-{b:g}: no frame with a face in that range")
        parts[name] = m & found
        claimed |= m
    if "talking" not in parts:
        parts["talking"] = talking & found & ~claimed if (talking & found & ~claimed).sum() >= FPS else None
    silent = [(a, b) for a, b in _runs(~talking & found & ~claimed) if b - a >= MIN_PART_S * FPS]
    free = [name for name in ("idle", "listening") if name not in parts]
    if free and silent:
        scored = sorted(silent, key=lambda r: _expressiveness(pose, np.arange(*r)))
        pick = {"idle": scored[0], "listening": scored[-1]}
        for name in free:
            m = np.zeros(n, bool)
            m[slice(*pick[name])] = True
            parts[name] = m
    for name in LOOP_NAMES:
        parts.setdefault(name, None)
    return parts


# ----------------------------------------------------------------------------- loops


def _loop_range(frames: np.ndarray, pose: _Pose, thumbs: np.ndarray, max_s: float) -> tuple[int, int]:
    """[a, b) inside the longest run of ``frames``, at most ``max_s`` long, whose closing
    frames look most like the frames before its start (head position first), so the
    crossfade that joins them shows no double image."""
    a0, b0 = max(_runs(frames), key=lambda r: r[1] - r[0])
    first = min(a0 + CROSSFADE, b0 - 1)  # frames before the start feed the closing crossfade
    length = min(b0 - first, int(max_s * FPS))
    if b0 - first <= length + 2 or length < 3 * CROSSFADE:
        return first, first + length
    head = np.einsum("nij,kj->nki", pose.transforms[:, :, :2], pose.template) + pose.transforms[:, None, :, 2]
    feat = np.concatenate([head.reshape(len(head), -1), thumbs.reshape(len(thumbs), -1) / 8.0], 1)
    k = np.arange(CROSSFADE)
    best, pick = np.inf, (first, first + length)
    for a in range(first, b0 - int(0.6 * length) + 1):
        ends = np.arange(a + int(0.6 * length), min(a + length, b0) + 1)
        # the window ending each candidate loop against the window before its start
        d = np.abs(feat[ends[:, None] - CROSSFADE + k] - feat[a - CROSSFADE + k][None]).mean((1, 2))
        d -= 0.02 * (ends - a) / FPS  # prefer long loops a little
        j = int(np.argmin(d))
        if d[j] < best:
            best, pick = float(d[j]), (a, int(ends[j]))
    return pick


# ----------------------------------------------------------------------------- atlas geometry


def _mouth_mask(pose: _Pose) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
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


def _ring_points(mask: np.ndarray, box: tuple[int, int, int, int], pose: _Pose) -> np.ndarray:
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


def _mask_png(person: np.ndarray) -> bytes:
    """A loop frame's person mask (0..1) as a greyscale PNG at 1 / MASK_SCALE size."""
    h, w = person.shape
    small = Image.fromarray(np.clip(person * 255 + 0.5, 0, 255).astype(np.uint8)).resize(
        (max(1, w // MASK_SCALE), max(1, h // MASK_SCALE)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class _PlateSampler:
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
        from .avatar import _background_model

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
            plate = _background_model(np.clip(med + 0.5, 0, 255).astype(np.uint8), np.where(ever, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        Image.fromarray(plate).save(buf, format="PNG")
        return buf.getvalue()


def _sample_mean(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Median colour of ``img`` at continuous points (robust to a stray highlight)."""
    h, w = img.shape[:2]
    x = np.clip(np.round(pts[:, 0] - 0.5).astype(int), 0, w - 1)
    y = np.clip(np.round(pts[:, 1] - 0.5).astype(int), 0, h - 1)
    return np.median(img[y, x].astype(np.float32), 0)


def _warp(img: Image.Image, m_out_to_in: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic affine warp; ``m_out_to_in`` maps output to input in continuous pixel
    coordinates (pixel i spans [i, i + 1)), which is PIL's own convention."""
    m = m_out_to_in
    return np.asarray(img.transform(size, Image.Transform.AFFINE, tuple(m.reshape(-1)), resample=Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------- the builder


def _encoder(buf: io.BytesIO, canvas: tuple[int, int]):
    import av

    out = av.open(buf, "w", format="mp4")
    s = out.add_stream("libx264", rate=int(FPS))
    s.width, s.height = canvas
    s.pix_fmt = "yuv420p"
    # fixed key frames for seeking, no B-frames so each packet decodes to its frame at once
    s.options = {"crf": LOOP_CRF, "preset": "medium", "g": str(KEY_INTERVAL), "keyint_min": str(KEY_INTERVAL),
                 "sc_threshold": "0", "bf": "0", "tune": "fastdecode"}
    return out, s


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def create_footage_avatar(
    clip: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    parts: dict[str, tuple[float, float]] | None = None,
    canvas: tuple[int, int] = (512, 512),
    progress: Progress | None = None,
) -> FootageAvatar:
    """Build a footage avatar package from a talking clip; writes ``out_dir`` atomically.

    ``parts`` pins any of idle, listening and talking to a time range in seconds; the rest
    are found from the clip's audio (voice activity) and motion."""
    t_start = time.perf_counter()
    report: Progress = progress or (lambda stage, frac: None)
    clip = Path(clip)
    report("reading the clip", 0.0)
    info = V.probe_clip(clip)
    user = dict(parts or {})
    for name, (a, b) in user.items():
        if name not in LOOP_NAMES:
            raise PartRangeError(f"unknown part {name!r}; parts are {LOOP_NAMES}")
        if not (0 <= a < b <= info.duration_s + 1e-6) or b - a < 1.0:
            raise PartRangeError(f"--{name} {a:g}-{b:g}: the range must lie inside the clip (0-{info.duration_s:.1f} s) "
                             "and last at least 1 s")

    tr = _track(info, lambda stage, f: report(stage, 0.02 + 0.58 * f))
    _check_track(info, tr)
    n = len(tr.found)

    report("reading the audio", 0.6)
    audio = V.read_audio(info)
    if audio is not None and float(np.abs(audio).max(initial=0.0)) < 1e-4:
        audio = None  # a silent track carries no sync or calibration either
    if audio is None:
        log.warning("%s has no audio: the A/V offset cannot be measured and the mouth calibration uses "
                    "default ranges; the avatar still works", clip.name)

    framing = _frame_canvas(tr, canvas)
    pose = _head_pose(tr, framing)
    shapes = _shapes(pose)
    found = tr.found
    offset_ms, offset_r = 0.0, None
    audio_ch = None
    if audio is not None:
        from ..audio.lipsync import LipSyncModel

        model = LipSyncModel.load()
        ch = model.infer(audio, 16000)
        offset_ms, offset_r = estimate_offset(ch[:, 0], model.fps, shapes[:, 0], found)
        if offset_r < 0.1:
            log.warning("the A/V offset of %s could not be measured (best correlation %.2f); assuming 0 ms",
                        clip.name, offset_r)
            offset_ms = 0.0
        elif abs(offset_ms) > 20:
            log.info("%s: the picture is %+.0f ms against the sound; corrected", clip.name, offset_ms)
        audio_ch = _channels_at_frames(ch, model.fps, n, offset_ms / 1000.0)
        talking = _voiced(audio, n)
    else:
        talking = _moving_mouth(shapes[:, 0], found)

    chosen = _parts(found, talking, pose, user)
    talking_frames = chosen["talking"]
    if talking_frames is None:
        log.warning("no talking found in %s: the mouths come from silent footage", clip.name)
        talking_frames = chosen["talking"] = found.copy()
    talking_s = float(talking_frames.sum() / FPS)
    if talking_s < MIN_TALKING_S:
        log.warning("only %.0f s of talking in %s: more footage (90 s is good) gives better mouths; "
                    "the avatar still works", talking_s, clip.name)
    calib = _calibrate(shapes, found, talking_frames, audio_ch)

    loops: dict[str, dict] = {}
    ranges: dict[str, tuple[int, int]] = {}
    for name in LOOP_NAMES:
        frames = chosen[name]
        if frames is None:
            continue
        if name == "talking":  # the base mouth is never shown: short pauses may stay in
            frames = _close(frames, int(2 * FPS))
        ranges[name] = _loop_range(frames & found, pose, tr.thumbs, LOOP_MAX_S[name])
    stand_ins = {"idle": ("listening", "talking"), "listening": ("idle", "talking"), "talking": ()}
    for name in LOOP_NAMES:
        if name in ranges:
            a, b = ranges[name]
            loops[name] = {"file": f"{name}.mp4", "own_mouth": name != "talking",
                           "source_s": [round(a / FPS, 2), round(b / FPS, 2)]}
            continue
        # a part the clip lacks: another loop stands in (talking frames with the mouth at rest)
        other = next(o for o in stand_ins[name] if o in ranges)
        loops[name] = {"file": f"{other}.mp4", "own_mouth": other != "talking", "stand_in": other}
        log.info("%s has no %s part: the %s loop stands in", clip.name, name, other)

    box, mask, oval_index = _mouth_mask(pose)
    ring_pts = _ring_points(mask, box, pose)
    atlas_frames = np.flatnonzero(found)
    if len(atlas_frames) > ATLAS_MAX:  # keep runs: thin by whole-second blocks
        blocks = atlas_frames // int(FPS)
        keep = np.unique(blocks)[:: int(math.ceil(len(np.unique(blocks)) / (ATLAS_MAX / FPS)))]
        atlas_frames = atlas_frames[np.isin(blocks, keep)]
    atlas_index = {int(f): k for k, f in enumerate(atlas_frames)}

    files, arrays = _second_pass(info, framing, pose, ranges, atlas_index, box, ring_pts, oval_index, n,
                                 lambda f: report("writing loops and mouths", 0.62 + 0.33 * f))
    jpegs, atlas_ring = files.pop("_atlas"), arrays.pop("_atlas_ring")
    offsets = np.zeros(len(atlas_frames) + 1, np.int64)
    offsets[1:] = np.cumsum([len(j) for j in jpegs])
    follows = np.zeros(len(atlas_frames), bool)
    follows[1:] = np.diff(atlas_frames) == 1
    atlas_npz = io.BytesIO()
    np.savez_compressed(
        atlas_npz, offsets=offsets, keys=calib.keys[atlas_frames].astype(np.float32),
        shapes=shapes[atlas_frames].astype(np.float32), poses=pose.poses[atlas_frames].astype(np.float32),
        follows=follows, ring=atlas_ring.astype(np.float32), box=np.array(box, np.int64),
        template=pose.template.astype(np.float32), source_frames=atlas_frames.astype(np.int64),
        oval_index=oval_index.astype(np.int64), oval=pose.canonical[atlas_frames][:, oval_index].astype(np.float32),
        mouth=pose.canonical[atlas_frames][:, MOUTH_POINTS].mean(1).astype(np.float32),
    )
    loops_npz = io.BytesIO()
    np.savez_compressed(loops_npz, **arrays)
    mask_png = io.BytesIO()
    Image.fromarray(mask).save(mask_png, format="PNG")
    files.update({"atlas.bin": b"".join(jpegs), "atlas.npz": atlas_npz.getvalue(),
                  "loops.npz": loops_npz.getvalue(), "mask.png": mask_png.getvalue()})

    report("writing the package", 0.96)
    from .. import __version__
    from .._paths import model_path

    meta = {
        "kind": "footage",
        "version": FOOTAGE_VERSION,
        "canvas": list(canvas),
        "fps": FPS,
        "face_width": round(pose.face_width, 3),
        "av_offset_ms": round(offset_ms, 1),
        "av_offset_r": None if offset_r is None else round(offset_r, 3),
        "loops": loops,
        "parts": {k: None if v is None else [[round(a / FPS, 2), round(b / FPS, 2)] for a, b in _runs(v)]
                  for k, v in chosen.items()},
        "calibration": calib.meta,
        "atlas": {"crops": int(len(atlas_frames)), "box": list(box)},
        "person_masks": {"scale": MASK_SCALE, "model": "MediaPipe selfie segmentation 0.10.14, converted to ONNX"},
        "stabilised": None if tr.shake is None else {
            "shake_rms_px": round(float(np.sqrt((tr.shake**2).sum(1).mean())), 2),
            "crop_px": [round(canvas[0] / framing.scale, 1), round(canvas[1] / framing.scale, 1)]},
        "stats": {"frames": n, "face_lost": int(n - found.sum()), "faces_max": tr.max_faces,
                  "talking_s": round(talking_s, 1), "build_s": round(time.perf_counter() - t_start, 1)},
        "provenance": {
            "source": clip.name, "source_sha256": _sha256_file(clip), "duration_s": round(info.duration_s, 3),
            "size": [info.width, info.height], "rotation": info.rotation, "fps": round(info.nominal_fps, 3),
            "variable_fps": info.variable_fps, "video_codec": info.video_codec, "audio": info.has_audio,
            "builder": f"livekit-avatar-plugin {__version__}",
            "lipsync_model_sha256": _sha256_file(model_path("lipsync", "lipsync.onnx")),
            "face_models": "MediaPipe face detection and mesh 0.10.14, converted to ONNX",
        },
    }
    write_package(Path(out_dir), files, meta)
    report("done", 1.0)
    log.info("footage avatar written in %.1f s", time.perf_counter() - t_start)
    return load_footage_avatar(out_dir)


def _second_pass(
    info: V.ClipInfo,
    framing: _Framing,
    pose: _Pose,
    ranges: dict[str, tuple[int, int]],
    atlas_index: dict[int, int],
    box: tuple[int, int, int, int],
    ring_pts: np.ndarray,
    oval_index: np.ndarray,
    n: int,
    progress: Callable[[float], None],
) -> tuple[dict, dict]:
    """Decode the clip again: loops cropped to the canvas and made seamless, and the
    atlas crops warped into the canonical space."""
    W, H = framing.canvas
    # the base's outline bounds the blend frame after frame: smoothed, or its edge would shimmer
    found = np.isfinite(pose.canonical[:, 0, 0])
    outline = _smooth(np.nan_to_num(pose.canonical[:, oval_index]), 1.5, found)
    bufs, encoders = {}, {}
    arrays: dict[str, np.ndarray] = {}
    preroll: dict[str, list[np.ndarray]] = {name: [] for name in ranges}
    for name, (a, b) in ranges.items():
        bufs[name] = io.BytesIO()
        encoders[name] = _encoder(bufs[name], (W, H))
        arrays[f"{name}_transforms"] = pose.transforms[a:b].astype(np.float32).copy()
        arrays[f"{name}_poses"] = pose.poses[a:b].astype(np.float32).copy()
        arrays[f"{name}_ring"] = np.zeros((b - a, 3), np.float32)
        arrays[f"{name}_oval"] = outline[a:b].astype(np.float32)
    jpegs: list[bytes] = [b""] * len(atlas_index)
    masks: dict[str, list[bytes]] = {name: [] for name in ranges}
    plate = _PlateSampler((W, H))
    atlas_ring = np.zeros((len(atlas_index), 3), np.float32)
    bw, bh = box[2], box[3]
    mask_pts = ring_pts - [box[0], box[1]]
    import av

    last = 0
    for i, rgb in enumerate(V.read_frames(info, FPS, max_side=TRACK_MAX_SIDE)):
        if i >= n:
            break
        img = None
        for name, (a, b) in ranges.items():
            if a - CROSSFADE <= i < b:
                if img is None:
                    img = Image.fromarray(rgb)
                frame = np.asarray(img.resize((W, H), Image.Resampling.LANCZOS, box=framing.box(i)))
                if i < a:
                    preroll[name].append(frame)
                    continue
                k = i - (b - CROSSFADE)
                tf = pose.transforms[i]
                if k >= 0 and k < len(preroll[name]):
                    # the loop's end runs into the frames before its start: the seam disappears
                    w = (k + 1) / (CROSSFADE + 1)
                    frame = (frame * (1 - w) + preroll[name][k] * w + 0.5).astype(np.uint8)
                    tf = pose.transforms[i] * (1 - w) + pose.transforms[a - CROSSFADE + k] * w
                    arrays[f"{name}_transforms"][i - a] = tf
                    arrays[f"{name}_oval"][i - a] = outline[i] * (1 - w) + outline[a - CROSSFADE + k] * w
                arrays[f"{name}_ring"][i - a] = _sample_mean(frame, apply_affine(tf, ring_pts))
                person = segment_frame(frame, edge_px=max(1.0, W / 256))
                masks[name].append(_mask_png(person))
                plate.add(frame, person)
                out, stream = encoders[name]
                for p in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(p)
        ck = atlas_index.get(i)  # this frame's atlas crop, if any
        if ck is not None:
            if img is None:
                img = Image.fromarray(rgb)
            # canonical box pixel -> canvas (frame's pose) -> clip frame, in one warp
            to_canvas = pose.transforms[i].copy()
            to_canvas[:, 2] += to_canvas[:, :2] @ np.array([box[0], box[1]], float)
            to_frame = to_canvas / framing.scale
            to_frame[:, 2] += framing.origin(i)
            crop = _warp(img, to_frame, (bw, bh))
            atlas_ring[ck] = _sample_mean(crop, mask_pts)
            buf = io.BytesIO()
            Image.fromarray(crop).save(buf, format="JPEG", quality=JPEG_QUALITY)
            jpegs[ck] = buf.getvalue()
        if i - last >= 10:
            progress(i / n)
            last = i
    for name in ranges:
        # light changes slowly; frame-to-frame differences in the ring are sampling noise,
        # and a gain that follows them makes the mouth shimmer
        arrays[f"{name}_ring"] = _smooth(arrays[f"{name}_ring"], 4.0).astype(np.float32)
    files: dict[str, bytes | list[bytes]] = {}  # "_atlas": the crops' JPEGs, one per crop
    blobs: list[bytes] = []
    for name in ranges:
        offsets = np.zeros(len(masks[name]) + 1, np.int64)
        offsets[1:] = sum(len(b) for b in blobs) + np.cumsum([len(b) for b in masks[name]])
        arrays[f"{name}_mask_offsets"] = offsets
        blobs += masks[name]
    files["masks.bin"] = b"".join(blobs)
    files["plate.png"] = plate.png()
    for name, (out, stream) in encoders.items():
        for p in stream.encode():
            out.mux(p)
        out.close()
        files[f"{name}.mp4"] = bufs[name].getvalue()
    if any(not j for j in jpegs):
        raise CorruptVideoError(f"{info.path.name} gave fewer frames on the second read than on the first")
    files["_atlas"] = jpegs
    arrays["_atlas_ring"] = atlas_ring
    return files, arrays
