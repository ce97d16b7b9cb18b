"""The audio feature stage, on file paths: one backend for every chunk of a recording (rule
``audio_features``: one process, the model loaded once, a store per chunk), and the per-recording
report of the active stores (rule ``features_report``). One function per rule, named like it
(:mod:`animote.stages`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import RecordingError
from ..chunks import find_chunk, load_chunks
from ..features import ROLES, Backend, ModelUnavailable, compute_features, job_workers, make_backend
from ..media import read_wav
from ..store import read_store, stores_in, write_store
from ..util import atomic_path
from ..workers import run_chunks

log = logging.getLogger(__name__)


def features_chunk(chunk_dir: str | Path, chunk_id: str, spec: Mapping[str, Any] | Backend,
                   out_store: str | Path) -> dict:
    """Compute one backend's features for one chunk, aligned to its video frames, into a store.
    ``spec``: a backend spec, or a backend already loaded (to reuse its model across chunks)."""
    chunk = find_chunk(chunk_dir, chunk_id)
    audio, sr = read_wav(chunk.audio)
    name = f"recording '{chunk.recording}' chunk {chunk.chunk}"
    try:
        out = compute_features(audio, sr, spec, chunk.n_frames, chunk.fps, name)
    except ValueError as exc:
        raise RecordingError(chunk.recording, f"chunk {chunk.chunk}: {str(exc).removeprefix(f'{name}: ')}") from None
    attrs = dict(out.attrs, recording=chunk.recording, chunk=chunk.chunk)
    write_store(out_store, {"features": out.frames, **out.extra}, attrs)
    log.info("%s: %s -> (%d, %d), real-time factor %.3f", name, attrs["cache_key"],
             *out.frames.shape, attrs["real_time_factor"])
    return attrs


_LOADED: dict[str, Backend] = {}  # a worker process's backends, loaded once, by spec


def features_chunk_task(chunk_dir: str, chunk_id: str, spec: dict, out_store: str) -> dict:
    """``features_chunk`` with plain arguments, as a worker process runs it (animote.workers): the
    backend and its model load once per worker, for every chunk it takes."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _LOADED:
        _LOADED[key] = make_backend(spec)
    return features_chunk(chunk_dir, chunk_id, _LOADED[key], out_store)


def audio_features(*, input, output, params, threads, **_) -> list[dict]:
    """Rule ``audio_features``: :func:`features_recording` of the backend ``params.spec``."""
    return features_recording(input.chunks, params.spec, output[0], workers=threads)


def features_recording(chunk_dir: str | Path, spec: Mapping[str, Any], out_dir: str | Path, *,
                       workers: int = 1) -> list[dict]:
    """One backend's features for every chunk of a recording: a folder of per-chunk stores
    (``cNNN.zarr``), written under a temporary name and renamed when every chunk is done. The
    backend (its imports and model) is loaded once per process: per chunk a job would spend
    seconds starting up for a fraction of a second of features. ``workers`` chunks are computed
    at once (one for a torch backend: ``job_workers``), each worker a fresh process
    (``animote.workers``); with one, in this process."""
    chunks = load_chunks(chunk_dir)
    if not chunks:
        raise ValueError(f"{chunk_dir}: no chunks in the manifest")
    recording = chunks[0].recording
    workers = min(job_workers(spec, workers), len(chunks))
    with atomic_path(out_dir) as tmp:
        Path(tmp).mkdir(parents=True)
        tasks = [dict(chunk_dir=str(chunk_dir), chunk_id=c.chunk, spec=dict(spec),
                      out_store=str(Path(tmp) / f"{c.chunk}.zarr")) for c in chunks]
        done = run_chunks("animote.stages.features:features_chunk_task", tasks, workers, recording, "chunks",
                          passthrough=(ModelUnavailable,))
    log.info("recording '%s': %s features for %d chunks (%d at a time), real-time factor %.3f overall", recording,
             done[0]["cache_key"], len(done), workers,
             sum(a["real_time_factor"] * c.n_frames / c.fps for a, c in zip(done, chunks))
             / sum(c.n_frames / c.fps for c in chunks))
    return done


def features_report(*, input, output, wildcards, **_) -> pd.DataFrame:
    """Per chunk and feature role: frames (checked against the chunk), dimension, backend,
    real-time factor. ``input.<role>`` is each role's folder of per-chunk stores (every chunk of
    ``input.chunks`` must have one)."""
    recording = wildcards.rec
    chunks = {c.chunk: c for c in load_chunks(input.chunks)}
    rows = []
    for role in ROLES:
        paths = stores_in(getattr(input, role))
        missing = sorted(set(chunks) - {Path(p).stem for p in paths})
        if missing:
            raise RecordingError(recording, f"no {role} features for chunks {', '.join(missing)}")
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
    with atomic_path(output[0]) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    return df
