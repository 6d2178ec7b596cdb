"""Make the documentation pictures: docs/img/face_contact_sheet.png and docs/img/face_speaking.gif.

    python -m livekit_avatar_plugin.render.pictures [--text "..."]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from livekit_avatar_plugin.face.avatar import default_avatar
from livekit_avatar_plugin.render.renderer import FaceRenderer
from livekit_avatar_plugin.state import ConversationState as S

REPO = Path(__file__).resolve().parents[2]
POSES = [("p / b / m", {"jaw_open": 0.15, "lips_closed": 1.0}, S.SPEAKING),
         ("a", {"jaw_open": 0.85}, S.SPEAKING),
         ("oo", {"jaw_open": 0.3, "lip_round": 1.0}, S.SPEAKING),
         ("idle", {}, S.IDLE)]


def _font(size: int):
    for name in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    return ImageFont.load_default()


def contact_sheet(out: Path) -> None:
    tiles = []
    for label, mouth, state in POSES:
        r = FaceRenderer(default_avatar(), 512, 512, seed=0)
        r.motion.blinks = False
        for i in range(14):  # the motion settles; frame 15 is the tile
            r.render(mouth, state, i / 25)
        f = r.render(mouth, state, 14 / 25)
        x0, y0, x1, y1 = r.roi
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        tile = Image.fromarray(f).crop((cx - 150, cy - 170, cx + 150, cy + 170))
        d = ImageDraw.Draw(tile)
        d.rectangle((0, 300, 300, 340), fill=(20, 20, 24))
        d.text((150, 320), label, fill=(255, 255, 255), font=_font(24), anchor="mm")
        tiles.append(np.asarray(tile))
    sheet = np.concatenate(tiles, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out, optimize=True)


def speaking_gif(out: Path, text: str) -> None:
    from livekit_avatar_plugin.audio.local_tts import synthesize
    from livekit_avatar_plugin.cli.render import energy_curve, mouth_curves

    pcm, sr = synthesize(text)
    fps = 12.5
    lead = int(0.6 * fps)
    n = int(np.ceil(len(pcm) / sr * fps))
    chans, curves = mouth_curves(pcm, sr, 25.0, 2 * n + 2)
    energy = energy_curve(pcm, sr, 25.0, 2 * n + 2)
    r = FaceRenderer(default_avatar(), 480, 480, seed=1)
    x0, y0, x1, y1 = r.roi
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2 + 10
    box = (slice(cy - 140, cy + 140), slice(cx - 120, cx + 120))
    frames = []
    for i in range(lead + n + lead):
        t = i / fps
        k = 2 * (i - lead)
        if 0 <= i - lead < n:
            mouth = {c: float(curves[k, j]) for j, c in enumerate(chans)}
            f = r.render(mouth, S.SPEAKING, t, float(energy[k]))
        else:
            f = r.render({}, S.LISTENING if i < lead else S.IDLE, t)
        frames.append(Image.fromarray(f[box]))
    mosaic = Image.fromarray(np.concatenate([np.asarray(f) for f in frames[:: max(1, len(frames) // 8)]], 1))
    pal = mosaic.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE)
    q = [fr.quantize(palette=pal, dither=Image.Dither.NONE) for fr in frames]
    q[0].save(out, save_all=True, append_images=q[1:], duration=int(1000 / fps), loop=0, optimize=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default="Hello! I am a local avatar. Maybe a puppy, or a blue moon boat?")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    a = ap.parse_args(argv)
    contact_sheet(a.out / "face_contact_sheet.png")
    speaking_gif(a.out / "face_speaking.gif", a.text)
    for p in ("face_contact_sheet.png", "face_speaking.gif"):
        print(a.out / p, (a.out / p).stat().st_size // 1024, "KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
