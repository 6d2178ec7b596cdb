"""Avatar package validation: checksums, path traversal, oversized arrays, version."""

import hashlib
import io
import json
import shutil

import numpy as np
import pytest

from livekit_avatar_plugin._face.avatar import AvatarPackageError, default_avatar, load_avatar


@pytest.fixture()
def pkg(tmp_path):
    src = default_avatar().path
    dst = tmp_path / "av"
    shutil.copytree(src, dst)
    return dst


def _manifest(p):
    return json.loads((p / "manifest.json").read_text())


def _write_manifest(p, m):
    (p / "manifest.json").write_text(json.dumps(m))


def test_default_loads_and_is_cached():
    a = default_avatar()
    assert a is default_avatar()
    assert a.image.shape[2] == 3 and a.landmarks.shape == (478, 3)


def test_copy_loads(pkg):
    assert load_avatar(pkg).image.shape == default_avatar().image.shape


def test_tampered_file(pkg):
    data = bytearray((pkg / "landmarks.npy").read_bytes())
    data[-1] ^= 1
    (pkg / "landmarks.npy").write_bytes(bytes(data))
    with pytest.raises(AvatarPackageError, match="checksum"):
        load_avatar(pkg)


def test_tampered_checksum(pkg):
    m = _manifest(pkg)
    m["files"]["image.png"]["sha256"] = "0" * 64
    _write_manifest(pkg, m)
    with pytest.raises(AvatarPackageError, match="checksum"):
        load_avatar(pkg)


@pytest.mark.parametrize("name", ["../image.png", "/etc/passwd", "sub/image.png", ".."])
def test_path_traversal(pkg, name):
    m = _manifest(pkg)
    m["files"][name] = m["files"].pop("image.png")
    _write_manifest(pkg, m)
    with pytest.raises(AvatarPackageError):
        load_avatar(pkg)


def test_symlink_outside(pkg, tmp_path):
    outside = tmp_path / "outside.png"
    shutil.copy(pkg / "image.png", outside)
    (pkg / "image.png").unlink()
    (pkg / "image.png").symlink_to(outside)
    with pytest.raises(AvatarPackageError, match="outside"):
        load_avatar(pkg)


def test_oversized_array_with_valid_checksum(pkg):
    buf = io.BytesIO()
    np.save(buf, np.zeros((100000, 3), np.float32))
    data = buf.getvalue()
    (pkg / "landmarks.npy").write_bytes(data)
    m = _manifest(pkg)
    m["files"]["landmarks.npy"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    _write_manifest(pkg, m)
    with pytest.raises(AvatarPackageError, match="landmarks"):
        load_avatar(pkg)


def test_wrong_version(pkg):
    m = _manifest(pkg)
    m["version"] = 99
    _write_manifest(pkg, m)
    with pytest.raises(AvatarPackageError, match="version"):
        load_avatar(pkg)


def test_missing_manifest(tmp_path):
    with pytest.raises(AvatarPackageError):
        load_avatar(tmp_path)
