"""The footage avatar's pictures for the docs, from synthetic footage only.

Real footage (``../shared/footage``) may not be committed, nor anything made from it, so
the committed pictures come from a clip rendered here: the public-domain astronaut photo
avatar speaking (``tests/footage_synth.py``), built into a footage avatar, which then
speaks held-out sentences. Pictures of the real clips come from
``benchmarks/footage_quality.py`` into ``artifacts/`` (ignored by git).

    .venv/bin/python scripts/footage_pictures.py   # docs/img/footage_contact_sheet.png
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.evaluation.picture import measure_avatar  # noqa: E402
from livekit_avatar_plugin.face.footage_build import create_footage_avatar  # noqa: E402
from tests.footage_synth import make_clip  # noqa: E402


def main() -> int:
    out = ROOT / "docs" / "img" / "footage_contact_sheet.png"
    with tempfile.TemporaryDirectory() as td:
        os.chdir(td)  # the sheet's title names the avatar by this relative path
        make_clip(Path("astronaut_talking.mp4"), parts=(("idle", 4.0), ("talking", 16.0), ("listening", 4.0)))
        create_footage_avatar("astronaut_talking.mp4", "astronaut-footage-avatar")
        report = measure_avatar("astronaut-footage-avatar", utterances=10, sheet=out)
    print(report.table())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
