"""Bad audio reaching the avatar: a clear error naming the problem, or a sanitised value.

Never a crash of the frame loop, never a hung segment. The generator is driven directly
(the test-pattern face) and, for the receiving path, LiveKit's own data-stream transport
against a real server.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, DataStreamAudioReceiver

from livekit_avatar_plugin._audio.input import AudioInputError, to_mono_int16
from livekit_avatar_plugin._config import VideoOptions
from livekit_avatar_plugin._publisher import AvatarPublisher

from .av_harness import speech_sender_and_avatar_room
from .fakes import click_track, tone_track
from .test_generator import SPF, SR, audio_frames, make_generator, until_segment_end


def played_audio(items) -> np.ndarray:
    return np.concatenate(
        [np.frombuffer(a.data, np.int16) for a in items if isinstance(a, rtc.AudioFrame)]
        or [np.zeros(0, np.int16)]
    )


async def play_segment(frames, *, limit: int = 100_000, **kw):
    """Push one segment and run the generator until it ends; returns (generator, items)."""
    gen = make_generator(**kw)
    for f in frames:
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    items = await asyncio.wait_for(until_segment_end(gen, limit=limit), 60)
    await gen.aclose()
    assert isinstance(items[-1], AudioSegmentEnd), "the segment never ended"
    return gen, items


RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 9973, 37800]


@pytest.mark.parametrize("rate", RATES)
async def test_every_sample_rate_from_8_to_48_khz_plays_at_the_output_rate(rate):
    seconds = 1.0
    gen, items = await play_segment(audio_frames(tone_track(seconds, sample_rate=rate), rate))
    audio = [a for a in items if isinstance(a, rtc.AudioFrame)]
    assert all(a.sample_rate == SR and a.samples_per_channel == SPF for a in audio)
    assert abs(played_audio(items).size - SR * seconds) <= 2 * SPF
    assert gen.stats.bad_input == 0


@pytest.mark.parametrize("rate", [0, 1, 7999, 48001, 96000, 192000])
async def test_unsupported_rates_are_refused_by_name_and_the_avatar_goes_on(rate):
    gen = make_generator()
    pcm = np.zeros(480, np.int16)
    with pytest.raises(AudioInputError, match="sample rate"):
        await gen.push_audio(rtc.AudioFrame(pcm.tobytes(), rate, 1, pcm.size))
    assert gen.stats.bad_input == 1
    # The same generator still plays good audio afterwards.
    for f in audio_frames(click_track(0.4)):
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    items = await asyncio.wait_for(until_segment_end(gen), 10)
    await gen.aclose()
    assert played_audio(items).size >= click_track(0.4).size


@pytest.mark.parametrize("channels", [2, 6])
async def test_multichannel_is_downmixed(channels):
    mono = tone_track(0.5)
    inter = np.repeat(mono[:, None], channels, axis=1).reshape(-1)
    _, items = await play_segment([rtc.AudioFrame(inter.tobytes(), SR, channels, mono.size)])
    assert np.array_equal(played_audio(items)[: mono.size], mono)


def test_float_audio_is_sanitised_nan_inf_and_overrange_included():
    x = np.array([0.0, 0.5, -0.5, np.nan, np.inf, -np.inf, 3.0, -7.0], np.float32)
    out = to_mono_int16(x)
    assert out.dtype == np.int16
    assert out.tolist() == [0, 16384, -16384, 0, 0, 0, 32767, -32767]
    stereo = np.array([[1.0, -1.0], [np.nan, 0.5]], np.float64)
    assert to_mono_int16(stereo.reshape(-1), 2).tolist() == [0, 8192]
    assert to_mono_int16(np.array([2**31 - 1, -(2**31)], np.int32)).tolist() == [32767, -32767]
    with pytest.raises(AudioInputError, match="divide into 2 channels"):
        to_mono_int16(np.zeros(3, np.int16), 2)
    with pytest.raises(AudioInputError, match="channel count"):
        to_mono_int16(np.zeros(4, np.int16), 0)
    with pytest.raises(AudioInputError, match="not supported"):
        to_mono_int16(np.array(["a"]))


async def test_clipped_full_scale_audio_plays_bit_exact_with_no_overflow():
    t = np.arange(SR) / SR
    square = np.where(np.sin(2 * np.pi * 220 * t) >= 0, 32767, -32768).astype(np.int16)
    stereo = np.stack([square, square], 1).reshape(-1)
    _, items = await play_segment([rtc.AudioFrame(stereo.tobytes(), SR, 2, square.size)])
    assert np.array_equal(played_audio(items)[: square.size], square)


class RecordingRenderer:
    """Notes the mouth and loudness the generator asks for (the real face's inputs)."""

    def __init__(self, w: int, h: int) -> None:
        self.calls: list[tuple[dict, float]] = []
        self._frame = np.zeros((h, w, 3), np.uint8)

    def render(self, mouth, state, t, energy=0.0):
        self.calls.append((dict(mouth), energy))
        return self._frame


async def test_a_dc_offset_is_inaudible_and_does_not_move_the_face():
    from livekit_avatar_plugin._pipeline import load_pipeline

    renderer = RecordingRenderer(64, 64)
    motion = load_pipeline("default").create_motion()  # the shipped lip-sync model
    offset = np.full(SR, 12000, np.int16)  # 1 s of silence sitting at +0.37 full scale
    _, items = await play_segment(audio_frames(offset), motion=motion, renderer=renderer)
    assert np.array_equal(played_audio(items)[: offset.size], offset)  # played as sent
    speech = renderer.calls[-20:]  # the second half of the segment, past the onset
    assert max(e for _, e in speech) == 0.0
    assert max(m["jaw_open"] for m, _ in speech) < 0.2


async def test_zero_length_frames_and_empty_segments_in_a_row_all_end():
    gen = make_generator()
    for _ in range(3):
        await gen.push_audio(rtc.AudioFrame(b"", SR, 1, 0))
        await gen.push_audio(AudioSegmentEnd())
    for f in audio_frames(click_track(0.3)):
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    ends = 0
    while ends < 4:
        items = await asyncio.wait_for(until_segment_end(gen, limit=1000), 10)
        assert isinstance(items[-1], AudioSegmentEnd)
        ends += 1
    await gen.aclose()


async def test_a_ten_minute_segment_is_accepted_at_once_and_played_whole():
    minutes = 10
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(SR * 60 * minutes) * 3000).astype(np.int16)
    gen = make_generator()
    t0 = time.perf_counter()
    for f in audio_frames(pcm, chunk_ms=1000):
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    push_s = time.perf_counter() - t0
    items = await asyncio.wait_for(until_segment_end(gen, limit=10**6), 240)
    await gen.aclose()
    print(f"\n10-minute segment: queued in {push_s:.2f} s, generated in "
          f"{time.perf_counter() - t0:.1f} s")
    assert push_s < 5.0  # queuing never waits on the model
    out = played_audio(items)
    assert np.array_equal(out[: pcm.size], pcm)
    assert out.size - pcm.size < SPF


async def test_segments_arriving_faster_than_real_time_play_in_order():
    gen = make_generator()
    segments = [tone_track(0.2, hz=200 + 50 * i) for i in range(20)]
    for seg in segments:  # 4 s of speech handed over in one go
        for f in audio_frames(seg):
            await gen.push_audio(f)
        await gen.push_audio(AudioSegmentEnd())
    for seg in segments:
        items = await asyncio.wait_for(until_segment_end(gen), 10)
        out = played_audio(items)
        assert isinstance(items[-1], AudioSegmentEnd)
        assert np.array_equal(out[: seg.size], seg)
    await gen.aclose()


async def test_a_rate_change_inside_a_segment_keeps_the_whole_timeline():
    a = tone_track(0.5, sample_rate=16000)
    b = tone_track(0.5, sample_rate=48000)
    frames = [*audio_frames(a, 16000), *audio_frames(b, 48000)]
    _, items = await play_segment(frames)
    assert abs(played_audio(items).size - SR * 1.0) <= 2 * SPF


# -- the receiving path: LiveKit's byte-stream transport, a real server ---------------------


@pytest.mark.livekit_server
async def test_unplayable_stream_headers_are_rejected_and_reported_finished(
    livekit_server, caplog
):
    """A sender's bad header (rate, channels, missing) is logged by name and played as a
    moment of silence: its ``playback_finished`` still arrives, the avatar survives, and
    the next good segment plays."""
    async with speech_sender_and_avatar_room(livekit_server, "badrx") as (sender, avatar_room, finished):
        await _bad_headers_then_a_good_one(sender, avatar_room, finished, caplog)


async def _bad_headers_then_a_good_one(sender, avatar_room, finished: list[dict], caplog) -> None:
    receiver = DataStreamAudioReceiver(avatar_room, sender_identity="sender")
    publisher = AvatarPublisher(
        avatar_room,
        audio_receiver=receiver,
        generator=make_generator(),
        video=VideoOptions(width=64, height=64),
        on_died=lambda why: died.append(why),
    )
    died: list[str] = []
    await publisher.start()

    async def send(attributes: dict[str, str], pcm: np.ndarray) -> None:
        writer = await sender.local_participant.stream_bytes(
            "speech", topic="lk.audio_stream", attributes=attributes,
            destination_identities=["avatar-rx"],
        )
        await writer.write(pcm.tobytes())
        await writer.aclose()

    bad_headers = [
        {"sample_rate": "abc", "num_channels": "1"},
        {"sample_rate": "0", "num_channels": "1"},
        {"sample_rate": "1000000", "num_channels": "1"},
        {"sample_rate": "24000", "num_channels": "0"},
        {"sample_rate": "24000", "num_channels": "-3"},
        {"sample_rate": "24000"},
        {},
    ]
    try:
        with caplog.at_level(logging.ERROR, logger="livekit_avatar_plugin.participant"):
            for i, header in enumerate(bad_headers):
                await send(header, tone_track(0.2))
                deadline = time.monotonic() + 10
                while len(finished) < i + 1:
                    assert time.monotonic() < deadline, f"no playback_finished for {header}"
                    await asyncio.sleep(0.02)
        assert caplog.text.count("rejected a speech segment") == len(bad_headers)
        assert "sample rate 'abc' is not a number" in caplog.text
        assert "channel count '0' is not supported" in caplog.text
        assert "no sample_rate/num_channels" in caplog.text
        # A good segment after all that plays in full.
        await send({"sample_rate": "24000", "num_channels": "1"}, tone_track(0.5))
        deadline = time.monotonic() + 10
        while len(finished) < len(bad_headers) + 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert finished[-1]["playback_position"] == pytest.approx(0.5, abs=0.05)
        assert not finished[-1]["interrupted"]
        assert died == []
    finally:
        await publisher.aclose()


async def test_a_speech_stream_that_breaks_off_ends_its_segment_instead_of_raising(caplog):
    """A connection dropping mid-stream makes the SDK's reader raise; LiveKit's receiver
    would die of it (and the avatar with it). The checked stream ends there instead."""
    from types import SimpleNamespace

    from livekit_avatar_plugin._incoming_speech import _CheckedStream

    class BrokenReader:
        info = SimpleNamespace(attributes={"sample_rate": "24000", "num_channels": "1"})

        def __init__(self) -> None:
            self._sent = 0

        def __aiter__(self):
            return self

        async def __anext__(self) -> bytes:
            self._sent += 1
            if self._sent > 2:
                raise ConnectionError("stream reset by peer")
            return bytes(480)

    with caplog.at_level(logging.WARNING, logger="livekit_avatar_plugin.participant"):
        chunks = [c async for c in _CheckedStream(BrokenReader(), 24000, None)]
    assert chunks == [bytes(480), bytes(480)]
    assert "broke off" in caplog.text and "stream reset by peer" in caplog.text
