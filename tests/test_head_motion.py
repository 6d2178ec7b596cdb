"""Eyes and head of the photo renderer: blinks with both lids, often at pauses; gaze from
the iris; nods on stressed syllables and brows on pitch rises; breathing; no metronome;
no pops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livekit_avatar_plugin._face import landmarks as L
from livekit_avatar_plugin._face.avatar import default_avatar
from livekit_avatar_plugin._face.tracking import FaceTracker, face_width
from livekit_avatar_plugin._render.motion import BROW, GAZE_X, NOD, PITCH_KEY, TY, HeadMotion, frame_pitch
from livekit_avatar_plugin._render.renderer import FaceRenderer
from livekit_avatar_plugin._state import ConversationState as S

FPS = 25.0
SYLLABLE = (0.1, 0.5, 0.8, 0.7, 0.4)  # a syllable's energy, frame by frame


@pytest.fixture(scope="module")
def template():
    return FaceRenderer(default_avatar(), 512, 512)


def _renderer(template, seed=0):
    return FaceRenderer(template.avatar, 512, 512, seed=seed, template=template)


def _speech(pattern, seed=0, face=170.0, t0=0.0, motion=None):
    """Step a HeadMotion through (energy, pitch) frames while speaking; the poses."""
    hm = motion or HeadMotion(face, seed)
    out = []
    for i, (e, f0) in enumerate(pattern):
        out.append(hm.step(S.SPEAKING, t0 + i / FPS, e, f0).copy())
    return hm, np.array(out)


def _phrases(n_phrases, rng, pause_frames=12, loud=None):
    """Speech-like energy: syllables (some loud) in phrases split by pauses; (energy, f0) a frame."""
    frames, loud_at, pauses = [], [], []
    for _ in range(n_phrases):
        for k in range(int(rng.integers(4, 8))):
            big = loud(k) if loud else rng.random() < 0.4
            gain = 1.0 if big else 0.6
            if big:
                loud_at.append(len(frames))
            frames += [(v * gain, 120.0) for v in SYLLABLE]
        pauses.append(len(frames))
        frames += [(0.0, 0.0)] * pause_frames
    return frames, loud_at, pauses


def test_a_blink_moves_both_lids(template):
    r, ref = _renderer(template), _renderer(template)
    ref.motion.blinks = False
    r.motion.next_blink = 0.4
    P = r.pts
    lower = [145, 153, 144, 374, 380, 373]
    below = []  # the skin just under each lower lid: it rises with the lid in a blink
    shut, lid_rise = 0.0, []
    for i in range(25):
        t = i / FPS
        f, g = r.render({}, S.IDLE, t), ref.render({}, S.IDLE, t)
        if r.motion.blink > 0.9:
            shut = r.motion.blink
            diff = np.abs(f.astype(int) - g).sum(-1)
            for j in lower:
                x, y = P[j, :2].round().astype(int)
                below.append(diff[y + 1 : y + 4, x - 1 : x + 2].mean())
            for frame in (f, g):
                p = FaceTracker().update(frame).points
                lid_rise.append(np.mean([p[145, 1] - p[[33, 133], 1].mean(), p[374, 1] - p[[362, 263], 1].mean()]) / face_width(p))
    assert shut > 0.9
    assert np.mean(below) > 8  # levels: the lower lid and the skin under it moved
    # the face mesh sees the lower lid higher in the blink than without it
    assert lid_rise[0] < lid_rise[1] - 0.002
    # and the upper lid closed over the iris
    x, y = P[468, :2].round().astype(int)
    r.motion.next_blink = 2.0
    for i in range(int(2.0 * FPS), int(2.0 * FPS) + 3):
        f = r.render({}, S.IDLE, i / FPS)
    g = ref.render({}, S.IDLE, i / FPS)
    assert f[y - 2 : y + 3, x - 2 : x + 3].mean() > 10 + g[y - 2 : y + 3, x - 2 : x + 3].mean()


def test_pauses_bring_blinks():
    """Over seeds, a pause in the speech (or a reply's end) is met by a blink within 300 ms
    far more often than random 2-6 s blinks would be."""
    met, chance = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        frames, _, pauses = _phrases(4, rng)
        hm = HeadMotion(170.0, seed)
        starts = []
        for i, (e, f0) in enumerate(frames):
            hm.step(S.SPEAKING, i / FPS, e, f0)
            if hm.blink_log and (not starts or hm.blink_log[-1][0] != starts[-1]):
                starts.append(hm.blink_log[-1][0])
        starts = np.array(starts)
        for p in pauses[:-1]:
            met.append(bool(((starts >= p / FPS) & (starts <= p / FPS + 0.3)).any()))
            chance.append(bool(((starts >= (p - 15) / FPS) & (starts <= (p - 15) / FPS + 0.3)).any()))
    assert np.mean(met) >= 0.65, np.mean(met)
    assert np.mean(chance) <= 0.2


def test_a_replys_end_brings_a_blink():
    """Unless the eyes blinked in the last 0.8 s, a reply's end is met by a blink within
    300 ms in most cases."""
    met = []
    for seed in range(30):
        hm = HeadMotion(170.0, seed)
        n = 100
        for i in range(n):
            hm.step(S.SPEAKING, i / FPS, SYLLABLE[i % 5], 120.0)
        if hm.blink_log and hm.blink_log[-1][0] > n / FPS - 0.8:
            continue
        for i in range(n, n + 8):
            hm.step(S.LISTENING, i / FPS)
        met.append(bool(hm.blink_log) and hm.blink_log[-1][0] >= n / FPS)
    assert len(met) >= 15 and np.mean(met) >= 0.7


def test_blinks_are_kept_bounded():
    hm = HeadMotion(170.0, 0)
    for i in range(int(1200 * 5)):  # 20 minutes at 5 steps a second
        hm.step(S.IDLE, i / 5)
    assert 0 < len(hm.blink_log) <= 64


def test_stressed_syllables_bring_nods(template):
    """Nods follow the loud syllables: the head's downward displacement measured back off
    the rendered frames (the upper face: nose bridge and eye corners, which the jaw does
    not move) is larger just after loud syllables than after soft ones."""
    frames, loud_at, soft_at = [], [], []
    for k in range(15):  # syllables 400 ms apart, every third loud
        (loud_at if k % 3 == 1 else soft_at).append(len(frames))
        gain = 1.0 if k % 3 == 1 else 0.6
        frames += [(v * gain, 120.0) for v in SYLLABLE] + [(0.25, 0.0)] * 5
    r = _renderer(template, seed=3)
    tracker = FaceTracker()
    nose = []
    for i, (e, f0) in enumerate(frames):
        f = r.render({PITCH_KEY: f0}, S.SPEAKING, i / FPS, e)
        p = tracker.update(f).points
        nose.append(p[[168, 6, 33, 133, 362, 263], 1].mean() / face_width(p))
    nose = np.array(nose)
    drop = lambda i: nose[i : i + 10].max() - nose[max(0, i - 1)]  # noqa: E731
    d_loud = np.mean([drop(i) for i in loud_at])
    d_soft = np.mean([drop(i) for i in soft_at[1:]])
    assert d_loud > 0.004  # face widths, ~0.7 px at this size
    assert d_loud > 2 * d_soft, (d_loud, d_soft)


def test_a_flat_hum_brings_no_nods():
    _, poses = _speech([(0.7, 120.0)] * 150)
    assert np.abs(np.diff(poses[:, NOD])).max() < 0.2  # px a frame: slow drift only; a nod moves ~1


def test_a_pitch_rise_raises_the_brows(template):
    flat = [(0.7, 110.0)] * 60
    rise = [(0.7, 110.0)] * 25 + [(0.7, 110.0 * 2 ** (k / 12)) for k in range(0, 10, 2)] + [(0.7, 140.0)] * 30
    _, p_flat = _speech(flat)
    _, p_rise = _speech(rise)
    assert p_rise[28:40, BROW].max() > 1.5  # px for a 170 px face
    assert p_flat[:, BROW].max() < 0.3
    # drawn: the brows move up in the frame
    r = _renderer(template)
    P = r.pts
    x, y = P[list(L.RIGHT_BROW), :2].mean(0).round().astype(int)
    frames, brow = [], []
    for i, (e, f0) in enumerate(rise):
        frames.append(r.render({PITCH_KEY: f0}, S.SPEAKING, i / FPS, e)[:, :, 1].astype(float).copy())
        brow.append(r.motion.pose[BROW])
    # the brows' vertical profile, before the rise and at its highest, sampled 1/4 px apart
    ys = np.arange(y - 12, y + 12, 0.25)
    col = lambda f: np.interp(ys, np.arange(f.shape[0]), f[:, x - 3 : x + 4].mean(1))  # noqa: E731
    before, during = col(frames[24]), col(frames[int(np.argmax(brow))])
    best = min(range(-12, 13), key=lambda s: np.abs(np.roll(before, s)[16:-16] - during[16:-16]).mean())
    assert best <= -2  # moved up by half a pixel or more


def test_the_idle_head_breathes_without_a_metronome():
    hm = HeadMotion(170.0, 4)
    ty = np.array([hm.step(S.IDLE, i / FPS)[TY] for i in range(int(120 * FPS))])
    assert 0.2 < np.std(ty) < 2.0  # px for a 170 px face
    # breaths are 3.4-5 s each, each its own length: power around 0.2-0.3 Hz, cycles that vary
    freqs = np.fft.rfftfreq(len(ty), 1 / FPS)
    power = np.abs(np.fft.rfft(ty - ty.mean())) ** 2
    band = (freqs > 0.15) & (freqs < 0.4)
    assert power[band].sum() > 0.3 * power[freqs > 0.05].sum()
    # the inhales' tops: the head at its highest in each 2 s either side
    top = [i for i in range(50, len(ty) - 50) if ty[i] == ty[i - 50 : i + 51].min()]
    cycles = np.diff(top) / FPS
    assert len(cycles) > 20 and np.std(cycles) > 0.25 and 3.3 < cycles.mean() < 5.1, cycles


def test_no_motion_is_periodic():
    """Speech with syllables at random times: the head's spectrum has no line (the old
    1.6 Hz nod metronome put a third of the power within 0.15 Hz of it)."""
    rng = np.random.default_rng(5)
    frames, _, _ = _phrases(12, rng)
    _, poses = _speech(frames, seed=5)
    head = poses[:, TY] + poses[:, NOD]
    x = (head - head.mean()) * np.hanning(len(head))
    freqs = np.fft.rfftfreq(len(x), 1 / FPS)
    power = np.abs(np.fft.rfft(x)) ** 2
    band = (freqs >= 0.5) & (freqs <= 5.0)
    near = lambda f: power[band & (np.abs(freqs - f) <= 0.15)].sum() / power[band].sum()  # noqa: E731
    assert near(1.6) < 0.2
    # listening nods come at irregular times
    hm = HeadMotion(170.0, 6)
    nod = np.array([hm.step(S.LISTENING, i / FPS)[NOD] for i in range(int(90 * FPS))])
    v = np.diff(nod)
    starts = np.flatnonzero((v[1:] > 0.05) & (v[:-1] <= 0.05)) / FPS
    gaps = np.diff(starts)
    assert len(gaps) > 10 and np.std(gaps) > 0.4


def test_gaze_moves_the_iris_within_the_eye(template):
    r = _renderer(template, seed=2)
    r.motion.blinks = False
    tracker = FaceTracker()
    seen = []
    for i in range(int(10 * FPS)):
        f = r.render({}, S.LISTENING, i / FPS)
        if i % 5 == 0:
            p = tracker.update(f).points
            iris = L._run_iris(f, p, L.RIGHT_EYE_CORNERS, False)[0]
            c0, c1 = p[33, :2], p[133, :2]
            seen.append(((iris[0] - (c0[0] + c1[0]) / 2) / np.hypot(*(c1 - c0)), r.motion.pose[GAZE_X]))
    seen = np.array(seen)
    # the iris moves, and the way the gaze says
    assert np.ptp(seen[:, 0]) > 0.03  # eye widths
    assert np.corrcoef(seen[:, 0], seen[:, 1])[0, 1] > 0.6


def test_gaze_mostly_at_the_camera_while_speaking_and_aside_when_thinking():
    sd = {"speaking": [], "listening": []}
    for seed in range(4):
        frames, _, _ = _phrases(30, np.random.default_rng(seed))
        sd["speaking"].append(np.std(_speech(frames, seed=seed)[1][:, GAZE_X]))
        hm = HeadMotion(170.0, seed)
        sd["listening"].append(np.std([hm.step(S.LISTENING, i / FPS)[GAZE_X] for i in range(len(frames))]))
    assert np.mean(sd["speaking"]) < 0.7 * np.mean(sd["listening"]), sd
    asides = []
    for seed in range(10):
        hm = HeadMotion(170.0, seed)
        for i in range(25):
            hm.step(S.IDLE, i / FPS)
        g = np.array([hm.step(S.THINKING, 1 + i / FPS)[GAZE_X] for i in range(int(3 * FPS))])
        asides.append((np.abs(g[5:15]).max(), np.abs(g[-10:]).max()))
    asides = np.array(asides)
    assert (asides[:, 0] > 0.5).all()  # a glance aside within 0.6 s
    assert np.median(asides[:, 1]) < 0.5  # and back


def test_motion_scales_with_the_face():
    frames, _, _ = _phrases(3, np.random.default_rng(2))
    _, small = _speech(frames, seed=7, face=170.0)
    _, big = _speech(frames, seed=7, face=340.0)
    assert np.allclose(big[:, NOD], 2 * small[:, NOD])


def test_motion_is_continuous_across_interruptions_and_states():
    rng = np.random.default_rng(3)
    frames, loud_at, _ = _phrases(2, rng, loud=lambda k: True)
    hm = HeadMotion(170.0, 3)
    poses = []
    cut = loud_at[3] + 2  # mid-nod
    for i, (e, f0) in enumerate(frames[:cut]):
        poses.append(hm.step(S.SPEAKING, i / FPS, e, f0).copy())
    hm.reset()  # interrupted
    for i in range(cut, cut + 30):
        poses.append(hm.step(S.LISTENING, i / FPS).copy())
    for i in range(cut + 30, cut + 60):
        poses.append(hm.step(S.THINKING, i / FPS).copy())
    poses = np.array(poses)
    step = np.abs(np.diff(poses[:, :5], axis=0))
    typical = np.percentile(step[: cut - 1], 95, axis=0) + 1e-3
    # the frames at the interruption and the state change move no more than speech does
    for i in (cut - 1, cut + 29):
        assert (step[i] <= 1.5 * typical + 0.05).all(), (i, step[i], typical)
    # and velocity too: no kink (second difference) beyond speech's own
    acc = np.abs(np.diff(poses[:, :5], 2, axis=0))
    assert (acc[cut - 2 : cut + 1] <= 2 * np.percentile(acc[: cut - 2], 95, axis=0) + 0.05).all()


@pytest.mark.parametrize("f0", [85.0, 140.0, 220.0, 330.0])
def test_frame_pitch(f0):
    sr = 24000
    t = np.arange(960) / sr
    voice = sum(np.sin(2 * np.pi * f0 * h * t + h) / h for h in range(1, 8))
    pcm = (voice / np.abs(voice).max() * 12000).astype(np.int16)
    assert abs(frame_pitch(pcm, sr) - f0) < 0.02 * f0
    noise = np.random.default_rng(0).normal(0, 3000, 960).astype(np.int16)
    assert frame_pitch(noise, sr) == 0.0
    assert frame_pitch(np.zeros(960, np.int16), sr) == 0.0


async def test_the_generator_hands_the_pitch_to_a_renderer_that_follows_it():
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd

    from livekit_avatar_plugin._generator import AvatarVideoGenerator

    from .pattern_pipeline import ClickMotion, FlashRenderer

    class Listening(FlashRenderer):
        follows_pitch = True

        def __init__(self):
            super().__init__(64, 64)
            self.pitches = []

        def render(self, mouth, state, t, energy=0.0):
            if state == S.SPEAKING:
                self.pitches.append(mouth.get(PITCH_KEY))
            return super().render(mouth, state, t, energy)

    class Deaf(Listening):
        follows_pitch = False

    sr = 24000
    t = np.arange(sr) / sr
    pcm = (8000 * np.sign(np.sin(2 * np.pi * 150 * t))).astype(np.int16)
    for renderer in (Listening(), Deaf()):
        gen = AvatarVideoGenerator(motion=ClickMotion(), renderer=renderer, width=64, height=64, fps=FPS, sample_rate=sr)
        for i in range(0, sr, 2400):
            await gen.push_audio(rtc.AudioFrame(pcm[i : i + 2400].tobytes(), sr, 1, 2400))
        await gen.push_audio(AudioSegmentEnd())
        async for item in gen:
            if isinstance(item, AudioSegmentEnd):
                break
        await gen.aclose()
        got = [p for p in renderer.pitches]
        assert len(got) >= 20
        if renderer.follows_pitch:
            assert np.median(got) == pytest.approx(150.0, rel=0.02)
        else:
            assert all(p is None for p in got)


def test_motion_step_is_cheap():
    import time

    hm = HeadMotion(184.0, 0)
    t0 = time.perf_counter()
    for i in range(2000):
        hm.step(S.SPEAKING, i / FPS, SYLLABLE[i % 5], 120.0)
    assert (time.perf_counter() - t0) / 2000 < 0.5e-3
    assert not math.isnan(float(hm.pose.sum()))
