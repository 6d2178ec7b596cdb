"""Avatar package folders: written atomically with a checksummed manifest, read back with
every member checked. Shared by photo packages (``avatar.py``) and footage packages
(``footage.py``).

A package is untrusted input: names that leave the folder, symlinks, sizes that do not
match the manifest and checksum mismatches are refused with :class:`AvatarPackageError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .._errors import AvatarError

FORMAT = "livekit-avatar"
MAX_MANIFEST_BYTES = 1 << 20


class AvatarPackageError(AvatarError, ValueError):
    """An avatar package failed validation."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_package(
    out_dir: Path, files: dict[str, bytes], meta: dict, file_info: dict[str, dict] | None = None
) -> None:
    """Write ``files`` and a manifest vouching for them into ``out_dir``, all or nothing:
    everything goes to a temporary folder beside it, which then replaces ``out_dir``.
    ``file_info`` adds fields to a file's manifest entry (e.g. an array's shape)."""
    out_dir = Path(out_dir).resolve()
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    try:
        os.chmod(tmp, 0o755)
        listed = {}
        for name, data in files.items():
            (tmp / name).write_bytes(data)
            listed[name] = {"sha256": sha256(data), "bytes": len(data), **(file_info or {}).get(name, {})}
        manifest = {"format": FORMAT, "files": listed,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
            os.replace(out_dir, old / "x")
            try:
                os.replace(tmp, out_dir)
            except Exception:
                os.replace(old / "x", out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(root: Path) -> dict:
    """The package's manifest, parsed; not yet checked beyond being a JSON object."""
    mpath = Path(root) / "manifest.json"
    if not mpath.is_file():
        raise AvatarPackageError(f"{root} is not an avatar package (no manifest.json)")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise AvatarPackageError("manifest.json is too large")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, RecursionError) as exc:
        raise AvatarPackageError(f"manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise AvatarPackageError("manifest.json is not a JSON object")
    return manifest


def package_kind(root: Path) -> str:
    """``"photo"`` or ``"footage"``, from the manifest (photo packages predate the field)."""
    kind = read_manifest(root).get("kind", "photo")
    if kind not in ("photo", "footage"):
        raise AvatarPackageError(f"unknown avatar package kind {kind!r}")
    return kind


def safe_member(root: Path, name: object) -> Path:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise AvatarPackageError(f"illegal file name in manifest: {name!r}")
    p = root / name
    if p.is_symlink() or not p.resolve().is_relative_to(root.resolve()):
        raise AvatarPackageError(f"{name!r} points outside the package")
    return p


def read_members(root: Path, manifest: dict, names: tuple[str, ...], max_bytes: int) -> dict[str, bytes]:
    """The bytes of exactly ``names``, each checked against the manifest's size and SHA-256."""
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(names):
        raise AvatarPackageError(f"manifest must list exactly {names}")
    data = {}
    for name, info in files.items():
        p = safe_member(root, name)
        if not isinstance(info, dict) or not p.is_file():
            raise AvatarPackageError(f"{name} is missing")
        size = p.stat().st_size
        if size > max_bytes or size != info.get("bytes"):
            raise AvatarPackageError(f"{name} has the wrong size")
        raw = p.read_bytes()
        if not isinstance(info.get("sha256"), str) or sha256(raw) != info["sha256"]:
            raise AvatarPackageError(f"checksum mismatch for {name}")
        data[name] = raw
    return data
