"""Follow one face through the frames of a clip, and measure its mouth.

The detector finds the face; after that each frame's mesh runs in a window around the
previous frame's points, as MediaPipe's own tracking does (one mesh pass a frame instead
of a detection and two passes). The face is looked for again when the mesh loses it, and
the detector runs once a second anyway to notice other faces.

    tracker = FaceTracker()
    for rgb in frames:
        face = tracker.update(rgb)          # TrackedFace, or None where the face is lost
    gap, width = mouth_opening(face.points) # inner-lip gap and mouth width over face width
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import landmarks as L

# Face width: the face oval's widest pair (cheek to cheek), the unit of every mouth measure.
FACE_SIDES = (234, 454)


@dataclass
class TrackedFace:
    points: np.ndarray  # (468, 3) float32, image pixels
    presence: float
    faces_seen: int  # faces the detector saw on this frame; 0 when it did not run


def face_width(points: np.ndarray) -> float:
    a, b = points[FACE_SIDES[0], :2], points[FACE_SIDES[1], :2]
    return float(np.hypot(*(a - b)))


def mouth_opening(points: np.ndarray) -> tuple[float, float]:
    """(inner-lip gap, mouth width), each over the face width."""
    fw = max(face_width(points), 1e-6)
    gap = float(np.hypot(*(points[L.INNER_LIP_UPPER_MID, :2] - points[L.INNER_LIP_LOWER_MID, :2])))
    c0, c1 = L.MOUTH_CORNERS
    width = float(np.hypot(*(points[c0, :2] - points[c1, :2])))
    return gap / fw, width / fw


class FaceTracker:
    """Tracks the largest face of a clip from frame to frame. Not thread-safe."""

    def __init__(self, *, min_presence: float = 0.5, detect_every: int = 25, min_face_px: float = 24.0) -> None:
        self.min_presence = min_presence
        self.detect_every = max(1, detect_every)
        self.min_face_px = min_face_px
        self._points: np.ndarray | None = None
        self._since_detect = 0
        self.max_faces = 0  # the most faces the detector saw on one frame

    def reset(self) -> None:
        self._points = None

    def _detect(self, rgb: np.ndarray) -> tuple[list[L.FaceDetection], int]:
        dets = [d for d in L.detect_faces(rgb) if d.width >= self.min_face_px]
        self._since_detect = 0
        self.max_faces = max(self.max_faces, len(dets))
        return dets, len(dets)

    def _nearest(self, dets: list[L.FaceDetection]) -> L.FaceDetection:
        """The detection that continues the tracked face (the largest when none is tracked)."""
        if self._points is None:
            return dets[0]
        cx, cy = self._points[:, 0].mean(), self._points[:, 1].mean()
        return min(dets, key=lambda d: np.hypot((d.box[0] + d.box[2]) / 2 - cx, (d.box[1] + d.box[3]) / 2 - cy))

    def update(self, rgb: np.ndarray) -> TrackedFace | None:
        """The face on this frame, or None where none is found."""
        faces_seen = 0
        self._since_detect += 1
        if self._points is not None and self._since_detect >= self.detect_every:
            _, faces_seen = self._detect(rgb)  # only counts faces; tracking goes on
        if self._points is not None:
            pts, presence = L._run_mesh(rgb, L._roi_from_points(self._points))
            if presence >= self.min_presence:
                self._points = pts
                return TrackedFace(pts.astype(np.float32), presence, faces_seen)
        dets, faces_seen = self._detect(rgb)
        if not dets:
            self._points = None
            return None
        pts, presence = L._run_mesh(rgb, L._roi_from_detection(self._nearest(dets)))
        pts, presence = L._run_mesh(rgb, L._roi_from_points(pts))
        if presence < self.min_presence:
            self._points = None
            return None
        self._points = pts
        return TrackedFace(pts.astype(np.float32), presence, faces_seen)
