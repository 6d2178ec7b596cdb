"""The examples load and register an agent; the keyless demo agent works end to end."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import AgentServer

from .av_harness import make_token

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def _load(path: Path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


def test_every_example_the_readme_names_exists() -> None:
    names = {p.stem for p in EXAMPLE_FILES}
    assert {
        "agent",
        "pipeline_agent",
        "realtime_agent",
        "kiosk",
        "compliance_opening",
        "support_agent",
        "in_process",
        "custom_avatar",
    } <= names
    readme = (EXAMPLES.parent / "README.md").read_text()
    for name in names:
        assert f"examples/{name}.py" in readme, f"README does not explain examples/{name}.py"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_registers_an_agent(path: Path, tmp_path, monkeypatch) -> None:
    if path.stem == "custom_avatar":
        from PIL import Image
        from skimage import data

        photo = tmp_path / "astronaut.png"
        Image.fromarray(data.astronaut()).save(photo)
        monkeypatch.setenv("PHOTO", str(photo))
    module = _load(path)
    assert isinstance(module.server, AgentServer)
    assert module.server._entrypoint_fnc is not None
    if path.stem == "custom_avatar":
        assert (tmp_path / "astronaut.avatar" / "manifest.json").is_file()


def test_openai_examples_say_what_they_need(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name in ("pipeline_agent", "realtime_agent"):
        module = _load(EXAMPLES / f"{name}.py")
        with pytest.raises(SystemExit, match="OPENAI_API_KEY"):
            module.require_openai(name)


async def test_keyless_demo_agent_greets_and_answers_a_protected_order_lookup(
    livekit_server, tmp_path
) -> None:
    env = {
        **os.environ,
        "LIVEKIT_URL": livekit_server.url,
        "LIVEKIT_API_KEY": livekit_server.api_key,
        "LIVEKIT_API_SECRET": livekit_server.api_secret,
    }
    env.pop("OPENAI_API_KEY", None)
    log = tmp_path / "agent.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "agent.py"), "start"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    room = rtc.Room()
    said: list[tuple[float, str]] = []
    heard: list[tuple[float, float]] = []

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            said.append((time.monotonic(), await reader.read_all()))

        asyncio.ensure_future(read())

    def on_track(track, pub, participant) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return

        async def read() -> None:
            async for ev in rtc.AudioStream(track, sample_rate=24000, num_channels=1):
                pcm = np.frombuffer(ev.frame.data, np.int16)
                heard.append((time.monotonic(), float(np.abs(pcm).max())))

        asyncio.ensure_future(read())

    room.register_text_stream_handler("lk.transcription", on_text)
    room.on("track_subscribed", on_track)

    async def wait_for(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert worker.poll() is None, f"the agent exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {said}"
            await asyncio.sleep(0.1)

    try:
        # A room is dispatched to the workers registered when it is created.
        await wait_for(lambda: "registered worker" in log.read_text(), 60.0, "the worker")
        name = f"demo-{uuid.uuid4().hex[:8]}"
        await room.connect(livekit_server.url, make_token(livekit_server, name, "visitor"))
        await wait_for(lambda: any("local avatar" in t for _, t in said), 60.0, "the greeting")
        await wait_for(lambda: len(room.remote_participants) >= 2, 10.0, "agent and avatar")
        await asyncio.sleep(0.5)
        asked = time.monotonic()
        await room.local_participant.send_text("where is my order?", topic="lk.chat")
        await asyncio.sleep(1.0)
        # Talking over the lookup neither cancels it nor gets an answer of its own.
        await room.local_participant.send_text("hello?", topic="lk.chat")
        await wait_for(lambda: any("order 1042" in t for _, t in said), 30.0, "the order status")
        answered = next(t for t, text in said if "order 1042" in text)
        assert answered - asked >= 3.0, "the 3-second lookup was cut short"
        assert not any("hello?" in text for _, text in said), "a protected turn was answered over"
        assert any(peak > 1000 and t > answered - 1.0 for t, peak in heard), "no speech heard"
    finally:
        await room.disconnect()
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
