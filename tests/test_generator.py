"""The generator's contract, without a server: pairing, idle frames, lookahead, interruption."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd

from livekit_avatar_plugin._generator import AvatarVideoGenerator
from livekit_avatar_plugin._state import ConversationState

from .fakes import click_times, click_track
from .pattern_pipeline import FLASH_LEVEL, IDLE_LEVEL, SPEAKING_LEVEL, ClickMotion, FlashRenderer

W = H = 64
FPS = 25.0
SR = 24000
SPF = int(SR / FPS)


def make_generator(renderer=None, motion=None, **kw) -> AvatarVideoGenerator:
    return AvatarVideoGenerator(
        motion=motion or ClickMotion(),
        renderer=renderer or FlashRenderer(W, H),
        width=W,
        height=H,
        fps=FPS,
        sample_rate=SR,
        **kw,
    )


def audio_frames(pcm: np.ndarray, sample_rate: int = SR, chunk_ms: int = 100):
    step = sample_rate * chunk_ms // 1000
    for i in range(0, pcm.size, step):
        part = pcm[i : i + step]
        yield rtc.AudioFrame(part.tobytes(), sample_rate, 1, part.size)


class Seen:
    """A video frame as read when it came out: frame buffers are recycled afterwards."""

    def __init__(self, frame: rtc.VideoFrame) -> None:
        self.width = frame.width
        self.level = int(np.frombuffer(frame.data, dtype=np.uint8)[0])


def level(seen: Seen) -> int:
    return seen.level


def snapshot(item):
    return Seen(item) if isinstance(item, rtc.VideoFrame) else item


async def collect(gen: AvatarVideoGenerator, n_items: int, timeout: float = 10.0) -> list:
    out = []

    async def run():
        async for item in gen:
            out.append(snapshot(item))
            if len(out) >= n_items:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def until_segment_end(gen: AvatarVideoGenerator, limit: int = 10_000) -> list:
    out = []
    async for item in gen:
        out.append(snapshot(item))
        if isinstance(item, AudioSegmentEnd) or len(out) >= limit:
            break
    return out


async def test_idle_frames_flow_before_any_audio_and_pair_with_silence():
    gen = make_generator()
    items = await collect(gen, 20)
    await gen.aclose()
    videos = items[0::2]
    audios = items[1::2]
    assert all(isinstance(v, Seen) for v in videos)
    assert all(isinstance(a, rtc.AudioFrame) for a in audios)
    assert all(level(v) == IDLE_LEVEL for v in videos)
    # Exactly one frame period of silence per video frame keeps A/V locked.
    assert all(a.samples_per_channel == SPF for a in audios)
    assert all(not np.frombuffer(a.data, dtype=np.int16).any() for a in audios)


async def test_speech_frames_carry_their_own_audio_and_flash_on_the_click_frame():
    gen = make_generator()
    seconds = 2.0
    pcm = click_track(seconds)
    for f in audio_frames(pcm):
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())

    items = await until_segment_end(gen)
    await gen.aclose()

    speech = [it for it in items if not isinstance(it, AudioSegmentEnd)]
    videos, audios = speech[0::2], speech[1::2]
    # Reassembled audio is the input, in order, padded to whole frames.
    played = np.concatenate([np.frombuffer(a.data, dtype=np.int16) for a in audios])
    assert np.array_equal(played[: pcm.size], pcm)
    assert played.size == int(np.ceil(pcm.size / SPF)) * SPF

    flashes = [i for i, v in enumerate(videos) if level(v) == FLASH_LEVEL]
    expected = [int(t * FPS) for t in click_times(seconds)]
    assert flashes == expected
    assert all(level(v) in (SPEAKING_LEVEL, FLASH_LEVEL) for v in videos)
    assert gen.stats.segments == 1


async def test_queued_small_chunks_reach_the_mouth_model_in_few_calls():
    # Streamed in 10 ms pushes, as some TTS and transports deliver: the model reads what is
    # queued in one call (up to 200 ms), and the frames are what a call per push gave.
    class CountingMotion(ClickMotion):
        calls = 0

        def push(self, pcm, sample_rate):
            CountingMotion.calls += 1
            return super().push(pcm, sample_rate)

    gen = make_generator(motion=CountingMotion())
    seconds = 2.0
    pcm = click_track(seconds)
    for f in audio_frames(pcm, chunk_ms=10):
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    items = await until_segment_end(gen)
    await gen.aclose()
    assert CountingMotion.calls <= seconds / 0.2 + 2, CountingMotion.calls  # not 200 calls
    speech = [it for it in items if not isinstance(it, AudioSegmentEnd)]
    videos, audios = speech[0::2], speech[1::2]
    played = np.concatenate([np.frombuffer(a.data, dtype=np.int16) for a in audios])
    assert np.array_equal(played[: pcm.size], pcm)
    flashes = [i for i, v in enumerate(videos) if level(v) == FLASH_LEVEL]
    assert flashes == [int(t * FPS) for t in click_times(seconds)]


async def test_resamples_input_audio_to_the_output_rate():
    gen = make_generator()
    pcm16k = click_track(1.0, sample_rate=16000)
    for f in audio_frames(pcm16k, sample_rate=16000):
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    items = await until_segment_end(gen)
    await gen.aclose()
    audios = [it for it in items if isinstance(it, rtc.AudioFrame)]
    assert all(a.sample_rate == SR for a in audios)
    total = sum(a.samples_per_channel for a in audios)
    assert abs(total - SR * 1.0) <= 2 * SPF


async def test_stereo_input_is_downmixed():
    gen = make_generator()
    mono = click_track(0.4)
    stereo = np.stack([mono, mono], axis=1).reshape(-1)
    await gen.push_audio(rtc.AudioFrame(stereo.tobytes(), SR, 2, mono.size))
    await gen.push_audio(AudioSegmentEnd())
    items = await until_segment_end(gen)
    await gen.aclose()
    played = np.concatenate(
        [np.frombuffer(a.data, dtype=np.int16) for a in items if isinstance(a, rtc.AudioFrame)]
    )
    assert np.array_equal(played[: mono.size], mono)


async def test_clear_buffer_drops_queued_speech_and_returns_to_idle():
    gen = make_generator()
    for f in audio_frames(click_track(3.0)):
        await gen.push_audio(f)
    items = await collect(gen, 6)  # three speech frame pairs
    assert level(items[0]) in (SPEAKING_LEVEL, FLASH_LEVEL)
    gen.clear_buffer()
    gen.set_state(ConversationState.LISTENING)
    after = await collect(gen, 10)
    await gen.aclose()
    assert not any(isinstance(it, AudioSegmentEnd) for it in after)
    videos = [it for it in after if isinstance(it, Seen)]
    assert all(level(v) == IDLE_LEVEL for v in videos)
    audios = [it for it in after if isinstance(it, rtc.AudioFrame)]
    assert all(not np.frombuffer(a.data, dtype=np.int16).any() for a in audios)
    assert gen.stats.interruptions == 1


class ExplodingRenderer(FlashRenderer):
    def __init__(self) -> None:
        super().__init__(W, H)
        self.calls = 0

    def render(self, mouth, state, t, energy=0.0):
        self.calls += 1
        if self.calls in (3, 4):
            raise RuntimeError("renderer blew up")
        return super().render(mouth, state, t, energy)


async def test_a_failing_frame_repeats_the_last_good_one_and_the_session_goes_on():
    errors = []
    gen = make_generator(renderer=ExplodingRenderer(), on_render_error=errors.append)
    items = await collect(gen, 16)
    await gen.aclose()
    videos = [it for it in items if isinstance(it, Seen)]
    assert len(videos) == 8
    assert all(level(v) == IDLE_LEVEL for v in videos)
    assert gen.stats.render_errors == 2
    assert len(errors) == 2


async def test_a_renderer_returning_the_wrong_shape_is_reported_not_fatal():
    class WrongShape(FlashRenderer):
        def render(self, mouth, state, t, energy=0.0):
            return np.zeros((10, 10, 3), dtype=np.uint8)

    gen = make_generator(renderer=WrongShape(W, H))
    items = await collect(gen, 4)
    await gen.aclose()
    assert gen.stats.render_errors == 2
    # Black stand-in frames of the right size keep the track alive.
    assert all(it.width == W for it in items if isinstance(it, Seen))


async def test_zero_length_frames_and_empty_segments_are_harmless():
    gen = make_generator()
    await gen.push_audio(rtc.AudioFrame(b"", SR, 1, 0))
    await gen.push_audio(AudioSegmentEnd())
    items = await until_segment_end(gen, limit=20)
    await gen.aclose()
    assert isinstance(items[-1], AudioSegmentEnd)


def test_fps_must_divide_the_sample_rate():
    with pytest.raises(ValueError, match="whole number of audio samples"):
        AvatarVideoGenerator(
            motion=ClickMotion(),
            renderer=FlashRenderer(W, H),
            width=W,
            height=H,
            fps=29.97,
            sample_rate=SR,
        )
