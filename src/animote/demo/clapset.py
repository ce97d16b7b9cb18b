"""Recordings with known claps for testing clap detection: real speech (festival's CMU Arctic
voice, espeak-ng's voices), the demo's synthetic claps at a chosen level against the speech, and
transients that are not claps (a click, a low thump, a cough-like noise burst), with the overall
gain anywhere from quiet to clipping. The benchmark (benchmarks/claps.py) and the tests build
their cases here.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from . import speech

SR = 16000
# name -> (engine, voice, pitch factor); male and female
VOICES = {
    "slt": ("festival", None, 1.0),  # CMU Arctic SLT, female
    "slt-low": ("festival", None, 0.72),  # the same voice a fifth lower: a male range
    "espeak-us-m": ("espeak-ng", "en-us", 1.0),
    "espeak-us-f": ("espeak-ng", "en-us+f3", 1.0),
    "espeak-gb-m": ("espeak-ng", "en-gb+m3", 1.0),
}


def say(texts: list[str], voice: str, workdir: Path) -> list[np.ndarray]:
    """Speech for each text, mono float32 at 16 kHz, peak-normalised to 1."""
    engine, name, pitch = VOICES[voice]
    if engine == "festival":
        raw = [(a, sr) for a, sr, _ in speech.synthesize(texts, workdir)]
    else:
        raw = []
        for i, text in enumerate(texts):
            wav = workdir / f"{voice}-{i:03d}.wav"
            subprocess.run(["espeak-ng", "-v", name, "-w", str(wav), text], check=True, capture_output=True)
            a, sr = sf.read(wav, dtype="float32")
            raw.append((a, sr))
    out = []
    for a, sr in raw:
        y = speech.restyle(a, sr, speech.Style(pitch, 1.0, 0, 1, 0, 0), SR)
        out.append((y / (np.abs(y).max() + 1e-9)).astype(np.float32))
    return out


def click(rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A mouse or relay click: an impulse that dies in a fraction of a millisecond."""
    n = int(0.004 * sr)
    t = np.arange(n) / sr
    return (np.exp(-t / 0.00012) * rng.choice([-1, 1])).astype(np.float32)


def thump(rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A knock on a table or a door: a damped low tone."""
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    f = rng.uniform(50, 140)
    return (np.sin(2 * np.pi * f * t) * np.minimum(t / 0.002, 1) * np.exp(-t / 0.05)).astype(np.float32)


def cough(rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A cough-like noise burst: broadband, rising over tens of milliseconds, a few hundred long."""
    n = int(rng.uniform(0.25, 0.4) * sr)
    t = np.arange(n) / sr
    env = np.minimum(t / rng.uniform(0.015, 0.04), 1) * np.exp(-np.maximum(t - 0.06, 0) / 0.07)
    noise = signal.lfilter([1, -0.6], [1], rng.normal(size=n))  # a little tilt, as breath has
    return (noise * env / (np.abs(noise * env).max() + 1e-9)).astype(np.float32)


DISTRACTORS = {"click": click, "thump": thump, "cough": cough}


def hot_mic(y: np.ndarray, boost_db: float, sr: int = SR) -> np.ndarray:
    """A bright, close microphone: frequencies above 3 kHz boosted (sibilants and bursts peak)."""
    sos = signal.butter(2, 3000, btype="highpass", fs=sr, output="sos")
    return (y + (10 ** (boost_db / 20) - 1) * signal.sosfilt(sos, y)).astype(np.float32)


@dataclass
class Case:
    """One recording's recipe. ``events``: (kind, level_db relative to the speech peak, gap_s to
    the nearest speech) in the pauses, in order; kind "clap" or a DISTRACTORS key. A fourth item
    True puts an event in the same pause as the one before, ``gap_s`` after that one's end."""

    name: str
    voice: str
    texts: list[str]
    events: list[tuple[str, float, float]] = field(default_factory=list)
    gain_db: float = -6.0  # the speech peak, dBFS (above 0: clipped)
    hot_db: float = 0.0  # high-frequency boost of the speech (a bright, close microphone)
    noise_db: float = -60.0  # room noise, relative to the speech peak
    seed: int = 0


@dataclass
class Recording:
    audio: np.ndarray  # float32 at the rate built at (16 kHz by default), clipped to [-1, 1]
    claps_s: list[float]  # the burst starts of the claps
    others_s: list[tuple[str, float]]  # transients that are not claps


def build(case: Case, spoken: list[np.ndarray] | None = None, sr: int = SR) -> Recording:
    """Lay out speech and events at ``sr``: sentence, pause (with an event ``gap`` from the speech
    on both sides), sentence, ...; then gain, noise and clipping. The speech (16 kHz) is resampled;
    the claps and other events are made at ``sr``, each starting at a random sample, so its phase
    against the detector's 0.5 ms windows is random too."""
    from math import gcd

    rng = np.random.default_rng(case.seed)
    phases = np.random.default_rng([case.seed, sr])  # apart, so the recipe's own draws stay the same
    if spoken is None:
        with tempfile.TemporaryDirectory(prefix="animote-claps-") as tmp:
            spoken = say(case.texts, case.voice, Path(tmp))
    if sr != SR:
        g = gcd(sr, SR)
        spoken = [signal.resample_poly(y, sr // g, SR // g).astype(np.float32) for y in spoken]
    spoken = [hot_mic(y, case.hot_db, sr) if case.hot_db else y for y in spoken]
    peak = max(float(np.abs(y).max()) for y in spoken)
    spoken = [y / peak for y in spoken]  # speech peaks at 1 before the gain
    parts: list[np.ndarray] = [np.zeros(int(rng.uniform(0.3, 0.8) * sr), np.float32)]
    claps, others = [], []
    events = list(case.events)
    for i, y in enumerate(spoken):
        parts.append(y)
        slots = 1 + (i == len(spoken) - 1) * max(0, len(events) - 1)  # the rest go after the last sentence
        for _ in range(slots):
            if not events:
                parts.append(np.zeros(int(rng.uniform(0.35, 0.8) * sr), np.float32))
                break
            while events:
                kind, level_db, gap, *joined = events.pop(0)
                burst = speech.clap(sr, rng, 1.0) if kind == "clap" else DISTRACTORS[kind](rng, sr)
                burst = burst / np.abs(burst).max() * 10 ** (level_db / 20)
                if joined and joined[0]:
                    parts.pop()  # the previous event's trailing gap: this one follows it
                at = sum(len(p) for p in parts) + int(gap * sr)
                lead = int(phases.integers(0, max(1, int(0.0005 * sr))))  # the burst's phase
                at += lead
                (claps if kind == "clap" else others).append((kind, at / sr))
                tail = max(len(burst), int(0.06 * sr))  # a clap's ring is about 60 ms: the gap counts after it
                parts.append(np.zeros(int(gap * sr) + lead, np.float32))
                parts.append(np.concatenate([burst, np.zeros(tail - len(burst), np.float32)]))
                parts.append(np.zeros(int(gap * sr), np.float32))
                if not (events and len(events[0]) > 3 and events[0][3]):
                    break
    parts.append(np.zeros(int(0.5 * sr), np.float32))
    x = np.concatenate(parts)
    x = x + rng.normal(scale=10 ** (case.noise_db / 20), size=len(x)).astype(np.float32)
    x = np.clip(x * 10 ** (case.gain_db / 20), -1, 1).astype(np.float32)
    return Recording(x, [t for _, t in claps], others)


def score(found: np.ndarray, truth: list[float], tolerance_s: float = 0.05) -> dict:
    """Match detections to true claps (each at most once, nearest first, within ``tolerance_s``):
    true positives, false positives, misses, and the timing errors of the matches (s)."""
    found = list(np.sort(np.asarray(found, float)))
    pairs = sorted((abs(f - t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)
                   if abs(f - t) <= tolerance_s)
    used_f, used_t, errors = set(), set(), []
    for err, i, j in pairs:
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            errors.append(err)
    return {"tp": len(errors), "fp": len(found) - len(errors), "fn": len(truth) - len(errors), "errors": errors}
