"""``scripts/demo.sh``: one command starts everything, prints the viewer URL, and Ctrl-C
stops all of it, leaving no process behind, even with a conversation under way (the
worker's job process and the avatar it runs)."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import pytest
from livekit import rtc

from .browser.demo_process import DemoProcess


@pytest.mark.timeout(420)
def test_demo_prints_the_viewer_url_and_ctrl_c_leaves_no_process():
    demo = DemoProcess(["./scripts/demo.sh"])
    try:
        # Generous: the script first runs setup, which is quick once everything is there.
        url = demo.wait_url(300)
        # The URL works: the page and a token for a room on the demo's server.
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and b"viewer.js" in resp.read()
        with urllib.request.urlopen(url + "token?room=demo-test", timeout=10) as resp:
            token = json.load(resp)
        assert token["url"].startswith("ws://127.0.0.1:") and token["room"] == "demo-test"
        asyncio.run(_interrupt_during_a_conversation(demo, token))

        code = demo.interrupt()
        survivors = demo.survivors()
        assert not survivors, "processes left after Ctrl-C:\n" + "\n".join(
            f"{pid} {cmd}" for pid, cmd in survivors
        )
        assert code == 0, demo.output()
        # The worker shuts its job down itself: no "process exited with non-zero exit code".
        errors = [line for line in demo.lines if "ERROR" in line or "Traceback" in line]
        assert not errors, "error lines on Ctrl-C:\n" + "\n".join(errors) + "\n\n" + demo.output()
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
        demo.kill_survivors()


async def _interrupt_during_a_conversation(demo: DemoProcess, token: dict) -> None:
    """Join as a viewer; once the agent's avatar publishes video, Ctrl-C the demo."""
    room = rtc.Room()
    video: asyncio.Future[rtc.Track] = asyncio.get_running_loop().create_future()

    def on_subscribed(track: rtc.Track, *_: object) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO and not video.done():
            video.set_result(track)

    room.on("track_subscribed", on_subscribed)
    await room.connect(token["url"], token["token"])
    try:
        # Frames arriving, not just a track announced: the avatar's publishing is settled
        # (a Ctrl-C inside LiveKit's own offer/answer makes its Rust core log an ERROR).
        try:
            track = await asyncio.wait_for(video, 90)
            stream = rtc.VideoStream(track)
            await asyncio.wait_for(anext(aiter(stream)), 30)
            await stream.aclose()
        except asyncio.TimeoutError:
            raise AssertionError("no avatar video in the room:\n" + demo.output()) from None
        running = demo.survivors(grace_s=0)
        commands = "\n".join(cmd for _, cmd in running)
        assert "livekit-server" in commands, commands
        assert "agent.py dev" in commands, commands
        # The worker, its job process (and whatever else it forked) are all running now.
        assert len(running) >= 4, commands
        print(f"\n{len(running)} demo processes while the avatar is live")
        demo.proc.send_signal(signal.SIGINT)  # Ctrl-C while the conversation is under way
    finally:
        await room.disconnect()


def test_demo_refuses_an_avatar_that_is_not_a_package(tmp_path, capsys):
    from livekit_avatar_plugin.cli import main

    assert main(["demo", "--avatar", str(tmp_path)]) == 2
    assert "not an avatar package" in capsys.readouterr().err


@pytest.mark.timeout(420)
def test_demo_shows_a_footage_avatar(synthetic_footage):
    """``./scripts/demo.sh --avatar PATH``: the viewer receives the person's own footage."""
    _, avatar = synthetic_footage
    demo = DemoProcess(["./scripts/demo.sh", "--avatar", str(avatar.path), "--port", "0", "--viewer-port", "0"])
    try:
        url = demo.wait_url(300)
        with urllib.request.urlopen(url + "token?room=demo-footage", timeout=10) as resp:
            token = json.load(resp)
        frame = asyncio.run(_first_full_frame(token, demo, avatar.canvas))
        from .test_footage_e2e import _looks_like_the_footage

        _looks_like_the_footage(frame, avatar)
        assert demo.interrupt() == 0, demo.output()
        assert any("(footage avatar)" in line for line in demo.lines), demo.output()
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
        demo.kill_survivors()


async def _first_full_frame(token: dict, demo: DemoProcess, size: tuple[int, int]):
    from .rooms import watch_video

    room = rtc.Room()
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    readers = watch_video(room, size, lambda rgb: got.done() or got.set_result(rgb.copy()))
    await room.connect(token["url"], token["token"])
    try:
        return await asyncio.wait_for(got, 90)
    except asyncio.TimeoutError:
        raise AssertionError("no full-size avatar video in the demo room:\n" + demo.output()) from None
    finally:
        for task in readers:
            task.cancel()
        await room.disconnect()
