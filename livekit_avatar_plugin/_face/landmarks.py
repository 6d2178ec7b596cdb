"""Face detection, 468-point face mesh and iris landmarks with the converted MediaPipe models.

Pure numpy + onnxruntime. Sessions are created once per process and shared.

    from livekit_avatar_plugin._face.landmarks import detect_faces, face_mesh
    faces = detect_faces(rgb)                 # list[FaceDetection], largest first
    mesh = face_mesh(rgb, faces[0])           # FaceMesh: points (478, 3) in image pixels

Point indices 0..467 follow MediaPipe's face-mesh scheme; 468..472 are the right-eye iris
(centre first) and 473..477 the left-eye iris, as in MediaPipe's "refined" mesh.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from livekit_avatar_plugin._paths import model_path

# ----------------------------------------------------------------------------- index scheme
MOUTH_CORNERS = (61, 291)
INNER_LIP_UPPER_MID, INNER_LIP_LOWER_MID = 13, 14
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
INNER_LIPS = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
# inner lip contour split into upper / lower halves, each from corner 78 to corner 308
INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
CHIN = 152
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
# eyes (subject's right eye = image left)
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (362, 398, 384, 385, 386, 387, 388, 466, 263)
LEFT_EYE_LOWER = (362, 382, 381, 380, 374, 373, 390, 249, 263)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)
NOSE_TIP = 1

_DET_SIZE = 128
_MESH_SIZE = 192
_IRIS_SIZE = 64

# ----------------------------------------------------------------------------- sessions

_SESSIONS: dict[str, object] = {}
_LOCK = threading.Lock()

Runner = Callable[[np.ndarray], list[np.ndarray]]


def _session(name: str):
    with _LOCK:
        sess = _SESSIONS.get(name)
        if sess is None:
            from .._onnx import create_session

            sess = create_session(model_path("face", name), label="face landmark model")
            _SESSIONS[name] = sess
    return sess


def _onnx_runner(name: str) -> Runner:
    def run(x: np.ndarray) -> list[np.ndarray]:
        sess = _session(name)
        return sess.run(None, {sess.get_inputs()[0].name: x})

    return run


# Swappable so the reference fixture can be produced with the TFLite interpreter
# running the very same pre- and post-processing (tests/face_data/make_reference.py).
RUNNERS: dict[str, Runner] = {
    "detector": _onnx_runner("face_detection_short_range.onnx"),
    "mesh": _onnx_runner("face_landmark.onnx"),
    "iris": _onnx_runner("iris_landmark.onnx"),
}

# ----------------------------------------------------------------------------- geometry


def warp_affine(img: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear sample ``img`` (H, W, C) so that output (x, y) = img[m @ (x, y, 1)].

    ``m`` is a 2x3 matrix mapping output pixel centres to input pixel centres; outside
    pixels are edge-replicated. Returns float32 (h, w, C).
    """
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    H, W = img.shape[:2]
    sx = np.clip(sx, 0, W - 1)
    sy = np.clip(sy, 0, H - 1)
    x0 = np.minimum(np.floor(sx).astype(np.int64), W - 2 if W > 1 else 0)
    y0 = np.minimum(np.floor(sy).astype(np.int64), H - 2 if H > 1 else 0)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    x1 = np.minimum(x0 + 1, W - 1)
    y1 = np.minimum(y0 + 1, H - 1)
    f = img.astype(np.float32, copy=False)
    top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
    bot = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
    return top * (1 - fy) + bot * fy


@dataclass
class Roi:
    """A rotated square in image pixels: centre, side length and rotation (radians)."""

    cx: float
    cy: float
    size: float
    angle: float

    def crop_matrix(self, out: int) -> np.ndarray:
        """2x3 matrix from crop pixel indices to image pixel indices (centres).

        Points are continuous coordinates (pixel i spans [i, i+1)), so index = coord - 0.5.
        """
        s = self.size / out
        c, si = np.cos(self.angle), np.sin(self.angle)
        a = np.array([[c * s, -si * s], [si * s, c * s]])
        # index u -> continuous u + .5 -> offset (u + .5 - out/2) -> rotate/scale -> + centre -> - .5
        t = np.array([self.cx, self.cy]) + a @ np.array([0.5 - out / 2, 0.5 - out / 2]) - 0.5
        return np.hstack([a, t[:, None]])

    def to_image(self, pts: np.ndarray, out: int) -> np.ndarray:
        """Crop coordinates (in crop pixels, continuous, 0..out) -> image pixels."""
        s = self.size / out
        c, si = np.cos(self.angle), np.sin(self.angle)
        u = pts[:, 0] - out / 2
        v = pts[:, 1] - out / 2
        x = self.cx + (c * u - si * v) * s
        y = self.cy + (si * u + c * v) * s
        res = np.stack([x, y], 1)
        if pts.shape[1] > 2:
            res = np.concatenate([res, pts[:, 2:3] * s], 1)
        return res


def _crop(img: np.ndarray, roi: Roi, out: int) -> np.ndarray:
    return warp_affine(img, roi.crop_matrix(out), (out, out))


# ----------------------------------------------------------------------------- detection


@dataclass
class FaceDetection:
    box: np.ndarray  # x0, y0, x1, y1 in image pixels
    keypoints: np.ndarray  # (6, 2): right eye, left eye, nose, mouth, right ear, left ear
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


def _anchors() -> np.ndarray:
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = _DET_SIZE // stride
        ys, xs = np.mgrid[0:n, 0:n]
        c = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], -1).reshape(-1, 1, 2)
        out.append(np.repeat(c, per_cell, 1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


_ANCHORS = _anchors()


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0 = np.maximum(a[0], b[:, 0])
    y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2])
    y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _letterbox(img: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """Fit the image into 128x128 (aspect kept). Returns (input, scale, pad_x, pad_y)."""
    from PIL import Image

    h, w = img.shape[:2]
    s = _DET_SIZE / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0))
    canvas = np.zeros((_DET_SIZE, _DET_SIZE, 3), np.uint8)
    px, py = (_DET_SIZE - nw) // 2, (_DET_SIZE - nh) // 2
    canvas[py:py + nh, px:px + nw] = small
    return canvas, nw / w, px, py


def detect_faces(img: np.ndarray, min_score: float = 0.5, *, smallest: float | None = None) -> list[FaceDetection]:
    """BlazeFace short-range detection on an RGB uint8 image; largest face first.

    Runs on the whole image, and also on square tiles along the long side when the image
    is far from square (the short-range model expects faces filling a fair part of the
    input). With ``smallest`` (px), also on overlapping tiles half as large, a quarter,
    ... down to tiles that a face that wide fills a third of: a person standing in a wide
    or large photo has a face a few percent of its width. Every scale's detections are
    kept (a false one at a coarse scale must not hide the real face at a finer one).
    """
    h, w = img.shape[:2]
    side = min(h, w)
    views = [(0, 0, w, h)]
    if max(h, w) > 1.3 * side:
        n = int(np.ceil(max(h, w) / side * 1.5))
        for k in range(n):
            off = int(round(k * (max(h, w) - side) / max(n - 1, 1)))
            views.append((off, 0, side, side) if w > h else (0, off, side, side))
    if smallest is not None:
        tile = side // 2
        while tile >= 3 * smallest:
            views += _tiles(w, h, tile)
            tile //= 2
    return _weighted_nms(_detect_in(img, views, min_score))


def _tiles(w: int, h: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Square tiles of side ``tile`` covering a w x h image, overlapping by half."""
    def starts(n: int) -> np.ndarray:
        k = int(np.ceil(max(n - tile, 0) / (tile / 2))) + 1
        return np.round(np.linspace(0, max(n - tile, 0), k)).astype(int)

    return [(int(x), int(y), min(tile, w), min(tile, h)) for y in starts(h) for x in starts(w)]


def _detect_in(img: np.ndarray, views: list[tuple[int, int, int, int]], min_score: float) -> list[FaceDetection]:
    cands: list[FaceDetection] = []
    for vx, vy, vw, vh in views:
        sub = img[vy:vy + vh, vx:vx + vw]
        inp, s, px, py = _letterbox(sub)
        x = (inp.astype(np.float32) / 127.5 - 1.0)[None]
        reg, cls = RUNNERS["detector"](x)
        reg = reg[0]
        score = 1 / (1 + np.exp(-np.clip(cls[0, :, 0].astype(np.float64), -100, 100)))
        keep = np.nonzero(score >= min_score)[0]
        for i in keep:
            a = _ANCHORS[i] * _DET_SIZE
            r = reg[i]
            cx, cy, bw, bh = a[0] + r[0], a[1] + r[1], r[2], r[3]
            box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
            kps = (r[4:16].reshape(6, 2) + a)
            # back to image pixels
            box = (box - [px, py, px, py]) / s + [vx, vy, vx, vy]
            kps = (kps - [px, py]) / s + [vx, vy]
            cands.append(FaceDetection(box, kps, float(score[i])))
    return cands


def _weighted_nms(cands: list[FaceDetection], iou_thr: float = 0.3) -> list[FaceDetection]:
    if not cands:
        return []
    cands = sorted(cands, key=lambda d: -d.score)
    boxes = np.array([d.box for d in cands])
    used = np.zeros(len(cands), bool)
    out = []
    for i, d in enumerate(cands):
        if used[i]:
            continue
        ov = _iou(d.box, boxes) > iou_thr
        ov &= ~used
        used |= ov
        wts = np.array([cands[j].score for j in np.nonzero(ov)[0]])
        idx = np.nonzero(ov)[0]
        box = (boxes[idx] * wts[:, None]).sum(0) / wts.sum()
        kps = sum(cands[j].keypoints * cands[j].score for j in idx) / wts.sum()
        out.append(FaceDetection(box, kps, d.score))
    out.sort(key=lambda d: -d.width)
    return out


# ----------------------------------------------------------------------------- mesh


@dataclass
class FaceMesh:
    points: np.ndarray  # (478, 3) float32, image pixels (x, y, z)
    presence: float


def _angle(p0: np.ndarray, p1: np.ndarray) -> float:
    return float(np.arctan2(p1[1] - p0[1], p1[0] - p0[0]))


def _roi_from_detection(det: FaceDetection) -> Roi:
    ang = _angle(det.keypoints[0], det.keypoints[1])
    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
    size = max(det.box[2] - det.box[0], det.box[3] - det.box[1]) * 1.5
    return Roi(cx, cy, size, ang)


def _roi_from_points(pts: np.ndarray) -> Roi:
    ang = _angle(pts[33], pts[263])
    # box of the landmarks in the rotated frame, then 1.5x square
    c, s = np.cos(-ang), np.sin(-ang)
    ctr = pts[:468, :2].mean(0)
    d = pts[:468, :2] - ctr
    rx = c * d[:, 0] - s * d[:, 1]
    ry = s * d[:, 0] + c * d[:, 1]
    mx, my = (rx.min() + rx.max()) / 2, (ry.min() + ry.max()) / 2
    size = max(rx.max() - rx.min(), ry.max() - ry.min()) * 1.5
    ci, si = np.cos(ang), np.sin(ang)
    cx = ctr[0] + ci * mx - si * my
    cy = ctr[1] + si * mx + ci * my
    return Roi(float(cx), float(cy), float(size), ang)


def _run_mesh(img: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
    crop = _crop(img, roi, _MESH_SIZE) / 255.0
    lm, pres = RUNNERS["mesh"](crop[None].astype(np.float32))
    pts = lm.reshape(468, 3)
    presence = float(1 / (1 + np.exp(-pres.reshape(-1)[0])))
    return roi.to_image(pts, _MESH_SIZE), presence


def _run_iris(img: np.ndarray, pts: np.ndarray, corners: tuple[int, int], flip: bool) -> np.ndarray:
    p0, p1 = pts[corners[0], :2], pts[corners[1], :2]
    ang = _angle(p0, p1) if not flip else _angle(p1, p0) + np.pi
    roi = Roi(float((p0[0] + p1[0]) / 2), float((p0[1] + p1[1]) / 2), float(np.linalg.norm(p1 - p0) * 2.3), ang)
    crop = _crop(img, roi, _IRIS_SIZE) / 255.0
    if flip:
        crop = crop[:, ::-1]
    _, iris = RUNNERS["iris"](np.ascontiguousarray(crop[None], dtype=np.float32))
    ir = iris.reshape(5, 3).copy()
    if flip:
        ir[:, 0] = _IRIS_SIZE - ir[:, 0]
    return roi.to_image(ir, _IRIS_SIZE)


def face_mesh(img: np.ndarray, det: FaceDetection, refine_passes: int = 1) -> FaceMesh:
    """468 mesh points (+10 iris points) for one detected face, in image pixels."""
    pts, presence = _run_mesh(img, _roi_from_detection(det))
    for _ in range(refine_passes):
        pts, presence = _run_mesh(img, _roi_from_points(pts))
    right = _run_iris(img, pts, RIGHT_EYE_CORNERS, flip=False)
    left = _run_iris(img, pts, LEFT_EYE_CORNERS, flip=True)
    allp = np.concatenate([pts, right, left]).astype(np.float32)
    return FaceMesh(allp, presence)
