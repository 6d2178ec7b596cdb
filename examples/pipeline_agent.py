"""A pipeline agent (OpenAI speech-to-text, LLM, text-to-speech) with the local avatar.

    OPENAI_API_KEY=... python examples/pipeline_agent.py dev

Speak to it from the viewer page (or any LiveKit client with a microphone). VAD runs
locally (silero); the avatar interrupts within a few hundred ms when you barge in.
"""

from __future__ import annotations

from _common import AVATAR, make_server, openai_pipeline_session, require_openai, start
from livekit.agents import Agent, JobContext, cli

from livekit_avatar_plugin import AvatarSession

server = make_server()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    require_openai("the pipeline agent")
    avatar = AvatarSession(
        avatar=AVATAR, first_message={"instructions": "Say hello and ask how you can help."}
    )
    agent = Agent(instructions="You are a helpful voice assistant. Answer in one or two sentences.")
    await start(ctx, openai_pipeline_session(), avatar, agent)


if __name__ == "__main__":
    cli.run_app(server)
