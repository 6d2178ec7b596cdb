"""The demo agent: a voice assistant with a local, lip-synced avatar.

    python examples/agent.py dev        # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET

Without OPENAI_API_KEY it is keyless: a scripted assistant (piper or espeak-ng voice) that
greets, repeats what you type, and looks your order up with a 3-second, protected tool
(type "where is my order?" and try to interrupt it). With OPENAI_API_KEY it listens and
talks through OpenAI's STT/LLM/TTS, or its realtime model with AGENT_REALTIME=1.
AVATAR=/path/to/package picks a face; AVATAR_MODE=in_process publishes it from the agent's
own participant.
"""

from __future__ import annotations

import os

from _common import AVATAR, any_session, make_server, start
from livekit.agents import JobContext, cli

from livekit_avatar_plugin import AvatarSession
from livekit_avatar_plugin.keyless import OrderDesk

server = make_server()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    keyless = not os.environ.get("OPENAI_API_KEY")
    avatar = AvatarSession(
        avatar=AVATAR,
        mode=os.environ.get("AVATAR_MODE", "participant"),
        video_quality=os.environ.get("AVATAR_QUALITY", "auto"),
        # Keyless, the scripted assistant writes its own greeting.
        first_message={} if keyless else {"instructions": "Greet the user in one short sentence."},
        tool_protection={"enabled": True, "tools": ["look_up_order"]},
    )
    agent = OrderDesk(
        instructions="You are a friendly, concise assistant with a face. Keep answers short. "
        "Use look_up_order when the user asks about their order."
    )
    await start(ctx, any_session(), avatar, agent)


if __name__ == "__main__":
    cli.run_app(server)
