"""Generate the lip-sync training / validation / evaluation data.

    python -m livekit_avatar_plugin.training.gen_data [--out artifacts/lipsync] [--scale 1.0]

Training families: espeak (ctypes), festival (kal, ked), piper (joe, optional),
asterisk (recorded human speech, force-aligned), intl (espeak-ng in other languages).
Held out, only ever written to evaluation sets: flite (slt, awb, rms), German
(espeak-ng ``de``), and sphinx (recorded speech from pocketsphinx-testdata).
Training prompts and evaluation prompts are disjoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import data as D
from . import phonemes as P
from . import real_speech as R

TRAIN_FAMILIES = ("espeak", "festival", "piper", "asterisk", "intl")
HELDOUT_FAMILIES = ("flite", "espeak-de", "sphinx")
REAL_FAMILIES = ("asterisk", "sphinx")  # recorded, force-aligned speech
INTL_LANGUAGES = ("es", "it", "pt-br", "ru", "cs")  # German ("de") is the held-out language
LOOKAHEAD_FRAMES = 5  # must match the model (train.py)


def save_eval(path: Path, utts: list[D.Utterance]) -> None:
    meta = [{"family": u.family, "voice": u.voice, "text": u.text, "sr": u.sr, "segs": u.segs, "n": len(u.audio)} for u in utts]
    audio = np.concatenate([u.audio for u in utts]) if utts else np.zeros(0, np.float32)
    np.savez_compressed(path, audio=audio.astype(np.float32), meta=json.dumps(meta))


def load_eval(path: Path) -> list[D.Utterance]:
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    out, pos = [], 0
    for m in meta:
        a = z["audio"][pos : pos + m["n"]]
        pos += m["n"]
        out.append(D.Utterance(m["family"], m["voice"], m["text"], a, m["sr"], [tuple(s) for s in m["segs"]]))
    return out


def eval_set(family: str, n: int, seed: int = 777) -> list[D.Utterance]:
    """A deterministic evaluation set on the eval prompts (never trained on)."""
    if family == "sphinx":
        return R.sphinx()[:n]
    if family == "asterisk":
        return R.asterisk("eval", limit=n)
    if family == "intl":
        per = -(-n // len(INTL_LANGUAGES))
        return [u for lang in INTL_LANGUAGES for u in eval_set(f"espeak-{lang}", per, seed)][:n]
    _, ev = D.split_prompts(lang=family.removeprefix("espeak-") if family.startswith("espeak-") else "en")
    rng = np.random.default_rng(seed)
    texts = [ev[i] for i in rng.choice(len(ev), size=min(n, len(ev)), replace=False)]
    return D.synthesize(family, texts, seed=seed + sum(map(ord, family)))


def training_utterances(family: str, n: int, texts: list[str], seed: int, workdir: Path) -> list[D.Utterance]:
    """``n`` utterances of a training family (synthesised in batches, with progress)."""
    if family == "asterisk":
        return R.asterisk("train", limit=n)
    if family == "intl":
        per = -(-n // len(INTL_LANGUAGES))
        out = []
        for k, lang in enumerate(INTL_LANGUAGES):
            tr, _ = D.split_prompts(lang=lang)
            order = np.random.default_rng(seed + k).permutation(len(tr))[:per]
            out += D.synthesize(f"espeak-{lang}", [tr[i] for i in order], seed=seed + 100 * k)
            print(f"  intl: {lang} {len(out)}/{per * len(INTL_LANGUAGES)}", flush=True)
        return out
    t0 = time.time()
    utts: list[D.Utterance] = []
    for s in range(0, len(texts), 100):
        utts += D.synthesize(family, texts[s : s + 100], seed=seed + s, workdir=str(workdir))
        print(f"  {family}: synthesised {len(utts)}/{len(texts)} ({time.time() - t0:.0f}s)", flush=True)
    return utts


def build_examples(utts: list[D.Utterance], rng: np.random.Generator, copies: int, use_codec: bool):
    from .._audio import features as F

    # other talkers of the same family, for babble
    pool = [
        F.resample(utts[int(i)].audio, utts[int(i)].sr) for i in rng.choice(len(utts), size=min(40, len(utts)), replace=False)
    ]
    feats, tgts, offs, copy_of = [], [], [0], []
    for u in utts:
        pu = D.pad_utterance(u, float(rng.uniform(0.0, 0.4)), float(rng.uniform(0.0, 0.4)))
        for c in range(copies):
            warp = 0.0
            if c > 0 and rng.random() < 0.6:
                warp = float(np.exp(rng.uniform(np.log(0.82), np.log(1.25))))
            audio, rate = D.augment(pu, rng, strength=0 if c == 0 else 1, use_codec=use_codec, warp=warp, pool=pool)
            n = D.n_frames_for(len(audio), rate)
            f = D.features_for(audio, rate, LOOKAHEAD_FRAMES)
            assert len(f) == n + LOOKAHEAD_FRAMES, (len(f), n)
            segs = pu.segs
            if warp:
                k = pu.sr / int(round(pu.sr * warp / 100.0) * 100)
                segs = [(ph, s * k, e * k) for ph, s, e in segs]
            y = P.targets(segs, n)
            feats.append(f.astype(np.float16))
            tgts.append(y.astype(np.float16))
            offs.append(offs[-1] + n + LOOKAHEAD_FRAMES)
            copy_of.append(c)
    return feats, tgts, offs, copy_of


def noise_only_examples(rng: np.random.Generator, count: int):
    """Silence / noise / hum clips: the mouth must stay neutral."""
    feats, tgts = [], []
    for _ in range(count):
        sr = 16000
        n = int(rng.uniform(0.5, 2.0) * sr)
        kind = rng.integers(4)
        x: np.ndarray
        if kind == 0:
            x = np.zeros(n, np.float32)
        elif kind == 1:
            x = D._colored_noise(n, rng, ["white", "pink", "brown"][rng.integers(3)]) * 10 ** (rng.uniform(-70, -35) / 20)
        elif kind == 2:
            t = np.arange(n) / sr
            x = 10 ** (rng.uniform(-60, -30) / 20) * np.sin(2 * np.pi * rng.choice([50, 60, 100, 120]) * t)
        else:
            x = np.zeros(n)
            x[rng.integers(n)] = rng.uniform(0.05, 0.5)  # a click
        x = x.astype(np.float32)
        f = D.features_for(x, sr, LOOKAHEAD_FRAMES)
        nf = D.n_frames_for(n, sr)
        feats.append(f.astype(np.float16))
        tgts.append(P.targets([(P.PAUSE, 0.0, n / sr)], nf).astype(np.float16))
    return feats, tgts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=D.cache_dir())
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--espeak", type=int, default=1800, help="training utterances from espeak-ng")
    ap.add_argument("--festival", type=int, default=600)
    ap.add_argument("--piper", type=int, default=450)
    ap.add_argument("--asterisk", type=int, default=1000, help="recorded prompts (all there are: about 440)")
    ap.add_argument("--intl", type=int, default=900, help="espeak-ng utterances in other languages")
    ap.add_argument("--copies", type=int, default=3, help="versions per utterance (1 clean + augmented)")
    ap.add_argument("--real-copies", type=int, default=6, help="versions per recorded utterance")
    ap.add_argument("--val", type=int, default=30, help="validation utterances per training family")
    ap.add_argument("--eval", type=int, default=40, help="evaluation utterances per family")
    ap.add_argument("--no-codec", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    train_prompts, _ = D.split_prompts()
    print(f"{len(train_prompts)} training prompts", flush=True)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(train_prompts))
    counts = {"espeak": args.espeak, "festival": args.festival, "piper": args.piper, "asterisk": args.asterisk, "intl": args.intl}
    all_feats, all_tgts, fam_of, copy_of = [], [], [], []
    val_utts: list[D.Utterance] = []
    pos = 0
    for fi, fam in enumerate(TRAIN_FAMILIES):
        n = counts[fam]
        if n <= 0:
            continue
        texts = [train_prompts[order[(pos + i) % len(order)]] for i in range(n + args.val)]
        pos += n + args.val
        t0 = time.time()
        try:
            utts = training_utterances(fam, n + args.val, texts, args.seed + 1000 * fi, args.out)
        except ImportError as exc:
            print(f"  {fam}: skipped ({exc}); scripts/pip-train.txt lists the training packages", flush=True)
            continue
        # the last few of each family validate (recorded speech: a tenth of the speaker's prompts)
        n_val = args.val if fam != "asterisk" else len(utts) // 10
        if fam in ("asterisk", "intl"):  # made in order (prompt name, language): validate on a mix
            utts = [utts[i] for i in np.random.default_rng(args.seed).permutation(len(utts))]
        val_utts += utts[len(utts) - n_val :]
        utts = utts[: len(utts) - n_val]
        dur = sum(u.duration for u in utts)
        copies = args.real_copies if fam == "asterisk" else args.copies
        f, y, _, cp = build_examples(utts, np.random.default_rng(args.seed + 7 + fi), copies, not args.no_codec)
        all_feats += f
        all_tgts += y
        fam_of += [fi] * len(f)
        copy_of += cp
        print(
            f"{fam}: {len(utts)} utterances, {dur / 60:.1f} min of speech, {len(f)} examples ({time.time() - t0:.0f}s)",
            flush=True,
        )
    f, y = noise_only_examples(np.random.default_rng(args.seed + 99), max(20, len(all_feats) // 40))
    all_feats += f
    all_tgts += y
    fam_of += [-1] * len(f)
    copy_of += [0] * len(f)
    offs = np.cumsum([0] + [len(a) for a in all_feats])
    np.savez(
        args.out / "train.npz",
        feats=np.concatenate(all_feats),
        targets=np.concatenate(all_tgts),
        lengths=np.array([len(t) for t in all_tgts]),
        offsets=offs,
        family=np.array(fam_of),
        copy=np.array(copy_of),  # 0: the clean version of an utterance
        lookahead=LOOKAHEAD_FRAMES,
    )
    save_eval(args.out / "val.npz", val_utts)
    print(f"wrote {args.out / 'train.npz'}: {len(all_feats)} examples, {offs[-1]} frames", flush=True)
    for fam in TRAIN_FAMILIES + HELDOUT_FAMILIES:
        if counts.get(fam, 1) <= 0:
            continue
        t0 = time.time()
        try:
            utts = eval_set(fam, args.eval)
        except (ImportError, FileNotFoundError) as exc:
            print(f"eval set {fam}: skipped ({exc})", flush=True)
            continue
        save_eval(args.out / f"eval_{fam}.npz", utts)
        print(f"eval set {fam}: {len(utts)} utterances ({time.time() - t0:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
