"""The renderer fails or stalls in a real room: the voice never suffers for the face.

* one bad frame: logged, the last good frame is repeated, the session carries on;
* a renderer that keeps failing: after ``max_render_failures`` frames in a row the avatar
  drops its video track and goes on with audio only: no speech lost, playback events
  still arrive, no failover needed;
* a 2-second stall in the render path: frames are dropped (the last good one is held)
  while the audio stays on time; A/V offset at the sender stays within 45 ms.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from .av_harness import CLICK_THRESHOLD, SenderLog, sender_offsets
from .fakes import click_times
from .pattern_pipeline import FlashRenderer, TestPatternPipeline
from .rooms import agent_room
from .test_faults_restart import server_tracks

pytestmark = pytest.mark.livekit_server


class FaultyRenderer(FlashRenderer):
    """The test-pattern face, with faults injected on demand from the test."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        self.fail_next = 0  # fail this many upcoming frames
        self.fail_forever = False
        self.stall_s = 0.0  # the next frame takes this long
        self.stalled = threading.Event()

    def render(self, mouth, state, t, energy=0.0):
        if self.stall_s:
            stall, self.stall_s = self.stall_s, 0.0
            self.stalled.set()
            time.sleep(stall)  # a CPU spike / a blocked renderer thread
        if self.fail_forever or self.fail_next > 0:
            self.fail_next -= 1
            raise RuntimeError("renderer blew up")
        return super().render(mouth, state, t, energy)


class FaultyPipeline(TestPatternPipeline):
    def __init__(self) -> None:
        self.renderer: FaultyRenderer | None = None

    def create_renderer(self, width: int, height: int) -> FaultyRenderer:
        self.renderer = FaultyRenderer(width, height)
        return self.renderer


async def _wait_heard(watcher, identity: str, since: float, count: int, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while len([t for t in watcher.click_onsets(identity) if t > since]) < count:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return [t for t in watcher.click_onsets(identity) if t > since]


async def test_one_bad_frame_is_logged_and_the_session_carries_on(livekit_server, caplog):
    pipeline = FaultyPipeline()
    async with agent_room(livekit_server, "badframe", face_pipeline=pipeline) as r:
        await r.watcher.wait_video(r.avatar.avatar_identity)
        await asyncio.sleep(0.5)  # the user's jitter buffer settles (see below)
        gen = r.avatar._transport.publisher.generator
        with caplog.at_level(logging.ERROR, logger="livekit_avatar_plugin.generator"):
            pipeline.renderer.fail_next = 3
            t0 = time.monotonic()
            handle = r.session.say("clicks 2")
            await asyncio.wait_for(handle.wait_for_playout(), 10)
        assert "renderer failed on a frame; repeating the last good one" in caplog.text
        assert gen.stats.render_errors == 3 and not gen.audio_only
        heard = await _wait_heard(r.watcher, r.avatar.avatar_identity, t0, len(click_times(2.0)))
        assert len(heard) == len(click_times(2.0))
        tracks = await server_tracks(livekit_server, r.room_name)
        assert tracks[r.avatar.avatar_identity] == ["avatar_audio", "avatar_video"]
        assert r.failed == []


async def test_a_renderer_that_keeps_failing_falls_back_to_audio_only(livekit_server, caplog):
    pipeline = FaultyPipeline()
    sender = SenderLog()
    async with agent_room(livekit_server, "audioonly", face_pipeline=pipeline) as r:
        avatar = r.avatar
        avatar._publish_taps.append(sender.tap)
        await r.watcher.wait_video(avatar.avatar_identity)
        # Let the user's jitter buffer settle: just after subscribing it time-stretches
        # what it receives, which can swallow a 4 ms click (seen under heavy load).
        await asyncio.sleep(0.5)
        gen = avatar._transport.publisher.generator
        finished: list = []
        r.session.output.audio.on("playback_finished", finished.append)
        clicks = click_times(4.0)
        t0 = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="livekit_avatar_plugin.generator"):
            handle = r.session.say("clicks 4")
            await asyncio.sleep(1.0)  # mid-speech, the renderer breaks for good
            pipeline.renderer.fail_forever = True
            await asyncio.wait_for(handle.wait_for_playout(), 15)
        assert gen.audio_only
        assert "the avatar goes on with audio only" in caplog.text
        # Every word went out on the avatar's own audio track, exactly once...
        published = [t for t, peak in sender.audio if peak > CLICK_THRESHOLD and t > t0]
        assert len(published) == len(clicks)
        # ...and reached the user.
        heard = await _wait_heard(r.watcher, avatar.avatar_identity, t0, len(clicks))
        print(f"\nclicks: sent {len(clicks)}, published {len(published)}, heard {len(heard)}")
        assert len(heard) == len(clicks)
        assert r.agent_id not in r.watcher.audio_track_at  # no failover was needed
        assert r.failed == []
        # Playback events still arrive, complete and uninterrupted.
        assert len(finished) == 1 and not finished[0].interrupted
        assert finished[0].playback_position == pytest.approx(4.0, abs=0.15)
        # The face is taken down; the voice stays.
        deadline = time.monotonic() + 5
        while (await server_tracks(livekit_server, r.room_name))[avatar.avatar_identity] != [
            "avatar_audio"
        ]:
            assert time.monotonic() < deadline, "the video track was not unpublished"
            await asyncio.sleep(0.1)
        # And the next reply is spoken just the same.
        t1 = time.monotonic()
        await asyncio.wait_for(r.session.say("clicks 1").wait_for_playout(), 10)
        heard = await _wait_heard(r.watcher, avatar.avatar_identity, t1, len(click_times(1.0)))
        assert len(heard) == len(click_times(1.0))


async def test_a_two_second_render_stall_drops_frames_not_audio_sync(livekit_server):
    pipeline = FaultyPipeline()
    sender = SenderLog()
    async with agent_room(livekit_server, "stall", face_pipeline=pipeline) as r:
        r.avatar._publish_taps.append(sender.tap)
        await r.watcher.wait_video(r.avatar.avatar_identity)
        await asyncio.sleep(0.5)  # the user's jitter buffer settles
        gen = r.avatar._transport.publisher.generator
        seconds = 6.0
        clicks = click_times(seconds)
        t0 = time.monotonic()
        handle = r.session.say(f"clicks {seconds:g}")
        await asyncio.sleep(1.5)
        pipeline.renderer.stall_s = 2.0
        await asyncio.wait_for(handle.wait_for_playout(), 20)
        t_end = time.monotonic()
        assert pipeline.renderer.stalled.is_set()

        # Audio stayed on time: the whole reply took its own length, not 2 s more.
        speech_audio = [t for t, peak in sender.audio if peak > 0 and t >= t0]
        playout_s = speech_audio[-1] - speech_audio[0]
        offsets = [o * 1000 for o in sender_offsets(sender, after=t0, before=t_end)]
        heard = await _wait_heard(r.watcher, r.avatar.avatar_identity, t0, len(clicks))
        print(
            f"\n2 s render stall: {gen.stats.dropped_frames} frames dropped, speech played out "
            f"in {playout_s:.2f} s for {seconds:g} s of audio; A/V offset at the sender over "
            f"{len(offsets)}/{len(clicks)} clicks: max |offset| "
            f"{max(abs(o) for o in offsets):.1f} ms"
        )
        # Had the audio waited on the stall, this would be >= 7.7 s; the margin is for a
        # busy machine's ordinary underruns (seen up to ~0.5 s over a full test run).
        assert playout_s < seconds + 1.0
        assert len(heard) == len(clicks)
        assert gen.stats.dropped_frames >= 40  # ~2 s of frames held, not waited for
        # Clicks during the stall have no flash (the face is frozen); every flash shown
        # is within 45 ms of its click, and flashes resume after the stall.
        assert offsets and all(abs(o) <= 45.0 for o in offsets)
        after_stall = [c for c in clicks if c > 1.5 + 2.0 + 0.3]
        flashes_after = [o for o in sender_offsets(sender, after=t0 + 3.9, before=t_end)]
        assert len(flashes_after) >= len(after_stall) - 1
