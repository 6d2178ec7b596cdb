"""Kiosk: the avatar waits for the visitor. No greeting until someone speaks or types.

    python examples/kiosk.py dev

A screen in a lobby should not talk to an empty room: with the first message disabled,
the face idles (blinking, breathing) and answers only once the user starts.
"""

from __future__ import annotations

from _common import AVATAR, any_session, make_server, start
from livekit.agents import Agent, JobContext, cli

from livekit_avatar_plugin import AvatarSession

server = make_server()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    avatar = AvatarSession(
        avatar=AVATAR,
        first_message={"enabled": False},
        video_quality="high",  # a big screen: 720p from the first frame
        idle_timeout_s=None,  # a kiosk stays up between visitors
    )
    agent = Agent(instructions="You are the lobby assistant. Help visitors find their way.")
    await start(ctx, any_session(), avatar, agent)


if __name__ == "__main__":
    cli.run_app(server)
