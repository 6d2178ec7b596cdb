"""Every use of LiveKit's private APIs, in one place.

LiveKit has no public way to do these; each is checked against the installed LiveKit by
``tests/test_compat.py``, which names the use that broke when an upgrade changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from livekit import rtc
from livekit.agents.voice.avatar import AvatarSession, DataStreamAudioOutput

# DataStreamAudioOutput keeps the open segment's byte-stream writer in this attribute.
SEGMENT_WRITER_ATTRIBUTE = "_stream_writer"


def participant_audio_output(room: rtc.Room, *, sample_rate: int) -> Any:
    """The agent's own audio track, made as LiveKit's RoomIO makes it (used on fail-over)."""
    from livekit.agents.voice.room_io._output import _ParticipantAudioOutput

    return _ParticipantAudioOutput(
        room,
        sample_rate=sample_rate,
        num_channels=1,
        track_publish_options=rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
        track_name="agent_audio",
    )


def byte_stream_handler(room: rtc.Room, topic: str) -> Callable[..., Any] | None:
    """The handler registered for ``topic``, to wrap it (the room has no getter)."""
    return room._byte_stream_handlers.get(topic)


def pushed_duration(output: DataStreamAudioOutput) -> float:
    """Seconds of the open segment the output has sent to the avatar."""
    return float(output._pushed_duration)


def intercept_segment_writer(
    cls: type[DataStreamAudioOutput],
    get: Callable[[Any], Any],
    set: Callable[[Any, Any], None],
) -> None:
    """Route a ``DataStreamAudioOutput`` subclass's segment writer through ``get``/``set``,
    so each new segment's writer can be wrapped as the parent assigns it."""
    setattr(cls, SEGMENT_WRITER_ATTRIBUTE, property(get, set))


def detach_without_removal(session: AvatarSession[Any]) -> None:
    """What LiveKit's ``AvatarSession.aclose`` undoes, without removing the avatar's
    participant: an in-process avatar *is* the agent's participant."""
    agent_session = session._agent_session
    if agent_session is not None:
        agent_session.off("conversation_item_added", session._on_conversation_item_added)
    session._agent_session = None
    task = session._wait_avatar_join_task
    if task is not None:
        task.cancel()
        session._wait_avatar_join_task = None

