"""In-process mode: the agent's own participant publishes the face; no second participant.

    python examples/in_process.py dev

For apps that expect exactly one participant per agent. The face is rendered in the agent's
process either way; only the publishing identity changes.
"""

from __future__ import annotations

from _common import AVATAR, any_session, make_server, start
from livekit.agents import Agent, JobContext, cli

from livekit_avatar_plugin import AvatarSession

server = make_server()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    avatar = AvatarSession(avatar=AVATAR, mode="in_process")
    await start(ctx, any_session(), avatar, Agent(instructions="You are a friendly assistant."))


if __name__ == "__main__":
    cli.run_app(server)
