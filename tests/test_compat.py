"""Each use of LiveKit's private APIs (all in livekit_avatar_plugin/_compat.py) checked
against the installed LiveKit: an upgrade that changes one fails here, by name."""

from __future__ import annotations

import inspect
import json

import pytest
from livekit import rtc
from livekit.agents.voice.avatar import AvatarSession, DataStreamAudioOutput
from livekit.agents.voice.io import AudioOutput

from livekit_avatar_plugin import _compat
from livekit_avatar_plugin._speech_stream import SpeechStreamOutput


# The tests are async: LiveKit's rooms and outputs need a running event loop.


def _explain(use: str) -> str:
    return f"LiveKit changed a private API the plugin relies on ({use}): update livekit_avatar_plugin/_compat.py"


async def test_participant_audio_output_is_an_audio_output_with_the_arguments_we_pass():
    try:
        from livekit.agents.voice.room_io._output import _ParticipantAudioOutput
    except ImportError:
        pytest.fail(_explain("room_io._output._ParticipantAudioOutput"))
    params = inspect.signature(_ParticipantAudioOutput.__init__).parameters
    missing = {"room", "sample_rate", "num_channels", "track_publish_options", "track_name"} - params.keys()
    assert not missing, _explain(f"_ParticipantAudioOutput lost {sorted(missing)}")
    output = _compat.participant_audio_output(rtc.Room(), sample_rate=24000)
    assert isinstance(output, AudioOutput), _explain("_ParticipantAudioOutput is no AudioOutput")
    assert callable(getattr(output, "start", None)), _explain("_ParticipantAudioOutput.start")
    # Unpublished before it starts; the recovery tests see it taken down once published.
    assert _compat.participant_audio_publication(output) is None, _explain(
        "_ParticipantAudioOutput._publication"
    )


async def test_byte_stream_handlers_are_found_by_topic():
    room = rtc.Room()
    assert _compat.byte_stream_handler(room, "lk.audio_stream") is None

    def handler(reader, sender):
        pass

    room.register_byte_stream_handler("lk.audio_stream", handler)
    assert _compat.byte_stream_handler(room, "lk.audio_stream") is handler, _explain("Room._byte_stream_handlers")


async def test_data_stream_output_keeps_its_writer_and_pushed_duration_where_we_read_them():
    source = inspect.getsource(DataStreamAudioOutput)
    assert f"self.{_compat.SEGMENT_WRITER_ATTRIBUTE} = " in source, _explain("DataStreamAudioOutput._stream_writer")
    assert "self._pushed_duration" in source, _explain("DataStreamAudioOutput._pushed_duration")
    output = SpeechStreamOutput(rtc.Room(), destination_identity="avatar", sample_rate=24000)
    assert _compat.pushed_duration(output) == 0.0
    # the subclass intercepts every writer the parent assigns
    setattr(output, _compat.SEGMENT_WRITER_ATTRIBUTE, "w")
    assert output._get_segment_writer() == "w"
    setattr(output, _compat.SEGMENT_WRITER_ATTRIBUTE, None)
    assert getattr(output, _compat.SEGMENT_WRITER_ATTRIBUTE) is None


async def test_avatar_session_detaches_without_removing_anyone():
    for name in ("_agent_session", "_wait_avatar_join_task"):
        assert name in inspect.getsource(AvatarSession.__init__), _explain(f"AvatarSession.{name}")
    assert callable(getattr(AvatarSession, "_on_conversation_item_added", None)), _explain(
        "AvatarSession._on_conversation_item_added"
    )

    class Session(AvatarSession):
        @property
        def avatar_identity(self) -> str:
            return "x"

    class FakeAgentSession:
        def __init__(self) -> None:
            self.removed: list[str] = []

        def off(self, name, handler):
            self.removed.append(name)

    session = Session()
    agent_session = FakeAgentSession()
    session._agent_session = agent_session
    _compat.detach_without_removal(session)
    assert agent_session.removed == ["conversation_item_added"]
    assert session._agent_session is None and session._wait_avatar_join_task is None


async def test_lk_rpc_handler_tables_are_class_wide_and_we_can_drop_our_entries():
    from livekit.agents.voice.avatar import DataStreamAudioReceiver

    tables = {
        "DataStreamAudioOutput._playback_finished_handlers": DataStreamAudioOutput.__dict__.get("_playback_finished_handlers"),
        "DataStreamAudioOutput._playback_started_handlers": DataStreamAudioOutput.__dict__.get("_playback_started_handlers"),
        "DataStreamAudioReceiver._clear_buffer_handlers": DataStreamAudioReceiver.__dict__.get("_clear_buffer_handlers"),
    }
    for name, table in tables.items():
        assert isinstance(table, dict), _explain(name)
    output = SpeechStreamOutput(rtc.Room(), destination_identity="avatar-x", sample_rate=24000)
    other = SpeechStreamOutput(rtc.Room(), destination_identity="avatar-y", sample_rate=24000)
    DataStreamAudioOutput._playback_finished_handlers["avatar-x"] = output._handle_playback_finished
    DataStreamAudioOutput._playback_finished_handlers["avatar-y"] = other._handle_playback_finished
    try:
        assert _compat.forget_rpc_handlers(output) == 1
        assert "avatar-x" not in DataStreamAudioOutput._playback_finished_handlers
        assert "avatar-y" in DataStreamAudioOutput._playback_finished_handlers  # another session's stays
    finally:
        DataStreamAudioOutput._playback_finished_handlers.pop("avatar-y", None)
    receiver = DataStreamAudioReceiver(rtc.Room(), sender_identity="agent-x")

    def handler(data):  # a closure over the receiver, as LiveKit registers it
        return str(receiver)

    DataStreamAudioReceiver._clear_buffer_handlers["agent-x"] = handler
    assert _compat.forget_rpc_handlers(receiver) == 1
    assert "agent-x" not in DataStreamAudioReceiver._clear_buffer_handlers


async def test_playback_finished_rpcs_pass_our_filter_before_livekits_handler():
    # The avatar in this process says how many reports it sent; a repeat the link
    # delivered (a retried RPC whose answer was lost) is answered and dropped.
    assert "handler=self._handle_playback_finished" in inspect.getsource(DataStreamAudioOutput), _explain(
        "DataStreamAudioOutput._handle_playback_finished"
    )
    output = SpeechStreamOutput(rtc.Room(), destination_identity="avatar", sample_rate=24000)
    taken: list[float] = []
    output.on_playback_finished = lambda **ev: taken.append(ev["playback_position"])  # type: ignore[method-assign]
    sent = 1
    output.reports_sent = lambda: sent

    def rpc(position: float) -> str:
        payload = json.dumps({"playback_position": position, "interrupted": False})
        data = rtc.RpcInvocationData(request_id="r", caller_identity="avatar", payload=payload, response_timeout=5.0)
        return output._handle_playback_finished(data)

    assert rpc(1.5) == "ok" and taken == [1.5]
    assert rpc(1.5) == "ok" and taken == [1.5]  # the repeat
    sent = 2
    assert rpc(0.4) == "ok" and taken == [1.5, 0.4]
    output.reports_sent = None  # where the avatar is elsewhere, every report counts
    assert rpc(0.4) == "ok" and taken == [1.5, 0.4, 0.4]
