"""Synthetic talking-head clips with exact ground truth, for the footage builder's tests.

The shipped photo avatar (the public-domain astronaut) is rendered by the photo renderer
speaking known sentences: the mouth channels of every frame are known, and so are the
parts (idle, talking, listening) and the offset between picture and sound. Test
instrumentation only: it never ships as an avatar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from livekit_avatar_plugin._audio.lipsync import LipSyncModel
from livekit_avatar_plugin._face.avatar import default_avatar
from livekit_avatar_plugin._render.renderer import FaceRenderer
from livekit_avatar_plugin._state import ConversationState
from livekit_avatar_plugin.training import voices

FPS = 25
RATE = 16000
SENTENCES = (
    "Please pass me the map before the boat leaves the harbour.",
    "Bob bought a big blue balloon for his mother on Monday.",
    "Why would you move the old oak table into the room today?",
    "My brother plays the piano every morning, very slowly.",
    "We should look at the view from the window, you and me.",
)


@dataclass
class Truth:
    """What the clip shows, frame by frame."""

    channels: np.ndarray  # (n, 5): the mouth channels each frame was drawn with
    talking: np.ndarray  # (n,) bool
    parts: dict[str, tuple[float, float]]  # seconds
    offset_ms: float  # how much later the picture is than the sound
    lost: tuple[int, int] | None = None  # frames [a, b) where no face is drawn
    n: int = 0
    extra: dict = field(default_factory=dict)


def _speech(seconds: float) -> np.ndarray:
    """espeak-ng sentences, back to back with short pauses, as 16 kHz float."""
    out, total = [], 0
    k = 0
    while total < seconds * RATE:
        text = SENTENCES[k % len(SENTENCES)]
        pcm, sr = voices.synth_espeak(text, "en-us", 165, 50)[:2]
        pcm = np.asarray(pcm, np.float32)
        if sr != RATE:
            t = np.arange(int(len(pcm) * RATE / sr)) / RATE
            pcm = np.interp(t, np.arange(len(pcm)) / sr, pcm).astype(np.float32)
        out += [pcm, np.zeros(int(0.25 * RATE), np.float32)]
        total += len(pcm) + int(0.25 * RATE)
        k += 1
    x = np.concatenate(out)[: int(seconds * RATE)]
    return x / max(1e-6, float(np.abs(x).max())) * 0.5


def make_clip(
    path: Path,
    *,
    parts: tuple[tuple[str, float], ...] = (("idle", 4.0), ("talking", 8.0), ("listening", 4.0)),
    offset_ms: float = 0.0,
    size: tuple[int, int] = (320, 320),
    audio: bool = True,
    second_face: bool = False,
    lost: tuple[float, float] | None = None,
    rotate: int = 0,
    shake: float = 0.0,
) -> Truth:
    """Write an MP4 (H.264 + AAC) of the astronaut in the given parts; return the truth.
    ``rotate``: degrees clockwise a player turns the stored frames, as a phone writes them.
    ``shake``: a hand-held camera, the picture jittering by about this many pixels."""
    total = sum(s for _, s in parts)
    n = int(total * FPS)
    sound = np.zeros(int(total * RATE) + RATE, np.float32)
    states = np.empty(n, object)
    talking = np.zeros(n, bool)
    spans, t0 = {}, 0.0
    for name, secs in parts:
        a, b = int(round(t0 * FPS)), int(round((t0 + secs) * FPS))
        spans[name] = (t0, t0 + secs)
        states[a:b] = {"idle": ConversationState.IDLE, "listening": ConversationState.LISTENING,
                       "talking": ConversationState.SPEAKING}[name]
        if name == "talking":
            speech = _speech(secs)
            sound[int(t0 * RATE): int(t0 * RATE) + len(speech)] = speech
            talking[a:b] = True
        t0 += secs
    model = LipSyncModel.load()
    ch = model.infer(sound, RATE)
    # the picture is later than the sound by offset_ms: frame i shows the sound of i/FPS - offset
    t = (np.arange(n) + 0.5) / FPS - offset_ms / 1000.0
    channels = np.stack([np.interp(t * model.fps, np.arange(len(ch)), ch[:, c]) for c in range(ch.shape[1])], 1)
    channels[~talking] = 0.0
    # A listener smiles now and then: the listening part shows attention plainly, not only
    # through the renderer's small nods (which idle breathing can match)
    listening = np.array([st == ConversationState.LISTENING for st in states])
    ts = np.arange(n)[listening] / FPS
    channels[listening, list(model.channels).index("lip_spread")] = 0.3 * (1 - np.cos(2 * np.pi * ts / 2.0))
    pad = int(np.ceil(2 * shake))
    renderer = FaceRenderer(default_avatar(), size[0] + 2 * pad, size[1] + 2 * pad, seed=3)
    rng = np.random.default_rng(11)
    freqs, phases = rng.uniform(2, 7, (2, 3)), rng.uniform(0, 2 * np.pi, (2, 3))
    jitter = np.stack([np.rint(shake / 2 * np.sin(2 * np.pi * freqs[d] * np.arange(n)[:, None] / FPS + phases[d]).sum(1))
                       for d in range(2)], 1).astype(int) if shake else np.zeros((n, 2), int)
    lost_frames = (int(lost[0] * FPS), int(lost[1] * FPS)) if lost else None
    out_size = (size[0] * 8 // 5, size[1]) if second_face else size
    if rotate in (90, 270):
        out_size = (out_size[1], out_size[0])

    container = av.open(str(path), "w", format="mp4")
    vs = container.add_stream("libx264", rate=FPS)
    vs.width, vs.height = out_size
    vs.pix_fmt = "yuv420p"
    vs.options = {"crf": "18", "preset": "veryfast"}
    if rotate:
        vs.set_display_rotation(-rotate)  # the display matrix counts counter-clockwise
    ast = None
    if audio:
        ast = container.add_stream("aac", rate=RATE)
        ast.layout = "mono"
    for i in range(n):
        mouth = dict(zip(model.channels, map(float, channels[i])))
        energy = 0.6 if talking[i] else 0.0
        rgb = renderer.render(mouth, states[i], i / FPS, energy)
        dx, dy = pad + jitter[i]
        rgb = np.ascontiguousarray(rgb[dy: dy + size[1], dx: dx + size[0]])
        if second_face:
            small = np.asarray(Image.fromarray(rgb).resize((size[0] * 3 // 5, size[1] * 3 // 5)))
            canvas = np.full((size[1], out_size[0], 3), 200, np.uint8)
            canvas[:, : size[0]] = rgb
            canvas[size[1] // 5: size[1] // 5 + small.shape[0], size[0]: size[0] + small.shape[1]] = small
            rgb = canvas
        if lost_frames and lost_frames[0] <= i < lost_frames[1]:
            rgb = np.full_like(rgb, 90)
            rgb[:, :, 2] = (i * 7) % 255  # something still moves: not a still clip
        if rotate:
            # stored turned back, so that applying the rotation shows it upright
            rgb = np.ascontiguousarray(np.rot90(rgb, rotate // 90))
        for pkt in vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            container.mux(pkt)
    for pkt in vs.encode():
        container.mux(pkt)
    if ast is not None:
        pcm = (np.clip(sound[: int(total * RATE)], -1, 1) * 32767).astype(np.int16)
        step = 1024
        for k in range(0, len(pcm), step):
            chunk = pcm[k: k + step]
            frame = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = k
            frame.time_base = Fraction(1, RATE)
            for pkt in ast.encode(frame):
                container.mux(pkt)
        for pkt in ast.encode():
            container.mux(pkt)
    container.close()
    return Truth(channels.astype(np.float32), talking, spans, offset_ms, lost_frames, n, {"jitter": jitter})

