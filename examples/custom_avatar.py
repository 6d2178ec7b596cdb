"""Your own face: make an avatar from one photo, then talk with it.

    PHOTO=me.jpg python examples/custom_avatar.py dev

The first run builds an avatar package next to the photo (``me.avatar/``, a few seconds,
with progress); later runs reuse it. The same as ``livekit-avatar create me.jpg -o
me.avatar`` followed by ``AVATAR=me.avatar python examples/agent.py dev``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _common import any_session, start
from livekit.agents import Agent, AgentServer, JobContext, JobProcess, cli

from livekit_avatar_plugin import AvatarSession, prewarm


def _package() -> Path:
    photo = Path(os.environ.get("PHOTO", ""))
    if not photo.is_file():
        raise SystemExit("set PHOTO to a portrait photo (JPEG or PNG) of one face")
    package = photo.with_suffix(".avatar")
    if not package.exists():
        # The CLI validates the photo and never leaves a half-written package behind.
        subprocess.run(
            [sys.executable, "-m", "livekit_avatar_plugin.cli", "create", str(photo), "-o", str(package)],
            check=True,
        )
    return package


PACKAGE = _package()


def setup(proc: JobProcess) -> None:
    prewarm(str(PACKAGE))


server = AgentServer(setup_fnc=setup)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    avatar = AvatarSession(avatar=PACKAGE)
    await start(ctx, any_session(), avatar, Agent(instructions="You are a friendly assistant."))


if __name__ == "__main__":
    cli.run_app(server)
