"""Pass one of building a footage avatar: what the clip is made of.

The face tracked in every frame, the frames where it is lost, the clip's own A/V offset,
its parts (idle, listening, talking), the canvas framing, the head pose of every frame,
the mouth shape measured on every frame and how those shapes map onto the lip-sync
model's channels. ``footage_build`` decides with these and writes the package.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from . import video as V
from .avatar import MIN_FACE_PX, FaceTooSmallError, NoFaceError, StillVideoError
from .camera import CameraMotion
from .footage import STABLE_POINTS, apply_affine, fit_similarity, invert_affine
from .tracking import FaceTracker

FPS = 25.0
TRACK_MAX_SIDE = 1280
MIN_PART_S = 2.0
CROSSFADE = 8  # frames blended at a loop's end so that it runs on into its start
FACE_FRACTION = 0.36  # face width over canvas width, where the clip has room
EYES_FROM_TOP = 0.40

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


@dataclass
class Track:
    points: np.ndarray  # (n, 468, 3) float32 in (downscaled) frame pixels; NaN where lost
    found: np.ndarray  # (n,) bool
    thumbs: np.ndarray  # (n, 24, 24) float32 grey, for motion and stillness
    frame_size: tuple[int, int]
    max_faces: int
    shake: np.ndarray | None  # (n, 2) camera shake in frame pixels; None: a steady camera


# ----------------------------------------------------------------------------- pass 1


def track_clip(info: V.ClipInfo, progress: Progress) -> Track:
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
    return Track(np.stack(points), np.array(found), np.stack(thumbs), size, tracker.max_faces, camera.shake(FPS))


def check_track(info: V.ClipInfo, tr: Track) -> None:
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


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True."""
    m = np.concatenate([[False], mask.astype(bool), [False]])
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(d[::2], d[1::2])]


def smooth(x: np.ndarray, sigma: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Gaussian smoothing along axis 0, within each run of valid frames."""
    if sigma <= 0:
        return x.copy()
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    out = x.copy()
    runs = true_runs(valid) if valid is not None else [(0, len(x))]
    for a, b in runs:
        seg = x[a:b].reshape(b - a, -1)
        pad = np.pad(seg, ((r, r), (0, 0)), mode="edge")
        sm = np.stack([np.convolve(pad[:, j], k, "valid") for j in range(seg.shape[1])], 1) / k.sum()
        out[a:b] = sm.reshape(x[a:b].shape)
    return out


# ----------------------------------------------------------------------------- framing and pose


@dataclass
class Framing:
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


def frame_canvas(tr: Track, canvas: tuple[int, int]) -> Framing:
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
    return Framing(x0, y0, s, canvas, shift)


@dataclass
class Pose:
    transforms: np.ndarray  # (n, 2, 3) canonical -> canvas
    template: np.ndarray  # (k, 2) canonical stable points
    canonical: np.ndarray  # (n, 468, 2) every frame's mesh in the canonical space
    face_width: float  # canonical face width
    poses: np.ndarray  # (n, 2) yaw and pitch proxies


def head_pose(tr: Track, framing: Framing) -> Pose:
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
    tf[good] = smooth(tf, 1.0, found)[good]
    inv = invert_affine(tf[good])
    canonical = np.full(pts.shape, np.nan)
    canonical[good] = np.einsum("nij,nkj->nki", inv[:, :, :2], pts[good]) + inv[:, None, :, 2]
    med = np.median(canonical[good], 0)
    face_width = float(np.linalg.norm(med[234] - med[454]))
    eyes = canonical[:, [33, 133, 362, 263]].mean(1)
    poses = np.full((len(found), 2), np.nan)
    poses[good] = (canonical[good, 1] - eyes[good]) / face_width  # nose tip against the eyes
    poses[good] -= np.median(poses[good], 0)
    poses[good] = smooth(poses, 2.0, found)[good]  # a head turns smoothly; the rest is mesh noise
    return Pose(tf, template, canonical, face_width, poses)


# ----------------------------------------------------------------------------- mouth shapes


def mouth_shapes(pose: Pose) -> np.ndarray:
    """Per frame: inner-lip gap, mouth width and lower-lip thickness, in face widths."""
    q = pose.canonical
    fw = pose.face_width
    gap = np.linalg.norm(q[:, 13] - q[:, 14], axis=1) / fw
    width = np.linalg.norm(q[:, 61] - q[:, 291], axis=1) / fw
    lower = np.linalg.norm(q[:, 14] - q[:, 17], axis=1) / fw
    return np.stack([gap, width, lower], 1)


