"""``livekit-avatar render``: speak a WAV file or a text with an avatar into an MP4."""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from livekit_avatar_plugin._generator import FrameRenderer

log = logging.getLogger(__name__)

SIZES = {"512": (512, 512), "480p": (854, 480), "720p": (1280, 720), "portrait": (720, 1280)}


def register(subparsers) -> None:
    p = subparsers.add_parser("render", help="render an avatar speaking a WAV file or a text to MP4")
    p.add_argument("--avatar", default="default", help="avatar package folder, or 'default'")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="WAV file (PCM 8/16/24/32-bit, any rate, mono or stereo)")
    src.add_argument("--text", help="text to speak with the local TTS (piper joe voice or espeak-ng)")
    p.add_argument("-o", "--output", required=True, help="output .mp4 (H.264 + AAC)")
    p.add_argument("--size", default="512", help="512 | 480p | 720p | portrait | WxH (default 512)")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--background", default="keep",
                   help="behind the person: keep (default), a colour (#00ff00) or an image file")
    p.set_defaults(func=run)


def parse_size(s: str) -> tuple[int, int]:
    if s in SIZES:
        return SIZES[s]
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise SystemExit(f"bad --size {s!r}: use 512, 480p, 720p, portrait or WxH") from None
    if w < 64 or h < 64 or w > 3840 or h > 3840 or w % 2 or h % 2:
        raise SystemExit("--size must be even and between 64 and 3840 px")
    return w, h


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Mono int16 PCM and its sample rate."""
    with wave.open(path, "rb") as w:
        sr, ch, sw, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    a: np.ndarray
    if sw == 1:
        a = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) * 256
    elif sw == 2:
        a = np.frombuffer(raw, "<i2").astype(np.float32)
    elif sw == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        a = v.astype(np.float32) / 256
    elif sw == 4:
        a = np.frombuffer(raw, "<i4").astype(np.float32) / 65536
    else:
        raise SystemExit(f"unsupported WAV sample width {sw}")
    a = a.reshape(-1, ch).mean(1)
    return np.clip(a, -32768, 32767).astype(np.int16), sr


def energy_curve(pcm: np.ndarray, sr: int, fps: float, n: int) -> np.ndarray:
    """Voice loudness per video frame in 0..1 (RMS in dBFS mapped from -50..-15 dB)."""
    x = pcm.astype(np.float32) / 32768.0
    hop = sr / fps
    out = np.zeros(n, np.float32)
    for i in range(n):
        a, b = int(i * hop), int((i + 1) * hop)
        seg = x[a:b]
        if len(seg):
            db = 10 * np.log10(float(np.mean(seg * seg)) + 1e-10)
            out[i] = np.clip((db + 50) / 35, 0, 1)
    return out


def mouth_curves(pcm: np.ndarray, sr: int, fps: float, n: int) -> tuple[tuple[str, ...], np.ndarray]:
    try:
        from livekit_avatar_plugin._audio.lipsync import LipSyncModel
    except ImportError as exc:
        raise SystemExit(f"the lip-sync model is not available ({exc}); cannot render") from exc
    try:
        model = LipSyncModel.load()
    except (FileNotFoundError, OSError) as exc:
        raise SystemExit(f"the lip-sync model file is missing: {exc}") from exc
    m = np.asarray(model.infer(pcm, sr), np.float32)
    t_model = np.arange(len(m)) / model.fps
    t_video = np.arange(n) / fps
    curves = np.stack([np.interp(t_video, t_model, m[:, k]) for k in range(m.shape[1])], 1) if len(m) else np.zeros((n, len(model.channels)))
    return tuple(model.channels), curves


def _bar(i: int, n: int) -> None:
    if i % 5 and i != n:
        return
    k = int(30 * i / max(n, 1))
    sys.stderr.write(f"\rrendering [{'#' * k}{'.' * (30 - k)}] {i}/{n} frames")
    if i == n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from livekit_avatar_plugin._face.avatar import AvatarPackageError, default_avatar, load_package
    from livekit_avatar_plugin._face.footage import FootageAvatar
    from livekit_avatar_plugin._render.motion import PITCH_KEY, frame_pitch
    from livekit_avatar_plugin._render.renderer import FaceRenderer
    from livekit_avatar_plugin._state import ConversationState

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        log.error("ffmpeg is not installed (apt-get install ffmpeg)")
        return 3
    from livekit_avatar_plugin._render.background import BackgroundError, BackgroundRenderer, parse_background

    w, h = parse_size(args.size)
    try:
        background = parse_background(args.background)
    except BackgroundError as exc:
        log.error("bad --background: %s", exc)
        return 2
    try:
        av = default_avatar() if args.avatar == "default" else load_package(args.avatar)
    except (AvatarPackageError, FileNotFoundError) as exc:
        log.error("cannot load avatar: %s", exc)
        return 4
    if args.text is not None:
        from livekit_avatar_plugin._audio.local_tts import synthesize

        try:
            pcm, sr = synthesize(args.text)
        except Exception as exc:
            log.error("text to speech failed: %s", exc)
            return 5
    else:
        try:
            pcm, sr = read_wav(args.audio)
        except (OSError, wave.Error, EOFError) as exc:
            log.error("cannot read %s: %s", args.audio, exc)
            return 6
    fps = float(args.fps)
    n = max(1, int(np.ceil(len(pcm) / sr * fps)))
    channels, curves = mouth_curves(pcm, sr, fps, n)
    energy = energy_curve(pcm, sr, fps, n)
    r: FrameRenderer
    if isinstance(av, FootageAvatar):
        from livekit_avatar_plugin._render.footage_renderer import FootageRenderer

        r = FootageRenderer(av, w, h)
    else:
        r = FaceRenderer(av, w, h, seed=args.seed)
    if background != "keep":
        try:
            r = BackgroundRenderer(r, background)
        except BackgroundError as exc:  # e.g. a footage avatar built before person masks
            log.error("cannot use --background: %s", exc)
            return 2
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "audio.wav"
        with wave.open(str(wav), "wb") as ww:
            ww.setnchannels(1)
            ww.setsampwidth(2)
            ww.setframerate(sr)
            ww.writeframes(pcm.tobytes())
        tmp_out = Path(td) / "out.mp4"
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-i", str(wav), "-map", "0:v", "-map", "1:a",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
               "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-shortest", str(tmp_out)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        stdin = proc.stdin
        assert stdin is not None  # stdin=PIPE
        follows_pitch = bool(getattr(r, "follows_pitch", False))
        try:
            for i in range(n):
                mouth = {name: float(curves[i, k]) for k, name in enumerate(channels)}
                if follows_pitch:  # each frame's pitch, as a session hands it over
                    mouth[PITCH_KEY] = frame_pitch(pcm[int(i * sr / fps):int((i + 1) * sr / fps)], sr)
                state = ConversationState.SPEAKING if energy[i] > 0.05 else ConversationState.IDLE
                frame = r.render(mouth, state, i / fps, float(energy[i]))
                stdin.write(frame.tobytes())
                _bar(i + 1, n)
            stdin.close()
        except BrokenPipeError:
            pass
        if proc.wait() != 0:
            log.error("ffmpeg failed (exit %d)", proc.returncode)
            return 7
        shutil.move(str(tmp_out), out)
    print(f"wrote {out} ({n} frames, {n / fps:.2f} s, {w}x{h} @ {fps:g} fps)")
    return 0
