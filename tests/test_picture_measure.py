"""The picture measure: its figures on per-frame data with known answers, and the
``livekit-avatar measure`` command end to end on the shipped photo avatar."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from livekit_avatar_plugin.cli import main as cli_main
from livekit_avatar_plugin.evaluation.picture import LAG_FPS, ReplyFrames, chin_drop, measure, opening_track

FPS = 25.0
LEAD = 10  # idle lead-in frames, as measure_avatar renders at 25 fps


def _segs(rng: np.random.Generator, n: int = 40) -> list[tuple[str, float, float]]:
    """A made-up utterance: open, closed, rounded and spread phones of 60-200 ms."""
    phones = ["aa", "m", "iy", "p", "uw", "s", "ae", "b", "ow", "ih", "t", "ah"]
    segs, t = [("pau", 0.0, 0.15)], 0.15
    for _ in range(n):
        d = float(rng.uniform(0.06, 0.2))
        segs.append((str(rng.choice(phones)), t, t + d))
        t += d
    return segs + [("pau", t, t + 0.15)]


def _times(end_s: float, fps: float = FPS, lead: int = LEAD) -> np.ndarray:
    n = math.ceil(end_s * fps)
    return np.concatenate([(np.arange(lead) - lead + 0.5) / fps, (np.arange(n) + 0.5) / fps])


def _reply(segs, times, gap, width=None, found=None, chin=None) -> ReplyFrames:
    width = np.full(len(times), 0.45) if width is None else width
    found = np.ones(len(times), bool) if found is None else found
    return ReplyFrames(segs, times, np.asarray(gap, float), np.asarray(width, float), found, chin)


def _opening_replies(delay_s: float, fps: float = FPS, n: int = 4) -> list[ReplyFrames]:
    """Replies whose gap is exactly the phones' opening ``delay_s`` late."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        segs = _segs(rng)
        t = _times(segs[-1][2], fps)
        opening = opening_track(segs, float(t[-1]) + 1.0)
        gap = 0.1 * np.interp(t - delay_s, np.arange(len(opening)) / LAG_FPS, opening)
        out.append(_reply(segs, t, gap))
    return out


def test_gap_that_is_the_opening_correlates_fully_at_no_lag():
    rep = measure(_opening_replies(0.0))
    assert rep.r > 0.99 and rep.lag_ms == 0.0
    assert rep.n_utterances == 4 and rep.face_found == 1.0


@pytest.mark.parametrize("fps", [25.0, 100.0])
@pytest.mark.parametrize("delay_ms", [80, -50])
def test_lag_finds_a_delayed_picture(fps, delay_ms):
    late = measure(_opening_replies(delay_ms / 1000, fps))
    assert late.lag_ms == pytest.approx(delay_ms, abs=0 if fps == 100 else 10)
    # Shifted back by the lag found, the delayed gap is the opening again.
    back = [ReplyFrames(r.segs, r.times - late.lag_ms / 1000, r.gap, r.width, r.found)
            for r in _opening_replies(delay_ms / 1000, fps)]  # fmt: skip
    assert measure(back).r > 0.97 > late.r


def test_closures_counted_in_their_window_only():
    segs = [("pau", 0.0, 0.2), ("m", 0.2, 0.28), ("aa", 0.28, 0.6), ("p", 0.6, 0.66), ("ah", 0.66, 1.0),
            ("b", 1.0, 1.06), ("aa", 1.06, 1.5), ("m", 1.5, 1.6), ("pau", 1.6, 1.8)]  # fmt: skip
    t = _times(1.8)
    gap = np.full(len(t), 0.1)
    gap[np.isclose(t, 0.30)] = 0.0  # 20 ms after /m/ ends: inside the 30 ms tolerance
    gap[np.isclose(t, 0.62)] = 0.03  # exactly the threshold: shown closed
    gap[(t > 0.97) & (t < 1.09)] = 0.031  # just open over /b/'s window ...
    gap[np.isclose(t, 1.10)] = 0.0  # ... and closed 40 ms after it: too late
    found = ~((t > 1.45) & (t < 1.65))  # the last /m/ has no frame with a face: not counted
    gap[~found] = 0.0  # a lost face's numbers must not count
    gap[t < 0] = 0.0  # nor the idle lead-in's
    rep = measure([_reply(segs, t, gap, found=found)])
    assert rep.n_closures == 3
    assert rep.closures_shown == pytest.approx(2 / 3)


def test_rounding_auc_from_mouth_widths():
    segs = [("pau", 0.0, 0.1), ("uw", 0.1, 0.3), ("iy", 0.3, 0.5), ("ow", 0.5, 0.7), ("ih", 0.7, 0.9),
            ("uh", 1.43, 1.45), ("eh", 1.5, 1.7), ("aa", 1.7, 1.9), ("pau", 1.9, 2.0)]  # fmt: skip
    t = _times(2.0)
    rounded = np.zeros(len(t), bool)
    for ph, s, e in segs:
        if ph in ("uw", "ow", "uh"):
            rounded |= (t >= s) & (t < e)
    gap = np.full(len(t), 0.05)
    narrow = measure([_reply(segs, t, gap, np.where(rounded, 0.40, 0.50))])
    wide = measure([_reply(segs, t, gap, np.where(rounded, 0.50, 0.40))])
    same = measure([_reply(segs, t, gap)])
    # /uh/ at 1.43-1.45 s holds no frame centre (1.42, 1.46): skipped.
    assert (narrow.n_rounded, narrow.n_spread) == (2, 3)
    assert narrow.rounding_auc == 1.0 and wide.rounding_auc == 0.0 and same.rounding_auc == 0.5


def test_face_found_counts_every_frame_and_span_only_speech():
    segs = [("pau", 0.0, 0.2), ("aa", 0.2, 1.0), ("pau", 1.0, 2.0)]
    t = _times(2.0)  # 10 idle + 50 speech frames
    found = np.ones(len(t), bool)
    found[[2, 3, 4]] = False  # idle frames lost
    found[[20, 30, 40, 41, 42]] = False  # speech frames lost
    gap = np.linspace(0.0, 0.1, len(t))
    gap[t < 0] = 5.0
    gap[~found] = np.nan
    rep = measure([_reply(segs, t, gap, found=found)])
    assert rep.n_frames == 60 and rep.face_found == pytest.approx(52 / 60)
    speech = gap[(t >= 0) & found]
    assert rep.span == pytest.approx((np.percentile(speech, 5), np.percentile(speech, 95)))


def test_chin_travel_spans_speech_frames_only():
    segs = [("pau", 0.0, 0.2), ("aa", 0.2, 1.0), ("pau", 1.0, 2.0)]
    t = _times(2.0)
    found = np.ones(len(t), bool)
    found[[15, 16]] = False
    chin = 1.0 + 0.1 * np.linspace(0, 1, len(t))
    chin[t < 0] = 9.0  # the idle lead-in does not count
    chin[~found] = 9.0  # nor frames without a face
    rep = measure([_reply(segs, t, np.full(len(t), 0.05), found=found, chin=chin)])
    speech = chin[(t >= 0) & found]
    assert rep.chin_travel == pytest.approx(np.percentile(speech, 95) - np.percentile(speech, 5))
    assert np.isnan(measure([_reply(segs, t, np.full(len(t), 0.05))]).chin_travel)  # not measured


def test_chin_drop_follows_the_jaw_not_the_head():
    from livekit_avatar_plugin._face.tracking import face_width

    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 100, (478, 3))
    pts[33, :2], pts[263, :2], pts[152, :2] = (40, 50), (120, 50), (80, 150)
    base = chin_drop(pts)
    assert base == pytest.approx(100 / face_width(pts))
    turned = pts.copy()  # the whole face nodded down and tilted: the same drop
    c, s_ = math.cos(0.2), math.sin(0.2)
    turned[:, :2] = (pts[:, :2] - 80) @ np.array([[c, -s_], [s_, c]]) + (80, 95)
    assert chin_drop(turned) == pytest.approx(base)
    opened = pts.copy()
    opened[152, 1] += 10  # the jaw opens
    assert chin_drop(opened) == pytest.approx(110 / face_width(pts))


def test_report_formats():
    rep = measure(_opening_replies(0.04))
    assert re.fullmatch(r"picture r=-?\d\.\d\d closures=\d\.\d\d rounding_auc=\d\.\d\d "
                        r"span=\d\.\d{3}-\d\.\d{3} chin=(nan|\d\.\d{3}) lag_ms=[+-]\d+ face_found=\d\.\d\d",
                        rep.summary_line())  # fmt: skip
    lines = rep.table().splitlines()
    assert lines[0] == "| figure | measured |" and len(lines) == 9
    empty = measure([_reply([("pau", 0.0, 1.0)], _times(1.0), np.zeros(35), found=np.zeros(35, bool))])
    d = empty.as_dict()
    assert d["r"] is None and d["span"] == [None, None] and d["face_found"] == 0.0
    json.dumps(d, allow_nan=False)


# -- end to end ---------------------------------------------------------------------------------


def test_measure_default_avatar_end_to_end(tmp_path, capsys):
    # needs Debian flite (scripts/apt/lipsync.txt) for the held-out speech: no skip
    sheet, out = tmp_path / "sheet.png", tmp_path / "picture.json"
    argv = ["measure", "--avatar", "default", "--utterances", "3", "--size", "256x256",
            "--sheet", str(sheet), "--json", str(out), "-q"]  # fmt: skip
    assert cli_main(argv) == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    assert stdout[0] == "| figure | measured |" and stdout[-1].startswith("picture r=")
    d = json.loads(out.read_text())
    assert d["n_utterances"] == 3 and d["n_frames"] > 3 * 10
    assert 0.0 < d["chin_travel"] < 0.5
    assert d["face_found"] >= 0.95
    assert -1.0 <= d["r"] <= 1.0 and 0.0 <= d["rounding_auc"] <= 1.0
    assert 0.0 <= d["closures_shown"] <= 1.0 and d["n_closures"] > 0
    assert d["n_rounded"] + d["n_spread"] > 0
    assert 0.0 <= d["span"][0] <= d["span"][1] < 0.5
    assert -200 <= d["lag_ms"] <= 200
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.width >= 3 * 256 and 256 < im.height < 1024


def test_measure_bad_avatar_exits_4(tmp_path):
    assert cli_main(["measure", "--avatar", str(tmp_path / "nope"), "-q"]) == 4
