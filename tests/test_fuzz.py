"""Fuzzing, bounded to a few seconds: the audio receiving path, the agent-to-avatar Opus
stream and the package loader.

Properties: whatever arrives, the audio path either plays it (the segment ends, with
about as much audio as was sent) or rejects it with ``AudioInputError``; the package
loader either loads a package or raises ``AvatarPackageError``. Nothing else escapes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from livekit import rtc
from livekit.agents.utils.audio import AudioByteStream
from livekit.agents.voice.avatar import AudioSegmentEnd

from livekit_avatar_plugin._audio import opus
from livekit_avatar_plugin._audio.input import AudioInputError
from livekit_avatar_plugin._face.avatar import (
    AvatarPackageError,
    default_avatar,
    load_avatar,
)
from livekit_avatar_plugin._incoming_speech import speech_stream_problem

from .test_generator import SR, make_generator, until_segment_end

# No example database and no cache in the checkout: runs stay independent, the tree clean.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="hypothesis-"))
FAST = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

attribute_values = st.one_of(
    st.sampled_from(["8000", "16000", "24000", "44100", "48000", "1", "2", "0", "-1", "nan",
                     "1e9", "24000.5", "", " 24000", "6", "9"]),
    st.integers(-10, 200_000).map(str),
    st.text(max_size=8),
)


async def _receive(attributes: dict[str, str], payload: bytes) -> tuple[int, int, int] | None:
    """The avatar's receiving path for one byte stream: header check, LiveKit's framing,
    the generator. Returns (samples played, input samples, rate) or None if rejected."""
    if speech_stream_problem(attributes) is not None:
        return None  # played as a moment of silence instead (test_bad_input_audio.py)
    rate, channels = int(attributes["sample_rate"]), int(attributes["num_channels"])
    framer = AudioByteStream(rate, channels, samples_per_channel=math.ceil(rate / 10))
    frames = [*framer.push(payload), *framer.flush()]
    gen = make_generator()
    try:
        for frame in frames:
            await gen.push_audio(frame)
        await gen.push_audio(AudioSegmentEnd())
        items = await asyncio.wait_for(until_segment_end(gen, limit=10_000), 20)
    finally:
        await gen.aclose()
    assert isinstance(items[-1], AudioSegmentEnd), "the segment never ended"
    played = sum(a.samples_per_channel for a in items if isinstance(a, rtc.AudioFrame))
    return played, sum(f.samples_per_channel for f in frames), rate


@FAST
@given(
    sample_rate=attribute_values,
    num_channels=attribute_values,
    drop=st.sets(st.sampled_from(["sample_rate", "num_channels"])),
    payload=st.binary(max_size=20_000),
)
def test_fuzz_the_audio_receiving_path(sample_rate, num_channels, drop, payload):
    attributes = {"sample_rate": sample_rate, "num_channels": num_channels}
    for key in drop:
        attributes.pop(key)
    result = asyncio.run(_receive(attributes, payload))
    if result is not None:
        played, sent, rate = result
        expected = sent * SR / rate
        assert played >= expected - 2 * (SR // 25) - 64  # nothing lost (resampler edges aside)
        assert played <= expected + 2 * (SR // 25) + 64  # nothing invented


@FAST
@given(
    rate=st.integers(-1000, 400_000),
    channels=st.integers(1, 12),
    samples=st.integers(0, 3000),
    seed=st.integers(0, 2**31),
)
def test_fuzz_push_audio_accepts_or_names_the_problem(rate, channels, samples, seed):
    data = np.random.default_rng(seed).integers(-32768, 32767, samples * channels, np.int16)

    async def run() -> None:
        gen = make_generator()
        try:
            try:
                frame = rtc.AudioFrame(data.tobytes(), rate, channels, samples)
            except (ValueError, TypeError, OverflowError):
                return  # the SDK itself refuses to build such a frame
            try:
                await gen.push_audio(frame)
            except AudioInputError as exc:
                assert str(exc)
            await gen.push_audio(AudioSegmentEnd())
            items = await asyncio.wait_for(until_segment_end(gen, limit=10_000), 20)
            assert isinstance(items[-1], AudioSegmentEnd)
        finally:
            await gen.aclose()

    asyncio.run(run())


# -- the package loader ----------------------------------------------------------------------

_PRISTINE = {p.name: p.read_bytes() for p in default_avatar().path.iterdir() if p.is_file()}
_WORK = Path(tempfile.mkdtemp(prefix="fuzz-avatar-"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def _fresh_package() -> Path:
    pkg = _WORK / "av"
    shutil.rmtree(pkg, ignore_errors=True)
    pkg.mkdir()
    for name, data in _PRISTINE.items():
        (pkg / name).write_bytes(data)
    return pkg


@FAST
@given(
    path=st.lists(st.sampled_from(["version", "files", "image.png", "landmarks.npy", "face.png",
                                   "sha256", "bytes", "shape", "photo_box", "format"]),
                  min_size=1, max_size=3),
    value=json_values,
    target=st.sampled_from(sorted(_PRISTINE)),
    cut=st.integers(0, 5000),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=6),
    vouch=st.booleans(),
)
def test_fuzz_the_avatar_package_loader(path, value, target, cut, flips, vouch):
    pkg = _fresh_package()
    manifest = json.loads(_PRISTINE["manifest.json"])
    if target != "manifest.json":
        data = bytearray(_PRISTINE[target])
        if cut:
            del data[-min(cut, len(data)) :]
        for pos, xor in flips:
            if data:
                data[pos % len(data)] ^= xor
        (pkg / target).write_bytes(bytes(data))
        if vouch:  # the manifest lies consistently: checksums pass, contents are hostile
            manifest["files"][target].update(
                sha256=hashlib.sha256(bytes(data)).hexdigest(), bytes=len(data)
            )
    node = manifest
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node[path[-1]] = value
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    try:
        avatar = load_avatar(pkg)
    except AvatarPackageError as exc:
        assert str(exc)
    else:
        assert avatar.image.ndim == 3 and avatar.landmarks.shape == (478, 3)


@FAST
@given(
    real=st.integers(0, 3),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=6),
    cut=st.integers(0, 10**6),
    noise=st.binary(max_size=400),
)
def test_fuzz_the_opus_speech_stream(real, flips, cut, noise):
    """Damaged or hostile Opus streams decode or raise ``OpusError``; nothing else."""
    encoder = opus.SpeechEncoder(SR)
    pcm = (np.sin(np.arange(real * SR // 10) / 7) * 9000).astype(np.int16)
    data = bytearray(encoder.encode(pcm) + encoder.finish())[len(opus.MAGIC) :]
    encoder.close()
    for pos, value in flips:
        if data:
            data[pos % len(data)] ^= value
    stream = bytes(data[: cut % (len(data) + 1)]) + noise
    decoder = opus.SpeechDecoder(SR)
    try:
        out = decoder.decode(stream)
        decoder.finish()
        assert len(out) % 2 == 0
    except opus.OpusError:
        pass
    finally:
        decoder.close()
