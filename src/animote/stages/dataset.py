"""The dataset stage (rule ``dataset``): per chunk of every recording, the aligned meshes, the
neutral mesh and the active feature stores, joined into one dataset store."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import RecordingError
from ..dataset import ChunkData, SplitParams, assign_splits, content_hash, offsets_and_mask, write_dataset
from ..store import read_store, stores_in

log = logging.getLogger(__name__)


def _by_chunk(paths: Sequence, what: str, *names: str) -> dict[tuple[str, str], tuple[str, dict, dict]]:
    """(recording, chunk) -> (path, arrays, attributes) of each store; two stores for one chunk are an error."""
    out = {}
    for p in paths:
        arrays, attrs = read_store(p, *names)  # only the arrays the dataset uses
        key = (attrs["recording"], attrs["chunk"])
        if key in out:
            raise RecordingError(key[0], f"chunk {key[1]} has two {what} stores: {out[key][0]} and {p}")
        out[key] = (str(p), arrays, attrs)
    return out


def dataset(*, input, output, params, **_) -> dict:
    """Rule ``dataset``: :func:`build_dataset` of the stores in ``input`` (``aligned``, ``neutral``
    and each feature role of ``params.roles``, role -> {cache_key, spec})."""
    features = {role: getattr(input, role) for role in params.roles}
    return build_dataset(input.aligned, input.neutral, features, roles=params.roles,
                         dataset_config=params.dataset, out_store=output[0])


def build_dataset(aligned: Sequence, neutral: Sequence, features: Mapping[str, Sequence], *,
                  roles: Mapping[str, Mapping[str, Any]], dataset_config: Mapping[str, Any],
                  out_store: str | Path) -> dict:
    """Join every chunk's aligned meshes, its recording's neutral mesh and each role's features.

    ``aligned``: aligned mesh stores or folders of them; ``features``: role -> feature stores or folders
    of them (any order); ``roles``: role -> {cache_key, spec}.
    Frame counts and fps are checked against each other; a mismatch names the recording and
    chunk. Writes the store atomically and returns its attributes."""
    params = SplitParams.from_config(dataset_config)
    meshes = _by_chunk(stores_in(aligned), "aligned", "aligned", "face_found")
    neutrals = {}
    for p in neutral:
        arrays, attrs = read_store(p, "neutral")
        neutrals[attrs["recording"]] = arrays["neutral"]
    feats = {role: _by_chunk(stores_in(paths), role, "features") for role, paths in features.items()}
    unknown = set(params.test_recordings) - {rec for rec, _ in meshes}
    if unknown:
        raise ValueError(f"config key 'dataset.test_recordings': {sorted(unknown)} are not recordings of the sheet")
    fps_of: dict[str, float] = {}
    chunks, hash_parts = [], [("split", dict(dataset_config)),
                              ("roles", {r: v["cache_key"] for r, v in roles.items()})]
    split = assign_splits(sorted(meshes), params)
    for key in sorted(meshes):
        rec, ch = key
        path, arrays, attrs = meshes[key]
        if rec not in neutrals:
            raise RecordingError(rec, "no neutral mesh among the dataset's inputs")
        offsets, mask = offsets_and_mask(arrays["aligned"], arrays["face_found"], neutrals[rec])
        fps_of.setdefault(rec, float(attrs["fps"]))
        per_role = {}
        for role in roles:
            if key not in feats[role]:
                raise RecordingError(rec, f"chunk {ch}: no {role} features among the dataset's inputs")
            fpath, farrays, fattrs = feats[role][key]
            f = farrays["features"]
            if len(f) != len(mask) or abs(float(fattrs["fps"]) - float(attrs["fps"])) > 1e-6:
                raise RecordingError(rec, f"chunk {ch}: {role} features have {len(f)} frames at {fattrs['fps']} fps, "
                                          f"the meshes {len(mask)} at {attrs['fps']} fps")
            per_role[role] = f
            hash_parts.append((f"{rec}/{ch}/{role}", f))
        hash_parts += [(f"{rec}/{ch}/aligned", arrays["aligned"]), (f"{rec}/{ch}/found", arrays["face_found"])]
        chunks.append(ChunkData(rec, ch, per_role, offsets, mask, split[key]))
        if not mask.any():
            log.warning("recording '%s' chunk %s: no face in any frame; kept, and masked out of every loss", rec, ch)
    if len(set(fps_of.values())) > 1:
        raise ValueError("recordings have different frame rates (" + ", ".join(f"{r}: {f:g}" for r, f in fps_of.items())
                         + "); set video.fps so that every recording is resampled to one rate")
    hash_parts += [(f"neutral/{r}", n) for r, n in sorted(neutrals.items())]
    dims = {role: int(chunks[0].features[role].shape[1]) for role in roles} if chunks else {}
    role_attrs = {role: {"cache_key": v["cache_key"], "spec": dict(v["spec"]), "dim": dims.get(role, 0)}
                  for role, v in roles.items()}
    attrs = write_dataset(out_store, chunks, {r: neutrals[r] for r in fps_of}, role_attrs,
                          next(iter(fps_of.values())), params, content_hash(hash_parts))
    counts = defaultdict(lambda: [0, 0])
    for c in chunks:
        counts[c.split][0] += 1
        counts[c.split][1] += len(c.mask)
    log.info("dataset %s: %s; hash %s", out_store,
             ", ".join(f"{s}: {n} chunks, {f} frames" for s, (n, f) in sorted(counts.items())), attrs["hash"])
    return attrs
