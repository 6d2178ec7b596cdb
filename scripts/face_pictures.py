"""The photo face's before/after strip and speaking GIF for the README.

* docs/img/face_before_after.png: the default avatar holding closed, "a", "ee", "oo" and
  "f/v" (the lip-sync model's phone targets) and mid-blink, drawn by the renderer as it was
  before the realism work (taken from git) and by the current one; the mouth at 2x below.
* docs/img/face_speaking.gif: the default avatar speaking a sentence of the offline voice,
  as a session drives it (mouth channels, loudness and each frame's pitch).

    .venv/bin/python scripts/face_pictures.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from livekit_avatar_plugin._face.avatar import default_avatar  # noqa: E402
from livekit_avatar_plugin._render.motion import PITCH_KEY, frame_pitch  # noqa: E402
from livekit_avatar_plugin._render.renderer import FaceRenderer  # noqa: E402
from livekit_avatar_plugin._state import ConversationState as S  # noqa: E402
from livekit_avatar_plugin.training.phonemes import CHANNELS, PHONES  # noqa: E402
from git_versions import module_at  # noqa: E402

BEFORE = "1f6b36f25d278142ac38e50cf5c59cdb1b8d9da8"  # the last commit before the mouth, eyes and head work
IMG = ROOT / "docs" / "img"
SHAPES = (("closed /m/", "m"), ('"a" /aa/', "aa"), ('"ee" /iy/', "iy"), ('"oo" /uw/', "uw"), ('"f/v" /f/', "f"),
          ("blink", None))  # fmt: skip
TILE = 220


def _shape(cls, phone, old: bool) -> np.ndarray:
    r = cls(default_avatar(), 512, 512, seed=1)
    if phone is None:  # a blink, half-way closed: the lids as each renderer draws them
        if old:
            r._next_blink, r._blink_start = 0.0, -10.0
            frames = [r.render({}, S.IDLE, i / 25) for i in range(3)]
        else:
            r.motion.blinks = False
            frames = [r.render({}, S.IDLE, i / 25) for i in range(2)]
            r.motion.blinks = True
            r.motion.next_blink = 2 / 25
            frames += [r.render({}, S.IDLE, (2 + i) / 25) for i in range(3)]
        return np.array(frames[-1], copy=True)
    mouth = dict(zip(CHANNELS, PHONES[phone].start))
    f = None
    for i in range(12):
        f = r.render(mouth, S.SPEAKING, i / 25.0, 0.5)
    return np.array(f, copy=True)


def before_after() -> Path:
    font = ImageFont.load_default(size=14)
    av = default_avatar()
    probe = FaceRenderer(av, 512, 512, seed=1)
    cx, cy = probe.pts[:468, 0].mean(), probe.pts[:468, 1].mean()
    half = 0.75 * probe.fw
    head = tuple(int(v) for v in (cx - half, cy - 1.05 * half, cx + half, cy + 0.95 * half))
    mx, my = probe.pts[[61, 291], :2].mean(0)
    mw = 0.62 * probe.fw
    mouth = tuple(int(v) for v in (mx - mw / 2, my - mw / 4 + 0.03 * probe.fw, mx + mw / 2, my + mw / 4 + 0.03 * probe.fw))
    ex, ey = probe.pts[[33, 263], :2].mean(0)
    ew = 1.1 * probe.fw  # both eyes, the same 2:1 shape as the mouth's crop
    eyes_box = tuple(int(v) for v in (ex - ew / 2, ey - ew / 4, ex + ew / 2, ey + ew / 4))
    old_cls = module_at(BEFORE).FaceRenderer
    rows = [("before", [_shape(old_cls, p, True) for _, p in SHAPES]),
            ("after", [_shape(FaceRenderer, p, False) for _, p in SHAPES])]  # fmt: skip
    zoom_h = TILE // 2
    row_h = 22 + TILE + zoom_h + 6
    sheet = Image.new("RGB", (TILE * len(SHAPES), 28 + row_h * len(rows)), "white")
    d = ImageDraw.Draw(sheet)
    d.text((6, 6), "The default photo avatar, before and after (phone targets held; below each: the mouth at 2x)",
           fill="black", font=font)
    for k, (name, frames) in enumerate(rows):
        y = 28 + k * row_h
        for i, ((label, _), f) in enumerate(zip(SHAPES, frames)):
            img = Image.fromarray(f)
            d.text((i * TILE + 6, y + 2), f"{name}: {label}", fill="gray", font=font)
            sheet.paste(img.crop(head).resize((TILE, TILE), Image.Resampling.LANCZOS), (i * TILE, y + 22))
            if label == "blink":
                sheet.paste(img.crop(eyes_box).resize((TILE, zoom_h), Image.Resampling.LANCZOS), (i * TILE, y + 22 + TILE + 4))
            else:
                sheet.paste(img.crop(mouth).resize((TILE, zoom_h), Image.Resampling.LANCZOS), (i * TILE, y + 22 + TILE + 4))
    out = IMG / "face_before_after.png"
    sheet.save(out, optimize=True)
    return out


def speaking_gif(text: str = "Hello! I am a local avatar. Maybe a puppy, or a blue moon boat?") -> Path:
    from livekit_avatar_plugin._audio.local_tts import synthesize
    from livekit_avatar_plugin.cli.render import energy_curve, mouth_curves

    pcm, sr = synthesize(text)
    fps = 12.5  # every second frame of a 25 fps render: half the file, motion still readable
    lead = int(0.6 * fps)
    n = int(np.ceil(len(pcm) / sr * fps))
    chans, curves = mouth_curves(pcm, sr, 25.0, 2 * n + 2)
    energy = energy_curve(pcm, sr, 25.0, 2 * n + 2)
    r = FaceRenderer(default_avatar(), 480, 480, seed=1)
    x0, y0, x1, y1 = r.roi
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2 + 10
    box = (slice(cy - 140, cy + 140), slice(cx - 120, cx + 120))
    hop = int(sr / 25)
    frames = []
    for j in range(2 * (lead + n + lead)):  # rendered at 25 fps, as a session does; every second kept
        t = j / 25.0
        k = j - 2 * lead
        if 0 <= k < 2 * n:
            mouth = {c: float(curves[k, i]) for i, c in enumerate(chans)}
            mouth[PITCH_KEY] = frame_pitch(pcm[k * hop:(k + 1) * hop], sr)
            f = r.render(mouth, S.SPEAKING, t, float(energy[k]))
        else:
            f = r.render({}, S.LISTENING if k < 0 else S.IDLE, t)
        if j % 2 == 0:
            frames.append(Image.fromarray(f[box]))
    mosaic = Image.fromarray(np.concatenate([np.asarray(f) for f in frames[:: max(1, len(frames) // 8)]], 1))
    pal = mosaic.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE)
    q = [fr.quantize(palette=pal, dither=Image.Dither.NONE) for fr in frames]
    out = IMG / "face_speaking.gif"
    q[0].save(out, save_all=True, append_images=q[1:], duration=int(1000 / fps), loop=0, optimize=True)
    return out


if __name__ == "__main__":
    for path in (before_after(), speaking_gif()):
        print(path, path.stat().st_size // 1024, "KiB")
