"""Audio -> mouth runtime (ONNX), offline and streaming.

```python
model = LipSyncModel.load()             # once per process, thread-safe to share
frames = model.infer(pcm, sample_rate)  # [n_frames, len(model.channels)] float32 in [0, 1]
stream = model.stream()                 # one per speech session
ready = stream.push(chunk, sample_rate) # [k, C] frames that became ready
rest = stream.flush()                   # end of segment (pads the lookahead with silence)
stream.reset()                          # drop everything (interruption)
```

Frame ``i`` is the mouth at time ``i / model.fps`` from the start of the segment.
A frame is ready once ``model.lookahead_s`` of audio after it has been pushed.
The network is a dilated causal conv net exported as a *step function* with explicit
per-layer state, so streaming and offline give the same numbers for any chunking.
A stream calls the network once at least ``CALL_FRAMES`` feature frames are complete
(or on ``flush``): a call has a fixed cost, so 10 ms pushes share one call per 20 ms.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np

from . import features as F

logger = logging.getLogger(__name__)

MOUTH_CHANNELS: tuple[str, ...] = ("jaw_open", "lips_closed", "lip_round", "lip_spread", "labiodental")
MODEL_FILE = "lipsync.onnx"
# Network calls wait for this many complete feature frames: at most one frame (10 ms) is
# held, which ``lookahead_s`` includes; halves the calls (and FFTs) of 10 ms pushes.
CALL_FRAMES = 2


class LipSyncModel:
    """A loaded lip-sync ONNX model. Use :meth:`load`; share one instance across threads."""

    _cache: dict[tuple, "LipSyncModel"] = {}
    _cache_lock = threading.Lock()

    def __init__(self, path: Path, providers: list[str] | None = None, intra_op_threads: int = 1) -> None:
        from .._onnx import create_session

        self.path = Path(path)
        self._sess = create_session(
            self.path, label="lip-sync model", providers=providers, intra_op_threads=intra_op_threads
        )
        self.provider = self._sess.get_providers()[0]
        meta = self._sess.get_modelmeta().custom_metadata_map
        self.channels: tuple[str, ...] = tuple(json.loads(meta["channels"]))
        if self.channels[:3] != MOUTH_CHANNELS[:3]:
            raise ValueError(f"{self.path}: unexpected channels {self.channels}")
        self.fps: float = float(meta["fps"])
        self.lookahead_frames: int = int(meta["lookahead_frames"])
        feat = json.loads(meta["features"])
        if feat["n_mels"] != F.N_MELS or feat["hop"] != F.HOP or feat["sample_rate"] != F.SAMPLE_RATE:
            raise ValueError(f"{self.path}: feature settings {feat} do not match this runtime")
        self._sizes = json.loads(meta["state_sizes"])
        self._chans = json.loads(meta["state_channels"])
        self.receptive_field = int(meta["receptive_field"])
        self._in_names = ["feats"] + [f"state_{i}" for i in range(len(self._sizes))]
        # [1, ch, 1, t] (2-D convs, current export) or [1, ch, t] (older exports)
        self._height = (1,) if len(self._sess.get_inputs()[0].shape) == 4 else ()
        # lookahead: model frames + one held frame + half analysis window + worst-case resampler delay (8 kHz)
        self.lookahead_s: float = (
            (self.lookahead_frames + CALL_FRAMES - 1) / self.fps
            + (F.WIN // 2) / F.SAMPLE_RATE
            + F.resample_lookahead_s(F.MIN_RATE)
        )
        self._silence = F.silence_frame()
        # state after "infinite" silence: run the step function over silence from zero state
        st = [np.zeros((1, c, *self._height, s), np.float32) for c, s in zip(self._chans, self._sizes)]
        warm = np.repeat(self._silence[None], 2 * self.receptive_field, axis=0)
        out, st = self._run(warm, st)
        self._warm_states = st
        self._neutral = out[-1].copy()
        # The provider was logged when the session was created (one line per model).
        logger.debug(
            "lip-sync model %s: %d channels, %.0f fps, lookahead %.0f ms",
            self.path.name, len(self.channels), self.fps, self.lookahead_s * 1000,
        )  # fmt: skip

    # -- construction ---------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, providers: list[str] | None = None, intra_op_threads: int = 1) -> "LipSyncModel":
        """Load (once per process and path/providers) the lip-sync model.

        ``path`` defaults to ``models/lipsync/lipsync.onnx`` (see ``_paths.model_path``);
        ``providers`` defaults to CUDA when onnxruntime has it, else CPU.
        """
        if path is None:
            from .._paths import model_path

            path = model_path("lipsync", MODEL_FILE)
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"lip-sync model {path} not found")
        key = (str(path), tuple(providers) if providers else None, intra_op_threads)
        with cls._cache_lock:
            m = cls._cache.get(key)
            if m is None:
                m = cls(path, providers, intra_op_threads)
                cls._cache[key] = m
            return m

    # -- inference -------------------------------------------------------------
    def _feeds(self, feats: np.ndarray, states: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The network's inputs for feats [n, n_mels] and the layer states."""
        x = np.ascontiguousarray(feats.T, dtype=np.float32).reshape(1, feats.shape[1], *self._height, feats.shape[0])
        return dict(zip(self._in_names, [x, *states]))

    def _run(self, feats: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """feats [n, n_mels] -> (mouth [n, C], new states). ``session.run`` is thread-safe."""
        res = self._sess.run(None, self._feeds(feats, states))
        return res[0].reshape(len(self.channels), -1).T, res[1:]

    def empty(self) -> np.ndarray:
        return np.zeros((0, len(self.channels)), dtype=np.float32)

    def stream(self) -> "LipSyncStream":
        return LipSyncStream(self)

    def infer(self, pcm, sample_rate: int) -> np.ndarray:
        """Offline: the whole signal -> [n_frames, C] (same numbers as streaming)."""
        s = self.stream()
        a = s.push(pcm, sample_rate)
        b = s.flush()
        return np.concatenate([a, b]) if len(a) and len(b) else (a if len(a) else b)

    def frames_for(self, n_samples: int, sample_rate: int) -> int:
        """Number of mouth frames a segment of ``n_samples`` at ``sample_rate`` yields."""
        n16 = -(-n_samples * F.SAMPLE_RATE // int(sample_rate))
        return -(-n16 // F.HOP)


class LipSyncStream:
    """Per-session streaming state. Not thread-safe itself (one per session)."""

    def __init__(self, model: LipSyncModel) -> None:
        self.model = model
        self._mel = F.StreamLogMel()
        self._warned = False
        self.reset()

    def reset(self) -> None:
        """Drop all buffered audio and state (e.g. on interruption)."""
        self._resampler: F.StreamResampler | None = None
        self._mel.reset()
        self._held: list[np.ndarray] = []  # 16 kHz audio not yet given to the log-mel
        self._n16 = 0  # 16 kHz samples received (given to the log-mel or held)
        self._states = [s.copy() for s in self.model._warm_states]
        self._fed = 0  # feature frames given to the network
        self._emitted = 0  # mouth frames returned

    def _warn(self, msg: str) -> None:
        if not self._warned:
            logger.warning("lip-sync: %s", msg)
            self._warned = True

    def _net(self, feats: np.ndarray, limit: int | None = None) -> np.ndarray:
        if len(feats) == 0:
            return self.model.empty()
        out, self._states = self.model._run(feats, self._states)
        # network output for feature frame k is the mouth at frame k - lookahead
        first = self._fed - self.model.lookahead_frames
        self._fed += len(feats)
        skip = max(0, -first)
        out = out[skip:]
        if limit is not None:
            out = out[: max(0, limit - self._emitted)]
        self._emitted += len(out)
        return np.clip(out, 0.0, 1.0, out=out)

    def push(self, pcm, sample_rate: int) -> np.ndarray:
        """Feed a chunk (any size; int16/float; mono [n] or [n, ch]); returns the ready frames."""
        rate = F.check_rate(sample_rate)
        x = F.to_mono_float(pcm, warn=self._warn)
        if x.size == 0:
            return self.model.empty()
        pre = None
        if self._resampler is None:
            self._resampler = F.StreamResampler(rate)
        elif self._resampler.rate != rate:
            # rate changed mid-segment: finish the old resampler, continue the timeline
            pre = self._resampler.flush()
            self._resampler = F.StreamResampler(rate)
        x16 = self._resampler.push(x)
        if pre is not None and len(pre):
            x16 = np.concatenate([pre, x16])
        self._held.append(x16)
        self._n16 += len(x16)
        if self._mel.complete_frames(self._n16) - self._mel.frames_emitted < CALL_FRAMES:
            return self.model.empty()
        return self._net(self._mel.push(self._release()))

    def _release(self) -> np.ndarray:
        """The held 16 kHz audio, now given to the log-mel."""
        x16 = self._held[0] if len(self._held) == 1 else np.concatenate(self._held)
        self._held = []
        return x16

    def flush(self) -> np.ndarray:
        """End of segment: emit the remaining frames, then start a fresh segment."""
        if self._resampler is None and self._mel.frames_emitted == 0 and self._fed == 0:
            self.reset()
            return self.model.empty()
        if self._resampler is not None:
            self._held.append(self._resampler.flush())
        parts = [self._mel.push(self._release())]
        total = self._mel.total_frames()
        parts.append(self._mel.flush(self.model.lookahead_frames))
        feats = np.concatenate(parts) if len(parts) > 1 else parts[0]
        out = self._net(feats, limit=total)
        self.reset()
        return out
