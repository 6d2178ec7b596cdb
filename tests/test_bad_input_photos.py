"""Hostile photos for ``livekit-avatar create``: decompression bombs and truncated files.

(The ordinary bad inputs, with their exit codes, are in test_avatar_create.py.) Each case
fails fast with the documented error and leaves nothing behind: no package folder, no
temporary folder.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from livekit_avatar_plugin.cli import main as cli_main
from livekit_avatar_plugin._face import avatar as A

skdata = pytest.importorskip("skimage.data")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (its data is a few bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _nothing_left(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("size", [(100_000, 100_000), (20_000, 10_000), (70_000, 1_000)])
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, size):
    photo = tmp_path / "bomb.png"
    photo.write_bytes(png_claiming(*size))
    assert photo.stat().st_size < 200
    out = tmp_path / "avatar"
    with pytest.raises(A.ImageTooLargeError, match="MP|bomb"):
        A.create_avatar(photo, out)
    _nothing_left(tmp_path, out)
    assert cli_main(["create", str(photo), "-o", str(out), "-q"]) == A.ImageTooLargeError.exit_code
    _nothing_left(tmp_path, out)


def test_reading_a_photo_leaves_pils_own_bomb_limit_in_place(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 64)).save(photo)
    A.read_photo(photo)
    assert Image.MAX_IMAGE_PIXELS == before is not None


def _encoded(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt,keep",
    [("JPEG", 0.5), ("JPEG", 0.02), ("PNG", 0.5), ("PNG", 0.01), ("WEBP", 0.5), ("TIFF", 0.5)],
)
def test_truncated_photos_are_reported_corrupt(tmp_path, fmt, keep):
    data = _encoded(fmt)
    photo = tmp_path / f"cut.{fmt.lower()}"
    photo.write_bytes(data[: max(16, int(len(data) * keep))])
    out = tmp_path / "avatar"
    with pytest.raises(A.CorruptImageError, match="corrupt|truncated|cannot be decoded"):
        A.create_avatar(photo, out)
    _nothing_left(tmp_path, out)


def test_an_empty_file_and_a_directory_are_not_images(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(A.NotAnImageError):
        A.create_avatar(empty, tmp_path / "a")
    with pytest.raises(A.NotAnImageError):
        A.create_avatar(tmp_path, tmp_path / "b")
    _nothing_left(tmp_path, tmp_path / "a")


@pytest.fixture(scope="module")
def portrait(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(p)
    return p


@pytest.mark.parametrize("fail_at", [1, 4, "manifest"])
def test_a_create_failing_while_writing_leaves_no_half_written_package(
    tmp_path, portrait, monkeypatch, fail_at
):
    real_encode = A._encode
    calls = {"n": 0}

    def flaky_encode(name, arr):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise OSError("disk full")
        return real_encode(name, arr)

    def flaky_dumps(*a, **kw):
        raise OSError("disk full")

    if fail_at == "manifest":
        from livekit_avatar_plugin._face import package

        monkeypatch.setattr(package.json, "dumps", flaky_dumps)
    else:
        monkeypatch.setattr(A, "_encode", flaky_encode)
    out = tmp_path / "avatar"
    with pytest.raises(OSError, match="disk full"):
        A.create_avatar(portrait, out)
    _nothing_left(tmp_path, out)


def test_a_failed_overwrite_keeps_the_old_package_intact(tmp_path, portrait, monkeypatch):
    out = tmp_path / "avatar"
    A.create_avatar(portrait, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(A, "_encode", lambda name, arr: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        A.create_avatar(portrait, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert A.load_avatar(out).image.shape[2] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failed_create_through_the_cli_on_a_bad_photo_writes_nothing(tmp_path):
    photo = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(photo)
    out = tmp_path / "avatar"
    assert cli_main(["create", str(photo), "-o", str(out), "-q"]) == A.NoFaceError.exit_code
    _nothing_left(tmp_path, out)
