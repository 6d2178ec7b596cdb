"""When the agent's voice takes a reply over from an avatar that fell behind: the policy
of ``_handover.LagWatch``, over the avatar's own account of itself (``Lag``) and the
failover sink with recording sinks. Real loss: tests/test_faults_network.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from livekit import rtc
from livekit.agents.voice.avatar import DataStreamAudioReceiver

from livekit_avatar_plugin import _handover
from livekit_avatar_plugin._config import VideoOptions
from livekit_avatar_plugin._publisher import AvatarPublisher
from livekit_avatar_plugin._handover import LagWatch
from livekit_avatar_plugin._publisher import Lag

from .av_harness import speech_sender_and_avatar_room
from .fakes import tone_track
from .test_failover_output import Failover, RecordingSink, _reply
from .test_generator import SR, make_generator


class Face:
    """The avatar's side as the watch reads it."""

    def __init__(self) -> None:
        self.state = Lag(ready=True, begun=0, open=False, received_s=0.0, heard_s=0.0, starving_s=0.0, uplink_loss=0.03)
        self.abandoned = 0
        self.up = True

    def connected(self) -> bool:
        return self.up

    def lag(self) -> Lag:
        return self.state

    def abandon(self) -> float:
        self.abandoned += 1
        return self.state.heard_s if self.state.open else 0.0


def _watch() -> tuple[Face, Failover, LagWatch]:
    face = Face()
    out = Failover(RecordingSink("avatar"))
    return face, out, LagWatch(face, out)  # type: ignore[arg-type]


async def test_heavy_loss_a_starved_avatar_with_speech_in_transit_hands_the_rest_over():
    face, out, watch = _watch()
    await _reply(out, 2.0, flush=False)
    segment = out.face_segment()
    assert segment is not None and segment.mark == 0
    # The avatar began it, got 0.8 s of the 2 s sent, played it, and has waited since.
    face.state = replace(face.state, begun=1, open=True, received_s=0.8, heard_s=0.8, starving_s=0.1)
    await watch.check(segment.created_at + 1.0)
    assert out.fallbacks and out.fallbacks[0].seconds == 0.0  # readied, nothing handed yet
    face.state = replace(face.state, starving_s=_handover.STALL_S + 0.01)
    await watch.check(segment.created_at + 1.2)
    assert face.abandoned == 1 and watch.handed_over == 1
    assert abs(out.fallbacks[0].seconds - 1.2) < 1e-6  # from where it was heard
    assert out.face_segment() is None  # the face waits for the next reply
    await watch.check(segment.created_at + 1.3)
    assert face.abandoned == 1


async def test_heavy_loss_slow_speech_synthesis_is_not_handed_over():
    # The avatar starves because the agent has nothing more to send: the agent's voice
    # would starve just the same.
    face, out, watch = _watch()
    await _reply(out, 0.8, flush=False)
    segment = out.face_segment()
    face.state = replace(face.state, begun=1, open=True, received_s=0.8, heard_s=0.8, starving_s=2.0)
    await watch.check(segment.created_at + 3.0)
    assert face.abandoned == 0 and not out.fallbacks


async def test_heavy_loss_a_reply_that_never_reached_the_avatar_is_said_whole_by_the_agent():
    face, out, watch = _watch()
    await _reply(out, 0.4)
    segment = out.face_segment()
    await watch.check(segment.created_at + 0.1)
    assert not out.fallbacks
    await watch.check(segment.created_at + _handover.FIRST_S - 0.2)
    assert out.fallbacks and face.abandoned == 0  # readied
    await watch.check(segment.created_at + _handover.FIRST_S + 0.01)
    assert face.abandoned == 1
    assert abs(out.fallbacks[0].seconds - 0.4) < 1e-6


async def test_heavy_loss_nothing_is_handed_over_before_the_face_is_on_screen_or_after_it_finished():
    face, out, watch = _watch()
    face.state = replace(face.state, ready=False)
    await _reply(out, 0.4)
    segment = out.face_segment()
    await watch.check(segment.created_at + 5.0)  # speech waits for the first viewer
    assert face.abandoned == 0
    # On screen, and the avatar has played it whole: its report is on the way.
    face.state = replace(face.state, ready=True, begun=1, open=False)
    await watch.check(segment.created_at + 5.0)
    assert face.abandoned == 0 and not out.fallbacks


async def test_heavy_loss_the_agents_track_is_readied_when_the_shared_link_loses_packets():
    face, out, watch = _watch()
    face.state = replace(face.state, uplink_loss=0.03)
    await watch.check(100.0)
    assert not out.fallbacks
    face.state = replace(face.state, uplink_loss=0.2)  # no reply under way: readied all the same
    await watch.check(100.0)
    assert len(out.fallbacks) == 1 and face.abandoned == 0


async def test_heavy_loss_a_starved_avatar_on_a_clean_link_is_short_of_cpu_and_keeps_its_reply():
    face, out, watch = _watch()
    await _reply(out, 2.0, flush=False)
    segment = out.face_segment()
    face.state = replace(
        face.state, begun=1, open=True, received_s=0.5, heard_s=0.5, starving_s=1.0, uplink_loss=0.0
    )
    await watch.check(segment.created_at + 2.0)
    assert face.abandoned == 0 and not out.fallbacks


# -- the avatar's side: giving a segment up, over LiveKit's byte streams on a real server ---


@pytest.mark.livekit_server
async def test_heavy_loss_the_avatar_gives_a_segment_up_and_discards_the_rest_of_it(livekit_server):
    """Given up mid-way, a segment is reported once, interrupted where it was heard, and
    the rest of its audio (still arriving) is never played; given up before it began, the
    next segment is reported at 0 and never played; the one after plays whole."""
    async with speech_sender_and_avatar_room(livekit_server, "handover") as (sender, avatar_room, finished):
        await _give_up_segments(sender, avatar_room, finished)


async def _give_up_segments(sender: rtc.Room, avatar_room: rtc.Room, finished: list[dict]) -> None:
    publisher = AvatarPublisher(
        avatar_room,
        audio_receiver=DataStreamAudioReceiver(avatar_room, sender_identity="sender"),
        generator=make_generator(),
        video=VideoOptions(width=64, height=64),
    )
    await publisher.start()
    header = {"sample_rate": str(SR), "num_channels": "1"}

    async def open_stream() -> rtc.ByteStreamWriter:
        return await sender.local_participant.stream_bytes(
            "speech", topic="lk.audio_stream", attributes=header, destination_identities=["avatar-rx"]
        )

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.02)

    try:
        await publisher.wait_published()
        first = await open_stream()
        await first.write(tone_track(0.6).tobytes())
        await until(lambda: publisher.lag().heard_s > 0.2, "the first segment never played")
        heard = publisher.abandon()
        assert 0.2 < heard < 0.6
        lag = publisher.lag()
        assert not lag.open and lag.begun == 1
        await first.write(tone_track(1.0).tobytes())  # late audio of the given-up segment
        await first.aclose()
        await until(lambda: len(finished) == 1, "the given-up segment was not reported")
        assert finished[0]["interrupted"] and finished[0]["playback_position"] == pytest.approx(heard, abs=0.01)

        assert publisher.abandon() == 0.0  # nothing open: the next segment is given up
        await until(lambda: len(finished) == 2, "the segment given up unseen was not reported")
        assert finished[1]["playback_position"] == 0.0 and finished[1]["interrupted"]
        for seconds in (0.8, 0.5):
            writer = await open_stream()
            await writer.write(tone_track(seconds).tobytes())
            await writer.aclose()
        await until(lambda: len(finished) == 3, "the segment after them was not played")
        await asyncio.sleep(1.0)
        assert len(finished) == 3  # the 0.8 s one was never played nor reported again
        assert finished[2]["playback_position"] == pytest.approx(0.5, abs=0.05)
        assert not finished[2]["interrupted"]
        assert publisher.lag().begun == 2
    finally:
        await publisher.aclose()


async def test_heavy_loss_an_outage_is_not_handed_over():
    # A server restart starves the avatar with speech in transit too, but that stream is
    # broken, not late, and both sides rejoin by themselves.
    face, out, watch = _watch()
    await _reply(out, 2.0, flush=False)
    segment = out.face_segment()
    face.state = replace(face.state, begun=1, open=True, received_s=0.8, heard_s=0.8, starving_s=1.0)
    face.up = False
    await watch.check(segment.created_at + 1.0)
    face.up = True
    await watch.check(segment.created_at + 1.0 + _handover._AFTER_OUTAGE_S - 0.5)
    assert face.abandoned == 0 and not out.fallbacks
    await watch.check(segment.created_at + 1.0 + _handover._AFTER_OUTAGE_S + 0.1)
    assert face.abandoned == 1
