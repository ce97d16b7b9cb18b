"""Benchmark: clap detection against ground truth, on recordings built from real parts.

Builds a set of recordings (default 48) with animote.demo.clapset: speech from festival's CMU
Arctic voice (also pitched down to a male range) and espeak-ng's male and female voices,
sentences from the demo's lists, the demo's synthetic claps, and transients that are not claps
(a click, a low thump, a cough-like burst). Across the set it varies the overall gain (speech
peaks from -30 dBFS to clipping), the clap level (6 dB under to 20 dB over the speech peaks), the
gap between a clap and the nearest speech (0.15 to 2 s), and a bright "hot" microphone (+12 dB
above 3 kHz: sibilants and bursts peak as loud as the claps or louder). Prints precision, recall
and timing error of the detector, beside the detector that shipped before (peaks above -12 dBFS,
a 12 dB onset over 60 ms), and the cases each one gets wrong. Run from the repository root:

    .venv/bin/python benchmarks/claps.py              # 48 recordings at 16 and 44.1 kHz (about 3 minutes on 2 cores)
    .venv/bin/python benchmarks/claps.py --n 96 --cores 8
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import signal

from animote import claps, config
from animote.claps import detect_claps
from animote.demo import clapset, speech

REPO = Path(__file__).resolve().parents[1]


def legacy_detect(audio: np.ndarray, sr: int) -> np.ndarray:
    """The detector as it shipped before (animote 0.1.0, claps.py): high-passed 5 ms peak envelope,
    peaks above -12 dBFS at least 0.5 s apart, kept when 12 dB above the loudest of the 60 ms before."""
    sos = signal.butter(4, 2000, btype="highpass", fs=sr, output="sos")
    x = signal.sosfiltfilt(sos, audio.astype(np.float64))
    hop = int(round(0.005 * sr))
    n = len(x) // hop
    env = 20 * np.log10(np.abs(x[: n * hop]).reshape(n, hop).max(axis=1) + 1e-9)
    peaks, _ = signal.find_peaks(env, height=-12, distance=max(1, int(round(0.5 * sr / hop))))
    look = max(2, int(round(60e-3 * sr / hop)))
    times = []
    for p in peaks:
        lo, hi = max(0, p - look), max(0, p - 2)
        before = env[lo:hi].max() if hi > lo else -180.0
        if env[p] - before >= 20 * math.log10(4):
            seg = audio[p * hop:(p + 1) * hop]
            times.append((p * hop + int(np.argmax(np.abs(seg)))) / sr)
    return np.asarray(times)


def cases(n: int, seed: int = 0) -> list[clapset.Case]:
    """``n`` recipes spread over the grid of voices, gains, clap levels, gaps and distractors."""
    rng = np.random.default_rng(seed)
    texts = list(speech.sentences().text)
    voices = list(clapset.VOICES)
    out = []
    for i in range(n):
        hot = i % 4 == 3  # a quarter with a hot microphone, claps 3 to 12 dB under the speech peaks
        n_claps = 2 + i % 2
        events = []
        for k in range(n_claps):
            level = rng.uniform(-12, -3) if hot else float(np.interp((i * 7 + k * 3) % n, [0, n - 1], [-6, 20]))
            gap = float(np.interp((i * 5 + k * 11) % n, [0, n - 1], [0.15, 2.0]))
            events.append(("clap", level, gap))
        if i % 3 == 0:  # a transient that is not a clap, as loud as a clap
            kind = ["click", "thump", "cough"][(i // 3) % 3]
            events.insert(int(rng.integers(0, len(events) + 1)), (kind, rng.uniform(-3, 12), rng.uniform(0.2, 1.0)))
        out.append(clapset.Case(
            name=f"r{i:03d}", voice=voices[i % len(voices)],
            texts=[texts[(i * 4 + j) % len(texts)] for j in range(3)], events=events,
            gain_db=float(np.interp(i, [0, n - 1], [-30, 6])),  # speech peak; claps over it clip
            hot_db=12.0 if hot else 0.0, noise_db=float(rng.uniform(-70, -45)), seed=seed * 1000 + i))
    return out


def _speak_all(recipes: list[clapset.Case], workdir: Path) -> dict[tuple[str, str], np.ndarray]:
    """Each (voice, sentence) once: festival runs once per voice over all its sentences."""
    need: dict[str, list[str]] = {}
    for c in recipes:
        need.setdefault(c.voice, [])
        need[c.voice] += [t for t in c.texts if t not in need[c.voice]]
    out = {}
    for voice, texts in need.items():
        (workdir / voice).mkdir(parents=True, exist_ok=True)
        for text, y in zip(texts, clapset.say(texts, voice, workdir / voice)):
            out[(voice, text)] = y
    return out


def _hp_peak(x: np.ndarray, sr: int) -> float:
    sos = signal.butter(4, 2000, btype="highpass", fs=sr, output="sos")
    return float(np.abs(signal.sosfiltfilt(sos, x.astype(np.float64))).max()) if len(x) else 0.0


def _run_one(args):
    recipe, spoken, params, sr = args
    rec = clapset.build(recipe, spoken, sr)
    t0 = time.perf_counter()
    new = detect_claps(rec.audio, sr, params)
    t_new = time.perf_counter() - t0
    old = legacy_detect(rec.audio, sr)
    # after the 2 kHz high-pass, does the speech peak as loud as the softest clap, or louder?
    speech_hp = _hp_peak(clapset.build(dataclasses.replace(recipe, events=[]), spoken, sr).audio, sr)
    claps_hp = [_hp_peak(rec.audio[int(t * sr):int((t + 0.06) * sr)], sr) for t in rec.claps_s]
    hot = bool(claps_hp) and speech_hp >= min(claps_hp)
    return recipe, rec, new, old, t_new, hot


def _summary(name: str, scores: list[dict]) -> str:
    tp = sum(s["tp"] for s in scores)
    fp = sum(s["fp"] for s in scores)
    fn = sum(s["fn"] for s in scores)
    errors = np.array([e for s in scores for e in s["errors"]]) * 1000
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    timing = f"{np.median(errors):5.1f} ms median, {errors.max():5.1f} ms max" if len(errors) else "-"
    return (f"{name:26s} precision {precision:.3f}  recall {recall:.3f}  ({tp} found, {fp} false, {fn} missed)  "
            f"timing {timing}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="recordings (at least 40)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--rates", type=int, nargs="+", default=[16000, 44100],
                    help="sample rates the set is rendered at (the workflow detects at 44.1 kHz or more)")
    args = ap.parse_args()
    params = claps.ClapParams.from_config(config.load(args.config, schema=REPO / "config" / "schema.yaml"))
    recipes = cases(args.n, args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="animote-claps-bench-") as tmp:
        spoken = _speak_all(recipes, Path(tmp))
    t1 = time.perf_counter()
    for sr in args.rates:
        _report(recipes, spoken, params, sr, args.cores, t1 - t0)


def _report(recipes, spoken, params, sr: int, cores: int, speech_s: float) -> None:
    """The set rendered at ``sr`` (each clap at a random phase), both detectors run on it."""
    t1 = time.perf_counter()
    jobs = [(r, [spoken[(r.voice, t)] for t in r.texts], params, sr) for r in recipes]
    with ProcessPoolExecutor(cores) as pool:
        results = list(pool.map(_run_one, jobs))
    t2 = time.perf_counter()
    new_scores, old_scores, seconds, audio_s = [], [], [], 0.0
    wrong = []
    n_hot = sum(r[-1] for r in results)
    for recipe, rec, new, old, t_new, _ in results:
        sn, so = clapset.score(new, rec.claps_s), clapset.score(old, rec.claps_s)
        new_scores.append(sn)
        old_scores.append(so)
        seconds.append(t_new)
        audio_s += len(rec.audio) / sr
        if sn["fp"] or sn["fn"]:
            wrong.append(f"  {recipe.name} ({recipe.voice}, speech peak {recipe.gain_db:+.0f} dBFS, hot "
                         f"{recipe.hot_db:+.0f} dB, events {[(k, round(lv, 1), round(g, 2)) for k, lv, g in recipe.events]}): "
                         f"{sn['fp']} false, {sn['fn']} missed; found {np.round(new, 3).tolist()}, "
                         f"truth {np.round(rec.claps_s, 3).tolist()}")
    n_claps = sum(len(r.claps_s) for _, r, *_ in results)
    n_other = sum(len(r.others_s) for _, r, *_ in results)
    print(f"\n[{sr} Hz] {len(recipes)} recordings, {audio_s / 60:.1f} min of audio, {n_claps} claps, {n_other} other "
          f"transients; voices {', '.join(clapset.VOICES)}; speech {speech_s:.0f} s, detection {t2 - t1:.0f} s on "
          f"{cores} cores")
    print(f"{n_hot} recordings where the speech, high-passed at 2 kHz, peaks as loud as a clap or louder")
    print(_summary("shape detector (this)", new_scores))
    print(_summary("shipped before (level)", old_scores))
    print(f"shape detector speed: {audio_s / sum(seconds):.0f}x real time per core")
    if wrong:
        print("recordings the shape detector gets wrong:")
        print("\n".join(wrong))


if __name__ == "__main__":
    main()
