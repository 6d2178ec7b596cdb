"""Converted MediaPipe models: hashes in NOTICE and landmarks against the TFLite reference."""

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from livekit_avatar_plugin._paths import model_path

DATA = Path(__file__).parent / "face_data"


def test_notice_hashes_match_shipped_models():
    notice = model_path("face", "NOTICE").read_text()
    assert "Apache License" in notice and "mediapipe==0.10.14" in notice
    hashes = dict((name, h) for h, name in re.findall(r"([0-9a-f]{64})\s+(\S+)", notice))
    for name in ("face_detection_short_range.onnx", "face_landmark.onnx", "iris_landmark.onnx",
                 "selfie_segmentation.onnx"):
        data = model_path("face", name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == hashes[name], name
    assert sum(1 for n in hashes if n.endswith(".tflite")) == 4


def test_landmarks_match_tflite_reference():
    skimage_data = pytest.importorskip("skimage.data")
    from livekit_avatar_plugin._face import landmarks as L

    img = skimage_data.astronaut()
    dets = L.detect_faces(img)
    assert len(dets) == 1 and 85 < dets[0].width < 105
    mesh = L.face_mesh(img, dets[0])
    ref = np.load(DATA / "astronaut_landmarks_tflite.npy")
    assert mesh.points.shape == ref.shape == (478, 3)
    err = np.abs(mesh.points[:, :2] - ref[:, :2]).max()
    assert err < 0.05, f"max landmark error vs TFLite {err:.4f} px"
    # sanity of the index scheme: mouth corners left/right of the inner-lip centre, chin lowest
    p = mesh.points
    assert p[61, 0] < p[13, 0] < p[291, 0]
    assert p[152, 1] > p[14, 1] > p[13, 1]
    assert p[468, 0] < p[473, 0]  # right-eye iris (image left) before left-eye iris


def test_sessions_are_cached():
    from livekit_avatar_plugin._face import landmarks as L

    assert L._session("face_landmark.onnx") is L._session("face_landmark.onnx")
