"""Support agent: a CRM lookup the user cannot barge into.

    python examples/support_agent.py dev      # type "where is my order?"

While look_up_order runs (3 s, like a CRM call) and while its answer is spoken, the user
cannot cancel the lookup or cut the answer off; protection is released the moment the
turn ends, also when the tool fails or returns nothing. max_hold_s caps it regardless.
The booking flow shows the same protection for a multi-step flow of the app's own.
"""

from __future__ import annotations

import asyncio

from _common import AVATAR, any_session, make_server, start
from livekit.agents import JobContext, RunContext, cli, function_tool

from livekit_avatar_plugin import AvatarSession
from livekit_avatar_plugin.keyless import OrderDesk

server = make_server()


class SupportDesk(OrderDesk):
    """look_up_order (inherited) is the CRM lookup; book_callback is an app-owned flow."""

    def __init__(self, avatar: AvatarSession) -> None:
        super().__init__(
            instructions="You are a support agent. Look orders up with look_up_order; "
            "offer a callback with book_callback."
        )
        self._avatar = avatar

    @function_tool
    async def book_callback(self, context: RunContext, when: str) -> str:
        """Book a callback from a human agent at the time the user asked for."""
        async with self._avatar.protect("booking a callback"):
            await context.session.say("One moment, I am booking that for you.").wait_for_playout()
            await asyncio.sleep(2.0)  # writing the booking
        return f"callback booked for {when}"


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    avatar = AvatarSession(
        avatar=AVATAR,
        tool_protection={"enabled": True, "tools": ["look_up_order"], "max_hold_s": 20},
    )
    avatar.on("protection_started", lambda ev: print(f"protected: {ev.reason}"))
    avatar.on(
        "protection_released",
        lambda ev: print(f"released: {ev.reason} ({ev.cause}, {ev.held_s:.1f} s)"),
    )
    await start(ctx, any_session(), avatar, SupportDesk(avatar))


if __name__ == "__main__":
    cli.run_app(server)
