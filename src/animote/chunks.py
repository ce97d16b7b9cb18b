"""Chunks: the cleaned recording split into fixed-length pieces (30 s in the paper).

A chunk does not copy its video. It holds an exact frame range of the
recording's video (``segments``: raw frame ranges, more than one when a clap
was cut inside it), read on demand by :func:`iter_chunk_frames` with a
frame-exact seek. Re-encoding every chunk would cost more time than the mesh
stage at 1080p and lose quality; ``export_video`` writes inspectable mp4s
when a person wants them. Each chunk's audio is its own 16 kHz mono wav.

The manifest (``manifest.tsv`` in the chunk folder) has one row per chunk,
with its frame range in the cleaned and in the raw recording.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import RecordingError
from .config import ChunkParams
from .media import ProbeInfo, frame_to_sample, iter_frames, write_wav
from .util import atomic_path

log = logging.getLogger(__name__)

MANIFEST = "manifest.tsv"
MANIFEST_COLUMNS = ["recording", "chunk", "clean_start", "clean_end", "raw_start", "raw_end",
                    "n_frames", "segments", "audio", "video", "fps", "sample_rate"]


@dataclass(frozen=True)
class Chunk:
    recording: str
    chunk: str
    clean_start: int
    clean_end: int
    raw_start: int
    raw_end: int
    n_frames: int
    segments: tuple[tuple[int, int], ...]  # raw frame ranges [a, b), in order
    audio: str  # path of the chunk's wav
    video: str  # path of the recording's (constant frame rate) video; in the manifest, relative to it
    fps: float
    sample_rate: int

    @property
    def raw_frames(self) -> np.ndarray:
        """The raw-recording frame index of every frame of the chunk."""
        return np.concatenate([np.arange(a, b) for a, b in self.segments])


def plan_chunks(n_clean: int, fps: float, length_s: float, min_length_s: float) -> list[tuple[int, int]]:
    """Cleaned-frame ranges [start, end) of chunks ``length_s`` long. Every frame is in exactly one;
    a tail shorter than ``min_length_s`` joins the chunk before it."""
    size = max(1, int(round(length_s * fps)))
    min_size = int(round(min_length_s * fps))
    bounds = list(range(0, n_clean, size)) + [n_clean]
    ranges = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    if len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] < min_size:
        last = ranges.pop()
        ranges[-1] = (ranges[-1][0], last[1])
    return ranges


def raw_segments(kept: pd.DataFrame, clean_start: int, clean_end: int) -> list[tuple[int, int]]:
    """Raw frame ranges that make up cleaned frames [clean_start, clean_end)."""
    out = []
    for row in kept.itertuples():
        a, b = max(clean_start, row.clean_start), min(clean_end, row.clean_end)
        if b > a:
            off = row.raw_start - row.clean_start
            out.append((a + off, b + off))
    return out


def _fmt_segments(segs) -> str:
    return ",".join(f"{a}:{b}" for a, b in segs)


def _parse_segments(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(int(v) for v in s.split(":")) for s in str(text).split(",") if s)


def write_chunks(out_dir: str | Path, recording: str, video: str, info: ProbeInfo, clean_audio: np.ndarray,
                 sample_rate: int, kept: pd.DataFrame, params: ChunkParams) -> pd.DataFrame:
    """Write every chunk's wav and the manifest into ``out_dir`` (which must be a fresh,
    temporary folder: the caller renames it when complete). Returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=False)
    n_clean = int(kept.n_frames.sum())
    expected = int(frame_to_sample(n_clean, info.fps, sample_rate))
    if len(clean_audio) != expected:
        raise RecordingError(recording, f"cleaned audio has {len(clean_audio)} samples, expected {expected}")
    rows = []
    for i, (c0, c1) in enumerate(plan_chunks(n_clean, info.fps, params.length_s, params.min_length_s)):
        name = f"c{i:03d}"
        segs = raw_segments(kept, c0, c1)
        s0, s1 = frame_to_sample([c0, c1], info.fps, sample_rate)
        write_wav(out_dir / f"{name}.wav", clean_audio[s0:s1], sample_rate)
        rows.append({"recording": recording, "chunk": name, "clean_start": c0, "clean_end": c1,
                     "raw_start": segs[0][0], "raw_end": segs[-1][1], "n_frames": c1 - c0,
                     "segments": _fmt_segments(segs), "audio": f"{name}.wav", "video": str(video),
                     "fps": info.fps, "sample_rate": sample_rate})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    assert int(manifest.n_frames.sum()) == n_clean
    manifest.to_csv(out_dir / MANIFEST, sep="\t", index=False)
    log.info("recording '%s': %d cleaned frames in %d chunks", recording, n_clean, len(manifest))
    return manifest


def load_chunks(chunk_dir: str | Path) -> list[Chunk]:
    """The chunks of one recording, read from its manifest. Its paths are relative to the chunk
    folder (older manifests held absolute video paths: still read)."""
    chunk_dir = Path(chunk_dir)
    df = pd.read_csv(chunk_dir / MANIFEST, sep="\t", dtype={"chunk": str, "recording": str})
    out = []
    for r in df.itertuples(index=False):
        out.append(Chunk(recording=r.recording, chunk=r.chunk, clean_start=int(r.clean_start),
                         clean_end=int(r.clean_end), raw_start=int(r.raw_start), raw_end=int(r.raw_end),
                         n_frames=int(r.n_frames), segments=_parse_segments(r.segments),
                         audio=str(chunk_dir / r.audio), video=os.path.normpath(chunk_dir / r.video),
                         fps=float(r.fps),
                         sample_rate=int(r.sample_rate)))
    return out


def find_chunk(chunk_dir: str | Path, chunk_id: str) -> Chunk:
    """One chunk of a recording, by id."""
    for chunk in load_chunks(chunk_dir):
        if chunk.chunk == chunk_id:
            return chunk
    raise KeyError(f"chunk {chunk_id} is not in {Path(chunk_dir) / MANIFEST}")


def iter_chunk_frames(chunk: Chunk, info: ProbeInfo, size: tuple[int, int] | None = None,
                      threads: int = 1) -> Iterator[np.ndarray]:
    """Stream the chunk's RGB frames in order, one segment after another."""
    for a, b in chunk.segments:
        yield from iter_frames(chunk.video, a, b - a, info, size=size, threads=threads)


def export_chunk_video(chunk: Chunk, info: ProbeInfo, dst: str | Path) -> None:
    """Encode one chunk as an mp4 (H.264 + AAC, its own audio) for a person to inspect."""
    with atomic_path(dst) as tmp:
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{info.width}x{info.height}", "-r", info.fps_fraction, "-i", "-", "-i", chunk.audio,
               "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        for frame in iter_chunk_frames(chunk, info):
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"encoding {dst} failed: {proc.stderr.read().decode()[-300:]}")
