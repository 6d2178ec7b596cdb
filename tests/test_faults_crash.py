"""The agent's process dies (kill -9): its avatar must not linger in the room.

The agent and its avatar run in a child process (this module run as a script); the test
kills it without warning and asks the server itself, through ``list_participants``, when
the avatar is gone: other clients hear of a departure later than the server knows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .test_faults_restart import server_tracks
from .test_session import _left_room_at

pytestmark = pytest.mark.livekit_server

REPO_ROOT = Path(__file__).resolve().parent.parent


def _spawn_agent(info, room: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "tests.test_faults_crash", info.url, info.api_key,
            info.api_secret, room]
    return subprocess.Popen(
        args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


async def _ready_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> dict:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    if not line.startswith("READY "):
        raise AssertionError(f"agent process did not start (exit {proc.poll()}): {line!r}")
    return json.loads(line[len("READY ") :])


async def test_agent_process_killed_the_avatar_leaves_within_5s(private_livekit_server):
    info = private_livekit_server.info
    room = f"crash-{uuid.uuid4().hex[:8]}"
    proc = _spawn_agent(info, room)
    try:
        ids = await _ready_line(proc)
        deadline = time.monotonic() + 15
        while len((await server_tracks(info, room)).get(ids["avatar"], [])) < 2:
            assert time.monotonic() < deadline, "the avatar never published"
            await asyncio.sleep(0.1)
        t_kill = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        gone = await _left_room_at(info, room, ids["avatar"], timeout=30.0)
        assert gone is not None, "the avatar was still in the room 30 s after the agent died"
        print(f"\nagent process killed: the server dropped its avatar {gone - t_kill:.2f} s later")
        assert gone - t_kill <= 5.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _child(url: str, key: str, secret: str, room: str) -> None:
    from livekit_avatar_plugin.local_server import ServerInfo

    from .rooms import agent_with_avatar

    info = ServerInfo(url=url, api_key=key, api_secret=secret)
    agent_room, _session, avatar = await agent_with_avatar(info, room)
    ids = {"agent": agent_room.local_participant.identity, "avatar": avatar.avatar_identity}
    print("READY " + json.dumps(ids), flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(_child(*sys.argv[1:5]))
