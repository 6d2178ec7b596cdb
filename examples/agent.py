"""A LiveKit voice agent with a local, lip-synced avatar.

    python examples/agent.py dev        # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET

With OPENAI_API_KEY set it talks through OpenAI's realtime model; without it, a keyless
local assistant (piper or espeak-ng voice) greets and repeats what you type in the room's chat.
AVATAR=/path/to/package (made by `livekit-avatar create photo.jpg -o ...`) picks a face.
AVATAR_MODE=in_process publishes the face from the agent's own participant instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli

sys.path.insert(0, str(Path(__file__).resolve().parent))

from livekit_avatar_plugin import AvatarSession, VideoOptions, prewarm  # noqa: E402

AVATAR = os.environ.get("AVATAR", "default")


def setup(proc: JobProcess) -> None:
    # Load the ONNX models and the avatar once per worker process, not per job.
    prewarm(AVATAR)


# How many avatar sessions one worker process renders; dispatch stops beyond it.
MAX_SESSIONS = int(os.environ.get("AVATAR_MAX_SESSIONS", "4"))


def load(server: AgentServer) -> float:
    # The default load is the machine's CPU, which a rendering avatar keeps busy by
    # design: report used capacity instead, so LiveKit dispatches up to MAX_SESSIONS.
    return min(1.0, len(server.active_jobs) / MAX_SESSIONS)


server = AgentServer(setup_fnc=setup, load_fnc=load)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()

    if os.environ.get("OPENAI_API_KEY"):
        from livekit.plugins import openai

        session = AgentSession(llm=openai.realtime.RealtimeModel(voice="marin"))
        instructions = "You are a friendly, concise assistant with a face."
    else:
        from livekit_avatar_plugin.keyless import EchoAssistant, LocalTTS

        session = AgentSession(llm=EchoAssistant(), tts=LocalTTS())
        instructions = "Repeat what the user types."

    avatar = AvatarSession(
        avatar=AVATAR,
        video=VideoOptions(width=512, height=512, fps=25),
        mode=os.environ.get("AVATAR_MODE", "participant"),
    )
    await avatar.start(session, room=ctx.room)  # before session.start()
    await session.start(Agent(instructions=instructions), room=ctx.room)
    session.generate_reply(instructions="Greet the user in one short sentence.")


if __name__ == "__main__":
    cli.run_app(server)
