"""Stage entry points of the audio feature stage, on file paths: one backend for one chunk,
and the per-recording report of the active stores."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import RecordingError
from ..chunks import find_chunk, load_chunks
from ..features import compute_features
from ..media import read_wav
from ..store import read_store, write_store
from ..util import atomic_path

log = logging.getLogger(__name__)


def features_chunk(chunk_dir: str | Path, chunk_id: str, spec: Mapping[str, Any], out_store: str | Path) -> dict:
    """Compute one backend's features for one chunk, aligned to its video frames, into a store."""
    chunk = find_chunk(chunk_dir, chunk_id)
    audio, sr = read_wav(chunk.audio)
    name = f"recording '{chunk.recording}' chunk {chunk.chunk}"
    try:
        out = compute_features(audio, sr, spec, chunk.n_frames, chunk.fps, name)
    except ValueError as exc:
        raise RecordingError(chunk.recording, str(exc).removeprefix(f"{name}: ")) from None
    attrs = dict(out.attrs, recording=chunk.recording, chunk=chunk.chunk)
    write_store(out_store, {"features": out.frames, **out.extra}, attrs)
    log.info("%s: %s %s -> (%d, %d), real-time factor %.3f", name, spec["type"], attrs["cache_key"],
             *out.frames.shape, attrs["real_time_factor"])
    return attrs


def features_report(recording: str, stores: Mapping[str, list], chunk_dir: str | Path, out_tsv: str | Path):
    """Per chunk and role: frames (checked against the chunk), dimension, backend, real-time factor."""
    chunks = {c.chunk: c for c in load_chunks(chunk_dir)}
    rows = []
    for role, paths in stores.items():
        for path in paths:
            arrays, attrs = read_store(path, "features")
            f = arrays["features"]
            chunk = chunks[attrs["chunk"]]
            if len(f) != chunk.n_frames or not np.isfinite(f).all():
                raise RecordingError(recording, f"{path}: {len(f)} frames for {chunk.n_frames} video frames, "
                                                f"finite: {bool(np.isfinite(f).all())}")
            rows.append({"recording": recording, "chunk": attrs["chunk"], "role": role,
                         "cache_key": attrs["cache_key"], "frames": len(f), "dim": f.shape[1],
                         "real_time_factor": attrs["real_time_factor"]})
    df = pd.DataFrame(rows)
    with atomic_path(out_tsv) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    return df
