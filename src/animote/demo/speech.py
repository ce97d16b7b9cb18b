"""Speech for the demo: festival voices reading phonetically balanced sentences (the 720
Harvard sentences and the 1,132 CMU Arctic prompts, about 95 minutes at festival's rate), with
phone timings, restyled in pitch, rate and loudness by ffmpeg; and the mouth those phones
draw, coarticulated (Cohen & Massaro's dominance functions)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

# Three speakers with phone timings, from Debian's festival voices (each a real recorded person,
# not a pitch change of another): name -> (festival voice, Debian package).
VOICES: dict[str, tuple[str, str]] = {
    "slt": ("voice_cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),  # US English, female (CMU Arctic SLT)
    "kal": ("voice_kal_diphone", "festvox-kallpc16k"),  # US English, male (diphone)
    "ked": ("voice_ked_diphone", "festvox-kdlpc16k"),  # US English, male (diphone), another speaker
}

# Festival's radio phone set -> (mouth opening 0..1, lip width -1 round .. +1 spread).
# Bilabials close the lips, open vowels open them most, rounded vowels narrow them.
VISEMES: dict[str, tuple[float, float]] = {
    "aa": (1.0, 0.1), "ae": (0.85, 0.5), "ah": (0.75, 0.1), "ao": (0.8, -0.5), "aw": (0.85, -0.3),
    "ay": (0.85, 0.3), "ax": (0.45, 0.0), "axr": (0.4, -0.2), "eh": (0.65, 0.4), "er": (0.4, -0.3),
    "ey": (0.55, 0.6), "ih": (0.4, 0.5), "iy": (0.3, 0.8), "ow": (0.6, -0.8), "oy": (0.65, -0.6),
    "uh": (0.4, -0.5), "uw": (0.3, -1.0),
    "p": (0.0, 0.0), "b": (0.0, 0.0), "m": (0.0, 0.0), "f": (0.1, 0.0), "v": (0.1, 0.0),
    "w": (0.15, -0.9), "r": (0.25, -0.3), "l": (0.3, 0.1), "y": (0.25, 0.4),
    "sh": (0.2, -0.4), "zh": (0.2, -0.4), "ch": (0.2, -0.4), "jh": (0.2, -0.4),
    "s": (0.15, 0.3), "z": (0.15, 0.3), "th": (0.2, 0.1), "dh": (0.2, 0.1),
    "t": (0.2, 0.1), "d": (0.2, 0.1), "n": (0.2, 0.1), "k": (0.25, 0.0), "g": (0.25, 0.0),
    "ng": (0.25, 0.0), "hh": (0.35, 0.0), "pau": (0.0, 0.0),
}

# Coarticulation (Cohen & Massaro 1993): each phone pulls each articulator towards its target with
# a dominance D(t) = alpha * exp(-|t - centre| / tau), tau differing before the phone's centre
# (anticipation) and after it (carry-over); an articulator's value is the dominance-weighted mean
# of the targets. Phones that must reach their target dominate: bilabials and labiodentals close
# the mouth whatever the vowels around them do, rounded vowels and /w/ round the lips. The lips
# anticipate longer than the jaw (rounding starts 100-200 ms ahead; jaw closing about 50-100 ms).
# A weak rest target (0, dominance REST) takes over in pauses far from any phone.
COART_TAU_S = {"mouth_open": (0.08, 0.05), "lip_width": (0.12, 0.08)}  # (anticipation, carry-over)
VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay", "ax", "axr", "eh", "er", "ey", "ih", "iy", "ow", "oy",
                    "uh", "uw"})
COART_ALPHA = {  # dominance per phone (1 when not listed; vowels VOWEL_JAW_ALPHA on the jaw)
    "mouth_open": {"p": 6.0, "b": 6.0, "m": 6.0, "f": 3.0, "v": 3.0, "pau": 0.5,
                   # tongue consonants leave the jaw to the vowels around them
                   **{c: 0.5 for c in ("t", "d", "n", "l", "r", "k", "g", "ng", "hh", "y", "th", "dh")}},
    "lip_width": {"uw": 4.0, "ow": 4.0, "oy": 3.0, "w": 4.0, "uh": 2.5, "ao": 2.5, "aw": 2.0, "er": 1.5,
                  "iy": 2.0, "ey": 1.5, "p": 0.5, "b": 0.5, "m": 0.5, "pau": 0.3},
}
# The lips reach for a closure early: /p b m/ pull the mouth shut over a longer anticipation.
COART_TAU_PHONE = {"mouth_open": {c: (0.14, 0.05) for c in ("p", "b", "m")}}
VOWEL_JAW_ALPHA = 1.5
COART_REST = 0.02
COART_REACH_S = 0.8  # dominance beyond this far from a phone's centre is left out (< 1e-4 of alpha)


def coarticulate(times: np.ndarray, starts: np.ndarray, ends: np.ndarray, phones, targets: np.ndarray,
                 articulator: str) -> np.ndarray:
    """One articulator's value at ``times`` (s) from phone segments [start, end) with their
    ``targets``: the dominance-weighted mean of the targets (and the rest target 0)."""
    alpha = COART_ALPHA[articulator]
    taus = COART_TAU_PHONE.get(articulator, {})
    times = np.asarray(times, np.float64)
    num = np.zeros(len(times))
    den = np.full(len(times), COART_REST)
    for a, b, ph, target in zip(starts, ends, phones, targets):
        c = 0.5 * (a + b)
        i0, i1 = np.searchsorted(times, [c - COART_REACH_S, c + COART_REACH_S])
        dt = times[i0:i1] - c
        a_ph = VOWEL_JAW_ALPHA if articulator == "mouth_open" and ph in VOWELS else alpha.get(ph, 1.0)
        tau_a, tau_c = taus.get(ph, COART_TAU_S[articulator])
        d = a_ph * np.exp(-np.where(dt < 0, -dt / tau_a, dt / tau_c))
        num[i0:i1] += d * target
        den[i0:i1] += d
    return num / den


@dataclass(frozen=True)
class Style:
    pitch: float  # pitch factor
    rate: float  # speaking-rate factor (duration divides by it)
    gain_db: float  # loudness relative to neutral
    mouth_scale: float  # how wide the mouth opens relative to neutral
    smile: float  # mouth corners, -1 (down) .. 1 (up)
    brow: float  # brows, -1 (lowered) .. 1 (raised)


def sentences() -> pd.DataFrame:
    """Harvard sentences and CMU Arctic prompts (as read in the paper), packaged with animote."""
    with resources.files("animote").joinpath("data/sentences.tsv").open() as fh:
        return pd.read_csv(fh, sep="\t")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize(texts: list[str], workdir: Path, voices: list[str] | None = None,
               processes: int = 2) -> list[tuple[np.ndarray, int, pd.DataFrame]]:
    """Run festival over all ``texts``, each in its voice (a key of ``VOICES``; all ``slt`` by
    default), split over ``processes`` festival processes at once; returns (audio, sample_rate,
    phones) per text. ``phones`` has columns start, end (s) and phone."""
    voices = ["slt"] * len(texts) if voices is None else list(voices)
    unknown = sorted(set(voices) - set(VOICES))
    if unknown:
        raise ValueError(f"demo.voices: unknown voice(s) {', '.join(unknown)} (known: {', '.join(VOICES)})")
    workdir.mkdir(parents=True, exist_ok=True)
    groups = [list(range(len(texts)))[k::max(1, processes)] for k in range(max(1, processes))]
    procs = []
    for g, idx in enumerate(g for g in groups if g):
        lines, current = [], None
        for i in idx:
            if voices[i] != current:
                current = voices[i]
                lines.append(f"({VOICES[current][0]})")
            lines.append(f"(set! utt (Utterance Text {_scheme_string(texts[i])}))")
            lines.append("(utt.synth utt)")
            lines.append(f'(utt.save.wave utt "{workdir}/s{i:03d}.wav" \'riff)')
            lines.append(f'(utt.save.segs utt "{workdir}/s{i:03d}.segs")')
        script = workdir / f"synth{g}.scm"
        script.write_text("\n".join(lines) + "\n")
        try:
            with open(workdir / f"synth{g}.log", "w") as err:  # a file: a full pipe cannot stall festival
                procs.append((subprocess.Popen(["festival", "-b", str(script)], stdout=subprocess.DEVNULL,
                                               stderr=err), workdir / f"synth{g}.log"))
        except FileNotFoundError as exc:
            raise RuntimeError("festival is not installed: run scripts/bootstrap.sh (Debian packages "
                               f"festival, {', '.join(v[1] for v in VOICES.values())})") from exc
    errors = [(p.wait(), log.read_text()) for p, log in procs]
    out = []
    for i in range(len(texts)):
        wav, segs = workdir / f"s{i:03d}.wav", workdir / f"s{i:03d}.segs"
        if any(rc != 0 for rc, _ in errors) or not wav.exists():
            raise RuntimeError(f"festival failed on {texts[i]!r} (voice {voices[i]}: is {VOICES[voices[i]][1]} "
                               f"installed?): {' '.join(e for _, e in errors)[-400:]}")
        audio, sr = sf.read(wav, dtype="float32")
        rows, prev = [], 0.0
        for line in segs.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] != "#":
                end = float(parts[0])
                rows.append((prev, end, parts[2]))
                prev = end
        out.append((audio, int(sr), pd.DataFrame(rows, columns=["start", "end", "phone"])))
    return out


def restyle(audio: np.ndarray, sr: int, style: Style, out_rate: int) -> np.ndarray:
    """Change pitch by ``style.pitch`` and speed by ``style.rate`` (ffmpeg asetrate + atempo),
    resampled to ``out_rate``. Durations divide exactly by ``style.rate``."""
    tempo = style.rate / style.pitch
    chain = [f"asetrate={sr * style.pitch:.3f}", f"aresample={out_rate}"]
    while tempo > 2.0 or tempo < 0.5:  # atempo's range per stage
        step = 2.0 if tempo > 2.0 else 0.5
        chain.append(f"atempo={step}")
        tempo /= step
    chain.append(f"atempo={tempo:.6f}")
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "-",
         "-af", ",".join(chain), "-f", "f32le", "-ar", str(out_rate), "-ac", "1", "-"],
        input=np.asarray(audio, dtype="<f4").tobytes(), capture_output=True, check=True)
    return np.frombuffer(proc.stdout, dtype="<f4").copy()


def clap(sample_rate: int, rng: np.random.Generator, peak: float) -> np.ndarray:
    """A hand clap near the microphone: a broadband burst that hits ``peak`` for its first
    3 ms (claps clip a phone's input), then rings down over about 10 ms; 60 ms long."""
    n = int(0.06 * sample_rate)
    t = np.arange(n) / sample_rate
    env = np.minimum(t / 0.0005, 1.0) * np.exp(-np.maximum(t - 0.003, 0) / 0.01)
    burst = rng.choice([-1.0, 1.0], n) * (0.8 + 0.2 * rng.random(n)) * env
    return (burst / np.abs(burst).max() * peak).astype(np.float32)
