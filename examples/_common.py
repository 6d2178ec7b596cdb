"""What every example shares: a worker that loads the face once, and a voice to talk with.

Not part of the plugin; each example imports it so that it shows only what it is about.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess
from livekit.agents.voice import room_io

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livekit_avatar_plugin import AvatarSession, prewarm  # noqa: E402

AVATAR = os.environ.get("AVATAR", "default")
# How many avatar sessions one worker process renders; dispatch stops beyond it.
MAX_SESSIONS = int(os.environ.get("AVATAR_MAX_SESSIONS", "4"))


def _setup(proc: JobProcess) -> None:
    # Load the ONNX models and the avatar once per worker process, not per job.
    prewarm(AVATAR)


def _load(server: AgentServer) -> float:
    # The default load is the machine's CPU, which a rendering avatar keeps busy by
    # design: report used capacity instead, so LiveKit dispatches up to MAX_SESSIONS.
    return min(1.0, len(server.active_jobs) / MAX_SESSIONS)


def make_server() -> AgentServer:
    return AgentServer(setup_fnc=_setup, load_fnc=_load)


def require_openai(example: str) -> None:
    if not os.environ.get("OPENAI_API_KEY"):
        raise SystemExit(f"{example} talks through OpenAI: set OPENAI_API_KEY (or run examples/agent.py keyless)")


def openai_pipeline_session() -> AgentSession:
    """Speech in, text LLM, speech out: OpenAI STT/LLM/TTS with local (silero) VAD."""
    from livekit.plugins import openai, silero

    return AgentSession(
        vad=silero.VAD.load(),
        stt=openai.STT(),
        llm=openai.LLM(model="gpt-4o-mini"),
        tts=openai.TTS(voice="ash"),
    )


def openai_realtime_session() -> AgentSession:
    """One speech-to-speech model: OpenAI's realtime API (server-side turn detection)."""
    from livekit.plugins import openai

    return AgentSession(llm=openai.realtime.RealtimeModel(voice="marin"))


def keyless_session() -> AgentSession:
    """No key, no cloud: a scripted assistant you type to, spoken by the local TTS."""
    from livekit_avatar_plugin.keyless import EchoAssistant, LocalTTS

    return AgentSession(llm=EchoAssistant(), tts=LocalTTS())


def any_session() -> AgentSession:
    """OpenAI's pipeline when OPENAI_API_KEY is set (realtime with AGENT_REALTIME=1), else keyless."""
    if not os.environ.get("OPENAI_API_KEY"):
        return keyless_session()
    if os.environ.get("AGENT_REALTIME") == "1":
        return openai_realtime_session()
    return openai_pipeline_session()


def room_options(avatar: AvatarSession, **overrides: Any) -> room_io.RoomOptions:
    """Typed chat goes through the avatar so it obeys greeting and tool protection too."""
    return room_io.RoomOptions(
        text_input=room_io.TextInputOptions(text_input_cb=avatar.text_input_cb), **overrides
    )


async def start(ctx: JobContext, session: AgentSession, avatar: AvatarSession, agent: Agent) -> None:
    """Connect, start the avatar (before the session: it takes over the audio), then the agent."""
    await ctx.connect()
    await avatar.start(session, room=ctx.room)
    await session.start(agent, room=ctx.room, room_options=room_options(avatar))
