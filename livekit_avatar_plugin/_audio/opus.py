"""Opus for the agent-to-avatar speech stream.

LiveKit's avatar transport sends the agent's speech to the avatar as raw 16-bit PCM over
a reliable data channel: 48 KB per second of speech at 24 kHz, and TTS hands over a whole
reply at once. Every byte of it crosses SCTP and DTLS in the agent, the server and the
avatar, in user space; at four avatars on a 2-core machine that burst alone took ~0.5
core for several seconds per reply and cost every face frames. Opus at 64 kbit/s carries
the same speech in a sixth of the bytes.

The stream stays sample-exact, so playback positions and lip-sync are unchanged: the
encoder's look-ahead is dropped at the start, the last partial frame is padded and cut
back, and each packet says how many of its decoded samples to keep.

Stream layout: ``MAGIC``, then packets of ``<u16 payload length, u16 samples to drop,
u16 samples to keep>`` followed by the Opus payload. A stream without ``MAGIC`` is plain
PCM (LiveKit's own format), so either side works with any LiveKit avatar or agent.

libopus is loaded through ctypes (``libopus0`` on Debian); without it both sides fall
back to plain PCM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import struct
import threading

import numpy as np

from .._errors import AvatarError

logger = logging.getLogger("livekit_avatar_plugin.audio.opus")

MAGIC = b"LKAVOPUS1"
# Set by the avatar on its participant so the agent knows it may send Opus.
CODECS_ATTRIBUTE = "lk.avatar.audio_codecs"
CODEC_NAME = "opus"

FRAME_S = 0.02  # 20 ms: Opus's sweet spot for speech
BITRATE = 64_000
_HEADER = struct.Struct("<HHH")
_MAX_PACKET = 4000  # bytes; libopus's recommended upper bound for one frame

_OPUS_APPLICATION_AUDIO = 2049
_OPUS_SET_BITRATE = 4002
_OPUS_SET_COMPLEXITY = 4010
_OPUS_SET_SIGNAL = 4024
_OPUS_SIGNAL_VOICE = 3001
_OPUS_GET_LOOKAHEAD = 4027
_RATES = (8000, 12000, 16000, 24000, 48000)


class OpusError(AvatarError, RuntimeError):
    """libopus refused a call, or the stream is not a valid Opus speech stream."""


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_encode.restype = ctypes.c_int32
    lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int32]
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
    ]
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    return lib


_lib = _load()


def available() -> bool:
    """True when libopus could be loaded."""
    return _lib is not None


def _require(sample_rate: int) -> ctypes.CDLL:
    if _lib is None:
        raise OpusError("libopus is not installed (Debian: apt-get install libopus0)")
    if sample_rate not in _RATES:
        raise OpusError(f"Opus needs a sample rate in {_RATES}, not {sample_rate}")
    return _lib


class _LibopusState:
    """Owns one libopus encoder or decoder state; frees it once.

    Every use of the state holds ``_lock``: the agent encodes on a worker thread, and an
    interruption can close the stream while a chunk is still being encoded (a cancelled
    ``to_thread`` keeps running). Freeing the state under it would crash the process.
    """

    _destroy = ""  # the libopus function that frees this kind of state
    _state: int | None = None
    _lock: threading.Lock  # set first thing in _create

    def close(self) -> None:
        with self._lock:
            if self._state and _lib is not None:
                getattr(_lib, self._destroy)(self._state)
                self._state = None

    def _create(self, sample_rate: int, create: str, *args: object) -> ctypes.CDLL:
        """Create the state with libopus's ``create(sample_rate, 1 channel, *args, &error)``."""
        self._lock = threading.Lock()
        lib = _require(sample_rate)
        error = ctypes.c_int(0)
        self._state = getattr(lib, create)(sample_rate, 1, *args, ctypes.byref(error))
        if error.value != 0 or not self._state:
            raise OpusError(f"{create} failed ({error.value})")
        return lib

    def _live_state(self) -> int:
        if not self._state:
            raise OpusError("the Opus stream is already closed")
        return self._state

    def __del__(self) -> None:
        self.close()


class SpeechEncoder(_LibopusState):
    """Mono int16 PCM in, framed Opus packets out, sample-exact (see the module doc)."""

    _destroy = "opus_encoder_destroy"

    def __init__(self, sample_rate: int) -> None:
        lib = self._create(sample_rate, "opus_encoder_create", _OPUS_APPLICATION_AUDIO)
        lib.opus_encoder_ctl(ctypes.c_void_p(self._state), _OPUS_SET_BITRATE, ctypes.c_int32(BITRATE))
        lib.opus_encoder_ctl(ctypes.c_void_p(self._state), _OPUS_SET_SIGNAL, ctypes.c_int32(_OPUS_SIGNAL_VOICE))
        # Full complexity: below it, and below 64 kbit/s, pre-echo moves a click's onset
        # earlier by up to a third of a millisecond, which the lip-sync tests' 10 ms windows
        # notice. It costs ~1.5 % of a core per real-time stream.
        lib.opus_encoder_ctl(ctypes.c_void_p(self._state), _OPUS_SET_COMPLEXITY, ctypes.c_int32(10))
        lookahead = ctypes.c_int32(0)
        lib.opus_encoder_ctl(ctypes.c_void_p(self._state), _OPUS_GET_LOOKAHEAD, ctypes.byref(lookahead))
        self._frame = round(sample_rate * FRAME_S)
        self._to_drop = int(lookahead.value)
        self._pending = np.zeros(0, dtype=np.int16)
        self._samples_in = 0
        self._samples_out = 0  # decoded samples the receiver will keep so far
        self._packet = (ctypes.c_ubyte * _MAX_PACKET)()
        self._started = False

    def encode(self, pcm: np.ndarray) -> bytes:
        """Packets for every whole frame now buffered (the stream header first)."""
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        with self._lock:
            self._samples_in += pcm.size
            self._pending = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
            out = [self._header()]
            whole = self._pending.size // self._frame * self._frame
            for start in range(0, whole, self._frame):
                out.append(self._encode_frame(self._pending[start : start + self._frame]))
            self._pending = self._pending[whole:].copy()
            return b"".join(out)

    def finish(self) -> bytes:
        """Packets carrying every sample not yet sent: the tail and the look-ahead."""
        with self._lock:
            out = [self._header()]
            while self._samples_out < self._samples_in:
                frame = np.zeros(self._frame, dtype=np.int16)
                frame[: self._pending.size] = self._pending
                self._pending = np.zeros(0, dtype=np.int16)
                out.append(self._encode_frame(frame))
            return b"".join(out)

    def _header(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return MAGIC

    def _encode_frame(self, frame: np.ndarray) -> bytes:
        assert _lib is not None
        n = _lib.opus_encode(self._live_state(), frame.ctypes.data, self._frame, self._packet, _MAX_PACKET)
        if n < 0:
            raise OpusError(f"opus_encode failed ({n})")
        drop = min(self._to_drop, self._frame)
        self._to_drop -= drop
        keep = min(self._frame - drop, self._samples_in - self._samples_out)
        self._samples_out += keep
        return _HEADER.pack(n, drop, keep) + ctypes.string_at(self._packet, n)


class SpeechDecoder(_LibopusState):
    """Framed Opus bytes in (chunked anyhow), mono int16 PCM out."""

    _destroy = "opus_decoder_destroy"

    def __init__(self, sample_rate: int) -> None:
        self._create(sample_rate, "opus_decoder_create")
        # The longest frame Opus allows is 120 ms.
        self._pcm = np.zeros(int(sample_rate * 0.12), dtype=np.int16)
        self._buffer = bytearray()

    def decode(self, chunk: bytes) -> bytes:
        """PCM bytes for every whole packet received so far."""
        with self._lock:
            return self._decode(chunk)

    def _decode(self, chunk: bytes) -> bytes:
        assert _lib is not None
        self._buffer += chunk
        out: list[bytes] = []
        pos = 0
        while len(self._buffer) - pos >= _HEADER.size:
            size, drop, keep = _HEADER.unpack_from(self._buffer, pos)
            end = pos + _HEADER.size + size
            if end > len(self._buffer):
                break
            payload = bytes(self._buffer[pos + _HEADER.size : end])
            n = _lib.opus_decode(self._live_state(), payload, size, self._pcm.ctypes.data, self._pcm.size, 0)
            if n < 0 or drop + keep > n:
                raise OpusError(f"corrupt Opus packet (decoder said {n}, header {drop}+{keep})")
            out.append(self._pcm[drop : drop + keep].tobytes())
            pos = end
        del self._buffer[:pos]
        return b"".join(out)

    def finish(self) -> None:
        """Raise if the stream ended inside a packet."""
        if self._buffer:
            raise OpusError(f"the Opus stream ended {len(self._buffer)} bytes into a packet")


def split_magic(first_chunk: bytes) -> tuple[bool, bytes]:
    """Whether a stream is Opus (it starts with ``MAGIC``) and the rest of its first chunk."""
    if first_chunk.startswith(MAGIC):
        return True, first_chunk[len(MAGIC) :]
    return False, first_chunk

