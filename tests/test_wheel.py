"""Installed from its built wheel, as LiveKit developers add plugins, the plugin runs: the
sdist and the wheel carry the models and the default avatar, and a clean venv outside the
checkout prewarms, renders a file and speaks through an AvatarSession in a real room."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lipsync/lipsync.onnx", "face/face_detection_short_range.onnx", "face/face_landmark.onnx",
          "face/iris_landmark.onnx", "avatars/default/manifest.json", "avatars/default/image.png")

# Run by the clean venv's python from a folder outside the checkout.
SMOKE = textwrap.dedent('''
    import asyncio, os, sys, wave
    from pathlib import Path
    import numpy as np
    import livekit_avatar_plugin
    from livekit import api, rtc
    from livekit.agents import Agent, AgentSession
    from livekit.agents.voice import room_io
    from livekit_avatar_plugin import AvatarSession, prewarm

    assert "site-packages" in livekit_avatar_plugin.__file__, livekit_avatar_plugin.__file__
    prewarm("default")
    print("prewarmed")

    RATE = 24000
    t = np.arange(int(2.0 * RATE)) / RATE
    # a voice-like buzz, loud and soft by turns: the mouth has something to follow
    speech = (0.3 * np.sign(np.sin(2 * np.pi * 140 * t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    pcm = (speech * 32767).astype(np.int16)
    with wave.open("speech.wav", "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(RATE); w.writeframes(pcm.tobytes())

    async def audio():
        for k in range(0, len(pcm), RATE // 50):
            chunk = pcm[k:k + RATE // 50]
            yield rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk))

    def token(identity, room, agent=False):
        tok = api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        tok = tok.with_identity(identity).with_grants(api.VideoGrants(room_join=True, room=room))
        return (tok.with_kind("agent") if agent else tok).to_jwt()

    async def main():
        url = os.environ["LIVEKIT_URL"]
        viewer, agent_room = rtc.Room(), rtc.Room()
        frames = []

        def on_track(track, publication, participant):
            if track.kind == rtc.TrackKind.KIND_VIDEO:
                async def read():
                    async for ev in rtc.VideoStream(track):
                        frames.append(ev.frame.width)
                asyncio.ensure_future(read())

        viewer.on("track_subscribed", on_track)
        await viewer.connect(url, token("viewer", "wheel"))
        await agent_room.connect(url, token("agent", "wheel", agent=True))
        session = AgentSession()
        avatar = AvatarSession(avatar="default", first_message={"enabled": False}, livekit_url=url,
                               api_key=os.environ["LIVEKIT_API_KEY"], api_secret=os.environ["LIVEKIT_API_SECRET"])
        await avatar.start(session, room=agent_room)
        await session.start(Agent(instructions="wheel"), room=agent_room,
                            room_options=room_io.RoomOptions(audio_input=False, text_input=False))
        handle = session.say("a test tone", audio=audio())
        await asyncio.wait_for(handle.wait_for_playout(), 20)
        for _ in range(100):  # the face keeps coming after the speech: 2 s of it at most 10 s on
            if len(frames) >= 50:
                break
            await asyncio.sleep(0.1)
        print("video frames", len(frames))
        await session.aclose()
        await avatar.aclose()
        await agent_room.disconnect()
        await viewer.disconnect()

    asyncio.run(main())
''')


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The sdist and the wheel built from it, as ``python -m build`` makes a release."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return next(out.glob("*.tar.gz")), next(out.glob("*.whl"))


def test_the_sdist_and_the_wheel_carry_the_models(built):
    sdist, wheel = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"models/{m}" for m in MODELS} <= names
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {f"livekit_avatar_plugin/_models/{m}" for m in MODELS} <= names
    assert sum(z.getinfo(n).file_size for n in names) < 30 << 20  # models small enough for PyPI


@pytest.fixture(scope="module")
def clean_venv(built, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed: pip resolves the newest releases the declared
    ranges allow, whatever the checkout's own venv holds."""
    _, wheel = built
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=venv)
    return venv


@pytest.mark.livekit_server
def test_a_clean_venv_runs_the_plugin_from_the_wheel(clean_venv, livekit_server, tmp_path):
    venv = clean_venv
    py = venv / "bin" / "python"
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIVEKIT_AVATAR_MODELS", "VIRTUAL_ENV")}
    env.update(LIVEKIT_URL=livekit_server.url, LIVEKIT_API_KEY=livekit_server.api_key,
               LIVEKIT_API_SECRET=livekit_server.api_secret)
    (work / "smoke.py").write_text(SMOKE)
    out = _run([str(py), "smoke.py"], cwd=work, env=env, timeout=300)
    assert "prewarmed" in out
    frames = int(out.split("video frames")[1].split()[0])
    assert frames >= 50, out  # 2 s of video
    # the CLI renders a file, too
    _run([str(venv / "bin" / "livekit-avatar"), "render", "--audio", "speech.wav", "-o", "hello.mp4"], cwd=work, env=env)
    probe = _run([str(py), "-c", "import av; c = av.open('hello.mp4'); print(c.streams.video[0].frames, c.streams.audio[0].frames)"],
                 cwd=work, env=env)
    video, audio = map(int, probe.split())
    assert video >= 45 and audio > 0  # 2 s at 25 fps, with its sound


@pytest.mark.livekit_server
@pytest.mark.timeout(900)
def test_the_session_tests_pass_with_the_newest_releases_the_ranges_allow(clean_venv):
    """The checkout's session and compatibility tests, run by the clean venv's python: with
    the newest livekit-agents and livekit the ranges allow (printed), not the pinned venv's."""
    py = clean_venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout>=2.3"],
         cwd=clean_venv)
    versions = _run([str(py), "-c", "import importlib.metadata as m; "
                     "print(*(f'{p}=={m.version(p)}' for p in ('livekit-agents', 'livekit', 'livekit-api')))"],
                    cwd=clean_venv)
    print("\nnewest allowed:", versions.strip())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    out = _run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_compat.py",
                "tests/test_session.py", "tests/test_failover.py"], cwd=ROOT, env=env, timeout=800)
    assert " passed" in out and "failed" not in out, out
