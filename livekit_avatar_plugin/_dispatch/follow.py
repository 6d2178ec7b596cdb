"""What a dispatched face shows between its own speech, read from the room itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from livekit import rtc
from livekit.agents.types import ATTRIBUTE_AGENT_STATE

from .._state import ConversationState, state_between_speech
from .protocol import AvatarJobRequest


def follow_conversation(room: rtc.Room, request: AvatarJobRequest,
                        set_state: Callable[[ConversationState], None]) -> Callable[[], None]:
    """Show listening and thinking in a dispatched avatar, as an in-process one does: the
    agent's state comes from its participant attribute, the user's speech from the room's
    active speakers (anyone but the agent and the avatar). Returns the detach function."""
    seen: dict[str, Any] = {"user": False, "agent": None}

    def update() -> None:
        set_state(state_between_speech(user_speaking=seen["user"], agent=seen["agent"]))

    def on_attributes(changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.identity == request.agent_identity and ATTRIBUTE_AGENT_STATE in changed:
            seen["agent"] = changed[ATTRIBUTE_AGENT_STATE]
            update()

    def on_speakers(speakers: list[rtc.Participant]) -> None:
        ours = (request.agent_identity, request.avatar_identity)
        user = any(p.identity not in ours for p in speakers)
        if user != seen["user"]:
            seen["user"] = user
            update()

    agent = room.remote_participants.get(request.agent_identity)
    if agent is not None and ATTRIBUTE_AGENT_STATE in agent.attributes:
        seen["agent"] = agent.attributes[ATTRIBUTE_AGENT_STATE]
        update()
    room.on("participant_attributes_changed", on_attributes)
    room.on("active_speakers_changed", on_speakers)

    def detach() -> None:
        room.off("participant_attributes_changed", on_attributes)
        room.off("active_speakers_changed", on_speakers)

    return detach
