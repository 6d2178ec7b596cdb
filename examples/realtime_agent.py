"""A realtime (speech-to-speech) agent: OpenAI's realtime model with the local avatar.

    OPENAI_API_KEY=... python examples/realtime_agent.py dev

The model hears the user and speaks itself; the avatar lip-syncs its audio and stops the
moment the model's server-side turn detection hears the user.
"""

from __future__ import annotations

from _common import AVATAR, make_server, openai_realtime_session, require_openai, start
from livekit.agents import Agent, JobContext, cli

from livekit_avatar_plugin import AvatarSession

server = make_server()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    require_openai("the realtime agent")
    # With server-side turn detection the model itself decides barge-ins, so the greeting
    # stays interruptible (OpenAI's own setting, interrupt_response, governs it).
    avatar = AvatarSession(avatar=AVATAR, first_message={"instructions": "Greet the user briefly."})
    agent = Agent(instructions="You are a warm, concise assistant with a face.")
    await start(ctx, openai_realtime_session(), avatar, agent)


if __name__ == "__main__":
    cli.run_app(server)
