"""Where the shipped models live.

The ONNX models and the default avatar ship in the repository's ``models/`` folder.
``LIVEKIT_AVATAR_MODELS`` points elsewhere (e.g. a read-only volume in a container).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


def models_dir() -> Path:
    override = os.environ.get("LIVEKIT_AVATAR_MODELS")
    path = Path(override) if override else _REPO_MODELS
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
