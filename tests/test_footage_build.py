"""Footage avatar creation: ground truth recovered from synthetic footage, every bad input
refused by name with its exit code and nothing half-written, and a real clip from
``../shared/footage/dev`` built at test time (never stored)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from livekit_avatar_plugin.cli import main as cli_main
from livekit_avatar_plugin._face import avatar as A
from livekit_avatar_plugin._face.footage import LOOP_NAMES, load_footage_avatar
from livekit_avatar_plugin._face.footage_build import create_footage_avatar
from livekit_avatar_plugin._face.package import AvatarPackageError

from .footage_synth import FPS, make_clip

DEV = Path(__file__).resolve().parents[2] / "shared" / "footage" / "dev"


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def synthetic(synthetic_footage):
    return synthetic_footage


def test_the_offset_between_picture_and_sound_is_recovered(synthetic):
    truth, avatar = synthetic
    assert avatar.manifest["av_offset_ms"] == pytest.approx(truth.offset_ms, abs=40)
    assert avatar.manifest["av_offset_r"] > 0.3


def test_the_parts_are_found_from_the_audio_and_the_motion(synthetic):
    truth, avatar = synthetic
    parts = avatar.manifest["parts"]
    for name in LOOP_NAMES:
        (a, b), = parts[name]  # one stretch each
        assert a == pytest.approx(truth.parts[name][0], abs=0.5), name
        assert b == pytest.approx(truth.parts[name][1], abs=0.5), name
    # the calm stretch is idle, the nodding one (the photo renderer's listening) listening
    assert {n: avatar.loops[n].file for n in LOOP_NAMES} == {n: f"{n}.mp4" for n in LOOP_NAMES}
    assert avatar.loops["idle"].own_mouth and avatar.loops["listening"].own_mouth
    assert not avatar.loops["talking"].own_mouth


def test_the_atlas_keys_follow_the_channels_the_frames_were_drawn_with(synthetic):
    truth, avatar = synthetic
    with np.load(avatar.path / "atlas.npz") as z:
        src = z["source_frames"]
    talking = truth.talking[src]
    keys = avatar.atlas.keys[talking]
    drawn = truth.channels[src[talking]]
    assert _spearman(keys[:, 0], drawn[:, 0]) > 0.6  # opening
    # rounding: frames drawn rounded get higher rounding keys than frames drawn spread
    from livekit_avatar_plugin.training.metrics import _auc

    rounded, spread = drawn[:, 2] > 0.5, drawn[:, 3] > 0.5
    assert rounded.sum() >= 10 and spread.sum() >= 10
    assert _auc(keys[rounded, 2], keys[spread, 2]) > 0.8
    assert len(src) == truth.n  # every frame has a face: every frame gives a mouth


def test_the_package_is_checksummed_versioned_and_says_where_it_came_from(synthetic):
    _, avatar = synthetic
    m = avatar.manifest
    assert m["kind"] == "footage" and m["version"] == 1
    assert m["provenance"]["source"] == "clip.mp4" and len(m["provenance"]["source_sha256"]) == 64
    assert m["calibration"]["method"].startswith("the clip's measured")
    with pytest.raises(AvatarPackageError, match="not a photo avatar"):
        A.load_avatar(avatar.path)
    assert type(A.load_package(avatar.path)).__name__ == "FootageAvatar"


def test_a_tampered_footage_package_is_refused(synthetic, tmp_path):
    import shutil

    _, avatar = synthetic
    pkg = tmp_path / "copy"
    shutil.copytree(avatar.path, pkg)
    data = bytearray((pkg / "atlas.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (pkg / "atlas.bin").write_bytes(bytes(data))
    with pytest.raises(AvatarPackageError, match="checksum"):
        load_footage_avatar(pkg)
    m = json.loads((avatar.path / "manifest.json").read_text())
    m["loops"]["idle"]["file"] = "../talking.mp4"
    shutil.copytree(avatar.path, tmp_path / "copy2")
    (tmp_path / "copy2" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AvatarPackageError, match="loop"):
        load_footage_avatar(tmp_path / "copy2")


def test_no_audio_uses_defaults_and_still_works(tmp_path, caplog):
    truth = make_clip(tmp_path / "mute.mp4", parts=(("idle", 3.0), ("talking", 5.0)), audio=False)
    with caplog.at_level(logging.WARNING):
        avatar = create_footage_avatar(tmp_path / "mute.mp4", tmp_path / "avatar")
    assert "no audio" in caplog.text
    assert avatar.manifest["av_offset_r"] is None and avatar.offset_ms == 0.0
    assert avatar.manifest["calibration"]["method"].startswith("default")
    (a, b), = avatar.manifest["parts"]["talking"]  # found from the mouth's motion
    assert a == pytest.approx(3.0, abs=0.8) and b == pytest.approx(8.0, abs=0.8)
    assert truth.n == 200


def test_several_faces_use_the_largest_with_a_warning(tmp_path, caplog):
    make_clip(tmp_path / "two.mp4", parts=(("talking", 6.0),), second_face=True)
    with caplog.at_level(logging.WARNING):
        avatar = create_footage_avatar(tmp_path / "two.mp4", tmp_path / "avatar")
    assert "2 faces" in caplog.text and "largest" in caplog.text
    # the canvas is framed on the large face, on the left of the clip
    assert avatar.template[:, 0].mean() < avatar.canvas[0] * 0.75


def test_frames_where_the_face_is_lost_are_dropped_and_counted(tmp_path, caplog):
    truth = make_clip(tmp_path / "lost.mp4", parts=(("talking", 7.0),), lost=(3.0, 4.0))
    with caplog.at_level(logging.WARNING):
        avatar = create_footage_avatar(tmp_path / "lost.mp4", tmp_path / "avatar")
    assert "lost in 25 of 175 frames" in caplog.text
    with np.load(avatar.path / "atlas.npz") as z:
        src = z["source_frames"]
    a, b = truth.lost
    assert not np.any((src >= a) & (src < b))
    assert avatar.manifest["stats"]["face_lost"] == 25


def test_phone_rotation_is_applied(tmp_path):
    make_clip(tmp_path / "turned.mp4", parts=(("talking", 6.0),), rotate=90)
    avatar = create_footage_avatar(tmp_path / "turned.mp4", tmp_path / "avatar")
    assert avatar.manifest["provenance"]["rotation"] in (90, 270)
    eyes_y = avatar.template[:4, 1].mean()  # eye corners, then the nose below them
    nose_y = avatar.template[9:11, 1].mean()
    assert nose_y > eyes_y + 0.1 * avatar.face_width  # upright


def test_a_shaking_camera_is_steadied_and_a_steady_one_left_alone(synthetic, tmp_path):
    import av

    from livekit_avatar_plugin._face.camera import _phase_shift

    _, steady = synthetic
    assert steady.manifest["stabilised"] is None
    truth = make_clip(tmp_path / "shaky.mp4", parts=(("talking", 6.0),), shake=4.0)
    avatar = create_footage_avatar(tmp_path / "shaky.mp4", tmp_path / "avatar")
    jitter = truth.extra["jitter"]
    rms = float(np.sqrt((jitter**2).sum(1).mean()))
    assert avatar.manifest["stabilised"]["shake_rms_px"] == pytest.approx(rms, rel=0.3)
    # the background (a corner of the loop) barely moves from frame to frame any more
    with av.open(str(avatar.path / "talking.mp4")) as c:
        frames = [f.to_ndarray(format="gray").astype(np.float32)[8:72, 8:72] for f in c.decode(video=0)]
    window = np.outer(np.hanning(64), np.hanning(64))
    moved = np.array([_phase_shift(a, b, window)[:2] for a, b in zip(frames, frames[1:])])
    zoom = avatar.canvas[0] / avatar.manifest["stabilised"]["crop_px"][0]
    before = float(np.sqrt((np.diff(jitter, axis=0) ** 2).sum(1).mean())) * zoom
    after = float(np.sqrt((moved**2).sum(1).mean()))
    assert after < before / 3, (before, after)


# -- bad input through the command line ---------------------------------------------------


def _ffmpeg(*args) -> None:
    import subprocess

    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=60)


def _bad_clip(tmp: Path, kind: str) -> Path:
    if kind == "noface":
        p = tmp / "noface.mp4"
        _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6", "-c:v", "libx264", "-pix_fmt", "yuv420p", p)
        return p
    if kind == "truncated":
        p = tmp / "whole.mp4"
        make_clip(p, parts=(("talking", 6.0),))
        cut = tmp / "truncated.mp4"
        _ffmpeg("-i", p, "-c", "copy", "-movflags", "+faststart", tmp / "fast.mp4")
        cut.write_bytes((tmp / "fast.mp4").read_bytes()[: int((tmp / "fast.mp4").stat().st_size * 0.6)])
        return cut
    if kind == "short":
        p = tmp / "short.mp4"
        make_clip(p, parts=(("talking", 3.0),))
        return p
    if kind == "still":
        p = tmp / "still.mkv"
        from PIL import Image
        from skimage import data

        Image.fromarray(data.astronaut()).save(tmp / "still.png")
        _ffmpeg("-i", tmp / "still.png", "-c:v", "png", p)
        return p
    if kind == "static":  # a photo held for 6 s: frames, but nothing moves
        p = tmp / "static.mp4"
        from PIL import Image
        from skimage import data

        Image.fromarray(data.astronaut()).save(tmp / "still.png")
        _ffmpeg("-loop", "1", "-i", tmp / "still.png", "-t", "6", "-r", "25", "-c:v", "libx264", "-pix_fmt", "yuv420p", p)
        return p
    if kind == "notvideo":
        p = tmp / "clip.mp4"
        p.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, np.uint8).tobytes())
        return p
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,code,words", [
    ("noface", 11, "no face"),
    ("truncated", 16, "truncated"),
    ("short", 19, "at least 5 s"),
    ("still", 20, "still"),
    ("static", 20, "nothing moves"),
    ("notvideo", 14, "neither an image nor a video"),
])
def test_bad_clips_exit_with_their_code_and_leave_nothing(tmp_path, caplog, kind, code, words):
    clip = _bad_clip(tmp_path, kind)
    out = tmp_path / "out" / "avatar"
    with caplog.at_level(logging.ERROR):
        assert cli_main(["create", str(clip), "-o", str(out), "-q"]) == code
    assert words in caplog.text
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not _leftovers(tmp_path / "out")


def test_a_failed_rebuild_keeps_the_old_package(synthetic, tmp_path):
    import shutil

    _, avatar = synthetic
    out = tmp_path / "avatar"
    shutil.copytree(avatar.path, out)
    before = (out / "manifest.json").read_text()
    assert cli_main(["create", str(_bad_clip(tmp_path, "short")), "-o", str(out), "-q"]) == 19
    assert (out / "manifest.json").read_text() == before
    assert not _leftovers(tmp_path)


def test_part_ranges_are_checked_and_used(tmp_path, caplog):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, parts=(("idle", 3.0), ("talking", 6.0)))
    with caplog.at_level(logging.ERROR):
        assert cli_main(["create", str(clip), "-o", str(tmp_path / "a"), "-q", "--idle", "8-30"]) == 21
    assert "inside the clip" in caplog.text and not (tmp_path / "a").exists()
    with pytest.raises(SystemExit) as exc:
        cli_main(["create", str(clip), "-o", str(tmp_path / "a"), "--talking", "5-2"])
    assert exc.value.code == 2  # argparse: not a range
    assert cli_main(["create", str(clip), "-o", str(tmp_path / "b"), "-q", "--idle", "0-2.5", "--talking", "3-9"]) == 0
    m = load_footage_avatar(tmp_path / "b").manifest
    assert m["parts"]["idle"][0] == pytest.approx([0.0, 2.5], abs=0.04)  # whole frames
    assert m["parts"]["talking"][0] == pytest.approx([3.0, 9.0], abs=0.04)


def test_a_video_is_told_from_a_photo_by_its_content(tmp_path, capsys):
    clip = tmp_path / "looks_like_a_photo.jpg"
    make_clip(clip, parts=(("talking", 5.5),))
    assert cli_main(["create", str(clip), "-o", str(tmp_path / "a"), "-q"]) == 0
    assert "talking" in capsys.readouterr().out
    assert load_footage_avatar(tmp_path / "a").manifest["provenance"]["source"] == clip.name


# -- real footage ---------------------------------------------------------------------------


def test_a_real_clip_builds_a_small_package_that_warns_about_short_footage(tmp_path, caplog):
    clip = DEV / "hill_weekly_address_8s_512.mp4"
    with caplog.at_level(logging.WARNING):
        avatar = create_footage_avatar(clip, tmp_path / "avatar")
    assert "more footage" in caplog.text  # 8 s of talking
    size = sum(f["bytes"] for f in avatar.manifest["files"].values())
    assert size < 8 << 20
    assert len(avatar.atlas) >= 7.5 * FPS
    assert avatar.loops["idle"].file == "talking.mp4" and not avatar.loops["idle"].own_mouth
    assert abs(avatar.offset_ms) < 500
