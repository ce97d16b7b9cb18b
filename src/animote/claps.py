"""Clap removal: find claps in the audio, cut the same frame intervals from audio and video.

Claps are found by their shape, not their loudness, so the detector holds at any recording
level, microphone and voice. Candidates are the peaks of the high-passed envelope (a clap is
broadband; most speech energy is lower) that stand well above the recording's own quiet level
(a percentile of that envelope: no absolute dBFS anywhere). Each candidate is then measured and
must look like a clap: it rises out of what came before within a few milliseconds, lasts longer
than a click, dies away within tens of milliseconds, is not followed by speech, and carries a
good share of its energy above the high-pass. Every candidate is judged before the spacing rule
(the paper's ``find_peaks`` distance), so a rejected consonant cannot hide a real clap beside it.

Cuts are whole video frames, and the audio cut is the same frames mapped to
samples by :func:`animote.media.frame_to_sample`, so audio and video stay in
sync to the frame. Unlike the paper, the audio is cut (not silenced), because
silencing audio while cutting video shifts every later frame.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal

from . import RecordingError
from .config import from_mapping
from .media import frame_to_sample

log = logging.getLogger(__name__)

# The detector's internals: what makes a burst a clap. Not config: no recording should need them
# changed. Measured by benchmarks/claps.py (48 recordings, 5 voices, gain -30 dBFS to clipping,
# claps 6 dB under to 20 dB over the speech, clicks, thumps and coughs); a change must keep its
# table clean. Tests and benchmarks may still vary them through ClapParams's fields.
HIGHPASS_HZ = 2000.0  # claps are broadband; speech energy is mostly below this
WINDOW_MS = 0.5  # envelope resolution: fine enough to tell a clap (several ms) from a click
FLOOR_PERCENTILE = 20.0  # the recording's quiet level: this percentile of the high-passed envelope
MIN_RISE_DB = 15.0  # a clap rises this far above the loudest of the lookback before its onset ...
MAX_RISE_MS = 3.0  # ... to within 6 dB of its peak in this long (a cough takes tens of ms)
ONSET_LOOKBACK_MS = 60.0  # its onset is found within this before its peak, and it is quiet this long before
MIN_WIDTH_MS = 2.0  # shorter than this within 10 dB of the peak: a click (0.5 ms), not a clap
MAX_AFTER_DB = -18.0  # the low band 40-140 ms later stays this far under the peak (benchmark claps: -26 dB
# or less); louder is speech going on (a plosive's vowel: -15 dB and up), not a clap's ring
MIN_HIGH_SHARE = 0.2  # share of the burst's first 10 ms of energy above HIGHPASS_HZ: broadband, so neither
MAX_HIGH_SHARE = 0.9  # a thump (about 0) nor a lone hiss or burst (0.95+); benchmark claps 0.6-0.8
MERGE_MS = 20.0  # peaks of one burst closer than this are one candidate
SPIKE_DB = 6.0  # a peak window this much louder than the next loudest of its burst is measured from that one
BAND_HZ = 8000.0  # at a higher rate the audio is low-passed here first: every measure means what it
# means at 16 kHz (where it was set), with more samples to each 0.5 ms window
DETECT_RATE = 44100  # claps are found at the recording's own rate, at least this (a 16 kHz window of
# 0.5 ms holds 8 samples, so one loud sample of a noise burst can spike it)
BLOCK_S, CONTEXT_S = 60.0, 1.5  # a long recording is searched block by block, each with this much context


@dataclass(frozen=True)
class ClapParams:
    """The config's ``claps:`` (what a user decides; config/config.yaml says why each default is
    what it is), then the detector's internals, the module constants above."""

    min_over_floor_db: float  # a candidate peak stands this far above the quiet level
    max_decay_ms: float  # a clap falls 20 dB below its peak within this (more in a reverberant room)
    min_spacing_s: float  # two claps closer than this are one (the louder)
    cut_before_s: float  # cut this much before the clap peak ...
    cut_after_s: float  # ... and this much after it (the clap's ring)
    highpass_hz: float = HIGHPASS_HZ
    window_ms: float = WINDOW_MS
    floor_percentile: float = FLOOR_PERCENTILE
    min_rise_db: float = MIN_RISE_DB
    max_rise_ms: float = MAX_RISE_MS
    onset_lookback_ms: float = ONSET_LOOKBACK_MS
    min_width_ms: float = MIN_WIDTH_MS
    max_after_db: float = MAX_AFTER_DB
    min_high_share: float = MIN_HIGH_SHARE
    max_high_share: float = MAX_HIGH_SHARE
    merge_ms: float = MERGE_MS

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClapParams:
        return from_mapping(cls, config["claps"])

CUT_COLUMNS = ["clap_s", "start_s", "end_s", "start_frame", "end_frame", "n_frames"]
KEPT_COLUMNS = ["raw_start", "raw_end", "clean_start", "clean_end", "n_frames"]


def _envelope_db(x: np.ndarray, hop: int) -> np.ndarray:
    """Peak level (dB re full scale) of ``x`` in windows of ``hop`` samples."""
    n = len(x) // hop
    env = np.abs(x[: n * hop]).reshape(n, hop).max(axis=1) if n else np.zeros(0)
    return 20 * np.log10(env + 1e-9)


def _filtered(audio: np.ndarray, sample_rate: int, btype: str, cutoff) -> np.ndarray:
    nyq = sample_rate / 2
    cutoff = np.minimum(np.asarray(cutoff, float), 0.9 * nyq)
    sos = signal.butter(4, cutoff, btype=btype, fs=sample_rate, output="sos")
    return signal.sosfiltfilt(sos, audio.astype(np.float64))


def _band_limited(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The audio as float64, low-passed at BAND_HZ when the rate holds more (the band the
    detector's measures were set on)."""
    x = np.asarray(audio, dtype=np.float64)
    if sample_rate > 2 * BAND_HZ and len(x) > 27:
        x = _filtered(x, sample_rate, "lowpass", BAND_HZ)
    return x


def clap_envelope(audio: np.ndarray, sample_rate: int, params: ClapParams) -> tuple[np.ndarray, int]:
    """Peak envelope (dBFS) of the high-passed waveform (band-limited: :data:`BAND_HZ`) in windows of
    ``window_ms``; returns (env, hop)."""
    hop = max(1, int(round(params.window_ms * 1e-3 * sample_rate)))
    x = _band_limited(audio, sample_rate)
    return _envelope_db(_filtered(x, sample_rate, "highpass", params.highpass_hz), hop), hop


@dataclass
class Candidate:
    """A peak of the high-passed envelope and the shape measures the tests look at (dB, ms)."""

    time_s: float
    level_db: float  # high-passed peak, dBFS
    over_floor_db: float  # above the recording's quiet level
    rise_db: float  # above the loudest of the lookback before its onset
    rise_ms: float  # from its onset to within 6 dB of its peak
    width_ms: float  # time until it stays 10 dB under the peak for 1 ms
    decay_ms: float  # time until it stays 20 dB under the peak
    after_db: float  # the low band 40-140 ms later, relative to the peak: speech going on?
    high_share: float  # share of the burst's energy above highpass_hz: broadband?
    louder_db: float  # how much louder its own sound gets elsewhere (0: this is its peak)
    clap: bool = False
    why: str = ""


def clap_candidates(audio: np.ndarray, sample_rate: int, params: ClapParams) -> list[Candidate]:
    """Every peak of the high-passed envelope that stands ``min_over_floor_db`` above the
    recording's quiet level (its ``floor_percentile`` of the envelope), measured and judged by
    shape; none is dropped for its neighbours here (the spacing rule comes after, on claps only)."""
    hop = max(1, int(round(params.window_ms * 1e-3 * sample_rate)))
    block = int(round(BLOCK_S * sample_rate / hop)) * hop
    if len(audio) <= block + 2 * int(round(CONTEXT_S * sample_rate / hop)) * hop:
        return _candidates(audio, sample_rate, params)
    # a long recording, block by block (memory stays that of one block at any rate), its quiet
    # level from the whole: the blocks overlap by CONTEXT_S, and each keeps the peaks of its core
    ctx = int(round(CONTEXT_S * sample_rate / hop)) * hop
    spans = [(a, min(a + block, len(audio))) for a in range(0, len(audio), block)]
    envs = []
    for a, b in spans:
        lo, hi = max(0, a - ctx), min(len(audio), b + ctx)
        env = clap_envelope(audio[lo:hi], sample_rate, params)[0]
        envs.append(env[(a - lo) // hop:(a - lo) // hop + (b - a) // hop])
    floor = max(float(np.percentile(np.concatenate(envs), params.floor_percentile)), -100.0)
    out = []
    for a, b in spans:
        lo, hi = max(0, a - ctx), min(len(audio), b + ctx)
        for c in _candidates(audio[lo:hi], sample_rate, params, floor, (a - lo, b - lo)):
            out.append(dataclasses.replace(c, time_s=c.time_s + lo / sample_rate))
    return out


def _candidates(audio: np.ndarray, sample_rate: int, params: ClapParams, floor: float | None = None,
                core: tuple[int, int] | None = None) -> list[Candidate]:
    """:func:`clap_candidates` on one piece of audio: with ``floor`` the quiet level is given (the
    whole recording's), with ``core`` only peaks in those samples are kept (the rest is context)."""
    x = _band_limited(audio, sample_rate)
    if not len(x):
        return []
    hop = max(1, int(round(params.window_ms * 1e-3 * sample_rate)))
    ms = hop * 1e3 / sample_rate  # envelope resolution
    hp = _filtered(x, sample_rate, "highpass", params.highpass_hz)
    env = _envelope_db(hp, hop)
    low = _envelope_db(_filtered(x, sample_rate, "bandpass", (100.0, 1000.0)), hop)
    if not len(env):
        return []
    if floor is None:
        floor = max(float(np.percentile(env, params.floor_percentile)), -100.0)
    peaks, _ = signal.find_peaks(env, height=floor + params.min_over_floor_db,
                                 distance=max(1, int(round(params.merge_ms / ms))))
    if core is not None:
        peaks = peaks[(peaks * hop >= core[0]) & (peaks * hop < core[1])]
    look = max(2, int(round(params.onset_lookback_ms / ms)))
    run2, run5 = max(2, int(round(2 / ms))), max(1, int(round(5 / ms)))
    top = env[peaks]
    pk = _burst_level(env, peaks, max(1, int(round(1 / ms))))  # the shape measures' reference
    # The onset: going back from the peak, where the last 2 ms run quieter than the peak by
    # min_rise_db ends (within the lookback; a run, so that a dip inside a clipped burst does
    # not count). A clap rises from there to within 6 dB of its peak in a few ms. The searches
    # run over every peak at once (the same answers as one peak at a time, without the per-peak
    # overhead: a long recording has tens of thousands of peaks).
    n_back = peaks - np.maximum(0, peaks - look)
    runs = n_back >= run2  # a lookback shorter than one run: single windows count
    level = pk - params.min_rise_db
    in_runs = _first_index(_run_max(env, run2), level, peaks - run2, np.where(runs, n_back - run2 + 1, 0), step=-1)
    single = _first_index(env, level, peaks - 1, np.where(runs, 0, n_back), step=-1)
    k = np.where(runs, in_runs, single)  # windows back from the peak to the onset; -1: never that quiet
    quiet = k >= 0
    i0 = np.where(quiet, peaks - 1 - k, peaks - n_back)
    rise = np.where(quiet, _first_index(env, pk - 6, i0, np.where(quiet, peaks - i0 + 1, 0), below=False), n_back)
    n_after = np.minimum(int(round(1000 / ms)), len(env) - peaks)
    width = _until_below(env, pk - 10, peaks, n_after, run2 // 2)  # until it stays 10 dB down for 1 ms
    decay = _until_below(env, pk - 20, peaks, n_after, run5)  # stays 20 dB down for 5 ms
    out = []
    for j, p in enumerate(peaks):
        if quiet[j]:
            before = float(env[max(0, i0[j] - look):i0[j] + 1].max())
        else:  # never that much quieter: it grew out of sound as loud as itself
            before = float(env[p - n_back[j]:p].max(initial=-180))
        # the loudest point of its own sound, from its onset to where it has died away
        loudest = float(env[i0[j]:p + decay[j] + 1].max())
        a0, a1 = p + int(round(40 / ms)), p + int(round(140 / ms))
        after_low = float(low[a0:a1].max()) - pk[j] if a0 < len(low) else -99.0
        s0, s1 = i0[j] * hop, min(len(x), (p + int(round(10 / ms))) * hop)
        e_all = float(np.sum(x[s0:s1] ** 2)) + 1e-18
        share = float(np.sum(hp[s0:s1] ** 2)) / e_all
        # its time: the first sample at half the burst's peak amplitude (clipped claps have a plateau)
        seg = np.abs(x[i0[j] * hop:(p + 1) * hop])
        t = (i0[j] * hop + int(np.argmax(seg >= 0.5 * seg.max()))) / sample_rate if len(seg) else p * hop / sample_rate
        c = Candidate(t, float(top[j]), float(top[j] - floor), float(pk[j] - before), float(rise[j]) * ms,
                      float(width[j] * ms), float(decay[j] * ms), float(after_low), share, loudest - float(top[j]))
        c.clap, c.why = _judge(c, params)
        out.append(c)
    return out


def _burst_level(env: np.ndarray, peaks: np.ndarray, reach: int) -> np.ndarray:
    """The level each shape measure is taken against: the peak window's, unless one window spikes
    above the rest of its burst (a noise burst's sample that happens to fall alone in a window),
    then the next loudest window within ``reach`` windows either side, down to SPIKE_DB under the
    peak. A lone click stays a click: its neighbours are far quieter, and SPIKE_DB under its peak
    it is still narrow."""
    if not len(peaks):
        return env[peaks]
    idx = np.clip(peaks[:, None] + np.arange(-reach, reach + 1), 0, len(env) - 1)
    near = np.sort(env[idx], axis=1)
    return np.maximum(near[:, -2], env[peaks] - SPIKE_DB)


def _run_max(env: np.ndarray, run: int) -> np.ndarray:
    """The loudest of each ``run`` windows in a row: a run of windows starting at ``i`` is all
    below a level exactly when ``_run_max(env, run)[i]`` is."""
    if len(env) < run:
        return np.zeros(0)
    return np.lib.stride_tricks.sliding_window_view(env, run).max(axis=1)


def _first_index(values: np.ndarray, level: np.ndarray, base: np.ndarray, count: np.ndarray, step: int = 1,
                 below: bool = True) -> np.ndarray:
    """For each peak ``i``: the least ``k < count[i]`` with ``values[base[i] + step * k]`` below
    ``level[i]`` (at or above it when not ``below``); -1 where there is none. Searched in
    growing blocks of ``k``, since most answers lie within a few windows."""
    found = np.full(len(base), -1, np.int64)
    todo = np.flatnonzero(count > 0)
    k0, block = 0, 32
    while len(todo):
        k = k0 + np.arange(block)
        at = values[np.clip(base[todo, None] + step * k, 0, max(len(values) - 1, 0))]
        hit = (k < count[todo, None]) & ((at < level[todo, None]) if below else (at >= level[todo, None]))
        got = hit.any(axis=1)
        found[todo[got]] = k0 + hit[got].argmax(axis=1)
        todo = todo[~got & (count[todo] > k0 + block)]
        k0, block = k0 + block, min(4 * block, 512)
    return found


def _until_below(env: np.ndarray, level: np.ndarray, start: np.ndarray, length: np.ndarray, run: int) -> np.ndarray:
    """Per peak: windows from ``start`` (within the next ``length``) until ``env`` falls below
    ``level`` and stays there for ``run`` windows (a dip between the random peaks of a burst is
    not its end); ``length`` where it never does."""
    count = np.where(length >= run, length - run + 1, 0)
    k = _first_index(_run_max(env, run), level, start, count)
    return np.where(k >= 0, k, length)


def _judge(c: Candidate, params: ClapParams) -> tuple[bool, str]:
    """A clap is the peak of its own sound, rises out of (near) silence, is brief but not a click,
    dies away within tens of milliseconds with no speech right after it, and is broadband."""
    if c.louder_db > 0.5:
        return False, f"not its peak: the same sound gets {c.louder_db:.1f} dB louder"
    if c.rise_db < params.min_rise_db:
        return False, f"no onset: rises only {c.rise_db:.1f} dB over the {params.onset_lookback_ms:g} ms before it"
    if c.rise_ms > params.max_rise_ms:
        return False, f"slow rise: {c.rise_ms:.1f} ms to within 6 dB of its peak"
    if c.width_ms < params.min_width_ms:
        return False, f"a click: only {c.width_ms:.1f} ms within 10 dB of its peak"
    if c.decay_ms > params.max_decay_ms:
        return False, f"too long: {c.decay_ms:.0f} ms before it falls 20 dB"
    if c.after_db > params.max_after_db:
        return False, f"speech follows: the low band 40-140 ms later is at {c.after_db:+.1f} dB of its peak"
    if not params.min_high_share <= c.high_share <= params.max_high_share:
        return False, f"narrowband: {c.high_share:.0%} of its energy above {params.highpass_hz:g} Hz"
    return True, "clap"


def detect_claps(audio: np.ndarray, sample_rate: int, params: ClapParams,
                 candidates: list[Candidate] | None = None) -> np.ndarray:
    """Times (s) of the claps in ``audio``, sorted: the candidates that pass every shape test,
    then the spacing rule among those alone (the loudest of claps closer than ``min_spacing_s``)."""
    cands = clap_candidates(audio, sample_rate, params) if candidates is None else candidates
    for c in cands:
        if not c.clap:
            log.debug("peak at %.3f s (%.1f dBFS) is not a clap: %s", c.time_s, c.level_db, c.why)
    kept: list[Candidate] = []
    for c in sorted((c for c in cands if c.clap), key=lambda c: -c.level_db):
        if all(abs(c.time_s - k.time_s) >= params.min_spacing_s for k in kept):
            kept.append(c)
    return np.sort(np.array([c.time_s for c in kept]))


def plan_cuts(clap_times: np.ndarray, n_frames: int, fps: float, params: ClapParams,
              recording: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Whole-frame intervals to cut around each clap, merged; and the segments kept.

    Returns (cuts, kept). ``cuts`` has one row per merged interval, in seconds
    and raw frames; ``kept`` maps each kept raw frame range to its range in
    the cleaned recording. Kept + cut frames = ``n_frames``, by construction.
    """
    intervals: list[list] = []
    for t in np.sort(clap_times):
        a = max(0, math.floor((t - params.cut_before_s) * fps))
        b = min(n_frames, math.ceil((t + params.cut_after_s) * fps))
        if b <= a:
            continue
        if intervals and a <= intervals[-1][1]:
            intervals[-1][1] = max(intervals[-1][1], b)
            intervals[-1][2].append(t)
        else:
            intervals.append([a, b, [t]])
    cuts = pd.DataFrame(
        [{"clap_s": ";".join(f"{t:.4f}" for t in ts), "start_s": a / fps, "end_s": b / fps,
          "start_frame": a, "end_frame": b, "n_frames": b - a} for a, b, ts in intervals],
        columns=CUT_COLUMNS,
    )
    kept_rows, pos, clean = [], 0, 0
    for a, b, _ in intervals + [[n_frames, n_frames, []]]:
        if a > pos:
            kept_rows.append({"raw_start": pos, "raw_end": a, "clean_start": clean,
                              "clean_end": clean + a - pos, "n_frames": a - pos})
            clean += a - pos
        pos = max(pos, b)
    kept = pd.DataFrame(kept_rows, columns=KEPT_COLUMNS)
    if kept.empty:
        raise RecordingError(recording, "clap removal would cut every frame; check the claps: settings")
    assert int(kept.n_frames.sum() + cuts.n_frames.sum()) == n_frames
    return cuts, kept


def splice_audio(audio: np.ndarray, kept: pd.DataFrame, fps: float, sample_rate: int) -> np.ndarray:
    """The cleaned audio: the kept frame ranges, joined so that cleaned frame ``c``
    starts at sample ``frame_to_sample(c)``, exactly as in the raw audio."""
    parts = []
    for row in kept.itertuples():
        c0, c1 = frame_to_sample([row.clean_start, row.clean_end], fps, sample_rate)
        r0 = int(frame_to_sample(row.raw_start, fps, sample_rate))
        part = audio[r0:r0 + (c1 - c0)]
        if len(part) < c1 - c0:
            part = np.concatenate([part, np.zeros(c1 - c0 - len(part), np.float32)])
        parts.append(part)
    return np.concatenate(parts).astype(np.float32)


def clean_to_raw(frames: np.ndarray, kept: pd.DataFrame) -> np.ndarray:
    """Map cleaned-recording frame indices to raw-recording frame indices."""
    frames = np.asarray(frames)
    idx = np.searchsorted(kept.clean_end.to_numpy(), frames, side="right")
    if np.any(idx >= len(kept)) or np.any(frames < 0):
        raise IndexError("frame outside the cleaned recording")
    return kept.raw_start.to_numpy()[idx] + frames - kept.clean_start.to_numpy()[idx]
