"""Person segmentation with MediaPipe's selfie segmentation model (converted to ONNX).

``segment_person`` gives a soft person mask (0..1) at the image's own resolution: the
model's 256x256 output for the whole picture, a second pass on a square around the head
(where the hair edge needs the detail), both upsampled and snapped to the picture's
edges with a guided filter, so hair keeps a soft, image-aligned edge.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from .._paths import model_path

MODEL = "selfie_segmentation.onnx"
SIZE = 256

_lock = threading.Lock()
_session = None


def _get_session():
    global _session
    with _lock:
        if _session is None:
            from .._onnx import create_session

            _session = create_session(model_path("face", MODEL), label="selfie segmentation model")
    return _session


def run_model(rgb: np.ndarray) -> np.ndarray:
    """The model's person probability (256x256 float32) for an RGB uint8 picture,
    stretched to the model's square input as MediaPipe does."""
    x = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
    sess = _get_session()
    out = sess.run(None, {sess.get_inputs()[0].name: (x / 255.0)[None]})[0]
    return np.ascontiguousarray(out[0, ..., 0], np.float32)


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(np.ascontiguousarray(a, np.float32), size, interpolation=cv2.INTER_LINEAR)


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated."""
    import cv2

    k = 2 * r + 1
    return cv2.boxFilter(np.ascontiguousarray(a, np.float32), -1, (k, k), borderType=cv2.BORDER_REPLICATE)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float,
                  where: np.ndarray | None = None) -> np.ndarray:
    """He et al.'s guided filter with an RGB guide (0..1): ``src`` smoothed but with the
    guide's edges, which turns a blurry upsampled mask into one that follows the hair.
    ``where``: the pixels whose result is used, grown by ``r`` (the per-pixel 3x3 solve,
    most of the work, runs there only)."""
    h, w = src.shape
    g = [np.ascontiguousarray(guide[..., c], np.float32) for c in range(3)]
    mean_i = [_box(c, r) for c in g]
    mean_p = _box(src, r)
    sel = np.ones(h * w, bool) if where is None else (_box(where.astype(np.float32), r) > 0).ravel()
    idx = np.flatnonzero(sel)
    cov = np.stack([(_box(g[c] * src, r) - mean_i[c] * mean_p).ravel()[idx] for c in range(3)], -1)
    var = np.empty((len(idx), 3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            v = (_box(g[i] * g[j], r) - mean_i[i] * mean_i[j]).ravel()[idx]
            var[:, i, j] = var[:, j, i] = v
    var += eps * np.eye(3, dtype=np.float32)
    a = np.zeros((3, h * w), np.float32)
    a[:, idx] = np.linalg.solve(var, cov[..., None])[..., 0].T
    a = a.reshape(3, h, w)
    b = mean_p - a[0] * mean_i[0] - a[1] * mean_i[1] - a[2] * mean_i[2]
    return sum(_box(a[c], r) * g[c] for c in range(3)) + _box(b, r)


def segment_person(rgb: np.ndarray, head_box: tuple[float, float, float, float] | None = None,
                   edge_px: float = 4.0) -> np.ndarray:
    """Soft person mask (float32, 0..1, the picture's size) for an RGB uint8 picture.

    ``head_box`` (x0, y0, x1, y1 in pixels) adds a second, sharper pass around the head,
    blended into the whole-picture pass. ``edge_px`` sets the guided filter's reach.
    """
    h, w = rgb.shape[:2]
    prob = _resize(run_model(rgb), (w, h))
    if head_box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in head_box)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 >= 32 and y1 - y0 >= 32:
            crop = _resize(run_model(rgb[y0:y1, x0:x1]), (x1 - x0, y1 - y0))
            # feathered into the whole-picture pass so the crop's border leaves no seam
            ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
            m = np.minimum.reduce([xs, x1 - x0 - 1 - xs, ys, y1 - y0 - 1 - ys])
            fade = np.clip(m / (0.08 * max(x1 - x0, y1 - y0)), 0.0, 1.0)
            prob[y0:y1, x0:x1] = crop * fade + prob[y0:y1, x0:x1] * (1 - fade)
    # the model's soft ramp, sharpened, then snapped to the picture's edges
    hard = np.clip((prob - 0.5) * 4.0 + 0.5, 0.0, 1.0)
    r = max(1, int(round(edge_px)))
    # only near the model's own outline: elsewhere a busy background's edges would lend
    # the mask specks and fringes
    band = _box((np.abs(hard - 0.5) < 0.49).astype(np.float32), r) > 0
    soft = guided_filter(rgb.astype(np.float32) / 255.0, hard, r, 1e-3, where=band)
    return np.clip(np.where(band, soft, hard), 0.0, 1.0).astype(np.float32)


def guided_filter_grey(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """The guided filter with a grey guide (0..1): a third of the colour one's work."""
    mean_i, mean_p = _box(guide, r), _box(src, r)
    a = (_box(guide * src, r) - mean_i * mean_p) / (_box(guide * guide, r) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return _box(a, r) * guide + _box(b, r)


def segment_frame(rgb: np.ndarray, edge_px: float = 2.0) -> np.ndarray:
    """Soft person mask (float32, 0..1) of a head-and-shoulders video frame: one model pass,
    snapped to the frame's edges with a grey guided filter near the model's outline (a
    footage loop has hundreds of frames to segment)."""
    h, w = rgb.shape[:2]
    prob = _resize(run_model(rgb), (w, h))
    hard = np.clip((prob - 0.5) * 4.0 + 0.5, 0.0, 1.0)
    r = max(1, int(round(edge_px)))
    grey = rgb.astype(np.float32).mean(-1) / 255.0
    soft = guided_filter_grey(grey, hard, r, 1e-3)
    band = _box((np.abs(hard - 0.5) < 0.49).astype(np.float32), r) > 0
    mask = np.clip(np.where(band, soft, hard), 0.0, 1.0)
    return np.clip((mask - 0.03) / 0.94, 0.0, 1.0).astype(np.float32)
