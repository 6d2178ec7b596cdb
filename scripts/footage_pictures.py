"""The footage avatar's pictures for the docs, from synthetic footage only.

Real footage (``../shared/footage``) may not be committed, nor anything made from it, so
the committed pictures come from a clip rendered here: the public-domain astronaut photo
avatar speaking (``tests/footage_synth.py``), built into a footage avatar, which then
speaks held-out sentences. The re-synthesis (built from the first 70 % of a talking clip,
driven by the audio of the last 30 %, shown beside the "person") is made the same way.
Pictures of the real clips come from ``benchmarks/footage_quality.py`` into
``artifacts/`` (ignored by git).

    .venv/bin/python scripts/footage_pictures.py
    # docs/img/footage_contact_sheet.png, docs/img/footage_resynthesis.png, docs/footage_resynthesis.mp4
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.evaluation.picture import measure_avatar  # noqa: E402
from livekit_avatar_plugin._face.footage_build import create_footage_avatar  # noqa: E402
from tests.footage_synth import make_clip  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from footage_quality import resynthesis  # noqa: E402


def main() -> int:
    out = ROOT / "docs" / "img" / "footage_contact_sheet.png"
    with tempfile.TemporaryDirectory() as td:
        os.chdir(td)  # the sheet's title names the avatar by this relative path
        make_clip(Path("astronaut_talking.mp4"), parts=(("idle", 4.0), ("talking", 16.0), ("listening", 4.0)))
        create_footage_avatar("astronaut_talking.mp4", "astronaut-footage-avatar")
        report = measure_avatar("astronaut-footage-avatar", utterances=10, sheet=out)
        print(report.table())
        print(f"wrote {out}")
        make_clip(Path("astronaut_speech.mp4"), parts=(("talking", 24.0),))
        res = resynthesis(Path("astronaut_speech.mp4"), Path(td), Path(td) / "out")
        (ROOT / "docs" / "img" / "footage_resynthesis.png").write_bytes((Path(td) / "out" / "astronaut_speech_resynthesis.png").read_bytes())
        # half size, a small file: the repository keeps no video over 200 KiB
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(Path(td) / "out" / "astronaut_speech_resynthesis.mp4"),
                        "-vf", "scale=iw/2:-2", "-c:v", "libx264", "-crf", "30", "-preset", "slow", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-b:a", "32k", "-ac", "1", str(ROOT / "docs" / "footage_resynthesis.mp4")], check=True)
    print(f"re-synthesis: r avatar vs person {res['r_avatar_vs_person']:.2f}, "
          f"lip-sync model vs person {res['r_model_vs_person']:.2f} (the ceiling)")
    print("wrote docs/img/footage_resynthesis.png, docs/footage_resynthesis.mp4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
