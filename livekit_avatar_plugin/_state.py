"""The conversation state the renderer animates."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any


class ConversationState(str, enum.Enum):
    """What the avatar is doing, which drives its non-mouth motion.

    idle: nobody is talking; subtle head motion and breathing.
    listening: the user is talking; attentive nods and brow raises.
    thinking: the agent is preparing a reply (LLM or tool running).
    speaking: the avatar's own audio is playing; head motion follows its energy.
    """

    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


def state_between_speech(*, user_speaking: bool, agent: str | None) -> ConversationState:
    """The state shown while the avatar is not speaking, from the user's speech and the
    agent's state (LiveKit's names: listening, thinking, speaking, ...)."""
    if user_speaking:
        return ConversationState.LISTENING
    if agent == "thinking":
        return ConversationState.THINKING
    return ConversationState.IDLE


def follow_agent_session(agent_session: Any, set_state: Callable[[ConversationState], None]) -> Callable[[], None]:
    """Show listening and thinking from an agent session's own state events (the
    dispatched face reads the same from the room: see ``dispatch.follow``). Returns the
    detach function."""

    def show(*, user: str | None = None, agent: str | None = None) -> None:
        if user == "speaking" or agent == "thinking":
            set_state(state_between_speech(user_speaking=user == "speaking", agent=agent))
        elif user in ("listening", "away") or agent in ("listening", "idle", "speaking"):
            set_state(ConversationState.IDLE)

    def on_user_state(ev: Any) -> None:
        show(user=ev.new_state)

    def on_agent_state(ev: Any) -> None:
        show(agent=ev.new_state)

    agent_session.on("user_state_changed", on_user_state)
    agent_session.on("agent_state_changed", on_agent_state)

    def detach() -> None:
        agent_session.off("user_state_changed", on_user_state)
        agent_session.off("agent_state_changed", on_agent_state)

    return detach
