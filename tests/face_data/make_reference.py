"""Regenerate ``astronaut_landmarks_tflite.npy``: the reference landmarks for the test.

Runs the package's own pre/post-processing (livekit_avatar_plugin._face.landmarks) with the
original MediaPipe .tflite models on the TensorFlow Lite interpreter, so the test can
check the converted ONNX models end to end. Needs a throwaway environment that has
tensorflow (or tflite_runtime), numpy and pillow, e.g.:

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu pillow numpy
    /tmp/tfvenv/bin/python tests/face_data/make_reference.py TFLITE_DIR ASTRONAUT_PNG

TFLITE_DIR holds the three .tflite files from the mediapipe==0.10.14 wheel and
ASTRONAUT_PNG is skimage/data/astronaut.png from scikit-image.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Load only the landmark module (and _paths) without the package __init__, which pulls
# in livekit and friends that the throwaway TFLite environment does not have.
import importlib.util  # noqa: E402
import types  # noqa: E402

_PKG = Path(__file__).resolve().parents[2] / "livekit_avatar_plugin"
for _name, _dir in (("livekit_avatar_plugin", _PKG), ("livekit_avatar_plugin._face", _PKG / "face")):
    _m = types.ModuleType(_name)
    _m.__path__ = [str(_dir)]
    sys.modules[_name] = _m


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_load("livekit_avatar_plugin._paths", _PKG / "_paths.py")
L = _load("livekit_avatar_plugin._face.landmarks", _PKG / "face" / "landmarks.py")

try:
    from tensorflow.lite.python.interpreter import Interpreter
except ImportError:  # pragma: no cover
    from tflite_runtime.interpreter import Interpreter


def runner(path):
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()

    def run(x):
        it.set_tensor(it.get_input_details()[0]["index"], x.astype(np.float32))
        it.invoke()
        return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]

    return run


def main():
    tdir, png = Path(sys.argv[1]), sys.argv[2]
    L.RUNNERS["detector"] = runner(next(tdir.rglob("face_detection_short_range.tflite")))
    L.RUNNERS["mesh"] = runner(next(tdir.rglob("face_landmark.tflite")))
    L.RUNNERS["iris"] = runner(next(tdir.rglob("iris_landmark.tflite")))
    img = np.asarray(Image.open(png).convert("RGB"))
    det = L.detect_faces(img)[0]
    mesh = L.face_mesh(img, det)
    out = Path(__file__).with_name("astronaut_landmarks_tflite.npy")
    np.save(out, mesh.points.astype(np.float32))
    print("wrote", out, mesh.points.shape)


if __name__ == "__main__":
    main()
