"""Every use of LiveKit's private APIs, in one place.

LiveKit has no public way to do these; each is checked against the installed LiveKit by
``tests/test_compat.py``, which names the use that broke when an upgrade changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from livekit import rtc
from livekit.agents.voice.avatar import AvatarSession, DataStreamAudioOutput, DataStreamAudioReceiver

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


def participant_audio_publication(output: Any) -> rtc.LocalTrackPublication | None:
    """The track a :func:`participant_audio_output` published, if it has (closing the
    output leaves it published)."""
    return output._publication


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


def filter_playback_finished(
    cls: type[DataStreamAudioOutput],
    keep: Callable[[Any, rtc.RpcInvocationData, Callable[[], object]], bool],
) -> None:
    """Pass each ``lk.playback_finished`` RPC a ``DataStreamAudioOutput`` subclass receives
    through ``keep(output, data, deliver)`` first; one it declines is answered and
    dropped, unless it calls ``deliver()`` later (a report held until it is vouched for)."""
    handle = DataStreamAudioOutput._handle_playback_finished

    def filtered(self: Any, data: rtc.RpcInvocationData) -> str:
        return handle(self, data) if keep(self, data, lambda: handle(self, data)) else "ok"

    cls._handle_playback_finished = filtered  # type: ignore[method-assign]


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


def _held_by(handler: Any, owner: object) -> bool:
    """Whether a registered RPC handler is ``owner``'s (a bound method or a closure over it)."""
    if getattr(handler, "__self__", None) is owner:
        return True
    return any(_cell(c) is owner for c in getattr(handler, "__closure__", None) or ())


def _cell(cell: Any) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def forget_rpc_handlers(endpoint: DataStreamAudioOutput | DataStreamAudioReceiver) -> int:
    """Drop ``endpoint``'s entries from LiveKit's class-wide RPC handler tables.

    LiveKit registers each output's playback handlers and each receiver's clear-buffer
    handler in dictionaries on the class, keyed by the other side's identity, and never
    removes them: every closed session would stay in memory. Returns how many were dropped.
    """
    tables = (
        [DataStreamAudioOutput._playback_finished_handlers, DataStreamAudioOutput._playback_started_handlers]
        if isinstance(endpoint, DataStreamAudioOutput)
        else [DataStreamAudioReceiver._clear_buffer_handlers]
    )
    dropped = 0
    for table in tables:
        for identity, handler in list(table.items()):
            if _held_by(handler, endpoint):
                del table[identity]
                dropped += 1
    return dropped
