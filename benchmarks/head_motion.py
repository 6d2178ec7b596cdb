"""Eyes and head of the photo renderer, measured back off the frames, before and after.

Held-out flite utterances (``evaluation.picture``'s speech: the lip-sync model's held-out
family) are rendered as replies with the default avatar at 512x512, each after an idle
lead-in, paced and fed as the generator feeds a renderer (energy and f0 of each frame's
audio); then the user talks (listening) and nobody does (idle). Every frame is read back:
the face mesh finds the face, the lids (blinks) and the eye corners, the iris model the
iris; small patches placed by the first frame's mesh are block matched against that frame
to 1/8 px for the head's pitch (the nose's height: the mesh's nose-tip point moves with
the jaw), the brows and the skin under the lower lids (each over the nose: the mesh's brow
and lower-lid points follow their pixels only partly). The renderer before the
change is taken from git.

What the frames are compared with comes from the audio alone, at 10 ms steps:

* stressed syllables: loudness peaks (150 ms apart, 3 dB over the dips either side)
  louder than the utterance's median peak;
* pitch rises: f0 rising by 2 semitones within 250 ms;
* pauses: the phone labels' inner pauses of 100 ms or more, and each reply's end (its
  trailing pause and the 600 ms after the audio).

Figures: the share of nods (peaks of the head's downward speed) within 150 ms of a
stressed syllable, against the same nods shuffled over the speech; the brows' lift in the
400 ms after a pitch rise, against shuffled times; the strongest frequency of the head's
motion while speaking and the share of 0.5-5 Hz power within 0.15 Hz of it; the share of
blinks in pauses, against the share of time the pauses take; the lower lid's travel in a
blink; the iris's spread; the head's when not speaking.

    .venv/bin/python benchmarks/head_motion.py [--utterances 12] [--plot docs/img/head_motion.png]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.evaluation.picture import LEAD_IN_S  # noqa: E402
from livekit_avatar_plugin._face import landmarks as L  # noqa: E402
from livekit_avatar_plugin._face.tracking import FaceTracker, face_width  # noqa: E402
from livekit_avatar_plugin._generator import LOOK_AHEAD_FRAMES, _energy  # noqa: E402
from livekit_avatar_plugin._pipeline import load_pipeline  # noqa: E402
from livekit_avatar_plugin._render.motion import PITCH_KEY, frame_pitch  # noqa: E402
from livekit_avatar_plugin._state import ConversationState as S  # noqa: E402
from livekit_avatar_plugin.training.data import cache_dir  # noqa: E402
from livekit_avatar_plugin.training.evaluate import get_eval_set  # noqa: E402
from tests.git_versions import module_at  # noqa: E402

BEFORE = "1f6b36f25d278142ac38e50cf5c59cdb1b8d9da8"  # the last commit with sine-wave head motion
FPS = 25.0
HOP = 0.01  # s: the audio's features
NEAR = 0.15  # s: a nod this close to a stressed syllable is on it
LISTEN_S, IDLE_S = 30.0, 30.0
BROWS = (L.RIGHT_BROW, L.LEFT_BROW)
LIDS = ((159, 145, 33, 133), (386, 374, 362, 263))  # upper mid, lower mid, corners


@dataclass
class Reply:
    start: int  # its first speech frame in the run
    n: int
    stresses: np.ndarray  # s from the reply's start
    rises: np.ndarray
    pauses: list[tuple[float, float]]  # inner pauses and the reply's end, s from its start
    speech_s: float


@dataclass
class Run:
    """Per-frame measures of one renderer's run, in face widths (eye measures: eye widths)."""

    head: list[float] = field(default_factory=list)  # nose tip height, down positive
    open: list[float] = field(default_factory=list)  # lid gap over eye width
    fw: list[float] = field(default_factory=list)  # face width (px)
    gap: list[float] = field(default_factory=list)  # lid gap (px)
    nose_px: list[float] = field(default_factory=list)  # the nose's rise since the first frame (px)
    brow_px: list[float] = field(default_factory=list)  # brows' rise over the nose's (px)
    lid_px: list[float] = field(default_factory=list)  # the lower lids' rise over the nose's (px)
    iris: list[float] = field(default_factory=list)  # iris centre right of the eye's middle
    state: list[str] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in vars(self).items()}


# -- the audio's events ------------------------------------------------------------------------


def _loudness(pcm: np.ndarray, sr: int) -> np.ndarray:
    """dBFS at HOP steps, over 30 ms windows."""
    hop, win = int(sr * HOP), int(sr * 0.03)
    x = pcm.astype(np.float64) / 32768.0
    n = max(1, (len(x) - win) // hop + 1)
    rms = np.array([math.sqrt(np.mean(x[i * hop : i * hop + win] ** 2) + 1e-12) for i in range(n)])
    return 20 * np.log10(rms + 1e-6)


def _stresses(db: np.ndarray) -> np.ndarray:
    """Times (s) of syllable peaks (loudness maxima 150 ms apart, 3 dB over the dips either
    side) louder than the utterance's median peak: the stressed syllables."""
    db = np.convolve(db, np.ones(5) / 5, "same")
    w = int(0.15 / HOP)
    cand = [i for i in range(1, len(db) - 1) if db[i] >= db[i - 1] and db[i] > db[i + 1] and db[i] > -45
            and db[i] - max(db[max(0, i - w) : i].min(initial=db[i]), db[i + 1 : i + 1 + w].min(initial=db[i])) >= 3.0]
    peaks = _peaks_apart(cand, db, w)
    if not peaks:
        return np.zeros(0)
    level = db[peaks]
    return np.array([p for p, v in zip(peaks, level) if v >= np.median(level)]) * HOP


def _peaks_apart(idx: list[int], v: np.ndarray, gap: int) -> list[int]:
    """Of the candidate indices, the largest values at least gap apart."""
    keep: list[int] = []
    for i in sorted(idx, key=lambda j: -v[j]):
        if all(abs(i - j) >= gap for j in keep):
            keep.append(i)
    return sorted(keep)


def _rises(pcm: np.ndarray, sr: int) -> np.ndarray:
    """Times (s) where f0 has risen 2 semitones within 250 ms: the first step of each rise."""
    hop, win = int(sr * HOP), int(sr * 0.04)
    f0 = np.array([frame_pitch(pcm[i : i + win], sr) for i in range(0, len(pcm) - win, hop)])
    st = np.where(f0 > 0, 12 * np.log2(np.maximum(f0, 1) / 100.0), np.nan)
    out, last = [], -1.0
    for i in range(len(st)):
        if np.isnan(st[i]):
            continue
        back = st[max(0, i - 25) : i]
        if np.isfinite(back).any() and st[i] - np.nanmin(back) >= 2.0 and i * HOP - last > 0.5:
            out.append(i * HOP)
            last = i * HOP
    return np.array(out)


# -- rendering and tracking --------------------------------------------------------------------


class _Patches:
    """Vertical shifts of small patches against the run's first frame, to 1/8 px: the nose,
    and the brows and the skin under the lower lids, each over the nose (the mesh's brow and
    lower-lid points follow their pixels only partly). Placed by the first frame's mesh."""

    SEARCH = 10  # px either way

    def __init__(self, gray: np.ndarray, p: np.ndarray) -> None:
        fw = face_width(p)
        self.gray = gray
        h = max(4, round(0.06 * fw))
        # the nose's tip and nostrils: textured, and above the jaw's reach in the renderer
        nose = (p[4, 1], p[4, 0], 0.08 * fw, h)
        brows = [(p[list(b), 1].mean(), p[list(b), 0].mean(), 0.08 * fw, h) for b in BROWS]
        # the skin just under each lower lid's line, which moves only if that lid does
        lids = [(p[lo, 1] + 0.022 * fw, p[lo, 0], 0.04 * fw, max(2, round(0.016 * fw))) for _, lo, _, _ in LIDS]
        self.boxes = {"nose": [nose], "brow": brows, "lid": lids}
        self.refs = {k: [self._profile(gray, b, 0.0) for b in v] for k, v in self.boxes.items()}

    @staticmethod
    def _profile(gray: np.ndarray, box, dy: float) -> np.ndarray:
        cy, cx, half_w, half_h = box
        cols = gray[:, int(cx - half_w) : int(cx + half_w) + 1].mean(1)
        ys = np.arange(cy - half_h, cy + half_h + 1) + dy
        return np.interp(ys, np.arange(len(cols)), cols)

    def shift(self, gray: np.ndarray, name: str) -> float:
        """The patches' mean vertical shift (px, up positive)."""
        out = []
        for box, ref in zip(self.boxes[name], self.refs[name]):
            best = 0.0
            for steps in (np.arange(-self.SEARCH, self.SEARCH + 1.0), np.arange(-1.0, 1.01, 0.125)):
                steps = steps + best  # whole pixels, then eighths around the best
                err = [np.abs(self._profile(gray, box, dy) - ref).mean() for dy in steps]
                best = float(steps[int(np.argmin(err))])
            out.append(-best)
        return float(np.mean(out))


def _measure_frame(tracker: FaceTracker, rgb: np.ndarray, run: Run, state: str, patches: list) -> None:
    face = tracker.update(rgb)
    run.state.append(state)
    if face is None:
        for k in ("head", "open", "fw", "gap", "iris", "nose_px", "brow_px", "lid_px"):
            getattr(run, k).append(np.nan)
        return
    p = face.points
    gray = rgb.astype(np.float32).mean(-1)
    if not patches:
        patches.append(_Patches(gray, p))
    nose = patches[0].shift(gray, "nose")
    run.nose_px.append(nose)
    run.brow_px.append(patches[0].shift(gray, "brow") - nose)
    run.lid_px.append(patches[0].shift(gray, "lid") - nose)
    fw = face_width(p)
    run.head.append(p[L.NOSE_TIP, 1] / fw)
    opens, gaps, irises = [], [], []
    for (u, lo, c0, c1), corners, flip in zip(LIDS, (L.RIGHT_EYE_CORNERS, L.LEFT_EYE_CORNERS), (False, True)):
        ew = float(np.hypot(*(p[c1, :2] - p[c0, :2])))
        opens.append((p[lo, 1] - p[u, 1]) / ew)
        gaps.append(p[lo, 1] - p[u, 1])
        iris = L._run_iris(rgb, p, corners, flip)
        irises.append((iris[0, 0] - (p[c0, 0] + p[c1, 0]) / 2) / ew)
    run.open.append(float(np.mean(opens)))
    run.fw.append(fw)
    run.gap.append(float(np.mean(gaps)))
    run.iris.append(float(np.mean(irises)))


def render_run(make_renderer, utts, motion, channels) -> tuple[Run, list[Reply]]:
    renderer = make_renderer()
    look_ahead = getattr(renderer, "look_ahead", None)
    tracker = FaceTracker()
    run, replies, patches = Run(), [], []
    rest = dict.fromkeys(channels, 0.0)
    index = 0
    n_lead = max(1, round(LEAD_IN_S * FPS))

    def show(mouth, state, energy=0.0):
        nonlocal index
        rgb = renderer.render(mouth, state, index / FPS, energy)
        index += 1
        _measure_frame(tracker, rgb, run, state.value, patches)

    for u in utts:
        pcm = np.clip(np.round(u.audio * 32768.0), -32768, 32767).astype(np.int16)
        rows = [r for r in (motion.push(pcm, u.sr), motion.flush()) if len(r)]
        motion.reset()
        mouth = np.concatenate(rows)
        n = math.ceil(len(pcm) / (u.sr / FPS))
        centres = (np.arange(n) + 0.5) / FPS
        at = np.stack([np.interp(centres * motion.fps, np.arange(len(mouth)), mouth[:, c])
                       for c in range(len(channels))], 1)  # fmt: skip
        for _ in range(n_lead):
            show(rest, S.IDLE)
        spf = u.sr / FPS
        start = index
        for k in range(n):
            chunk = pcm[int(round(k * spf)) : int(round((k + 1) * spf))]
            chunk = np.pad(chunk, (0, max(0, int(round(spf)) - len(chunk))))
            m = {name: float(at[k, c]) for c, name in enumerate(channels)}
            m[PITCH_KEY] = frame_pitch(chunk, u.sr)  # as the generator hands it over
            if look_ahead is not None and k + 1 < n:
                look_ahead(channels, at[k + 1 : k + 1 + LOOK_AHEAD_FRAMES])
            show(m, S.SPEAKING, _energy(chunk))
        # the speech ends where its trailing pause (or the audio) begins
        end = max(e for ph, s, e in u.segs if ph != "pau")
        inner = [(s, e) for ph, s, e in u.segs if ph == "pau" and e - s >= 0.1 and s > 0.05 and e < end]
        replies.append(Reply(start, n, _stresses(_loudness(pcm, u.sr)), _rises(pcm, u.sr),
                             inner + [(end, max(end, n / FPS) + 0.6)], end))
    for _ in range(int(LISTEN_S * FPS)):
        show(rest, S.LISTENING)
    for _ in range(int(IDLE_S * FPS)):
        show(rest, S.IDLE)
    return run, replies


# -- figures -----------------------------------------------------------------------------------


def _fill(x: np.ndarray) -> np.ndarray:
    """NaNs (face not found) filled from their neighbours."""
    ok = np.isfinite(x)
    if ok.all() or not ok.any():
        return x
    i = np.arange(len(x))
    return np.interp(i, i[ok], x[ok])


def _peaks(v: np.ndarray, floor: float, gap: int = 5) -> np.ndarray:
    """Local maxima of v over floor, at least gap frames apart (the larger kept)."""
    idx = [i for i in range(1, len(v) - 1) if v[i] > floor and v[i] >= v[i - 1] and v[i] > v[i + 1]]
    return np.array(_peaks_apart(idx, v, gap), int)


def _blinks(open_: np.ndarray) -> np.ndarray:
    """Frames where the lid gap first falls under 80 % of its usual (median) value (the face
    mesh reads a shut eye as about two thirds open)."""
    shut = open_ < 0.8 * np.nanmedian(open_)
    return np.flatnonzero(shut & ~np.r_[False, shut[:-1]])


def figures(run: Run, replies: list[Reply], rng: np.random.Generator) -> dict[str, float]:
    a = run.arrays()
    brow, lids, iris = (_fill(a[k]) for k in ("brow_px", "open", "iris"))
    # head pitch: the nose's height, block matched (the mesh's nose-tip point follows the jaw)
    head = -_fill(a["nose_px"]) / np.nanmedian(a["fw"])
    fig: dict[str, float] = {"face_found": float(np.isfinite(a["head"]).mean())}
    # head-pitch speed (face widths a second, down positive), smoothed over 3 frames
    vel = np.convolve(np.gradient(head) * FPS, np.ones(3) / 3, "same")
    speech = np.zeros(len(head), bool)
    for r in replies:
        speech[r.start : r.start + r.n] = True
    # a nod: a downward speed peak in the top fifth of speech's, and over 3 sd of the idle
    # frames' tracking noise
    idle = vel[a["state"] == "idle"]
    noise = 1.4826 * np.median(np.abs(idle - np.median(idle))) if len(idle) else 0.0
    floor = max(float(np.percentile(vel[speech], 80)), 3 * noise)
    near, shuffled, n_nods, recall = [], [], 0, []
    for r in replies:
        if not len(r.stresses):
            continue
        nods = _peaks(vel[r.start : r.start + r.n], floor)
        times = (nods + 0.5) / FPS
        n_nods += len(nods)
        dist = lambda ts: np.abs(ts[:, None] - r.stresses[None, :]).min(1) if len(ts) else np.zeros(0)  # noqa: E731
        near.extend(dist(times) <= NEAR)
        for _ in range(200):
            shuffled.extend(dist(rng.uniform(0, r.n / FPS, len(times))) <= NEAR)
        if len(times):
            recall.extend(np.abs(r.stresses[:, None] - times[None, :]).min(1) <= NEAR)
    fig["nods"] = n_nods
    fig["nods_on_stress"] = float(np.mean(near)) if near else math.nan
    fig["nods_on_stress_shuffled"] = float(np.mean(shuffled)) if shuffled else math.nan
    fig["stresses_with_nod"] = float(np.mean(recall)) if recall else math.nan
    # brows after pitch rises, against random times in the same replies
    lift, base = [], []
    for r in replies:
        b = brow[r.start : r.start + r.n]
        b = b - np.median(b)
        w = int(0.4 * FPS)
        lift.extend(b[int(t0 * FPS) : int(t0 * FPS) + w].max() for t0 in r.rises if int(t0 * FPS) < len(b))
        base.extend(b[i : i + w].max() for i in rng.integers(0, len(b), 50 * max(1, len(r.rises))))
    fig["pitch_rises"] = len(lift)
    fig["brow_lift_at_rises"] = float(np.nanmean(lift)) if lift else math.nan
    fig["brow_lift_shuffled"] = float(np.nanmean(base)) if base else math.nan
    # the head's spectrum while speaking
    freqs = np.fft.rfftfreq(256, 1 / FPS)
    power = np.zeros(len(freqs))
    for r in replies:
        x = head[r.start : r.start + r.n]
        if len(x) < 32:
            continue
        x = (x - np.polyval(np.polyfit(np.arange(len(x)), x, 1), np.arange(len(x)))) * np.hanning(len(x))
        power += np.abs(np.fft.rfft(x, 256)) ** 2
    band = (freqs >= 0.5) & (freqs <= 5.0)
    k = np.flatnonzero(band)[int(np.argmax(power[band]))]
    fig["head_peak_hz"] = float(freqs[k])
    fig["head_peak_share"] = float(power[band & (np.abs(freqs - freqs[k]) <= 0.15)].sum() / power[band].sum())
    # blinks: in pauses (and a reply's end), against the share of time the pauses take
    blinks = _blinks(lids)
    in_pause, met, pause_time, total_time = [], [], 0.0, 0.0
    for r in replies:
        span = r.n / FPS + 0.6
        total_time += span
        pause_time += sum(min(e + 0.3, span) - s for s, e in r.pauses)
        times = (blinks[(blinks >= r.start) & (blinks < r.start + r.n + 15)] - r.start + 0.5) / FPS
        in_pause.extend(any(s <= t0 <= e + 0.3 for s, e in r.pauses) for t0 in times)
        met.extend(bool(((times >= s) & (times <= e + 0.3)).any()) for s, e in r.pauses)
    fig["blinks_in_replies"] = len(in_pause)
    fig["blinks_in_pauses"] = float(np.mean(in_pause)) if in_pause else math.nan
    fig["pause_time_share"] = pause_time / total_time if total_time else math.nan
    fig["pauses"] = len(met)
    fig["pauses_with_blink"] = float(np.mean(met)) if met else math.nan
    fig["blinks_per_min"] = len(blinks) / (len(lids) / FPS / 60)
    # the lower lid in a blink: the rise of the skin under it, over the eye's open gap
    lid = _fill(a["lid_px"])
    rise = [lid[b : b + 4].max() - np.median(lid[max(0, b - 25) : b]) for b in blinks if b > 0]
    fig["lower_lid_travel"] = float(np.median(rise) / np.nanmedian(a["gap"])) if rise else math.nan
    # gaze: the iris's spread
    states = a["state"]
    for name, mask in (("speaking", speech), ("listening", states == "listening"), ("idle", states == "idle")):
        fig[f"gaze_sd_{name}"] = float(np.std(iris[mask])) if mask.any() else math.nan
    # breathing and attentive nods: the head's motion when not speaking
    for name in ("listening", "idle"):
        x = head[states == name]
        fig[f"head_sd_{name}"] = float(np.std(x)) if len(x) else math.nan
    return fig


LINES = (
    ("face found in frames", "face_found", "{:.0%}"),
    ("nods (head-pitch speed peaks) in speech", "nods", "{:.0f}"),
    (f"nods within {NEAR * 1000:.0f} ms of a stressed syllable", "nods_on_stress", "{:.0%}"),
    ("  ... the same nods shuffled", "nods_on_stress_shuffled", "{:.0%}"),
    ("stressed syllables with a nod", "stresses_with_nod", "{:.0%}"),
    ("pitch rises", "pitch_rises", "{:.0f}"),
    ("brow lift in the 400 ms after a pitch rise (px, face 184 px)", "brow_lift_at_rises", "{:.2f}"),
    ("  ... after random times", "brow_lift_shuffled", "{:.2f}"),
    ("head motion's strongest frequency, speaking (Hz)", "head_peak_hz", "{:.2f}"),
    ("  ... its share of 0.5-5 Hz power (within 0.15 Hz)", "head_peak_share", "{:.0%}"),
    ("blinks per minute", "blinks_per_min", "{:.1f}"),
    ("blinks in replies", "blinks_in_replies", "{:.0f}"),
    ("  ... in a pause or at the reply's end", "blinks_in_pauses", "{:.0%}"),
    ("  ... share of reply time that is pause", "pause_time_share", "{:.0%}"),
    ("pauses and reply ends", "pauses", "{:.0f}"),
    ("  ... met by a blink (from their start to 300 ms after)", "pauses_with_blink", "{:.0%}"),
    ("lower lid's rise in a blink (of the eye's open gap)", "lower_lid_travel", "{:.2f}"),
    ("iris sd, speaking (eye widths)", "gaze_sd_speaking", "{:.3f}"),
    ("iris sd, listening", "gaze_sd_listening", "{:.3f}"),
    ("iris sd, idle", "gaze_sd_idle", "{:.3f}"),
    ("head height sd, listening (face widths)", "head_sd_listening", "{:.4f}"),
    ("head sd, idle", "head_sd_idle", "{:.4f}"),
)


def _plot(path: Path, runs: dict[str, tuple[Run, list[Reply]]], which: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 3.2 * len(runs)), sharex=True)
    for ax, (name, (run, replies)) in zip(np.atleast_1d(axes), runs.items()):
        r = replies[which]
        a = run.arrays()
        lo, hi = r.start - 5, r.start + r.n + 15
        t = (np.arange(lo, hi) - r.start + 0.5) / FPS
        fw = float(np.nanmedian(a["fw"]))
        head = -_fill(a["nose_px"])[lo:hi]
        brow = _fill(a["brow_px"])[lo:hi]
        ax.plot(t, -(head - np.median(head)), color="tab:blue", label="head height (nose)")
        ax.plot(t, brow - np.median(brow), color="tab:orange", label="brows over the nose")
        for i, s in enumerate(r.stresses):
            ax.axvline(s, color="tab:red", alpha=0.35, lw=1, label="stressed syllable" if i == 0 else None)
        for i, s in enumerate(r.rises):
            ax.plot([s], [ax.get_ylim()[1] * 0.9 if i else 0.9 * ax.get_ylim()[1]], "^", color="tab:green",
                    label="pitch rise" if i == 0 else None)
        for i, (s, e) in enumerate(r.pauses):
            ax.axvspan(s, min(e, t[-1]), color="grey", alpha=0.15, label="pause" if i == 0 else None)
        blinks = _blinks(_fill(a["open"]))
        bt = (blinks[(blinks >= lo) & (blinks < hi)] - r.start + 0.5) / FPS
        ax.plot(bt, np.full(len(bt), ax.get_ylim()[0] * 0.9), "k|", ms=14, mew=2, label="blink (measured)")
        ax.set_title(name)
        ax.set_ylabel(f"px (face {fw:.0f} px wide)")
        ax.legend(loc="upper right", fontsize=7, ncol=3)
    np.atleast_1d(axes)[-1].set_xlabel("s from the reply's start")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=12)
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "head_motion.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    started = time.perf_counter()
    pipeline = load_pipeline("default")
    motion = pipeline.create_motion()
    channels = tuple(motion.channels)
    utts = get_eval_set("flite", args.utterances, cache_dir())
    old = module_at(BEFORE)
    makers = {
        "before (sine-wave head, upper-lid blinks)": lambda: old.FaceRenderer(pipeline.avatar, 512, 512, seed=args.seed),
        "after (prosody, both lids, gaze)": lambda: pipeline.create_renderer(512, 512),
    }
    runs, figs = {}, {}
    for name, make in makers.items():
        runs[name] = render_run(make, utts, motion, channels)
        figs[name] = figures(*runs[name], np.random.default_rng(args.seed))
    names = list(makers)
    print(f"default avatar, 512x512, {len(utts)} held-out flite replies, then {LISTEN_S:.0f} s listening and {IDLE_S:.0f} s idle\n")
    print("| figure | " + " | ".join(n.split(" (")[0] for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for label, key, fmt in LINES:
        print(f"| {label} | " + " | ".join(fmt.format(figs[n][key]) for n in names) + " |")
    which = int(np.argmax([len(r.stresses) + len(r.rises) for r in runs[names[-1]][1]]))
    _plot(args.plot, runs, which)
    a = figs[names[-1]]
    b = figs[names[0]]
    print(f"\nwrote {args.plot}; {time.perf_counter() - started:.0f} s")
    print(f"head_motion nods_on_stress={a['nods_on_stress']:.2f} (shuffled {a['nods_on_stress_shuffled']:.2f}, before {b['nods_on_stress']:.2f}) "
          f"brow_lift_px={a['brow_lift_at_rises']:.2f} (random {a['brow_lift_shuffled']:.2f}, before {b['brow_lift_at_rises']:.2f}) "
          f"head_peak={a['head_peak_hz']:.2f}Hz/{a['head_peak_share']:.0%} (before {b['head_peak_hz']:.2f}Hz/{b['head_peak_share']:.0%}) "
          f"blinks_in_pauses={a['blinks_in_pauses']:.2f} (time share {a['pause_time_share']:.2f}) "
          f"pauses_with_blink={a['pauses_with_blink']:.2f} (before {b['pauses_with_blink']:.2f}) "
          f"lower_lid={a['lower_lid_travel']:.2f} (before {b['lower_lid_travel']:.2f}) gaze_sd={a['gaze_sd_listening']:.3f} (before {b['gaze_sd_listening']:.3f})")


if __name__ == "__main__":
    main()
