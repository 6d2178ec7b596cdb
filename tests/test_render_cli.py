"""``livekit-avatar render``: MP4 with H.264 video and AAC audio of matching length."""

import json
import shutil
import subprocess
import wave

import numpy as np
import pytest

from livekit_avatar_plugin.cli import main as cli_main

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs the ffmpeg command line (scripts/apt/face.txt)")


def _lipsync_available() -> bool:
    try:
        from livekit_avatar_plugin._audio.lipsync import LipSyncModel

        LipSyncModel.load()
        return True
    except Exception:
        return False


def test_render_wav_to_mp4(tmp_path):
    if not _lipsync_available():
        pytest.skip("lip-sync model not available")
    sr = 16000
    t = np.arange(int(1.6 * sr)) / sr
    env = (np.sin(2 * np.pi * 2.5 * t) > 0).astype(np.float32)
    pcm = (0.3 * env * np.sin(2 * np.pi * 180 * t) * 32767).astype(np.int16)
    wav = tmp_path / "in.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    out = tmp_path / "out.mp4"
    assert cli_main(["render", "--audio", str(wav), "-o", str(out), "--size", "256x256", "--fps", "25"]) == 0
    info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
                                     capture_output=True, text=True, check=True).stdout)
    kinds = {s["codec_type"]: s for s in info["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["audio"]["codec_name"] == "aac"
    assert kinds["video"]["width"] == 256
    assert abs(float(kinds["video"]["duration"]) - 1.6) < 0.1
    assert abs(float(kinds["audio"]["duration"]) - float(kinds["video"]["duration"])) < 0.1


def test_render_bad_avatar(tmp_path):
    wav = tmp_path / "in.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(3200))
    assert cli_main(["render", "--avatar", str(tmp_path / "nope"), "--audio", str(wav), "-o", str(tmp_path / "o.mp4")]) == 4
    assert not (tmp_path / "o.mp4").exists()
