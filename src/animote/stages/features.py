"""Stage entry points of the audio feature stage, on file paths: one backend for every chunk of a
recording (one process, the model loaded once, a store per chunk), and the per-recording report
of the active stores."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import RecordingError
from ..chunks import find_chunk, load_chunks
from ..features import Backend, compute_features, job_workers, make_backend
from ..media import read_wav
from ..store import read_store, stores_in, write_store
from ..util import atomic_path
from ..workers import TaskFailed, run_tasks

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


def features_recording(chunk_dir: str | Path, spec: Mapping[str, Any], out_dir: str | Path,
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
        if workers == 1:
            backend = make_backend(spec)
            done = [features_chunk(chunk_dir, c.chunk, backend, Path(tmp) / f"{c.chunk}.zarr") for c in chunks]
        else:
            tasks = [dict(chunk_dir=str(chunk_dir), chunk_id=c.chunk, spec=dict(spec),
                          out_store=str(Path(tmp) / f"{c.chunk}.zarr")) for c in chunks]
            try:
                done = run_tasks("animote.stages.features:features_chunk_task", tasks, workers)
            except TaskFailed as exc:  # the worker's message already names the recording and chunk
                raise RecordingError(recording, str(exc).removeprefix(f"recording '{recording}': ")) from None
    log.info("recording '%s': %s features for %d chunks (%d at a time), real-time factor %.3f overall", recording,
             done[0]["cache_key"], len(done), workers,
             sum(a["real_time_factor"] * c.n_frames / c.fps for a, c in zip(done, chunks))
             / sum(c.n_frames / c.fps for c in chunks))
    return done


def features_report(recording: str, stores: Mapping[str, list], chunk_dir: str | Path, out_tsv: str | Path):
    """Per chunk and role: frames (checked against the chunk), dimension, backend, real-time factor.
    ``stores``: role -> stores, or folders of per-chunk stores; every chunk must have one."""
    chunks = {c.chunk: c for c in load_chunks(chunk_dir)}
    rows = []
    for role, paths in stores.items():
        paths = stores_in(paths)
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
    with atomic_path(out_tsv) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    return df
