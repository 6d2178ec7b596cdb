"""Pass one of building a footage avatar, the speech side: the clip's own A/V offset, how
its measured mouth shapes map onto the lip-sync model's channels, where it speaks, and
its idle, listening and talking parts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .avatar import PartRangeError
from .footage import CHANNELS, LOOP_NAMES
from .footage_analysis import CROSSFADE, FPS, MIN_PART_S, Pose, true_runs


def channels_at_frames(channels: np.ndarray, fps_model: float, n: int, shift_s: float) -> np.ndarray:
    """The lip-sync channels the frames show: frame i shows audio time i/FPS - shift_s."""
    t = np.arange(n) / FPS - shift_s
    tm = np.arange(len(channels)) / fps_model
    return np.stack([np.interp(t, tm, channels[:, k], left=channels[0, k], right=channels[-1, k])
                     for k in range(channels.shape[1])], 1)


def estimate_offset(jaw: np.ndarray, fps_model: float, gap: np.ndarray, found: np.ndarray) -> tuple[float, float]:
    """How much later the picture is than the sound (ms), from the lip-sync model's opening on
    the clip's audio against the measured lip gap, and the peak correlation behind it."""
    t_model = np.arange(len(jaw)) / fps_model
    frames = np.flatnonzero(found)
    g = np.interp(t_model, frames / FPS, gap[frames])
    ok = np.interp(t_model, np.arange(len(found)) / FPS, found.astype(float)) > 0.5
    w = int(round(0.8 * fps_model))
    box = np.ones(w) / w

    def highpass(x: np.ndarray) -> np.ndarray:  # slow drift (posture, smiles) is not speech
        return x - np.convolve(np.pad(x, (w // 2, w - 1 - w // 2), mode="edge"), box, "valid")

    a, b = highpass(g), highpass(jaw)
    max_lag = int(round(0.5 * fps_model))
    lags = np.arange(-max_lag, max_lag + 1)
    r = np.full(len(lags), -1.0)
    for i, lag in enumerate(lags):  # picture at t + lag against sound at t
        if lag >= 0:
            x, y, m = a[lag:], b[: len(b) - lag], ok[lag:]
        else:
            x, y, m = a[:lag], b[-lag:], ok[:lag]
        if m.sum() > fps_model:
            xs, ys = x[m], y[m]
            if xs.std() > 0 and ys.std() > 0:
                r[i] = float(np.corrcoef(xs, ys)[0, 1])
    k = int(np.argmax(r))
    best = float(lags[k])
    if 0 < k < len(r) - 1:  # parabolic peak between samples
        den = r[k - 1] - 2 * r[k] + r[k + 1]
        if den < 0:
            best += 0.5 * (r[k - 1] - r[k + 1]) / den
    return best / fps_model * 1000.0, float(r[k])


@dataclass
class Calibration:
    keys: np.ndarray  # (n, 5) per frame
    meta: dict


def calibrate(shapes: np.ndarray, found: np.ndarray, talking: np.ndarray, audio_ch: np.ndarray | None) -> Calibration:
    """Channel keys for every frame's measured mouth. The opening and the lip shape are
    mapped onto the clip's own channel distributions (computed from its audio), so the
    person's widest mouth means the model's widest opening; without audio, fixed ranges."""
    gap, width, lower = shapes[:, 0], shapes[:, 1], shapes[:, 2]
    ok = found & np.isfinite(gap)
    # a narrower mouth than the person's usual is rounder, a wider one more spread (the raw
    # width, as a viewer sees it: taking out the narrowing of an open jaw measured worse)
    lip_shape = width - float(np.median(width[ok]))
    keys = np.zeros((len(gap), len(CHANNELS)), np.float32)
    closed = np.clip((0.03 - gap) / 0.015, 0, 1)
    med_lower = float(np.median(lower[ok]))
    labio = np.clip((1 - lower / max(med_lower, 1e-6)) / 0.35, 0, 1) * (gap < 0.03)
    q = np.linspace(0, 100, 51)
    sel = ok & talking if (ok & talking).sum() >= 25 else ok
    meta: dict = {"median_width": round(float(np.median(width[ok])), 4)}
    if audio_ch is not None:
        def mapped(feature: np.ndarray, channel: np.ndarray) -> np.ndarray:
            return np.interp(feature, np.percentile(feature[sel], q), np.percentile(channel[sel], q))

        jaw = mapped(gap, audio_ch[:, 0])
        rnd = mapped(-lip_shape, audio_ch[:, 2])
        spread = mapped(lip_shape, audio_ch[:, 3])
        meta["method"] = "the clip's measured mouth shapes mapped onto its audio's channel distributions"
    else:
        jaw = np.clip((gap - 0.01) / 0.09, 0, 1)
        rnd = np.clip(-lip_shape / 0.04, 0, 1)
        spread = np.clip(lip_shape / 0.04, 0, 1)
        meta["method"] = "default ranges (the clip has no audio)"
    keys[:, 0], keys[:, 1], keys[:, 2], keys[:, 3], keys[:, 4] = jaw, closed, rnd, spread, labio
    keys[~ok] = 0
    if audio_ch is not None:
        fit = {}
        for k, name in enumerate(CHANNELS):
            a, b = keys[sel, k], audio_ch[sel, k]
            fit[name] = round(float(np.corrcoef(a, b)[0, 1]), 3) if a.std() > 0 and b.std() > 0 else None
        meta["fit_r"] = fit  # keys against the audio's channels: real mouths follow sound loosely
    return Calibration(keys, meta)


# ----------------------------------------------------------------------------- parts


def voiced_frames(audio: np.ndarray, n: int) -> np.ndarray:
    """Voice activity per frame from the audio's loudness, with hangover and gap closing."""
    hop = 16000 / FPS
    db = np.full(n, -120.0)
    for i in range(n):
        seg = audio[int(i * hop): int((i + 1) * hop)]
        if len(seg):
            db[i] = 10 * np.log10(float(np.mean(seg.astype(np.float64) ** 2)) + 1e-12)
    floor, top = np.percentile(db, 10), np.percentile(db, 95)
    if top - floor < 10:  # one level throughout: all speech or all silence
        return np.full(n, top > -45)
    v = db > floor + max(10.0, 0.35 * (top - floor))
    v = close_gaps(v, int(0.6 * FPS))
    for a, b in true_runs(v):
        if b - a < 0.3 * FPS:
            v[a:b] = False
    return _dilate(v, int(0.15 * FPS))


def close_gaps(v: np.ndarray, gap: int) -> np.ndarray:
    v = v.copy()
    for a, b in true_runs(~v):
        if 0 < a and b < len(v) and b - a < gap:
            v[a:b] = True
    return v


def _dilate(v: np.ndarray, r: int) -> np.ndarray:
    out = v.copy()
    for a, b in true_runs(v):
        out[max(0, a - r): b + r] = True
    return out


def moving_mouth(gap: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Talking without audio: the lip gap keeps changing."""
    g = np.where(found, gap, np.nan)
    w = int(FPS)
    sd = np.array([np.nanstd(g[max(0, i - w // 2): i + w // 2 + 1]) if found[i] else 0.0 for i in range(len(g))])
    return close_gaps(np.nan_to_num(sd) > 0.008, int(0.6 * FPS))


def _expressiveness(pose: Pose, frames: np.ndarray) -> float:
    """Brow raises, smiles and nods: how much a silent stretch shows attention."""
    q = pose.canonical[frames] / pose.face_width
    brows = (q[:, [105, 334], 1].mean(1) - q[:, [159, 386], 1].mean(1))
    width = np.linalg.norm(q[:, 61] - q[:, 291], axis=1)
    return float(np.std(brows) + np.std(width) + np.std(pose.poses[frames, 1]))


def find_parts(
    found: np.ndarray, talking: np.ndarray, pose: Pose, user: dict[str, tuple[float, float]]
) -> dict[str, np.ndarray | None]:
    """Frames for idle, listening and talking (None: the clip lacks that part)."""
    n = len(found)
    parts: dict[str, np.ndarray | None] = {}
    claimed = np.zeros(n, bool)
    for name, (a, b) in user.items():
        m = np.zeros(n, bool)
        m[int(a * FPS + 0.5): int(b * FPS + 0.5)] = True
        if not (m & found).any():
            raise PartRangeError(f"--{name} {a:g}-{b:g}: no frame with a face in that range")
        parts[name] = m & found
        claimed |= m
    if "talking" not in parts:
        parts["talking"] = talking & found & ~claimed if (talking & found & ~claimed).sum() >= FPS else None
    silent = [(a, b) for a, b in true_runs(~talking & found & ~claimed) if b - a >= MIN_PART_S * FPS]
    free = [name for name in ("idle", "listening") if name not in parts]
    if free and silent:
        scored = sorted(silent, key=lambda r: _expressiveness(pose, np.arange(*r)))
        pick = {"idle": scored[0], "listening": scored[-1]}
        for name in free:
            m = np.zeros(n, bool)
            m[slice(*pick[name])] = True
            parts[name] = m
    for name in LOOP_NAMES:
        parts.setdefault(name, None)
    return parts


# ----------------------------------------------------------------------------- loops


def loop_range(frames: np.ndarray, pose: Pose, thumbs: np.ndarray, max_s: float) -> tuple[int, int]:
    """[a, b) inside the longest run of ``frames``, at most ``max_s`` long, whose closing
    frames look most like the frames before its start (head position first), so the
    crossfade that joins them shows no double image."""
    a0, b0 = max(true_runs(frames), key=lambda r: r[1] - r[0])
    first = min(a0 + CROSSFADE, b0 - 1)  # frames before the start feed the closing crossfade
    length = min(b0 - first, int(max_s * FPS))
    if b0 - first <= length + 2 or length < 3 * CROSSFADE:
        return first, first + length
    head = np.einsum("nij,kj->nki", pose.transforms[:, :, :2], pose.template) + pose.transforms[:, None, :, 2]
    feat = np.concatenate([head.reshape(len(head), -1), thumbs.reshape(len(thumbs), -1) / 8.0], 1)
    k = np.arange(CROSSFADE)
    best, pick = np.inf, (first, first + length)
    for a in range(first, b0 - int(0.6 * length) + 1):
        ends = np.arange(a + int(0.6 * length), min(a + length, b0) + 1)
        # the window ending each candidate loop against the window before its start
        d = np.abs(feat[ends[:, None] - CROSSFADE + k] - feat[a - CROSSFADE + k][None]).mean((1, 2))
        d -= 0.02 * (ends - a) / FPS  # prefer long loops a little
        j = int(np.argmin(d))
        if d[j] < best:
            best, pick = float(d[j]), (a, int(ends[j]))
    return pick


# ----------------------------------------------------------------------------- atlas geometry
