"""The agent-to-avatar speech codec: Opus, sample-exact, framed (audio/opus.py)."""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace

import numpy as np
import pytest

from livekit_avatar_plugin._audio import opus
from livekit_avatar_plugin._incoming_speech import _CheckedStream

from .fakes import click_track


def speech_like(seconds: float, rate: int) -> np.ndarray:
    """Clicks over a wobbling tone: transients and steady sound, like speech has."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 6000 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 3 * t)) * t)
    clicks = np.resize(click_track(seconds, sample_rate=rate), t.size).astype(np.float64)
    return np.clip(tone + clicks, -32768, 32767).astype(np.int16)


def encode(pcm: np.ndarray, rate: int, *, chunk: int) -> bytes:
    encoder = opus.SpeechEncoder(rate)
    parts = [encoder.encode(pcm[i : i + chunk]) for i in range(0, pcm.size, chunk)]
    parts.append(encoder.finish())
    encoder.close()
    return b"".join(parts)


def decode_stream(chunks: list[bytes], rate: int) -> bytes:
    """A whole in-memory Opus speech stream back to PCM bytes."""
    is_opus, first = opus.split_magic(chunks[0])
    assert is_opus, "not an Opus speech stream (no header)"
    decoder = opus.SpeechDecoder(rate)
    try:
        out = b"".join(decoder.decode(chunk) for chunk in [first, *chunks[1:]])
        decoder.finish()
        return out
    finally:
        decoder.close()


def rechunk(data: bytes, seed: int) -> list[bytes]:
    rng, out, pos = random.Random(seed), [], 0
    while pos < len(data):
        n = rng.randint(1, 2500)
        out.append(data[pos : pos + n])
        pos += n
    return out


def lag_of(a: np.ndarray, b: np.ndarray, span: int = 50) -> int:
    """The shift of ``b`` (samples) that best matches ``a``."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    scores = [float(np.dot(a[span:-span], np.roll(b, k)[span:-span])) for k in range(-span, span + 1)]
    return int(np.argmax(scores)) - span


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
@pytest.mark.parametrize("chunk", [37, 960, 4656])
def test_a_segment_comes_back_with_every_sample_in_place(rate, chunk):
    pcm = speech_like(1.3, rate)
    data = encode(pcm, rate, chunk=chunk)
    seconds = pcm.size / rate
    assert len(data) < 1.25 * opus.BITRATE / 8 * seconds + 100  # about the set bitrate
    assert len(data) < 0.3 * pcm.nbytes
    out = np.frombuffer(decode_stream(rechunk(data, chunk), rate), np.int16)
    assert out.size == pcm.size  # the look-ahead dropped, the padded tail cut back
    assert lag_of(pcm, out) in (-1, 0, 1)
    # Lossy, but the waveform is kept where lip-sync looks: loudness per 10 ms.
    window = rate // 100
    env_in = np.abs(pcm[: pcm.size // window * window].reshape(-1, window)).max(axis=1)
    env_out = np.abs(out[: out.size // window * window].reshape(-1, window)).max(axis=1)
    assert np.corrcoef(env_in, env_out)[0, 1] > 0.95


def test_an_empty_segment_is_a_valid_empty_stream():
    data = encode(np.zeros(0, dtype=np.int16), 24000, chunk=480)
    assert data == opus.MAGIC
    assert decode_stream([data], 24000) == b""


def test_plain_pcm_is_recognised_as_such():
    assert opus.split_magic(b"\x00\x01" * 100) == (False, b"\x00\x01" * 100)
    assert opus.split_magic(opus.MAGIC + b"rest") == (True, b"rest")


def test_rates_opus_cannot_carry_are_refused_by_name():
    with pytest.raises(opus.OpusError, match="22050"):
        opus.SpeechEncoder(22050)


def test_a_corrupt_packet_and_a_truncated_stream_raise_opus_errors():
    data = encode(speech_like(0.3, 24000), 24000, chunk=960)
    body = bytearray(data[len(opus.MAGIC) :])
    body[2:4] = (60000).to_bytes(2, "little")  # "drop" far beyond any frame
    with pytest.raises(opus.OpusError, match="corrupt"):
        opus.SpeechDecoder(24000).decode(bytes(body))
    decoder = opus.SpeechDecoder(24000)
    decoder.decode(data[len(opus.MAGIC) : -5])
    with pytest.raises(opus.OpusError, match="ended"):
        decoder.finish()


class _Reader:
    def __init__(self, chunks: list[bytes], rate: int = 24000) -> None:
        self.info = SimpleNamespace(attributes={"sample_rate": str(rate), "num_channels": "1"})
        self._chunks = iter(chunks)

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None


async def test_the_avatar_side_stream_decodes_opus_and_passes_pcm_through():
    pcm = speech_like(0.7, 24000)
    data = encode(pcm, 24000, chunk=4656)
    decoded = b"".join([c async for c in _CheckedStream(_Reader(rechunk(data, 3)), 24000, None)])
    assert len(decoded) == pcm.nbytes
    plain = [c async for c in _CheckedStream(_Reader([pcm.tobytes()]), 24000, None)]
    assert plain == [pcm.tobytes()]


async def test_a_corrupt_opus_stream_ends_its_segment_with_a_warning(caplog):
    data = bytearray(encode(speech_like(0.5, 24000), 24000, chunk=960))
    first_packet_end = len(opus.MAGIC) + 6 + int.from_bytes(data[len(opus.MAGIC) : len(opus.MAGIC) + 2], "little")
    data[first_packet_end + 2 : first_packet_end + 4] = (60000).to_bytes(2, "little")
    with caplog.at_level(logging.WARNING, logger="livekit_avatar_plugin.participant"):
        chunks = [c async for c in _CheckedStream(_Reader([bytes(data)]), 24000, None)]
    # The packet before the damage decodes; the segment then ends instead of raising.
    assert chunks == [] or sum(map(len, chunks)) < 0.5 * 24000 * 2
    assert "broke off" in caplog.text and "corrupt Opus packet" in caplog.text


def test_closing_an_encoder_while_another_thread_encodes_is_safe():
    """An interruption closes the stream while a chunk may still be encoding on a worker
    thread; freeing libopus's state under it crashed the whole process once."""
    import threading

    for _ in range(20):
        encoder = opus.SpeechEncoder(24000)
        errors: list[BaseException] = []

        def work(enc=encoder, errs=errors) -> None:
            try:
                enc.encode(speech_like(1.0, 24000))
                enc.finish()
            except opus.OpusError as exc:
                errs.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        encoder.close()
        thread.join()
        assert all("closed" in str(e) for e in errors)
