"""Head, brow, lid and gaze motion of the photo renderer: a handful of floats a frame.

:class:`HeadMotion` turns the conversation state, the clock and the speech's prosody (its
loudness and pitch, one value each a frame) into a pose the renderer draws:

* speaking: a nod on each stressed syllable (a loudness onset that stands out from the
  reply's usual ones), brows up while the pitch rises above the reply's level, a new head
  position at each phrase, the eyes mostly to the camera, a blink and a breath at pauses;
* listening: attentive nods and brow flashes at irregular times, saccades every 1-4 s;
* thinking: a glance aside and up, the head turned a little after the eyes;
* idle: breathing, slow drift, saccades.

Nothing is periodic: drift is filtered noise, breaths, saccades and nods come at random
or prosodic times. Every pose parameter follows its target through a critically damped
spring, so a state change or an interruption (:meth:`HeadMotion.reset`) never pops:
position and velocity stay continuous.

:func:`frame_pitch` is the f0 of one frame's audio (normalised autocorrelation), which
the generator computes on its drawing thread and hands over in the mouth mapping under
:data:`PITCH_KEY`.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from livekit_avatar_plugin._state import ConversationState

PITCH_KEY = "pitch"  # the mouth mapping's key for the frame's f0 in Hz (0: unvoiced)

# Pose parameters (px for a 170 px wide face, scaled by the face size; roll in radians;
# gaze in units of each eye's range, -1 to 1; image y grows downwards).
TX, TY, ROLL, NOD, YAW, GAZE_X, BROW, GAZE_Y = range(8)
# Spring rates (1/s) per parameter: the head settles in ~0.4 s, nods and brows faster,
# saccades within ~60 ms.
OMEGA = np.array([6.0, 6.0, 6.0, 14.0, 6.0, 45.0, 11.0, 45.0])
LOWER_LID = 0.2  # the share of a blink's closing the lower lid makes, rising to meet the upper

REF_FACE = 170.0  # px: the face width the amplitudes below are given for
NOD_PX = 3.0  # a stressed syllable's nod, face moving down
BROW_PX = 3.0  # brows fully raised
BREATH_PX = 0.8
PAUSE_BLINK_P = 0.9  # chance of a blink at a pause in the speech
END_BLINK_P = 0.85  # ... and at the end of a reply
SILENT = 0.15  # energy below this is a pause
ONSET = 0.2  # energy rise over the last ~160 ms that makes a syllable onset


def frame_pitch(chunk: np.ndarray, sample_rate: int, fmin: float = 70.0, fmax: float = 400.0) -> float:
    """The f0 (Hz) of a short chunk (~40 ms) of mono int16 or float audio, 0.0 if unvoiced:
    the normalised cross-correlation of the chunk's start with its lagged copies."""
    x = np.asarray(chunk, np.float32)
    q = max(1, int(sample_rate // 8000))
    n = x.size // q
    if q > 1:  # a box filter then every q-th sample: ~8 kHz is plenty for f0
        x = x[: n * q].reshape(n, q).sum(1) * (1.0 / q)
    sr = sample_rate / q
    lo, hi = int(sr / fmax), int(sr / fmin) + 1
    w = n - hi - 1  # the window compared with each lag
    if w < 0.4 * n or w < 16:
        return 0.0
    x = x - x.mean()
    scale = 32768.0 if np.asarray(chunk).dtype == np.int16 else 1.0
    if float(np.dot(x, x)) / n < (scale * 10 ** (-45 / 20)) ** 2:
        return 0.0  # quieter than -45 dBFS
    head = x[:w]
    lags = np.arange(lo - 1, hi + 2)
    cc = np.correlate(x[lo - 1 : hi + 1 + w], head, "valid")
    c = np.concatenate(([0.0], np.cumsum(x * x, dtype=np.float64)))
    r = cc / np.sqrt(np.maximum(c[w] * (c[lags + w] - c[lags]), 1e-12))
    inner = r[1:-1]
    best = float(inner.max())
    if best < 0.5:
        return 0.0
    # the shortest lag nearly as good as the best: no octave drops to a subharmonic
    i = int(np.argmax(inner >= 0.9 * best)) + 1
    while i + 1 < r.size - 1 and r[i + 1] > r[i]:
        i += 1
    a, b, d = r[i - 1], r[i], r[i + 1]
    den = a - 2 * b + d
    shift = 0.5 * (a - d) / den if den < 0 else 0.0
    return float(sr / (lags[i] + shift))


class HeadMotion:
    """One session's motion state. ``step`` once a frame, in time order; not thread-safe."""

    def __init__(self, face_width: float, seed: int | np.random.Generator = 0) -> None:
        self.k = face_width / REF_FACE
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        # blinks draw from their own stream: a blink, or none, leaves the rest of the motion as it was
        self._blink_rng = np.random.default_rng(int(self.rng.integers(1 << 62)))
        self.pose = np.zeros(8)  # what the renderer draws
        self._v = np.zeros(8)
        self._tgt = np.zeros(8)
        self._last_t: float | None = None
        self._state: ConversationState | None = None
        # slow drift: filtered noise on tx, roll, nod, yaw
        self._drift_idx = np.array([TX, ROLL, NOD, YAW])
        self._drift_sigma = np.array([1.0, 0.008, 0.5, 1.0])
        self._drift_tau = np.array([3.0, 4.0, 2.5, 3.5])
        self._drift_scale = np.array([self.k, 1.0, self.k, self.k])
        self._ou = self.rng.standard_normal(4) * self._drift_sigma * 0.5
        self._drift = self._ou.copy()
        # breathing: one cycle at a time, each its own length and depth
        self._breath_start = float(-self.rng.uniform(0.0, 4.0))
        self._breath_len = float(self.rng.uniform(3.4, 5.0))
        self._breath_amp = float(self.rng.uniform(0.7, 1.0))
        # short events: (start, attack, release, parameter, amplitude)
        self._bumps: list[tuple[float, float, float, int, float]] = []
        self._offset = np.zeros(8)  # the state's and the phrase's pose offsets
        # speech
        self._energy = deque([0.0] * 4, maxlen=4)
        self._activity = 0.0
        self._voiced_since: float | None = None
        self._silent_frames = 0
        self._last_nod = -10.0
        self._next_nod = 0.0  # listening's next nod
        self._rise_avg = 0.25
        self._peak_avg = 0.7
        self._pitch: deque[float | None] = deque([None] * 8, maxlen=8)
        self._brow_hold = 0.0
        # gaze
        self._gaze = np.zeros(2)
        self._next_saccade = float(self.rng.uniform(0.5, 2.0))
        self._glance_until = -1.0
        # blinks
        self.blinks = True  # False: never blink (stills)
        self.next_blink = float(self._blink_rng.uniform(1.0, 3.0))
        self._blink = (-10.0, 0.08, 0.15)  # start, closing, opening
        self.blink = 0.0  # the lids' closure this frame, 0 (open) to 1 (shut)
        self.blink_log: deque[tuple[float, float]] = deque(maxlen=64)  # (start, duration), latest

    # ------------------------------------------------------------------ public
    def reset(self) -> None:
        """Interruption: drop the speech's pending nods and brow; the pose glides on."""
        self._bumps.clear()
        self._brow_hold = 0.0
        self._energy.extend([0.0] * 4)
        self._pitch.extend([None] * 8)
        self._voiced_since = None
        self._silent_frames = 0

    def step(self, state: ConversationState, t: float, energy: float = 0.0, pitch: float = 0.0) -> np.ndarray:
        """Advance to time ``t`` (s); returns the pose (8 values, owned by this object)."""
        last = self._last_t
        first = last is None
        dt = 0.04 if last is None else min(max(t - last, 0.0), 0.25)
        self._last_t = t
        speaking = state == ConversationState.SPEAKING
        e = min(max(float(energy), 0.0), 1.0) if speaking and math.isfinite(energy) else 0.0
        if state != self._state:
            self._enter(state, self._state, t)
            self._state = state
        if speaking:
            self._speech(t, dt, e, float(pitch) if pitch and math.isfinite(pitch) and pitch > 0 else 0.0)
        elif state == ConversationState.LISTENING and t >= self._next_nod:
            self._listening_nod(t)
        if t >= self._next_saccade:
            self._saccade(state, t)
        self._targets(t, dt, speaking)
        if first:
            self.pose[:] = self._tgt
        else:
            self._spring(dt)
        self.blink = self._blink_step(t)
        return self.pose

    def blink_at(self, t: float) -> float:
        """The lids' closure at ``t`` for the current blink: a quick close, a slower open."""
        s, c, o = self._blink
        p = t - s
        if p < 0 or p >= c + o:
            return 0.0
        if p < c:
            return 0.5 - 0.5 * math.cos(math.pi * p / c)
        return 0.5 + 0.5 * math.cos(math.pi * (p - c) / o)

    # ------------------------------------------------------------------ events
    def _enter(self, state: ConversationState, before: ConversationState | None, t: float) -> None:
        rng, k = self.rng, self.k
        off = self._offset
        off[:] = 0.0
        if before == ConversationState.SPEAKING:
            self._maybe_blink(t, END_BLINK_P)
            self._new_breath(t)
        if state == ConversationState.LISTENING:
            off[ROLL] = 0.012 * (1 if rng.random() < 0.5 else -1)  # an attentive tilt
            self._next_nod = t + float(rng.uniform(0.6, 2.0))
        elif state == ConversationState.THINKING:
            side = 1 if rng.random() < 0.5 else -1
            off[YAW] = 1.5 * k * side
            off[NOD] = -1.0 * k
            off[BROW] = 0.8 * k
            self._gaze[:] = (0.7 * side, -0.45)
            self._glance_until = t + float(rng.uniform(0.8, 1.6))
            self._next_saccade = self._glance_until
        elif state == ConversationState.SPEAKING:
            self._phrase(t)

    def _phrase(self, t: float) -> None:
        """A new phrase: a new head position, and now and then a glance away as it starts."""
        rng, k = self.rng, self.k
        self._offset[YAW] = float(rng.uniform(-1.5, 1.5)) * k
        self._offset[TX] = float(rng.uniform(-1.0, 1.0)) * k
        self._offset[ROLL] = float(rng.uniform(-0.01, 0.01))
        if rng.random() < 0.2:
            self._gaze[:] = (float(rng.choice((-0.45, 0.45))), float(rng.uniform(-0.3, 0.1)))
            self._glance_until = t + float(rng.uniform(0.3, 0.7))
            self._next_saccade = self._glance_until
        else:
            self._gaze[:] = self.rng.normal(0.0, 0.1, 2)

    def _speech(self, t: float, dt: float, e: float, f0: float) -> None:
        hist = self._energy
        floor = min(hist)
        self._activity += (e - self._activity) * (1 - math.exp(-dt / 1.5))
        # pauses: a blink and a breath; the next sound starts a phrase
        if e < SILENT:
            self._silent_frames += 1
            if self._silent_frames == 2 and self._voiced_since is not None and t - self._voiced_since > 0.25:
                self._maybe_blink(t, PAUSE_BLINK_P)
                self._new_breath(t)
                self._voiced_since = None
        else:
            if self._voiced_since is None:
                if self._silent_frames * dt >= 0.2:
                    self._phrase(t)
                self._voiced_since = t
            self._silent_frames = 0
        # pitch: semitones over the lowest of the last ~300 ms of voiced speech
        pitches = self._pitch
        rise = 0.0
        if f0 > 0:
            st = 12.0 * math.log2(f0 / 100.0)
            low = min((v for v in pitches if v is not None), default=st)
            rise = st - low
            pitches.append(st)
        else:
            pitches.append(None)
        level = min(max((rise - 0.5) / 2.0, 0.0), 1.0)
        self._brow_hold = max(level, self._brow_hold * math.exp(-dt / 0.4))
        # syllable peaks: their usual loudness, to tell the stressed ones
        if hist[-1] >= hist[-2] and hist[-1] > e and hist[-1] > SILENT:
            self._peak_avg += (hist[-1] - self._peak_avg) * 0.1
        # a stressed syllable: loud, rising steeply and already as loud as the usual peaks,
        # so the nod's downstroke meets the syllable's peak
        lift = e - floor
        if lift > ONSET and e - hist[-1] > 0.03 and e >= self._peak_avg + 0.05 and t - self._last_nod > 0.3:
            w = lift / self._rise_avg
            self._rise_avg += (lift - self._rise_avg) * 0.15
            if rise > 1.0:
                w *= 1.3  # a pitch accent stresses it too
            amp = NOD_PX * self.k * min(max(w, 0.5), 1.8) * (0.6 + 0.4 * e)
            self._bump(t, 0.10, 0.32, NOD, amp)
            self._bump(t, 0.15, 0.4, YAW, amp * float(self.rng.uniform(-0.4, 0.4)))
            self._last_nod = t
        hist.append(e)

    def _listening_nod(self, t: float) -> None:
        rng, k = self.rng, self.k
        amp = 2.5 * k * float(rng.uniform(0.6, 1.0))
        self._bump(t, 0.25, 0.45, NOD, amp)
        if rng.random() < 0.3:  # a double nod
            self._bump(t + 0.45, 0.2, 0.4, NOD, 0.7 * amp)
        if rng.random() < 0.25:
            self._bump(t, 0.25, 0.7, BROW, 2.0 * k)
        self._next_nod = t + 1.2 + float(rng.gamma(3.0, 0.8))

    def _saccade(self, state: ConversationState, t: float) -> None:
        rng = self.rng
        if state == ConversationState.SPEAKING:
            self._gaze[:] = rng.normal(0.0, 0.12, 2)  # mostly at the camera
            wait = rng.uniform(1.5, 4.0)
        elif state == ConversationState.LISTENING:
            near = rng.random() < 0.6  # mostly at the user's face
            self._gaze[:] = rng.normal(0.0, 0.12 if near else 0.45, 2)
            wait = rng.uniform(1.0, 4.0)
        else:
            self._gaze[:] = rng.normal(0.0, 0.4, 2)
            wait = rng.uniform(1.0, 4.0)
        self._gaze[1] *= 0.5
        np.clip(self._gaze, -0.9, 0.9, out=self._gaze)
        self._next_saccade = t + float(wait)
        if state != ConversationState.SPEAKING and rng.random() < 0.2:
            self._maybe_blink(t, 1.0, after=1.5)  # saccades often come with a blink

    def _bump(self, t: float, attack: float, release: float, i: int, amp: float) -> None:
        self._bumps.append((t, attack, release, i, amp))

    def _new_breath(self, t: float) -> None:
        self._breath_start = t
        self._breath_len = float(self.rng.uniform(3.4, 5.0))
        self._breath_amp = float(self.rng.uniform(0.7, 1.0))

    def _maybe_blink(self, t: float, p: float, after: float = 0.8) -> None:
        """A blink within 80 ms, with probability p, unless the last began under ``after`` s ago."""
        s, c, o = self._blink
        if self._blink_rng.random() < p and t - s > after:
            self.next_blink = min(self.next_blink, t + float(self._blink_rng.uniform(0.0, 0.08)))

    # ------------------------------------------------------------------ per frame
    def _targets(self, t: float, dt: float, speaking: bool) -> None:
        rng, k = self.rng, self.k
        tgt = self._tgt
        np.copyto(tgt, self._offset)
        # drift: Ornstein-Uhlenbeck noise, low-passed; livelier while speaking
        tau = self._drift_tau
        sigma = self._drift_sigma * ((1.0 + 1.2 * self._activity) if speaking else 1.0)
        self._ou += -self._ou * (dt / tau) + sigma * np.sqrt(2 * dt / tau) * rng.standard_normal(4)
        self._drift += (self._ou - self._drift) * (1 - math.exp(-dt / 0.6))
        tgt[self._drift_idx] += self._drift * self._drift_scale
        # breathing: a faster inhale raises the head a little, a slower exhale lowers it
        p = (t - self._breath_start) / self._breath_len
        if p >= 1.0:
            self._breath_start += self._breath_len * math.floor(p)
            self._breath_len = float(rng.uniform(3.4, 5.0))
            self._breath_amp = float(rng.uniform(0.7, 1.0))
            p = (t - self._breath_start) / self._breath_len
        b = 0.5 - 0.5 * math.cos(math.pi * p / 0.4) if p < 0.4 else 0.5 + 0.5 * math.cos(math.pi * (p - 0.4) / 0.6)
        depth = BREATH_PX * k * self._breath_amp * (0.4 if speaking else 1.0) * b
        tgt[TY] -= depth
        tgt[NOD] -= 0.3 * depth
        # events
        alive = []
        for bump in self._bumps:
            s, a, r, i, amp = bump
            q = t - s
            if q < 0:
                alive.append(bump)
                continue
            if q >= a + r:
                continue
            alive.append(bump)
            shape = math.sin(0.5 * math.pi * q / a) ** 2 if q < a else math.cos(0.5 * math.pi * (q - a) / r) ** 2
            tgt[i] += amp * shape
        self._bumps = alive
        if speaking:
            tgt[BROW] += BROW_PX * k * self._brow_hold
        if t >= self._glance_until > 0:
            self._glance_until = -1.0
            self._gaze[:] = self.rng.normal(0.0, 0.1, 2)
        tgt[GAZE_X], tgt[GAZE_Y] = self._gaze

    def _spring(self, dt: float) -> None:
        """Critically damped springs, solved exactly for the frame's step: any dt is stable."""
        x, v = self.pose, self._v
        c1 = x - self._tgt
        c2 = v + OMEGA * c1
        decay = np.exp(-OMEGA * dt)
        c1 += c2 * dt
        x[:] = self._tgt + c1 * decay
        v[:] = (c2 - OMEGA * c1) * decay

    def _blink_step(self, t: float) -> float:
        s, c, o = self._blink
        if self.blinks and t >= self.next_blink and t - s >= c + o:
            rng = self._blink_rng
            c, o = float(rng.uniform(0.07, 0.10)), float(rng.uniform(0.13, 0.20))
            self._blink = (t, c, o)
            self.blink_log.append((t, c + o))
            # speech's pauses bring blinks of their own: fewer at random meanwhile
            self.next_blink = t + float(rng.uniform(3.0, 8.0) if self._state == ConversationState.SPEAKING else rng.uniform(2.0, 6.0))
        return self.blink_at(t)
