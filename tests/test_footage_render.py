"""The footage renderer: the person's own loops by state, crossfaded; mouths from the atlas
that close, round and open as the channels say; every output size framed whole."""

from __future__ import annotations

import av
import numpy as np
import pytest

from livekit_avatar_plugin._face.footage import CHANNELS
from livekit_avatar_plugin._face.tracking import FaceTracker, mouth_opening
from livekit_avatar_plugin._pipeline import load_pipeline
from livekit_avatar_plugin._render.footage_renderer import CROSSFADE_FRAMES, FootageRenderer
from livekit_avatar_plugin._state import ConversationState

SPEAK, IDLE, LISTEN = ConversationState.SPEAKING, ConversationState.IDLE, ConversationState.LISTENING
FPS = 25.0


def _mouth(**kw) -> dict[str, float]:
    return {name: float(kw.get(name, 0.0)) for name in CHANNELS}


def _loop_frames(avatar, name: str) -> list[np.ndarray]:
    with av.open(str(avatar.path / avatar.loops[name].file)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def footage(synthetic_footage):
    return synthetic_footage[1]


@pytest.mark.parametrize("size", [(512, 512), (854, 480), (1280, 720), (720, 1280), (320, 240)])
def test_every_output_size_shows_the_whole_head_with_no_empty_edges(footage, size):
    r = FootageRenderer(footage, *size)
    frames = [r.render_rgba(_mouth(jaw_open=0.6), SPEAK, k / FPS).copy() for k in range(10)]
    f = frames[-1]
    assert f.shape == (size[1], size[0], 4) and f.dtype == np.uint8 and (f[..., 3] == 255).all()
    # no black bars or columns: the extension repeats the canvas's own edges
    rgb = f[..., :3].astype(int)
    assert rgb.mean(axis=(0, 2)).min() > 20 and rgb.mean(axis=(1, 2)).min() > 20
    face = FaceTracker().update(np.ascontiguousarray(f[..., :3]))
    assert face is not None
    pts = face.points[:, :2]
    assert pts.min() > 0 and pts[:, 0].max() < size[0] and pts[:, 1].max() < size[1]


def test_each_state_plays_its_own_loop(footage):
    idle, talking = _loop_frames(footage, "idle"), _loop_frames(footage, "talking")
    r = FootageRenderer(footage, *footage.canvas)

    def nearest(frame: np.ndarray, loop: list[np.ndarray]) -> float:
        return min(float(np.abs(frame.astype(int) - g.astype(int)).mean()) for g in loop)

    shown = [r.render(_mouth(), IDLE, k / FPS).copy() for k in range(5)]
    assert max(nearest(s, idle) for s in shown) < 1.0  # the idle footage itself
    for k in range(5, 5 + CROSSFADE_FRAMES + 3):
        shown = r.render(_mouth(jaw_open=0.5), SPEAK, k / FPS).copy()
    # talking: the talking footage, with only the lower face replaced
    upper = slice(0, int(footage.template[:, 1].min()))
    assert min(float(np.abs(shown[upper].astype(int) - g[upper].astype(int)).mean()) for g in talking) < 1.0


def test_a_change_of_state_crossfades_within_300_ms(footage):
    r = FootageRenderer(footage, *footage.canvas)
    frames = [r.render(_mouth(), IDLE, k / FPS).astype(int) for k in range(8)]
    for k in range(8, 20):
        frames.append(r.render(_mouth(), LISTEN, k / FPS).astype(int))
    steps = [float(np.abs(b - a).mean()) for a, b in zip(frames, frames[1:])]
    across = float(np.abs(frames[8 + CROSSFADE_FRAMES] - frames[7]).mean())
    assert (CROSSFADE_FRAMES + 1) / FPS <= 0.3
    # never a cut: no single frame carries more than a third of the change
    assert max(steps[7: 8 + CROSSFADE_FRAMES]) < across / 3 + 1.0
    # and done: after the crossfade, frame to frame changes are the footage's own motion
    assert max(steps[8 + CROSSFADE_FRAMES:]) < max(steps[:6]) + 2.0


def _gap_width(frame: np.ndarray) -> tuple[float, float]:
    face = FaceTracker().update(np.ascontiguousarray(frame[..., :3]))
    assert face is not None
    return mouth_opening(face.points)


def _hold(footage, mouth: dict[str, float], frames: int = 12) -> tuple[float, float]:
    r = FootageRenderer(footage, *footage.canvas)
    for k in range(frames):
        f = r.render(mouth, SPEAK, k / FPS)
    return _gap_width(f)


def test_the_mouth_opens_closes_and_rounds_as_the_channels_say(footage):
    closed, _ = _hold(footage, _mouth(lips_closed=1.0))
    opened, _ = _hold(footage, _mouth(jaw_open=1.0))
    _, rounded = _hold(footage, _mouth(jaw_open=0.3, lip_round=1.0))
    _, spread = _hold(footage, _mouth(jaw_open=0.3, lip_spread=1.0))
    assert opened > closed + 0.02
    assert rounded < spread


def test_the_mouth_is_squeezed_round_or_stretched_wide_beyond_the_crop_chosen(footage, monkeypatch):
    """An atlas holds few rounded mouths: the width the channels ask for is made up by a
    sideways warp about the mouth, and the cheeks at the blend's edge do not move."""
    from livekit_avatar_plugin._render import footage_renderer as FR

    def hold(mouth: dict[str, float]) -> tuple[float, np.ndarray]:
        r = FootageRenderer(footage, *footage.canvas)
        for k in range(12):
            f = r.render(mouth, SPEAK, k / FPS)
        _, (x0, y0, x1, y1), _ = r._placed
        return _gap_width(f)[1], f[y0:y1, x0:x1].astype(int)

    rounded, spread = _mouth(jaw_open=0.3, lip_round=1.0), _mouth(jaw_open=0.3, lip_spread=1.0)
    warped_round, wr = hold(rounded)
    warped_spread, _ = hold(spread)
    monkeypatch.setattr(FR.MouthShaper, "STRENGTH", 0.0)
    plain_round, pr = hold(rounded)
    plain_spread, _ = hold(spread)
    # the synthetic person barely rounds: the face mesh sees the squeeze only in part
    assert warped_round < plain_round - 0.004  # narrower than the roundest crop alone
    assert warped_spread > plain_spread + 0.004
    assert (warped_spread - warped_round) - (plain_spread - plain_round) > 0.01
    # the squeeze fades out inside the blend: the box's edges are the same pixels
    edge = np.ones(wr.shape[:2], bool)
    edge[8:-8, 8:-8] = False
    assert np.abs(wr - pr)[edge].mean() < 0.5


def test_resting_mouth_when_a_stand_in_loop_has_no_mouth_of_its_own(tmp_path):
    """An 8 s clip that is all talking: idle shows the talking footage, mouth at rest."""
    from livekit_avatar_plugin._face.footage_build import create_footage_avatar

    from .footage_synth import make_clip

    make_clip(tmp_path / "talk.mp4", parts=(("talking", 6.0),))
    footage = create_footage_avatar(tmp_path / "talk.mp4", tmp_path / "avatar")
    assert footage.loops["idle"].file == "talking.mp4" and not footage.loops["idle"].own_mouth
    r = FootageRenderer(footage, *footage.canvas)
    gaps = [_gap_width(r.render(_mouth(jaw_open=1.0), IDLE, k / FPS))[0] for k in range(0, 50, 10)]
    talking = FootageRenderer(footage, *footage.canvas)
    open_gap = [_gap_width(talking.render(_mouth(jaw_open=1.0), SPEAK, k / FPS))[0] for k in range(12)][-1]
    assert max(gaps) < open_gap - 0.02  # idle ignores the channels: the lips rest


def test_constant_channels_hold_a_steady_mouth_and_the_seam_is_invisible(footage):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from footage_quality import seam_and_flicker

    figures = seam_and_flicker(footage.path, (512, 512))
    assert figures["flicker_grey"] < 1.0
    assert figures["seam_ratio"] < 1.2
    assert figures["seam_ratio_p95"] < 1.5  # no frame where a wrong cheek or collar comes in


def test_sessions_share_the_framing_but_not_their_state(footage):
    pipeline = load_pipeline(footage)
    a, b = pipeline.create_renderer(512, 512), pipeline.create_renderer(512, 512)
    assert a.layout is b.layout
    idle = _loop_frames(footage, "idle")
    for k in range(12):  # interleaved, as the drawing thread serves two sessions
        a.render(_mouth(jaw_open=0.8), SPEAK, k / FPS)
        fb = b.render(_mouth(), IDLE, k / FPS)
        # b shows the idle footage frame after frame, whatever a does
        assert float(np.abs(fb.astype(int) - idle[k].astype(int)).mean()) < 1.0
