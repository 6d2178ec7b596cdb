"""Reading talking-head clips (``face/video.py``): containers, rates, rotation, audio, bad input.

Every clip is generated here, tiny (64x48 to 128x96, a few seconds), with the ffmpeg CLI
or PyAV, so the file runs in seconds.
"""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from livekit_avatar_plugin._face import video as V
from livekit_avatar_plugin._face.avatar import (
    CorruptVideoError,
    NotAnImageError,
    StillVideoError,
    VideoTooLargeError,
    VideoTooLongError,
    VideoTooShortError,
)

RATE = 16000
TONE_AT = 2.0  # seconds: the tone burst's onset in the audio track


def ffmpeg(*args: str | os.PathLike) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=60)


def lavfi_video(size: str = "128x96", rate: float = 25, dur: float = 6.0) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={dur}"]


def tone_audio(dur: float = 6.0, rate: int = 48000) -> list[str]:
    expr = f"if(between(t\\,{TONE_AT}\\,{TONE_AT + 0.3})\\,0.5*sin(2*PI*1000*t)\\,0)"
    return ["-f", "lavfi", "-i", f"aevalsrc={expr}:s={rate}:d={dur}"]


def onset(pcm: np.ndarray) -> float:
    return float(np.argmax(np.abs(pcm) > 0.1)) / RATE


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    c = {k: d / v for k, v in {
        "mp4": "h264_aac.mp4", "mov": "clip.mov", "webm": "vp8_opus.webm", "mkv": "clip.mkv",
        "fps30": "fps30.mp4", "fps24": "fps24.mp4", "silent": "silent.mp4",
        "late_audio": "late_audio.mp4", "late_video": "late_video.mkv",
    }.items()}
    ffmpeg(*lavfi_video(), *tone_audio(), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", c["mp4"])
    ffmpeg(*lavfi_video(), *tone_audio(), "-c:v", "mpeg4", "-c:a", "pcm_s16le", c["mov"])
    ffmpeg(*lavfi_video(), *tone_audio(), "-c:v", "libvpx", "-deadline", "realtime", "-b:v", "200k",
           "-c:a", "libopus", c["webm"])
    ffmpeg(*lavfi_video(), *tone_audio(rate=44100), "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "flac", c["mkv"])
    ffmpeg(*lavfi_video(rate=30), "-c:v", "libx264", "-preset", "ultrafast", c["fps30"])
    ffmpeg(*lavfi_video(rate=24), "-c:v", "libx264", "-preset", "ultrafast", c["fps24"])
    ffmpeg(*lavfi_video(size="64x48"), "-c:v", "libx264", "-preset", "ultrafast", c["silent"])
    # The audio track starts 0.5 s after the first video frame.
    ffmpeg(*lavfi_video(), "-itsoffset", "0.5", *tone_audio(5.5), "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", c["late_audio"])
    # The video starts 0.5 s after the audio, so the tone sits 0.5 s earlier in video time.
    ffmpeg("-itsoffset", "0.5", *lavfi_video(), *tone_audio(6.5), "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "libvorbis", c["late_video"])
    return c


# ----------------------------------------------------------------------------- containers


@pytest.mark.parametrize("kind,codec", [("mp4", "h264"), ("mov", "mpeg4"), ("webm", "vp8"), ("mkv", "h264")])
def test_containers_probe_and_read(clips: dict[str, Path], kind: str, codec: str) -> None:
    path = clips[kind]
    assert V.looks_like_video(path)
    info = V.probe_clip(path)
    assert (info.width, info.height, info.rotation) == (128, 96, 0)
    assert info.video_codec == codec
    assert info.duration_s == pytest.approx(6.0, abs=0.1)
    assert info.nominal_fps == pytest.approx(25.0, abs=0.01)
    assert not info.variable_fps
    assert info.has_audio and info.audio_rate in (44100, 48000)
    frames = list(V.read_frames(info, max_side=64))
    assert abs(len(frames) - 150) <= 1
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert np.abs(frames[0].astype(int) - frames[40].astype(int)).mean() > 1  # testsrc2 moves
    pcm = V.read_audio(info)
    assert pcm is not None and pcm.dtype == np.float32 and np.abs(pcm).max() <= 1.0
    assert len(pcm) == pytest.approx(6.0 * RATE, abs=0.05 * RATE)
    assert onset(pcm) == pytest.approx(TONE_AT, abs=0.010)


@pytest.mark.parametrize("kind", ["fps30", "fps24"])
def test_other_rates_come_out_at_25(clips: dict[str, Path], kind: str) -> None:
    info = V.probe_clip(clips[kind])
    assert info.nominal_fps == pytest.approx(30.0 if kind == "fps30" else 24.0)
    frames = list(V.read_frames(info))
    assert abs(len(frames) - 150) <= 1
    assert frames[0].shape == (96, 128, 3)
    assert len(list(V.read_frames(info, fps=10, start_s=2.0, end_s=4.0))) == 20


def test_no_audio_and_late_audio(clips: dict[str, Path]) -> None:
    silent = V.probe_clip(clips["silent"])
    assert not silent.has_audio and silent.audio_rate is None
    assert V.read_audio(silent) is None
    late = V.probe_clip(clips["late_audio"])
    pcm = V.read_audio(late)
    assert pcm is not None
    assert onset(pcm) == pytest.approx(TONE_AT + 0.5, abs=0.010)
    assert not pcm[: int(0.4 * RATE)].any()  # the padding before the audio starts is silence
    early = V.probe_clip(clips["late_video"])
    with av.open(str(clips["late_video"])) as c:  # the muxer rounds the offset a little
        video_start = float(c.streams.video[0].start_time * c.streams.video[0].time_base)
        assert c.streams.audio[0].start_time == 0
    assert early.start_s == pytest.approx(video_start) and video_start == pytest.approx(0.5, abs=0.05)
    assert early.duration_s == pytest.approx(6.0, abs=0.01)
    pcm = V.read_audio(early)
    assert pcm is not None
    assert onset(pcm) == pytest.approx(TONE_AT - video_start, abs=0.010)
    assert abs(len(list(V.read_frames(early, max_side=32))) - 150) <= 1


# ----------------------------------------------------------------------------- variable rate

_VFR_STEPS_MS = (20, 70, 40, 100, 30, 45)  # an irregular cycle of frame intervals


def _index_frame(j: int, w: int = 64, h: int = 32) -> np.ndarray:
    """Frame j shows j in binary: 8 vertical stripes, white for a 1 bit (survives lossy coding)."""
    img = np.zeros((h, w, 3), np.uint8)
    for b in range(8):
        if j >> b & 1:
            img[:, b * 8 : b * 8 + 8] = 255
    return img


def _read_index(img: np.ndarray) -> int:
    w = img.shape[1] // 8
    return sum(1 << b for b in range(8) if img[:, b * w : (b + 1) * w].mean() > 128)


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    times_ms = [0]
    while times_ms[-1] < 6000:
        times_ms.append(times_ms[-1] + _VFR_STEPS_MS[len(times_ms) % len(_VFR_STEPS_MS)])
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"preset": "ultrafast"}
        for j, t in enumerate(times_ms):
            f = av.VideoFrame.from_ndarray(_index_frame(j), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            out.mux(s.encode(f))
        out.mux(s.encode())
    return path, [t / 1000 for t in times_ms]


def test_variable_frame_rate_picks_the_frame_on_screen(vfr_clip: tuple[Path, list[float]]) -> None:
    path, times = vfr_clip
    info = V.probe_clip(path)
    assert info.variable_fps
    frames = list(V.read_frames(info, fps=25))
    assert abs(len(frames) - info.duration_s * 25) <= 1
    for i, f in enumerate(frames):
        expected = max(j for j, t in enumerate(times) if t <= i / 25 + 1e-9)
        assert _read_index(f) == expected, f"output frame {i} at {i / 25:.2f} s"
    # From the middle: the seek must still land on the frame on screen.
    tail = list(V.read_frames(info, fps=25, start_s=3.0, end_s=4.0))
    assert len(tail) == 25
    for i, f in enumerate(tail):
        assert _read_index(f) == max(j for j, t in enumerate(times) if t <= 3.0 + i / 25 + 1e-9)


# ----------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_rotation_matches_ffmpeg_autorotate(tmp_path: Path, rotate: int) -> None:
    base = tmp_path / "base.mp4"
    img = np.zeros((48, 64, 3), np.uint8)
    img[:16, :16] = (255, 0, 0)  # red top-left
    img[:, 48:] = (0, 0, 255)  # blue right strip
    Image.fromarray(img).save(tmp_path / "pattern.png")
    ffmpeg("-loop", "1", "-i", tmp_path / "pattern.png", "-t", "6", "-r", "5", "-c:v", "libx264",
           "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv444p", base)
    rotated = tmp_path / f"rot{rotate}.mp4"
    ffmpeg("-i", base, "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", rotated)
    ffmpeg("-i", rotated, "-frames:v", "1", tmp_path / "ref.png")  # ffmpeg applies the rotation
    ref = np.asarray(Image.open(tmp_path / "ref.png").convert("RGB"))
    info = V.probe_clip(rotated)
    assert info.rotation in (90, 180, 270)
    assert (info.height, info.width) == ref.shape[:2]
    first = next(V.read_frames(info))
    assert first.shape == ref.shape
    assert np.abs(first.astype(int) - ref.astype(int)).mean() < 4


def test_pyav_display_rotation_convention(tmp_path: Path) -> None:
    """A display matrix of 90 degrees counter-clockwise is ClipInfo.rotation 270 (clockwise)."""
    path = tmp_path / "ccw.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        s.options = {"qp": "0", "preset": "ultrafast"}
        s.set_display_rotation(90)
        img = np.zeros((48, 64, 3), np.uint8)
        img[:16, :16] = 255  # white top-left
        for _ in range(30):
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(s.encode())
    info = V.probe_clip(path)
    assert (info.rotation, info.width, info.height) == (270, 48, 64)
    first = next(V.read_frames(info))
    assert first[-8:, :8].min() > 200 and first[:8, :8].max() < 50  # top-left turned to bottom-left


# ----------------------------------------------------------------------------- bad input


def test_random_bytes_are_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(1).bytes(20000))
    assert not V.looks_like_video(path)
    with pytest.raises(NotAnImageError, match="noise.mp4.*neither an image nor a video"):
        V.probe_clip(path)


def test_empty_file_and_photo(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert not V.looks_like_video(empty)
    with pytest.raises(NotAnImageError, match="empty.mp4 is empty"):
        V.probe_clip(empty)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(photo)
    assert not V.looks_like_video(photo)
    assert not V.looks_like_video(tmp_path / "missing.mp4")
    with pytest.raises(NotAnImageError, match="photo.jpg is an image, not a video"):
        V.probe_clip(photo)


def test_magic_numbers(tmp_path: Path) -> None:
    heads = {
        "a.avi": (b"RIFF\0\0\0\0AVI LIST" + bytes(16), True),
        "a.webp": (b"RIFF\0\0\0\0WEBPVP8 " + bytes(16), False),
        "a.mov": (b"\0\0\0\x08wide" + bytes(24), True),
        "a.heic": (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(8), False),
    }
    for name, (head, want) in heads.items():
        (tmp_path / name).write_bytes(head)
        assert V.looks_like_video(tmp_path / name) is want, name


def test_mp4_header_then_garbage(tmp_path: Path, clips: dict[str, Path]) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(clips["mp4"].read_bytes()[:32] + np.random.default_rng(2).bytes(20000))
    assert V.looks_like_video(path)
    with pytest.raises(CorruptVideoError, match="garbage.mp4"):
        V.probe_clip(path)


def test_truncated_file(tmp_path: Path) -> None:
    full = tmp_path / "full.mp4"
    ffmpeg(*lavfi_video(), "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", full)
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(CorruptVideoError, match="cut.mp4 is truncated"):
        info = V.probe_clip(cut)
        for _ in V.read_frames(info, max_side=32):
            pass


def test_too_short(tmp_path: Path) -> None:
    path = tmp_path / "short.mp4"
    ffmpeg(*lavfi_video(size="64x48", dur=3.2), "-c:v", "libx264", "-preset", "ultrafast", path)
    with pytest.raises(VideoTooShortError, match=r"short.mp4 lasts 3.2 s; at least 5 s"):
        V.probe_clip(path)


def test_too_long(tmp_path: Path) -> None:
    path = tmp_path / "long.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=32x32:rate=0.5:duration=660", "-c:v", "libx264",
           "-preset", "ultrafast", path)
    with pytest.raises(VideoTooLongError, match=r"long.mkv lasts 11.0 min; at most 10 min"):
        V.probe_clip(path)


def test_frame_too_large(tmp_path: Path) -> None:
    path = tmp_path / "wide.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=4112x16:rate=2:duration=1", "-c:v", "ffv1", path)
    with pytest.raises(VideoTooLargeError, match=r"wide.mkv has 4112x16 frames; the limit is 4096"):
        V.probe_clip(path)


def test_file_too_large(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(V, "MAX_FILE_BYTES", 1000)
    with pytest.raises(VideoTooLargeError, match=r"h264_aac.mp4 is [0-9.]+ MiB; the limit is 0.0 MiB"):
        V.probe_clip(clips["mp4"])


@pytest.mark.parametrize("image,container", [("png", "mkv"), ("jpg", "mp4")])
def test_single_image_in_a_video_container(tmp_path: Path, image: str, container: str) -> None:
    pic = tmp_path / f"pic.{image}"
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(pic)
    path = tmp_path / f"still.{container}"
    ffmpeg("-i", pic, "-c:v", "copy", path)
    assert V.looks_like_video(path)
    with pytest.raises(StillVideoError, match=f"still.{container} holds a single still frame"):
        V.probe_clip(path)


def test_exit_codes_are_distinct() -> None:
    codes = [e.exit_code for e in (NotAnImageError, CorruptVideoError, VideoTooLargeError,
                                   VideoTooLongError, VideoTooShortError, StillVideoError)]
    assert codes == [14, 16, 17, 18, 19, 20]
