"""Clap removal: find claps in the audio, cut the same frame intervals from audio and video.

Claps are found as in the seed (peaks of the waveform above a threshold, at a
minimum spacing, with ``scipy.signal.find_peaks``), made robust to speech in
two ways: the waveform is high-passed first (a clap is broadband, speech energy
is mostly low), and a peak must rise abruptly out of what came just before it
(``min_onset_ratio``), which plosive bursts and fricatives do not do at clap level.

Cuts are whole video frames, and the audio cut is the same frames mapped to
samples by :func:`animote.media.frame_to_sample`, so audio and video stay in
sync to the frame. Unlike the seed, the audio is cut (not silenced), because
silencing audio while cutting video shifts every later frame.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import signal

from . import RecordingError
from .config import ClapParams
from .media import frame_to_sample

log = logging.getLogger(__name__)

CUT_COLUMNS = ["clap_s", "start_s", "end_s", "start_frame", "end_frame", "n_frames"]
KEPT_COLUMNS = ["raw_start", "raw_end", "clean_start", "clean_end", "n_frames"]


def clap_envelope(audio: np.ndarray, sample_rate: int, params: ClapParams) -> tuple[np.ndarray, int]:
    """Peak envelope (dBFS) of the high-passed waveform in windows of ``window_ms``; returns (env, hop)."""
    nyq = sample_rate / 2
    hp = min(params.highpass_hz, 0.9 * nyq)
    sos = signal.butter(4, hp, btype="highpass", fs=sample_rate, output="sos")
    x = signal.sosfiltfilt(sos, audio.astype(np.float64))
    hop = max(1, int(round(params.window_ms * 1e-3 * sample_rate)))
    n = len(x) // hop
    env = np.abs(x[: n * hop]).reshape(n, hop).max(axis=1) if n else np.zeros(0)
    return 20 * np.log10(env + 1e-9), hop


def detect_claps(audio: np.ndarray, sample_rate: int, params: ClapParams) -> np.ndarray:
    """Times (s) of the claps in ``audio``, sorted."""
    env_db, hop = clap_envelope(audio, sample_rate, params)
    if len(env_db) == 0:
        return np.zeros(0)
    distance = max(1, int(round(params.min_spacing_s * sample_rate / hop)))
    peaks, _ = signal.find_peaks(env_db, height=params.threshold_dbfs, distance=distance)
    look = max(2, int(round(params.onset_lookback_ms * 1e-3 * sample_rate / hop)))
    need_db = 20 * math.log10(params.min_onset_ratio)
    times = []
    for p in peaks:
        # The level before the clap: the loudest window in the lookback, leaving out
        # the two windows right before the peak (a clap's own rise).
        lo, hi = max(0, p - look), max(0, p - 2)
        before = env_db[lo:hi].max() if hi > lo else -180.0
        rise = env_db[p] - before
        if rise >= need_db:
            seg = audio[p * hop:(p + 1) * hop]
            times.append((p * hop + int(np.argmax(np.abs(seg)))) / sample_rate)
        else:
            log.debug("peak at %.3f s (%.1f dBFS) rejected: rises only %.1f dB", p * hop / sample_rate,
                      env_db[p], rise)
    return np.asarray(times)


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
        raise RecordingError(recording, "clap removal would cut every frame; check claps.threshold_dbfs")
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
