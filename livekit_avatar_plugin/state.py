"""The conversation state the renderer animates."""

from __future__ import annotations

import enum


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
