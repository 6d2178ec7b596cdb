"""Compliance opening: a consent statement that plays to the last word.

    python examples/compliance_opening.py dev

The greeting cannot be interrupted; what the user says over it is answered right after
it ends (input_during_protection="defer"), so nothing they said is lost. Protection
starts only once the face is on screen, so nobody is muted while the avatar joins.
"""

from __future__ import annotations

from _common import AVATAR, any_session, make_server, start
from livekit.agents import Agent, JobContext, cli

from livekit_avatar_plugin import AvatarSession

CONSENT = (
    "Before we start: this call is recorded for quality and training purposes, "
    "and I am an AI assistant. By continuing you agree to this."
)

server = make_server()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    avatar = AvatarSession(
        avatar=AVATAR,
        first_message={"text": CONSENT, "interruptible": False},
        input_during_protection="defer",
    )
    avatar.on("protection_released", lambda ev: print(f"consent delivered ({ev.cause})"))
    agent = Agent(instructions="You are a bank's assistant. Be precise and brief.")
    await start(ctx, any_session(), avatar, agent)


if __name__ == "__main__":
    cli.run_app(server)
