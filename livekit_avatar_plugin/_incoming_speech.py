"""The agent's speech as the avatar receives it: each stream's header is checked, a stream
that breaks off or runs past any real reply ends its segment instead of the avatar, and
streams from anyone but the agent are discarded."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator

from livekit import rtc

from . import _compat
from ._audio import opus
from ._audio.input import AudioInputError, check_channels, check_rate

logger = logging.getLogger("livekit_avatar_plugin.participant")

# LiveKit's agent -> avatar audio transport (one byte stream per speech segment).
_AUDIO_STREAM_TOPIC = "lk.audio_stream"
# No reply is longer; a stream past it is cut there, so a runaway sender cannot fill memory.
MAX_SEGMENT_S = 30 * 60.0


class _CheckedStream:
    """A speech stream as LiveKit's receiver will read it, made safe first.

    The agent waits for every segment's ``playback_finished``, in order, and LiveKit's
    receiver ends (taking the avatar with it) on the first error it meets. So:

    * a stream whose header cannot be played is given a valid header and 10 ms of
      silence in place of its payload (which is drained and discarded): the segment
      still ends and is reported, the error is logged by name;
    * a stream that breaks off mid-way (the connection dropped, the sender vanished)
      simply ends there, with a warning, instead of raising into the receiver;
    * a stream longer than ``MAX_SEGMENT_S`` of audio ends there, with an error, and the
      rest is drained and discarded.
    """

    def __init__(self, reader: rtc.ByteStreamReader, sample_rate: int, problem: str | None) -> None:
        self._reader = reader
        self.info = reader.info
        if problem is not None:
            attributes = {"sample_rate": str(sample_rate), "num_channels": "1"}
            self.info = dataclasses.replace(reader.info, attributes=attributes)
        self._chunks = self._silence(sample_rate) if problem else self._passthrough()

    async def _passthrough(self) -> AsyncIterator[bytes]:
        decoder: opus.SpeechDecoder | None = None
        first = True
        attributes = self.info.attributes or {}
        frame_bytes = 2 * int(attributes["num_channels"])
        budget = int(MAX_SEGMENT_S * int(attributes["sample_rate"])) * frame_bytes
        try:
            async for chunk in self._reader:
                if first:
                    first = False
                    is_opus, chunk = opus.split_magic(chunk)
                    if is_opus:
                        # Our agent side compressed it (see audio/opus.py). Decoding a
                        # chunk takes well under a millisecond: cheaper on the loop than
                        # a thread hop.
                        decoder = opus.SpeechDecoder(int((self.info.attributes or {})["sample_rate"]))
                if decoder is not None:
                    chunk = decoder.decode(chunk)
                if len(chunk) > budget:
                    logger.error("a speech segment ran past %g s of audio; it is cut there", MAX_SEGMENT_S)
                    if budget > 0:
                        yield chunk[:budget]
                    await _drain(self._reader)
                    break
                budget -= len(chunk)
                if chunk:
                    yield chunk
            if decoder is not None:
                decoder.finish()
        except Exception as exc:  # noqa: BLE001 - an ended segment beats a dead avatar
            logger.warning("a speech stream broke off (%r); the segment ends there", exc)
        finally:
            if decoder is not None:
                decoder.close()

    async def _silence(self, sample_rate: int) -> AsyncIterator[bytes]:
        await _drain(self._reader)
        yield bytes(2 * (sample_rate // 100))

    def __aiter__(self) -> _CheckedStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()


def speech_stream_problem(attributes: dict[str, str] | None) -> str | None:
    """What makes a speech stream's header unplayable, or None."""
    if not attributes or "sample_rate" not in attributes or "num_channels" not in attributes:
        return "it has no sample_rate/num_channels attributes"
    try:
        check_rate(attributes["sample_rate"])
        check_channels(attributes["num_channels"])
    except AudioInputError as exc:
        return str(exc)
    return None


async def _drain(reader: rtc.ByteStreamReader) -> None:
    """Read a stream to its end, discarding it, so nothing stays buffered for it."""
    with contextlib.suppress(Exception):
        async for _ in reader:
            pass


def guard_audio_streams(room: rtc.Room, sample_rate: int, sender_identity: str | None) -> None:
    """Check every incoming speech stream before LiveKit's receiver reads it: streams from
    anyone but ``sender_identity`` (the agent) are logged and discarded, never played.

    Call after ``DataStreamAudioReceiver.start()``, which registers the handler.
    """
    handler = _compat.byte_stream_handler(room, _AUDIO_STREAM_TOPIC)
    if handler is None:
        return
    foreign: Counter[str] = Counter()
    draining: set[asyncio.Task[None]] = set()

    def checked(reader: rtc.ByteStreamReader, sender: str) -> None:
        if sender_identity is not None and sender != sender_identity:
            foreign[sender] += 1
            if foreign[sender] <= 3 or foreign[sender] % 100 == 0:
                logger.warning(
                    "ignored a speech stream from %s (%d so far): only the agent %s may speak "
                    "through this avatar", sender, foreign[sender], sender_identity,
                )  # fmt: skip
            task = asyncio.ensure_future(_drain(reader))
            draining.add(task)
            task.add_done_callback(draining.discard)
            return
        problem = speech_stream_problem(reader.info.attributes)
        if problem is not None:
            logger.error(
                "rejected a speech segment from %s: %s; it is played as silence", sender, problem
            )
        handler(_CheckedStream(reader, sample_rate, problem), sender)

    room.unregister_byte_stream_handler(_AUDIO_STREAM_TOPIC)
    room.register_byte_stream_handler(_AUDIO_STREAM_TOPIC, checked)
