"""A module of this repository as it was at an earlier commit, for before/after pictures
and benchmarks (the old renderer beside the current one)."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "livekit_avatar_plugin"


def module_at(commit: str, module: str = "_render.renderer") -> ModuleType:
    """Import ``module`` (``a.b`` inside the package, or its name before the modules went
    private: ``_render.renderer`` is found as ``render.renderer`` at older commits) as
    committed at ``commit``, with the package as it was then: the whole package is
    unpacked under another name, so old and new live side by side in one process."""
    alias = f"lap_at_{commit[:10]}"
    names = [module]
    old = ".".join(part.lstrip("_") for part in module.split("."))
    if old != module:
        names.append(old)
    if alias not in sys.modules:
        tar = subprocess.run(["git", "archive", "--format=tar", commit, PACKAGE], cwd=ROOT, check=True,
                             capture_output=True).stdout
        base = Path(tempfile.mkdtemp())
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            for member in tf.getmembers():
                if not member.isfile() or not member.name.endswith(".py"):
                    continue
                data = tf.extractfile(member)
                assert data is not None
                text = data.read().decode().replace(PACKAGE, alias)
                dest = base / alias / member.name[len(PACKAGE) + 1:]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text)
        (base / alias / "__init__.py").write_text("")  # not the old package's plugin wiring: its modules only
        sys.path.insert(0, str(base))
    for name in names:
        try:
            return importlib.import_module(f"{alias}.{name}")
        except ModuleNotFoundError as e:
            if not f"{alias}.{name}".startswith(str(e.name)):  # the module itself missing, not one it imports
                raise
    raise ModuleNotFoundError(f"none of {names} in {PACKAGE} at {commit}")
