"""Avatar packages from strangers: every way a package can lie is refused by name.

(Checksums, traversal, one oversized array and a wrong version number are covered in
test_avatar_package.py.) A package is untrusted input: the loader must answer every
malformed one with ``AvatarPackageError``, never another exception, never a huge
allocation, never a file outside the package.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from livekit_avatar_plugin._face.avatar import (
    AvatarPackageError,
    default_avatar,
    load_avatar,
)


@pytest.fixture()
def pkg(tmp_path):
    dst = tmp_path / "av"
    shutil.copytree(default_avatar().path, dst)
    return dst


def manifest(p) -> dict:
    return json.loads((p / "manifest.json").read_text())


def write_manifest(p, m) -> None:
    (p / "manifest.json").write_text(json.dumps(m))


def replace_file(p, name: str, data: bytes) -> None:
    """Swap a member for ``data`` and make the manifest vouch for it (a consistent lie)."""
    (p / name).write_bytes(data)
    m = manifest(p)
    m["files"][name].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    write_manifest(p, m)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("version", [True, "1", 1.0, None, 0, 2, [1], {"v": 1}])
def test_versions_other_than_the_integer_1_are_refused(pkg, version):
    m = manifest(pkg)
    m["version"] = version
    write_manifest(pkg, m)
    with pytest.raises(AvatarPackageError, match="version"):
        load_avatar(pkg)


@pytest.mark.parametrize(
    "sha", ["", "0" * 64, None, 12345, ["abc"], "A" * 64]
)
def test_a_checksum_that_does_not_match_or_is_not_a_string(pkg, sha):
    m = manifest(pkg)
    m["files"]["face.png"]["sha256"] = sha
    write_manifest(pkg, m)
    with pytest.raises(AvatarPackageError, match="checksum"):
        load_avatar(pkg)


@pytest.mark.parametrize("name", ["..%2fimage.png", "image.png\x00", "./image.png", "..\\image.png", ".hidden"])
def test_more_path_traversal_spellings(pkg, name):
    listed = manifest(pkg)["files"]
    listed[name] = listed.pop("image.png")
    write_manifest(pkg, {**manifest(pkg), "files": listed})
    with pytest.raises(AvatarPackageError, match="illegal file name|exactly"):
        load_avatar(pkg)


def test_a_member_that_is_a_symlink_inside_the_package_is_refused(pkg):
    (pkg / "face.png").unlink()
    (pkg / "face.png").symlink_to(pkg / "mouth.png")
    with pytest.raises(AvatarPackageError, match="outside"):
        load_avatar(pkg)


@pytest.mark.parametrize(
    "name,data,problem",
    [
        ("image.png", png_claiming(100_000, 100_000), "not a readable image|too large"),
        ("image.png", png_claiming(5000, 5000), "too large"),
        ("person.png", png_claiming(512, 512), "not a readable image"),  # truncated data
        ("face.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not a readable image"),
        ("mouth.png", b"GIF89a" + b"\x00" * 100, "not a PNG|not a readable image"),
        ("landmarks.npy", b"\x93NUMPY garbage", "not a valid array"),
        ("landmarks.npy", npy(np.array([object()] * 3, dtype=object)), "not a valid array"),
        ("landmarks.npy", npy(np.full((478, 3), np.nan, np.float32)), "finite"),
        ("landmarks.npy", npy(np.zeros((478, 3), np.float64)), "float32"),
        ("landmarks.npy", npy(np.full((478, 3), 1e9, np.float32)), "outside the image"),
    ],
)
def test_members_with_valid_checksums_but_hostile_contents(pkg, name, data, problem):
    replace_file(pkg, name, data)
    with pytest.raises(AvatarPackageError, match=problem):
        load_avatar(pkg)


def test_an_npy_header_claiming_a_huge_array_is_refused_without_allocating(pkg):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (4_000_000_000, 3)}
    )
    replace_file(pkg, "landmarks.npy", buf.getvalue() + b"\x00" * 64)  # 48 GB claimed
    with pytest.raises(AvatarPackageError, match="not a valid array"):
        load_avatar(pkg)


def test_an_image_of_the_wrong_mode_or_shape_is_refused(pkg):
    buf = io.BytesIO()
    Image.new("L", default_avatar().size).save(buf, format="PNG")
    replace_file(pkg, "image.png", buf.getvalue())
    with pytest.raises(AvatarPackageError, match="RGB"):
        load_avatar(pkg)


@pytest.mark.parametrize(
    "text",
    ["[]", "null", '"x"', "{", "[" * 100_000, '{"version": 1, "files": []}',
     '{"version": 1, "files": {"image.png": 5}}', "\xff\xfe"],
)
def test_malformed_manifests(pkg, text):
    (pkg / "manifest.json").write_text(text, errors="surrogateescape")
    with pytest.raises(AvatarPackageError):
        load_avatar(pkg)


def test_a_manifest_over_1_mb_is_not_even_parsed(pkg):
    m = manifest(pkg)
    m["padding"] = "x" * (1 << 20)
    write_manifest(pkg, m)
    with pytest.raises(AvatarPackageError, match="too large"):
        load_avatar(pkg)


def test_an_unlisted_extra_file_or_a_missing_one(pkg):
    m = manifest(pkg)
    m["files"]["extra.bin"] = {"sha256": "0" * 64, "bytes": 0}
    write_manifest(pkg, m)
    with pytest.raises(AvatarPackageError, match="exactly"):
        load_avatar(pkg)
    m["files"].pop("extra.bin")
    write_manifest(pkg, m)
    (pkg / "mouth.png").unlink()
    with pytest.raises(AvatarPackageError, match="missing"):
        load_avatar(pkg)
