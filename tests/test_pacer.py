"""The audio-clocked pacer: a reply starts at once, not behind the idle audio queued
ahead of it, and never cuts the end of the reply before it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from livekit import rtc

from livekit_avatar_plugin._pacer import AudioClockedPacer

RATE = 24000
SLICE = RATE // 25  # one 40 ms frame's audio


def _slice(level: int = 0) -> rtc.AudioFrame:
    return rtc.AudioFrame(bytes(2 * SLICE) if not level else (level.to_bytes(2, "little") * SLICE), RATE, 1, SLICE)


@contextlib.asynccontextmanager
async def _pacer() -> AsyncIterator[tuple[AudioClockedPacer, list[tuple[str, float]]]]:
    """A pacer over real sources, and what it published as (kind, time); closed after."""
    audio = rtc.AudioSource(RATE, 1, queue_size_ms=1000)
    video = rtc.VideoSource(16, 16)
    published: list[tuple[str, float]] = []
    pacer = AudioClockedPacer(audio, video, on_published=lambda kind, t, _: published.append((kind, t)))
    try:
        yield pacer, published
    finally:
        pacer.clear()
        await audio.aclose()
        await video.aclose()


def _frame() -> rtc.VideoFrame:
    return rtc.VideoFrame(16, 16, rtc.VideoBufferType.RGBA, bytes(16 * 16 * 4))


async def test_a_reply_skips_the_idle_audio_queued_ahead_of_it():
    async with _pacer() as (pacer, published):
        for _ in range(3):  # idle: the queue holds about its lead of silence
            pacer.stage_video(_frame())
            await pacer.push_audio(_slice())
        assert pacer.queued_s() > 0.03
        skipped_at = len(published)
        pacer.skip_idle()
        pacer.stage_video(_frame())
        loop = asyncio.get_running_loop()
        t = loop.time()
        plays_at = await pacer.push_audio(_slice(1000), speech=True)
        assert plays_at - t < 0.01, "the reply's first slice waited behind idle audio"
        # the idle frames timed by the dropped audio are not captured any more
        await asyncio.sleep(0.2)
        assert [k for k, _ in published[skipped_at:]] == ["audio", "video"]  # the reply's own


async def test_speech_still_queued_is_never_dropped():
    async with _pacer() as (pacer, _):
        for _ in range(2):
            await pacer.push_audio(_slice(1000), speech=True)  # the end of the previous reply
        queued = pacer.queued_s()
        pacer.skip_idle()
        assert pacer.queued_s() >= queued - 0.005


async def test_wake_lets_the_producer_go_on_at_once():
    # Idle pacing holds the producer back about a frame; a reply's first audio must not wait it out.
    async with _pacer() as (pacer, _):
        for _ in range(3):
            await pacer.push_audio(_slice())
        loop = asyncio.get_running_loop()
        started = loop.time()
        held = asyncio.create_task(pacer.push_audio(_slice()))
        await asyncio.sleep(0.005)
        assert not held.done()  # held back: the queue is past its lead
        pacer.wake()
        await asyncio.wait_for(held, 0.5)
        assert loop.time() - started < 0.02
        # without a wake the hold-back runs its course
        started = loop.time()
        await pacer.push_audio(_slice())
        assert loop.time() - started > 0.02
