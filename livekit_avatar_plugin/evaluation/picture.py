"""Measure an avatar's picture: how the mouth it shows follows held-out speech.

The lip-sync model's own figures (``training.evaluate``) judge its channels; these judge
what a viewer sees. Held-out flite utterances are rendered as replies through the avatar's
pipeline (``load_pipeline`` / ``create_renderer`` / ``render``), paced as a live session
paces them, and the face tracker reads the inner-lip gap, the mouth width and the chin's
drop below the eyes back off every frame:

    report = measure_avatar("default", utterances=20, sheet=Path("sheet.png"))
    print(report.table())
    print(report.summary_line())

:func:`measure` is the measuring alone, on per-frame numbers (:class:`ReplyFrames`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._render.motion import PITCH_KEY, frame_pitch
from ..training import metrics as M
from ..training import phonemes as P

Seg = tuple[str, float, float]
Progress = Callable[[str, float], None]

CLOSED_GAP = 0.03  # face widths: a rendered gap this small reads as lips together
CLOSURE_TOL = M.TOL  # s either side of a p/b/m segment in which its closure may show
MAX_LAG_S = 0.2
LAG_FPS = 100.0  # the lag is searched at 10 ms steps
LEAD_IN_S = 0.4  # idle before each reply

# The sheet's mouth shapes: label, phones.
SHEET_SHAPES: tuple[tuple[str, frozenset[str]], ...] = (
    ("p/b/m closure", frozenset(P.BILABIALS)),
    ("open vowel", frozenset({"aa", "ae", "ah"})),
    ("rounded vowel", frozenset({"uw", "ow"})),
    ("spread vowel", frozenset({"iy", "ih"})),
)


@dataclass
class ReplyFrames:
    """The per-frame measures of one rendered reply: an idle lead-in, then its speech."""

    segs: list[Seg]  # the utterance's phones, s from the start of its audio
    times: np.ndarray  # each frame's centre, s from the start of the audio (the lead-in's are < 0)
    gap: np.ndarray  # inner-lip gap over face width; ignored where the face was not found
    width: np.ndarray  # mouth width over face width; ignored where the face was not found
    found: np.ndarray  # bool: the tracker found the face on this frame
    chin: np.ndarray | None = None  # the chin's distance below the eye line over face width; None: not measured


@dataclass
class PictureReport:
    """What the rendered mouth showed, measured back off the frames (gaps and widths in face widths)."""

    r: float  # Pearson r, rendered lip gap vs the phones' opening, pooled over speech frames
    closures_shown: float  # share of p/b/m segments shown closed (min gap <= CLOSED_GAP near them)
    n_closures: int
    rounding_auc: float  # AUC that a rounded vowel's mean mouth width is smaller than a spread vowel's
    n_rounded: int
    n_spread: int
    span: tuple[float, float]  # 5th and 95th percentile of the rendered gap over speech frames
    lag_ms: float  # lag in [-200, 200] ms maximising gap vs opening correlation (positive: late)
    face_found: float  # share of all rendered frames (idle ones included) with a face found
    n_frames: int
    n_utterances: int = 0
    chin_travel: float = float("nan")  # 5th-95th percentile span of the chin's drop over speech frames

    def as_dict(self) -> dict:
        """The figures as plain JSON-ready values (NaN, for a figure with no data, as None)."""
        def clean(v: Any) -> Any:
            if isinstance(v, (tuple, list)):
                return [clean(x) for x in v]
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {k: clean(v) for k, v in asdict(self).items()}

    def table(self) -> str:
        """The figures as a markdown table: figure | measured."""
        rows = [
            ("lip gap vs the phones' opening (Pearson r)", f"{self.r:.2f}"),
            (f"p/b/m closures shown (gap <= {CLOSED_GAP} face widths)",
             f"{self.closures_shown * 100:.0f} % of {self.n_closures}"),
            ("rounding AUC (rounded vowel narrower than spread)",
             f"{self.rounding_auc:.2f} ({self.n_rounded} rounded, {self.n_spread} spread)"),
            ("lip gap span, 5th-95th percentile (face widths)", f"{self.span[0]:.3f}-{self.span[1]:.3f}"),
            ("chin travel, 5th-95th percentile span (face widths)", f"{self.chin_travel:.3f}"),
            ("lag of the picture (positive: late)", f"{self.lag_ms:+.0f} ms"),
            ("face found", f"{self.face_found * 100:.1f} % of {self.n_frames} frames"),
        ]
        lines = ["| figure | measured |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
        return "\n".join(lines)

    def summary_line(self) -> str:
        """One line of the headline figures, e.g. for logs and the CLI's last line."""
        return (
            f"picture r={self.r:.2f} closures={self.closures_shown:.2f} rounding_auc={self.rounding_auc:.2f} "
            f"span={self.span[0]:.3f}-{self.span[1]:.3f} chin={self.chin_travel:.3f} lag_ms={self.lag_ms:+.0f} "
            f"face_found={self.face_found:.2f}"
        )


def opening_track(segs: list[Seg], end_s: float) -> np.ndarray:
    """The phones' opening (the jaw_open target) at ``i / LAG_FPS`` for i up to past ``end_s``."""
    n = int(math.ceil(max(end_s, segs[-1][2] if segs else 0.0) * LAG_FPS)) + 2
    return P.targets(segs, n, fps=LAG_FPS)[:, P.CHANNELS.index("jaw_open")].astype(np.float64)


def chin_drop(points: np.ndarray) -> float:
    """The chin's (mesh point 152) distance below the line through the outer eye corners,
    over the face width: it follows the jaw, not the head's nods and tilts."""
    from .._face import landmarks as L
    from .._face.tracking import face_width

    a, b = points[33, :2].astype(np.float64), points[263, :2].astype(np.float64)
    along = (b - a) / max(float(np.hypot(*(b - a))), 1e-6)
    rel = points[L.CHIN, :2] - a
    return float(abs(rel[0] * along[1] - rel[1] * along[0]) / max(face_width(points), 1e-6))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _best_lag(tracks: list[tuple[np.ndarray, np.ndarray]], max_lag: int) -> int:
    """The lag (in track steps) maximising the pooled correlation of gap[t + lag] vs opening[t]."""
    best, best_lag = -np.inf, 0
    # Smallest shifts first, so a tie goes to the smaller lag.
    for lag in sorted(range(-max_lag, max_lag + 1), key=lambda v: (abs(v), v)):
        xs, ys = [], []
        for g, o in tracks:
            n = len(g) - abs(lag)
            if n > 0:
                xs.append(g[lag : lag + n] if lag >= 0 else g[:n])
                ys.append(o[:n] if lag >= 0 else o[-lag : -lag + n])
        r = _pearson(np.concatenate(xs), np.concatenate(ys)) if xs else float("nan")
        if r > best:
            best, best_lag = r, lag
    return best_lag


def measure(replies: Sequence[ReplyFrames]) -> PictureReport:
    """The picture's figures from per-frame measures (the lead-in counts only in face_found)."""
    nan = float("nan")
    gaps: list[np.ndarray] = []
    opens: list[np.ndarray] = []
    closed: list[bool] = []
    rounded: list[float] = []
    spread: list[float] = []
    tracks: list[tuple[np.ndarray, np.ndarray]] = []
    chins: list[np.ndarray] = []
    n_frames = n_found = 0
    for rep in replies:
        t = np.asarray(rep.times, np.float64)
        found = np.asarray(rep.found, bool)
        gap, width = np.asarray(rep.gap, np.float64), np.asarray(rep.width, np.float64)
        n_frames += len(t)
        n_found += int(found.sum())
        ok = found & (t >= 0) & np.isfinite(gap) & np.isfinite(width)
        if not ok.any():
            continue
        if rep.chin is not None:
            chin = np.asarray(rep.chin, np.float64)[ok]
            chins.append(chin[np.isfinite(chin)])
        order = np.argsort(t[ok], kind="stable")
        t, gap, width = t[ok][order], gap[ok][order], width[ok][order]
        opening = opening_track(rep.segs, float(t[-1]))
        grid = np.arange(len(opening)) / LAG_FPS
        gaps.append(gap)
        opens.append(np.interp(t, grid, opening))
        for ph, s, e in rep.segs:
            if ph in P.BILABIALS:
                near = (t >= s - CLOSURE_TOL) & (t <= e + CLOSURE_TOL)
                if near.any():
                    closed.append(bool(gap[near].min() <= CLOSED_GAP))
            elif ph in M.ROUNDED or ph in M.SPREAD:
                inside = (t >= s) & (t < e)
                if inside.any():
                    (rounded if ph in M.ROUNDED else spread).append(float(width[inside].mean()))
        # The gap is known once a video frame; the lag is searched at 10 ms steps between them.
        j = np.arange(math.ceil(t[0] * LAG_FPS), math.floor(t[-1] * LAG_FPS) + 1)
        if len(j) > 1:
            tracks.append((np.interp(j / LAG_FPS, t, gap), opening[j]))
    g_all = np.concatenate(gaps) if gaps else np.zeros(0)
    o_all = np.concatenate(opens) if opens else np.zeros(0)
    span = (float(np.percentile(g_all, 5)), float(np.percentile(g_all, 95))) if len(g_all) else (nan, nan)
    c_all = np.concatenate(chins) if chins else np.zeros(0)
    chin_travel = float(np.percentile(c_all, 95) - np.percentile(c_all, 5)) if len(c_all) else nan
    return PictureReport(
        r=_pearson(g_all, o_all),
        closures_shown=float(np.mean(closed)) if closed else nan,
        n_closures=len(closed),
        # metrics._auc(pos, neg) is P(pos > neg): a spread vowel wider than a rounded one.
        rounding_auc=M._auc(np.array(spread), np.array(rounded)),
        n_rounded=len(rounded),
        n_spread=len(spread),
        span=span,
        lag_ms=_best_lag(tracks, round(MAX_LAG_S * LAG_FPS)) * 1000.0 / LAG_FPS if tracks else nan,
        face_found=n_found / n_frames if n_frames else nan,
        n_frames=n_frames,
        n_utterances=len(replies),
        chin_travel=chin_travel,
    )


# -- rendering ---------------------------------------------------------------------------------


@dataclass
class _Shot:
    """A frame kept for the contact sheet."""

    label: str
    frame: np.ndarray
    gap: float
    width: float
    mouth_box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 around the tracked mouth


def _sheet_picks(utts: Sequence[Any], n_lead: int, fps: float) -> dict[tuple[int, int], str]:
    """(utterance, frame within its reply) -> label: per mouth shape, the frame nearest the
    middle of that shape's longest segment, and an idle frame between replies."""
    best: dict[str, tuple[float, int, int, str]] = {}
    for ui, u in enumerate(utts):
        for ph, s, e in u.segs:
            for label, phones in SHEET_SHAPES:
                k = int(round((s + e) / 2 * fps - 0.5))  # frame k's centre is (k + 0.5) / fps
                if ph in phones and s <= (k + 0.5) / fps < e and e - s > best.get(label, (0.0,))[0]:
                    best[label] = (e - s, ui, n_lead + k, ph)
    picks = {(ui, i): f"{label} /{ph}/" for label, (_, ui, i, ph) in best.items()}
    picks[(min(1, len(utts) - 1), n_lead - 1)] = "idle"
    return picks


def _mouth_box(points: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    from .._face import landmarks as L
    from .._face.tracking import face_width

    idx = [*L.MOUTH_CORNERS, L.INNER_LIP_UPPER_MID, L.INNER_LIP_LOWER_MID]
    cx, cy = points[idx, :2].mean(0)
    fw = face_width(points)
    h, w = shape[:2]
    return (max(0, int(cx - 0.4 * fw)), max(0, int(cy - 0.2 * fw)),
            min(w, int(cx + 0.4 * fw)), min(h, int(cy + 0.2 * fw)))  # fmt: skip


def _write_sheet(path: Path, shots: Sequence[_Shot], title: str) -> None:
    """A contact sheet PNG: per shot, the whole frame, a zoom on the mouth and the measures."""
    from PIL import Image, ImageDraw, ImageFont

    pw, head, zoom_h = 256, 40, 128
    frame_h = max((round(pw * s.frame.shape[0] / s.frame.shape[1]) for s in shots), default=pw)
    sheet = Image.new("RGB", (pw * max(1, len(shots)), 24 + head + frame_h + zoom_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    draw.text((6, 5), title, fill="black", font=font)
    for i, s in enumerate(shots):
        x, img = i * pw, Image.fromarray(s.frame)
        draw.text((x + 6, 26), f"{s.label}\ngap {s.gap:.3f}  width {s.width:.3f}", fill="black", font=font)
        sheet.paste(img.resize((pw, round(pw * img.height / img.width)), Image.Resampling.LANCZOS), (x, 24 + head))
        if s.mouth_box is not None:
            sheet.paste(img.crop(s.mouth_box).resize((pw, zoom_h), Image.Resampling.LANCZOS), (x, 24 + head + frame_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def measure_avatar(
    avatar: Any = "default",
    *,
    utterances: int = 20,
    size: tuple[int, int] = (512, 512),
    fps: float = 25.0,
    progress: Progress | None = None,
    sheet: Path | None = None,
) -> PictureReport:
    """Render held-out flite utterances with the avatar, then measure the frames back."""
    from .._face.tracking import FaceTracker, mouth_opening
    from .._generator import LOOK_AHEAD_FRAMES, _energy
    from .._pipeline import load_pipeline
    from .._state import ConversationState
    from ..training.data import cache_dir
    from ..training.evaluate import get_eval_set

    tell = progress or (lambda stage, fraction: None)
    tell("loading the avatar", 0.0)
    pipeline = load_pipeline(avatar)
    renderer = pipeline.create_renderer(*size)
    look_ahead = getattr(renderer, "look_ahead", None)
    motion = pipeline.create_motion()
    channels = tuple(motion.channels)
    rest = dict.fromkeys(channels, 0.0)
    tell("synthesising speech", 0.0)
    utts = get_eval_set("flite", utterances, cache_dir())
    if not utts:
        raise RuntimeError("no held-out flite speech could be synthesised (is Debian flite installed?)")

    n_lead = max(1, round(LEAD_IN_S * fps))
    pcms = [np.clip(np.round(u.audio * 32768.0), -32768, 32767).astype(np.int16) for u in utts]
    # As the generator: one frame per 1/fps of audio, the last one padded with silence.
    n_speech = [math.ceil(len(pcm) / (u.sr / fps)) for pcm, u in zip(pcms, utts)]
    total = sum(n_speech) + n_lead * len(utts)
    picks = _sheet_picks(utts, n_lead, fps) if sheet is not None else {}
    shots: list[_Shot] = []
    tracker = FaceTracker()
    replies: list[ReplyFrames] = []
    index = 0  # frames rendered so far: the renderer's clock, as in a session
    tell("rendering and tracking", 0.0)
    for ui, (u, pcm, n) in enumerate(zip(utts, pcms, n_speech)):
        rows = [r for r in (motion.push(pcm, u.sr), motion.flush()) if len(r)]
        motion.reset()
        mouth = np.concatenate(rows) if rows else np.zeros((1, len(channels)), np.float32)
        centres = (np.arange(n) + 0.5) / fps
        # The mouth at each frame's centre, linearly between the model's rows (clamped at the ends).
        at = np.stack([np.interp(centres * motion.fps, np.arange(len(mouth)), mouth[:, c])
                       for c in range(len(channels))], 1)  # fmt: skip
        spf = u.sr / fps
        times = np.concatenate([(np.arange(n_lead) - n_lead + 0.5) / fps, centres])
        gap, width, chin = np.full(len(times), np.nan), np.full(len(times), np.nan), np.full(len(times), np.nan)
        found = np.zeros(len(times), bool)
        follows_pitch = bool(getattr(renderer, "follows_pitch", False))
        for i in range(len(times)):
            if i < n_lead:
                rgb = renderer.render(rest, ConversationState.IDLE, index / fps, 0.0)
            else:
                k = i - n_lead
                chunk = pcm[int(round(k * spf)) : int(round((k + 1) * spf))]
                chunk = np.pad(chunk, (0, max(0, int(round(spf)) - len(chunk))))
                m = {name: float(at[k, c]) for c, name in enumerate(channels)}
                if follows_pitch:  # as the generator hands it over
                    m[PITCH_KEY] = frame_pitch(chunk, u.sr)
                if look_ahead is not None and k + 1 < n:  # as the generator offers it
                    look_ahead(channels, at[k + 1: k + 1 + LOOK_AHEAD_FRAMES])
                rgb = renderer.render(m, ConversationState.SPEAKING, index / fps, _energy(chunk))
            index += 1
            face = tracker.update(rgb)
            if face is not None:
                found[i] = True
                gap[i], width[i] = mouth_opening(face.points)
                chin[i] = chin_drop(face.points)
            label = picks.get((ui, i))
            if label is not None:
                box = _mouth_box(face.points, rgb.shape) if face is not None else None
                shots.append(_Shot(label, np.array(rgb, copy=True), float(gap[i]), float(width[i]), box))
            if index % 25 == 0:
                tell("rendering and tracking", index / total)
        replies.append(ReplyFrames(list(u.segs), times, gap, width, found, chin))
    tell("measuring", 1.0)
    report = measure(replies)
    if sheet is not None:
        order = [label for label, _ in SHEET_SHAPES] + ["idle"]
        shots.sort(key=lambda s: next(j for j, o in enumerate(order) if s.label.startswith(o)))
        name = str(avatar) if isinstance(avatar, (str, Path)) else str(getattr(avatar, "path", "object"))
        _write_sheet(Path(sheet), shots, f"avatar {name}, {size[0]}x{size[1]}: gap and width in face widths")
    tell("done", 1.0)
    return report
