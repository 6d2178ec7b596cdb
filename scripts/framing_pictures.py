"""The framing before/after strip for the docs: photos of the public-domain astronaut placed
where a head-and-shoulders crop is hard (near a corner; cut below the chin), rendered at
512x512 and in portrait by the renderer before the framing change (taken from git) and
by the current one.

    .venv/bin/python scripts/framing_pictures.py   # docs/img/framing_before_after.png
"""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
BEFORE = "8bceca90aadec00cdbcdf6018c9aaedc991ba554"  # the last commit with the old framing
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

import test_framing as T  # noqa: E402
from livekit_avatar_plugin.face.avatar import create_avatar  # noqa: E402
from livekit_avatar_plugin.render.renderer import FaceRenderer  # noqa: E402
from livekit_avatar_plugin.state import ConversationState  # noqa: E402

tmp = Path(tempfile.mkdtemp())
(tmp / "old_renderer.py").write_bytes(subprocess.run(["git", "show", f"{BEFORE}:livekit_avatar_plugin/render/renderer.py"],
                                                     cwd=ROOT, check=True, capture_output=True).stdout)
spec = importlib.util.spec_from_file_location("old_renderer", tmp / "old_renderer.py")
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
cases = [("landscape photo, face at the top right", "face near the top right corner"), ("photo cut below the chin", "cut at the chin's level below")]
font = ImageFont.load_default(size=18)
rows = []
for label, key in cases:
    canvas, at, face = T.PHOTOS[key]
    photo = T._photo(tmp, key, canvas, at, face)
    av = create_avatar(photo, tmp / f"av_{len(rows)}")
    src = Image.open(photo); src.thumbnail((400, 400))
    tiles = [src]
    for R in (old.FaceRenderer, FaceRenderer):
        for w, h in ((512, 512), (720, 1280)):
            f = Image.fromarray(R(av, w, h).render({}, ConversationState.IDLE, 0.0))
            f.thumbnail((400, 400)); tiles.append(f)
    H = 430; row = Image.new('RGB', (sum(t.width for t in tiles) + 20 * len(tiles), H), 'white'); x = 0
    d = ImageDraw.Draw(row)
    names = ['the photo', 'before, 512x512', 'before, portrait', 'after, 512x512', 'after, portrait']
    for t, n in zip(tiles, names):
        row.paste(t, (x, 28)); d.text((x + 4, 4), n, fill='black', font=font); x += t.width + 20
    rows.append(row)
W = max(r.width for r in rows); sheet = Image.new('RGB', (W, sum(r.height for r in rows)), 'white'); y = 0
for r in rows: sheet.paste(r, (0, y)); y += r.height
sheet.save(ROOT / 'docs' / 'img' / 'framing_before_after.png', optimize=True)
print(sheet.size)
