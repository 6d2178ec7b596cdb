"""A module of this repository as it was at an earlier commit, for before/after pictures
and benchmarks (the old renderer beside the current one)."""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def module_at(commit: str, path: str = "livekit_avatar_plugin/_render/renderer.py") -> ModuleType:
    """Import ``path`` as committed at ``commit`` (its absolute imports use today's package)."""
    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True).stdout
    file = Path(tempfile.mkdtemp()) / f"at_{commit[:8]}.py"
    file.write_bytes(source)
    spec = importlib.util.spec_from_file_location(file.stem, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
