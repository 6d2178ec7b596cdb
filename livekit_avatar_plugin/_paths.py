"""Where the shipped models live.

The ONNX models and the default avatar are kept in the repository's ``models/`` folder,
and a built wheel carries them inside the package (``_models``, copied by setup.py).
``LIVEKIT_AVATAR_MODELS`` points elsewhere (e.g. a read-only volume in a container).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGED_MODELS = Path(__file__).resolve().parent / "_models"  # an installed wheel
_REPO_MODELS = Path(__file__).resolve().parent.parent / "models"  # a checkout


def models_dir() -> Path:
    override = os.environ.get("LIVEKIT_AVATAR_MODELS")
    path = Path(override) if override else _PACKAGED_MODELS if _PACKAGED_MODELS.is_dir() else _REPO_MODELS
    if not path.is_dir():
        raise FileNotFoundError(
            f"model folder {path} does not exist; set LIVEKIT_AVATAR_MODELS to the folder "
            "that holds lipsync/ and face/"
        )
    return path


def model_path(*parts: str) -> Path:
    path = models_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} is missing from the model folder")
    return path
