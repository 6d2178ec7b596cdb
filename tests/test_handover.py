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
from livekit_avatar_plugin._dispatch.protocol import GIVE_UP_TOPIC, GiveUp

from .av_harness import speech_sender_and_avatar_room
from .fakes import click_times, tone_track
from .rooms import agent_room, wait_until
from .test_failover_output import Failover, RecordingSink, _reply
from .test_generator import SR, make_generator


class Face:
    """The avatar's side as the watch reads it."""

    def __init__(self) -> None:
        self.state = Lag(ready=True, begun=0, open=False, received_s=0.0, heard_s=0.0, starving_s=0.0, uplink_loss=0.03)
        self.abandoned = 0
        self.up = True
        self.gone: tuple[int, float] | None = None

    def connected(self) -> bool:
        return self.up

    def lag(self) -> Lag:
        return self.state

    def gave_up(self) -> tuple[int, float] | None:
        return self.gone

    async def give_up(self, mark: int) -> float | None:
        # AvatarPublisher.give_up's rule: the reply sent after ``mark`` segments, if it is
        # playing or has not begun.
        s = self.state
        if (s.begun == mark + 1 and s.open) or (s.begun == mark and not s.open):
            self.abandoned += 1
            return s.heard_s if s.open else 0.0
        return None


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

        assert publisher.give_up(1) == 0.0  # nothing open: the next segment is given up
        assert publisher.lag().begun == 2 and publisher.give_up(1) == 0.0  # asked again: the same
        assert publisher.give_up(0) is None  # long finished
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
        assert publisher.lag().begun == 3  # the one given up unseen counts as begun
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


async def test_heavy_loss_a_reply_the_avatar_finished_meanwhile_is_not_handed_over():
    # Over the network the avatar's state is a beat old: asked to give the reply up, it
    # answers that it had finished it, and its own report ends the reply.
    class Finished(Face):
        async def give_up(self, mark: int) -> float | None:
            return None

    face = Finished()
    avatar = RecordingSink("avatar")
    out = Failover(avatar)
    finished: list = []
    out.on("playback_finished", finished.append)
    watch = LagWatch(face, out)  # type: ignore[arg-type]
    await _reply(out, 2.0, flush=False)
    segment = out.face_segment()
    face.state = replace(face.state, begun=1, open=True, received_s=0.8, heard_s=0.8, starving_s=_handover.STALL_S + 0.1)
    await watch.check(segment.created_at + 1.5)
    assert watch.handed_over == 0
    out.flush()
    avatar.finish(2.0)
    assert [(round(e.playback_position, 6), e.interrupted) for e in finished] == [(2.0, False)]
    assert abs(avatar.seconds - 2.0) < 1e-6 and out.fallbacks[0].seconds == 0.0  # readied only


# -- dispatch mode: the avatar's beats and the give-up request, across a real server -------


@pytest.mark.livekit_server
async def test_heavy_loss_a_dispatched_avatar_reports_its_lag_and_gives_a_reply_up_when_asked(
    livekit_server, avatar_worker
):
    """The worker's beats carry its account of itself; asked, it gives the reply up where
    it was heard, and the agent's voice says the rest: every click heard once."""
    async with agent_room(
        livekit_server, "handover-d", mode="dispatch", agent_name=avatar_worker.agent_name
    ) as r:
        transport, out = r.avatar._transport, r.avatar._failover
        await r.watcher.wait_video(r.avatar.avatar_identity)
        await wait_until(lambda: transport.lag() is not None and transport.lag().ready, 5, "a beat")
        assert transport.lag().begun == 0 and not transport.lag().open
        said_at = time.monotonic()
        handle = r.session.say("clicks 3")
        # Between the clicks at 1.1 and 1.5 s (a click cut in two would be heard in both voices).
        await wait_until(lambda: transport.lag().heard_s >= 1.17, 10, "the avatar to play a second")
        lag = transport.lag()
        assert lag.open and lag.begun == 1 and lag.received_s >= lag.heard_s
        segment = out.face_segment()
        assert segment is not None and segment.mark == 0
        assert out.claim(segment, lag.heard_s)
        heard = await transport.give_up(segment.mark)
        assert heard is not None and 1.17 <= heard < 1.45
        await out.hand_over(segment, heard)
        assert await transport.give_up(segment.mark) == heard  # asked again: the same answer
        await wait_until(lambda: transport.gave_up() == (0, heard), 2, "the beats to tell the give-up")
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        await asyncio.sleep(1.0)
        avatar_clicks = [t for t in r.watcher.click_onsets(r.avatar.avatar_identity) if t > said_at]
        agent_clicks = [t for t in r.watcher.click_onsets(r.agent_id) if t > said_at]
        assert avatar_clicks and agent_clicks
        assert len(avatar_clicks) + len(agent_clicks) == len(click_times(3))  # none twice, none lost
        assert max(avatar_clicks) < min(agent_clicks)
        assert not transport.lag().open

        # The face takes the next reply whole.
        t_next = time.monotonic()
        await asyncio.wait_for(r.session.say("clicks 1").wait_for_playout(), 15)
        await asyncio.sleep(1.0)
        assert len([t for t in r.watcher.click_onsets(r.avatar.avatar_identity) if t > t_next]) == len(click_times(1))
        assert transport.lag().begun == 2


@pytest.mark.livekit_server
async def test_foreign_give_up_requests_are_ignored_by_a_dispatched_avatar(livekit_server, avatar_worker):
    """A viewer sending give-up requests on the avatar's topic gets nothing given up."""
    async with agent_room(
        livekit_server, "foreign-giveup", mode="dispatch", agent_name=avatar_worker.agent_name
    ) as r:
        transport = r.avatar._transport
        avatar_id = r.avatar.avatar_identity
        await r.watcher.wait_video(avatar_id)
        said_at = time.monotonic()
        handle = r.session.say("clicks 2")
        await wait_until(lambda: transport.lag() is not None and transport.lag().open, 10, "the reply")
        for i in range(10):
            for payload in (GiveUp(id=i, mark=0).model_dump_json().encode(), b"\xff not json"):
                await r.watcher.room.local_participant.publish_data(
                    payload, reliable=False, destination_identities=[avatar_id], topic=GIVE_UP_TOPIC
                )
            await asyncio.sleep(0.05)
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        assert not handle.interrupted
        await asyncio.sleep(1.0)
        assert len([t for t in r.watcher.click_onsets(avatar_id) if t > said_at]) == len(click_times(2))
        assert "ignored a give-up request from" in avatar_worker.log()


@pytest.mark.livekit_server
async def test_heavy_loss_a_give_up_asked_through_the_servers_api_alone_is_acted_on(livekit_server, avatar_worker):
    """The second way of asking (the avatar's attribute, set through the server's API)
    works by itself, and the agent hands the reply over on the avatar's word alone."""
    async with agent_room(
        livekit_server, "handover-attr", mode="dispatch", agent_name=avatar_worker.agent_name
    ) as r:
        transport = r.avatar._transport
        await r.watcher.wait_video(r.avatar.avatar_identity)
        said_at = time.monotonic()
        handle = r.session.say("clicks 3")
        # Between the clicks at 1.1 and 1.5 s, as above.
        await wait_until(lambda: transport.lag() is not None and transport.lag().heard_s >= 1.17, 10, "speech")
        await transport._dispatched._ask_through_server(GiveUp(id=0, mark=0).model_dump_json())
        await wait_until(lambda: transport.gave_up() is not None, 3, "the avatar to give the reply up")
        assert transport.gave_up()[0] == 0 and 1.17 <= transport.gave_up()[1] < 1.45
        # The avatar says so both ways: in its beats, and in its attribute, through the server.
        dispatched = transport._dispatched
        await wait_until(lambda: dispatched._said is not None, 3, "the avatar's give-up attribute")
        assert dispatched._said.gave_up == dispatched._beat.gave_up == transport.gave_up()
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        assert not handle.interrupted
        await asyncio.sleep(1.0)
        heard = [t for who in (r.avatar.avatar_identity, r.agent_id) for t in r.watcher.click_onsets(who) if t > said_at]
        assert len(heard) == len(click_times(3))  # said by the face, then the agent: none twice
        assert r.watcher.click_onsets(r.agent_id)
