"""Audio features per chunk, aligned to video frames and cached as Zarr.

Store contract: ``features`` float32 (frames, dim), exactly the chunk's video
frame count, finite; attributes name the backend, model, revision, layer,
sample rate, native frame rate and video fps. Stores live under
``results/features/<type>/<variant>/<recording>/<chunk>.zarr`` (see
:func:`animote.features.backends.cache_key`), so switching backends never
overwrites another backend's cache, and switching back finds it again.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import RecordingError
from ..chunks import find_chunk, load_chunks
from ..media import read_wav
from ..store import read_store, write_store
from .align import resample_to_frames
from .backends import ModelUnavailable, cache_key, make_backend

log = logging.getLogger(__name__)

__all__ = ["active_specs", "features_chunk", "features_report", "concat_features", "resample_to_frames",
           "cache_key", "ModelUnavailable"]

ROLES = ("phonetic", "emotion")


def active_specs(features: Mapping[str, Any]) -> dict[str, tuple[str, dict]]:
    """The phonetic and emotion backends the config selects: role -> (cache key, full spec).
    The spec carries the config's ``offline`` and ``device`` so that they reach the job."""
    out = {}
    for role in ROLES:
        name = features[role]
        if name not in features["backends"]:
            raise ValueError(f"config key 'features.{role}': {name!r} is not one of features.backends "
                             f"({', '.join(features['backends'])})")
        spec = dict(features["backends"][name], offline=features["offline"], device=features["device"])
        out[role] = (cache_key(spec), spec)
    return out


def features_chunk(chunk_dir: str | Path, chunk_id: str, spec: Mapping[str, Any], out_store: str | Path) -> dict:
    """Compute one backend's features for one chunk, aligned to its video frames, into a store."""
    if spec.get("offline", True):
        os.environ["HF_HUB_OFFLINE"] = "1"  # a missing model fails at once instead of trying the hub
    chunk = find_chunk(chunk_dir, chunk_id)
    audio, sr = read_wav(chunk.audio)
    name = f"recording '{chunk.recording}' chunk {chunk.chunk}"
    if sr != 16000:
        raise RecordingError(chunk.recording, f"chunk {chunk.chunk} audio is {sr} Hz, features need 16000")
    backend = make_backend(spec)
    t = time.perf_counter()
    try:
        feats = backend.compute(audio)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{name}: {exc}") from None
    seconds = time.perf_counter() - t
    if not np.isfinite(feats.frames).all():
        bad = int((~np.isfinite(feats.frames)).any(axis=1).sum())
        raise RecordingError(chunk.recording, f"chunk {chunk.chunk}: {spec['type']} gave {bad} frames with NaN/inf")
    aligned = resample_to_frames(feats.frames, feats.rate, chunk.n_frames, chunk.fps, feats.first_centre_s)
    attrs = dict(backend.attrs, cache_key=cache_key(spec), recording=chunk.recording, chunk=chunk.chunk,
                 n_frames=chunk.n_frames, fps=chunk.fps, native_rate=feats.rate,
                 native_frames=int(len(feats.frames)), dim=int(aligned.shape[1]),
                 real_time_factor=seconds / (len(audio) / sr))
    write_store(out_store, {"features": aligned, **feats.extra}, attrs)
    log.info("%s: %s %s -> (%d, %d), real-time factor %.3f", name, spec["type"], attrs["cache_key"],
             *aligned.shape, attrs["real_time_factor"])
    return attrs


def concat_features(phonetic_store: str | Path, emotion_store: str | Path) -> np.ndarray:
    """The model's input for one chunk: phonetic and emotion features side by side (frames, Dp + De)."""
    p, pa = read_store(phonetic_store, "features")
    e, ea = read_store(emotion_store, "features")
    if len(p["features"]) != len(e["features"]):
        raise ValueError(f"{phonetic_store} has {len(p['features'])} frames, {emotion_store} {len(e['features'])}")
    return np.concatenate([p["features"], e["features"]], axis=1)


def features_report(recording: str, stores: Mapping[str, list], chunk_dir: str | Path, out_tsv: str | Path):
    """Per chunk and role: frames (checked against the chunk), dimension, backend, real-time factor."""
    import pandas as pd

    from ..util import atomic_path

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
