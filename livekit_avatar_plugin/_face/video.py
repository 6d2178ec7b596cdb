"""Reading a user's talking-head clip for a footage avatar.

``probe_clip`` opens and checks a clip (MP4, MOV, WebM, MKV; any frame rate, phone rotation
metadata, 5 s to 10 min) and refuses bad input with an ``AvatarCreationError`` subclass that
names the file and the problem. ``read_frames`` then yields constant-rate RGB frames with
the rotation applied, and ``read_audio`` the first audio track as mono float32 aligned to
the video's first frame.

Rotation: FFmpeg's display matrix (``VideoFrame.rotation``) is counter-clockwise degrees;
``ClipInfo.rotation`` is the clockwise rotation to apply, ``(-frame.rotation) % 360``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .avatar import (
    CorruptVideoError,
    NotAnImageError,
    StillVideoError,
    VideoTooLargeError,
    VideoTooLongError,
    VideoTooShortError,
)
from .photo_file import looks_like_image

log = logging.getLogger(__name__)

MIN_DURATION_S = 5.0
MAX_DURATION_S = 600.0
MAX_FILE_BYTES = 2 << 30  # 2 GiB
MAX_FRAME_SIDE = 4096

_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
# ISO-BMFF brands of still images (HEIC/AVIF photos share the container with MP4).
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"avci")
_EBML = b"\x1a\x45\xdf\xa3"
_PROBE_PACKETS = 90  # video packets whose timestamps decide variable_fps
_EPS = 1e-6  # seconds: timestamps this close count as equal (float rounding)


def _head(path: str | os.PathLike, n: int = 32) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def looks_like_video(path: str | os.PathLike) -> bool:
    """True when the file's content (not its extension) is a video container.

    ISO-BMFF (MP4/MOV), Matroska/WebM or AVI; False for images, anything else, and files
    that cannot be read.
    """
    head = _head(path)
    if len(head) < 12:
        return False
    if head.startswith(_EBML):
        return True
    if head[:4] == b"RIFF":
        return head[8:12] == b"AVI "
    box = head[4:8]
    if box == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS  # the major brand
    return box in _BMFF_BOXES


@dataclass(frozen=True)
class ClipInfo:
    """What ``probe_clip`` found; times are seconds from the first video frame."""

    path: Path
    width: int  # as displayed, i.e. after rotation
    height: int
    rotation: int  # degrees clockwise applied to decoded frames to display them: 0, 90, 180 or 270
    duration_s: float  # from the first video frame to the end of the video stream
    nominal_fps: float
    variable_fps: bool
    video_codec: str
    has_audio: bool
    audio_rate: int | None
    start_s: float = 0.0  # presentation time of the first video frame, in container time: "time 0"


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except Exception as exc:
        raise CorruptVideoError(f"{path} looks like a video but cannot be opened: {exc}") from exc


def _video_stream(c: av.container.InputContainer, path: Path) -> av.VideoStream:
    streams = list(c.streams.video)
    moving = [s for s in streams if not s.disposition & av.stream.Disposition.attached_pic]
    if moving:
        return moving[0]
    if streams:  # only cover art, e.g. an audio file with a picture
        raise StillVideoError(f"{path} holds only a still picture (cover art), no video")
    raise CorruptVideoError(f"{path} has no video stream")


def _stream_end(c: av.container.InputContainer, s: av.VideoStream) -> float | None:
    """When the video stream ends according to the header, in container time."""
    if s.duration and s.time_base:
        return float(((s.start_time or 0) + s.duration) * s.time_base)
    tag = s.metadata.get("DURATION") or s.metadata.get("duration")  # Matroska: the track's end
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    return ((c.start_time or 0) + c.duration) / av.time_base if c.duration else None


def _time_base(s: av.stream.Stream) -> Fraction:
    """The stream's time base; FFmpeg sets one on every stream of an opened input."""
    tb = s.time_base
    assert tb is not None, "an opened stream has a time base"
    return tb


def _demuxed_end(c: av.container.InputContainer, s: av.VideoStream) -> float | None:
    """Last pts + duration of the video packets: for containers whose header has no duration."""
    end = None
    for pkt in c.demux(s):
        if pkt.pts is not None:
            t = float((pkt.pts + (pkt.duration or 0)) * _time_base(s))
            end = t if end is None else max(end, t)
    return end


def _clockwise(frame: av.VideoFrame) -> int:
    ccw = frame.rotation or 0
    snapped = int(round(ccw / 90.0)) * 90
    if abs(snapped - ccw) > 1:
        log.warning("display rotation %s° is not a multiple of 90°; using %s°", ccw, snapped)
    return (-snapped) % 360


def probe_clip(path: str | os.PathLike) -> ClipInfo:
    """Open and check a clip, decoding only its first two frames."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise NotAnImageError(f"cannot read {path}: {exc}") from exc
    if size == 0:
        raise NotAnImageError(f"{path} is empty")
    if not looks_like_video(path):
        what = "an image, not a video" if looks_like_image(_head(path)) else "neither an image nor a video"
        raise NotAnImageError(f"{path} is {what} (MP4, MOV, WebM or MKV)")
    if size > MAX_FILE_BYTES:
        raise VideoTooLargeError(f"{path} is {_mib(size)}; the limit is {_mib(MAX_FILE_BYTES)}")
    with _open(path) as c:
        s = _video_stream(c, path)
        cc = s.codec_context
        if max(cc.width, cc.height) > MAX_FRAME_SIDE:
            raise VideoTooLargeError(
                f"{path} has {cc.width}x{cc.height} frames; the limit is {MAX_FRAME_SIDE} px a side"
            )
        end = _stream_end(c, s)  # before demuxing: that can rewrite the stream's start_time
        frames: list[av.VideoFrame] = []
        pts: list[int] = []
        try:
            for pkt in c.demux(s):
                if pkt.pts is not None and len(pts) < _PROBE_PACKETS:
                    pts.append(pkt.pts)
                if len(frames) < 2:
                    frames.extend(pkt.decode())
                if len(frames) >= 2 and len(pts) >= _PROBE_PACKETS:
                    break
        except av.FFmpegError as exc:
            if len(frames) < 2:
                raise CorruptVideoError(f"{path}: the first video frames do not decode: {exc}") from exc
        if not frames:
            raise CorruptVideoError(f"{path}: no video frame decodes")
        if len(frames) < 2:
            raise StillVideoError(f"{path} holds a single still frame ({cc.name}); a moving clip is needed")
        first = frames[0]
        if max(first.width, first.height) > MAX_FRAME_SIDE:
            raise VideoTooLargeError(
                f"{path} has {first.width}x{first.height} frames; the limit is {MAX_FRAME_SIDE} px a side"
            )
        start = float(first.time) if first.time is not None else 0.0
        if end is None:
            c.seek(0)
            end = _demuxed_end(c, s) or start
        duration = end - start
        if duration > MAX_DURATION_S:
            raise VideoTooLongError(
                f"{path} lasts {math.ceil(duration / 6) / 10:.1f} min; at most {MAX_DURATION_S / 60:.0f} min of footage "
                "is accepted"
            )
        if duration < MIN_DURATION_S:
            raise VideoTooShortError(
                f"{path} lasts {math.floor(duration * 10) / 10:.1f} s; at least {MIN_DURATION_S:.0f} s of footage is needed"
            )
        rotation = _clockwise(first)
        w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        rate = s.average_rate or s.guessed_rate or s.base_rate
        span = float((max(pts) - min(pts)) * _time_base(s)) if len(pts) > 1 else 0.0
        fps = float(rate) if rate else (len(pts) - 1) / span if span > 0 else 25.0
        a = c.streams.audio[0] if c.streams.audio else None
        return ClipInfo(
            path=path,
            width=w,
            height=h,
            rotation=rotation,
            duration_s=duration,
            nominal_fps=fps,
            variable_fps=_is_variable(pts),
            video_codec=cc.name,
            has_audio=a is not None,
            audio_rate=a.sample_rate if a is not None else None,
            start_s=start,
        )


def _mib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _is_variable(pts: list[int]) -> bool:
    """Frame intervals that differ by more than rounding (2 ticks) and 10 %."""
    d = np.diff(np.sort(np.asarray(pts, dtype=np.int64)))
    d = d[d > 0]
    if len(d) < 2:
        return False
    return bool(d.max() - d.min() > max(2, 0.1 * float(np.median(d))))


def _to_rgb(frame: av.VideoFrame, rotation: int, max_side: int | None) -> np.ndarray:
    w, h = frame.width, frame.height
    if max_side and max(w, h) > max_side:
        k = max_side / max(w, h)
        w, h = max(1, round(w * k)), max(1, round(h * k))
        a = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
    else:
        a = frame.to_ndarray(format="rgb24")
    # np.rot90 turns counter-clockwise; rotation is clockwise.
    return np.ascontiguousarray(np.rot90(a, (-rotation // 90) % 4)) if rotation else a


def read_frames(
    info: ClipInfo,
    fps: float = 25.0,
    *,
    max_side: int | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> Iterator[np.ndarray]:
    """Constant-rate RGB uint8 (H, W, 3) frames, rotation applied.

    Output frame i shows the source frame on screen at time ``start_s + i / fps`` (time 0 is
    the first video frame), repeating or dropping source frames as needed. Raises
    CorruptVideoError when decoding fails part-way or the frames stop well before the
    duration the header claims (a truncated file).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, not {fps}")
    end = info.duration_s if end_s is None else min(end_s, info.duration_s)
    i = 0
    target = start_s
    shown: av.VideoFrame | None = None  # the latest frame at or before `target`
    shown_rgb: np.ndarray | None = None
    last_t = -math.inf
    last_dt = 1.0 / info.nominal_fps if info.nominal_fps > 0 else 1.0 / fps

    def out() -> np.ndarray:
        nonlocal shown_rgb
        assert shown is not None
        if shown_rgb is None:
            shown_rgb = _to_rgb(shown, info.rotation, max_side)
            return shown_rgb
        return shown_rgb.copy()  # a repeated frame: the consumer may alter what it got

    with _open(info.path) as c:
        s = _video_stream(c, info.path)
        s.thread_type = "AUTO"
        if start_s > 1.0:
            # A keyframe before start_s (half a second early, as demuxers may seek on decode
            # timestamps); decoding on from there finds the frame on screen at start_s.
            try:
                c.seek(int((info.start_s + start_s - 0.5) / _time_base(s)), stream=s, backward=True)
            except av.FFmpegError:
                c.seek(0)
        try:
            for frame in c.decode(s):
                t = (float(frame.time) if frame.time is not None else last_t + last_dt) - info.start_s
                if t <= last_t:  # a duplicate or out-of-order timestamp: keep the earlier frame
                    continue
                if frame.duration:
                    last_dt = float(frame.duration * _time_base(s))
                # The first frame also stands for the times before it.
                while shown is not None and target < t - _EPS and target < end - _EPS:
                    yield out()
                    i += 1
                    target = start_s + i / fps
                if target >= end - _EPS:
                    return
                shown, shown_rgb, last_t = frame, None, t
        except av.FFmpegError as exc:
            raise CorruptVideoError(f"{info.path}: decoding failed at {max(last_t, 0):.2f} s: {exc}") from exc
        if shown is None:
            raise CorruptVideoError(f"{info.path}: no video frame decodes after {start_s:.2f} s")
        stop = last_t + last_dt
        if stop < info.duration_s - max(1.0, 0.1 * info.duration_s):
            raise CorruptVideoError(
                f"{info.path} is truncated: its frames stop at {stop:.1f} s but it claims to last "
                f"{info.duration_s:.1f} s"
            )
        while target < min(end, stop) - _EPS:
            yield out()
            i += 1
            target = start_s + i / fps


def read_audio(info: ClipInfo, rate: int = 16000) -> np.ndarray | None:
    """The first audio stream as mono float32 in [-1, 1] at ``rate`` Hz, sample 0 at video time 0.

    None when the clip has no audio stream; CorruptVideoError when it does not decode.
    """
    with _open(info.path) as c:
        if not c.streams.audio:
            return None
        a = c.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        first_t: float | None = None
        try:
            for frame in c.decode(a):
                if first_t is None and frame.time is not None:
                    first_t = float(frame.time)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, ValueError) as exc:
            raise CorruptVideoError(f"{info.path}: the audio does not decode: {exc}") from exc
    if first_t is None:
        first_t = float(a.start_time * _time_base(a)) if a.start_time is not None else info.start_s
    pcm = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    # Align to the first video frame: pad when the audio starts later, trim when earlier.
    offset = round((first_t - info.start_s) * rate)
    if offset > 0:
        pcm = np.concatenate([np.zeros(offset, np.float32), pcm])
    elif offset < 0:
        pcm = pcm[-offset:]
    return np.clip(pcm, -1.0, 1.0)
