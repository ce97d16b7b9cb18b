"""The embedded demo recording: a talking head synthesised from real parts.

A real photograph (``skimage.data.astronaut()``) animated by warping around its
MediaPipe landmarks, real synthetic speech (festival voices reading Harvard sentences
and CMU Arctic prompts in several speaking styles, with phone timings that
drive the lips and jaw, coarticulated), hand claps at known times, muxed as H.264 + AAC in an mp4
like a phone recording. A ground-truth table beside it says what really
happened in every frame, so every later stage can be checked.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from ..util import atomic_path
from . import face, speech

log = logging.getLogger(__name__)

TRUTH_COLUMNS = ["frame", "time_s", "speaking", "voice", "style", "phone", "mouth_open", "lip_width", "smile", "brow",
                 "lip_gap_px", "mouth_width_px", "head_roll_deg", "head_tx_px", "head_ty_px", "head_scale"]


@dataclass(frozen=True)
class DemoParams:
    duration_s: float  # at least this long (whole sentences)
    fps: int
    width: int
    height: int
    face_fraction: float  # face height / frame height
    audio_rate: int  # like a phone: 48 kHz AAC
    seed: int
    n_claps: int  # one at the start (a slate), the rest between sentences
    pause_s: tuple[float, float]  # pause between sentences, drawn uniformly
    style_block: int  # sentences in a row with the same style
    speech_peak: float  # neutral speech peak amplitude
    clap_peak: float
    head_roll_deg: float
    head_shift_px: float
    head_scale: float
    crf: int
    styles: dict[str, speech.Style]
    voices: tuple[str, ...]  # speakers (keys of speech.VOICES), taking turns in blocks of sentences
    sentence_offset: int  # the first sentence of the table read: disjoint offsets, disjoint text

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DemoParams:
        d = dict(config["demo"])
        d["styles"] = {k: speech.Style(**v) for k, v in d["styles"].items()}
        d["pause_s"] = tuple(d["pause_s"])
        d["voices"] = tuple(d["voices"])
        return cls(**d)

    def plan(self, table_size: int) -> tuple[range, list[str], list[str]]:
        """Which sentences of the table are read (never one twice), and each one's style and
        voice: styles change every ``style_block`` sentences, voices after every style."""
        est_per_sentence = 2.6 + np.mean(self.pause_s)
        n_sent = int(np.ceil(self.duration_s / est_per_sentence * 1.15)) + 2
        if self.sentence_offset >= table_size:
            raise ValueError(f"demo.sentence_offset {self.sentence_offset} is past the end of the sentence table "
                             f"({table_size} sentences)")
        rows = range(self.sentence_offset, min(table_size, self.sentence_offset + n_sent))
        names = list(self.styles)
        styles = [names[(i // self.style_block) % len(names)] for i in range(len(rows))]
        voice_block = self.style_block * len(names)
        voices = [self.voices[(i // voice_block) % len(self.voices)] for i in range(len(rows))]
        return rows, styles, voices


def _smooth_steps(times: np.ndarray, starts, ends, values, sigma_s: float, grid_dt: float = 0.001,
                  fill: float = 0.0) -> np.ndarray:
    """Piecewise-constant targets on [start, end), Gaussian-smoothed, sampled at ``times``."""
    n = int(np.ceil((times.max() + 1.0) / grid_dt))
    sig = np.full(n, fill, dtype=np.float64)
    for a, b, v in zip(starts, ends, values):
        sig[int(a / grid_dt):int(b / grid_dt)] = v
    sig = gaussian_filter1d(sig, sigma_s / grid_dt, mode="nearest")
    return np.interp(times, np.arange(n) * grid_dt, sig)


def _render_frame(rig, f, mouth_open, lip_width, smile, brow, roll, tx, ty, scale):
    p = {"mouth_open": mouth_open[f], "lip_width": lip_width[f], "smile": smile[f], "brow": brow[f]}
    return face.render(rig, p, face.head_matrix(rig, roll[f], tx[f], ty[f], scale[f]))


def make_demo(video_path: str | Path, truth_path: str | Path, events_path: str | Path,
              params: DemoParams) -> None:
    """Write the demo mp4, its per-frame ground truth (TSV) and its events (claps, sentences; JSON)."""
    from skimage import data as skdata

    rng = np.random.default_rng(params.seed)
    sr, fps = params.audio_rate, params.fps
    table = speech.sentences()

    # 1. Plan the script: sentences in style and voice blocks, until the duration is reached.
    rows, styles, voices = params.plan(len(table))
    texts = [table.text[i] for i in rows]
    with tempfile.TemporaryDirectory(prefix="animote-demo-") as tmp:
        spoken = speech.synthesize(texts, Path(tmp), voices)

    # 2. Lay out the audio: slate clap, sentences with pauses, claps in some gaps.
    pieces: list[tuple[float, np.ndarray]] = []
    sentences, claps, phones = [], [], []
    t = 0.4
    claps.append(t)
    t += 0.8
    n_between = max(0, params.n_claps - 1)
    with ThreadPoolExecutor(2) as pool:  # each restyle is an ffmpeg process
        restyled = list(pool.map(lambda a: speech.restyle(a[0][0], a[0][1], params.styles[a[1]], sr),
                                 zip(spoken, styles)))
    for i, ((audio, a_sr, ph), y, text, style, voice) in enumerate(zip(spoken, restyled, texts, styles, voices)):
        st = params.styles[style]
        y = y / (np.abs(y).max() + 1e-9) * params.speech_peak * 10 ** (st.gain_db / 20)
        pieces.append((t, y))
        dur = len(y) / sr
        sentences.append({"index": i, "table_row": rows[i], "text": text, "style": style, "voice": voice,
                          "start_s": t, "end_s": t + dur})
        for r in ph.itertuples():
            phones.append((t + r.start / st.rate, t + r.end / st.rate, r.phone, style))
        t += dur + rng.uniform(*params.pause_s)
        if t >= params.duration_s:
            break
        # Claps between sentences, spread over the recording.
        if n_between and len(claps) - 1 < n_between and t > (len(claps)) * params.duration_s / (n_between + 1):
            t += 0.3
            claps.append(t)
            t += 0.6
    if t < params.duration_s:
        raise RuntimeError(f"demo script too short ({t:.1f} s < demo.duration_s {params.duration_s} s): sentences "
                           f"{rows.start}-{rows.stop - 1} are all the table has from demo.sentence_offset "
                           f"{params.sentence_offset} ({len(table)} sentences); lower the offset or the duration")
    t += 0.2
    if len(claps) < params.n_claps:  # a closing clap, like a slate at the end
        claps.append(t)
        t += 0.6
    n_frames = int(np.ceil(t * fps))
    n_samples = n_frames * sr // fps
    track = np.zeros(n_samples, np.float32)
    for start, y in pieces:
        i0 = int(round(start * sr))
        track[i0:i0 + len(y)] += y[: n_samples - i0]
    for c in claps:
        burst = speech.clap(sr, rng, params.clap_peak)
        i0 = int(round(c * sr))
        track[i0:i0 + len(burst)] += burst[: n_samples - i0]
    track = np.clip(track, -1, 1)

    # 3. Per-frame ground truth. The frame f shows the face at the middle of its interval.
    times = (np.arange(n_frames) + 0.5) / fps
    ph = pd.DataFrame(phones, columns=["start", "end", "phone", "style"])
    vis = np.array([speech.VISEMES.get(p, (0.2, 0.0)) for p in ph.phone]) if len(ph) else np.zeros((0, 2))
    mouth_scale = np.array([params.styles[s].mouth_scale for s in ph["style"]])
    # Jaw and lips coarticulated: each anticipates and carries over its neighbours' targets.
    mouth_open = np.clip(speech.coarticulate(times, ph.start, ph.end, ph.phone, vis[:, 0] * mouth_scale,
                                             "mouth_open"), 0, 1.2)
    lip_width = speech.coarticulate(times, ph.start, ph.end, ph.phone, vis[:, 1], "lip_width")
    phone_col = np.full(n_frames, "", dtype=object)
    for r in ph.itertuples():  # the phone sounding at each frame's time
        phone_col[np.searchsorted(times, r.start):np.searchsorted(times, r.end)] = r.phone
    sent = pd.DataFrame(sentences)
    # Expression holds through the pause after a sentence and changes between style blocks.
    exp_start = sent.start_s.to_numpy() - 0.3
    exp_end = np.append(sent.start_s.to_numpy()[1:] - 0.3, times.max() + 1)
    exp_start[0] = 0.0
    smile = _smooth_steps(times, exp_start, exp_end, [params.styles[s].smile for s in sent["style"]], 0.2)
    brow = _smooth_steps(times, exp_start, exp_end, [params.styles[s].brow for s in sent["style"]], 0.2)
    speaking = np.zeros(n_frames, bool)
    style_col = np.full(n_frames, "", dtype=object)
    voice_col = np.full(n_frames, "", dtype=object)
    for r in sent.itertuples():
        f0, f1 = int(r.start_s * fps), int(np.ceil(r.end_s * fps))
        speaking[f0:f1] = True
        voice_col[f0:f1] = r.voice
    for r, a, b in zip(sent.itertuples(), exp_start, exp_end):
        style_col[int(max(a, 0) * fps):int(b * fps)] = r.style
    # A little head motion: slow sums of sinusoids with random phases.
    def wobble(amp):
        ph_ = rng.uniform(0, 2 * np.pi, 3)
        fr = np.array([0.05, 0.13, 0.31])
        return amp * sum(np.sin(2 * np.pi * f * times + p) for f, p in zip(fr, ph_)) / 2.0
    roll, tx, ty = wobble(params.head_roll_deg), wobble(params.head_shift_px), wobble(params.head_shift_px)
    scale = 1.0 + wobble(params.head_scale)

    # 4. Render the frames and mux with the audio.
    photo = skdata.astronaut()
    still = face.crop_to_face(photo, face.still_landmarks(photo), (params.width, params.height),
                              params.face_fraction)
    rig = face.build_rig(still, face.still_landmarks(still))
    gap_px = np.zeros(n_frames)
    width_px = np.zeros(n_frames)
    with tempfile.TemporaryDirectory(prefix="animote-demo-") as tmp, atomic_path(video_path) as out:
        wav = Path(tmp) / "audio.f32"
        wav.write_bytes(track.astype("<f4").tobytes())
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{params.width}x{params.height}", "-r", str(fps),
               "-i", "-", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", str(wav),
               "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "superfast", "-crf", str(params.crf),
               "-pix_fmt", "yuv420p", "-g", str(2 * fps), "-c:a", "aac", "-b:a", "128k",
               "-movflags", "+faststart", "-f", "mp4", str(out)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

        # Two renderers in threads (OpenCV and numpy release the GIL) keep the encoder fed.
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(_render_frame, rig, f, mouth_open, lip_width, smile, brow, roll, tx, ty, scale)
                       for f in range(min(4, n_frames))]
            for f in range(n_frames):
                frame, moved = futures[f].result()
                futures[f] = None
                if f + 4 < n_frames:
                    futures.append(pool.submit(_render_frame, rig, f + 4, mouth_open, lip_width, smile, brow, roll,
                                               tx, ty, scale))
                gap_px[f] = np.linalg.norm(moved[14] - moved[13])
                width_px[f] = np.linalg.norm(moved[291] - moved[61])
                proc.stdin.write(frame.tobytes())
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed writing the demo: {proc.stderr.read().decode()[-400:]}")
    log.info("demo: %d frames (%.1f s), %d sentences, %d claps", n_frames, n_frames / fps, len(sent), len(claps))

    truth = pd.DataFrame({
        "frame": np.arange(n_frames), "time_s": np.arange(n_frames) / fps, "speaking": speaking,
        "voice": voice_col, "style": style_col, "phone": phone_col, "mouth_open": mouth_open, "lip_width": lip_width, "smile": smile, "brow": brow,
        "lip_gap_px": gap_px, "mouth_width_px": width_px, "head_roll_deg": roll, "head_tx_px": tx,
        "head_ty_px": ty, "head_scale": scale,
    }, columns=TRUTH_COLUMNS)
    with atomic_path(truth_path) as tmp_truth:
        truth.to_csv(tmp_truth, sep="\t", index=False, float_format="%.5f")
    events = {"fps": fps, "n_frames": n_frames, "audio_rate": sr, "width": params.width, "height": params.height,
              "claps_s": claps, "sentences": sentences,
              "phones": [[round(a, 5), round(b, 5), p] for a, b, p, _ in phones]}
    with atomic_path(events_path) as tmp_events:
        tmp_events.write_text(json.dumps(events, indent=1))


def load_truth(truth_path: str | Path, events_path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The demo's per-frame ground truth and its events."""
    return pd.read_csv(truth_path, sep="\t"), json.loads(Path(events_path).read_text())
