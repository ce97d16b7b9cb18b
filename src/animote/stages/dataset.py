"""The dataset stage (rule ``dataset``): per chunk of every recording, the aligned meshes, the
neutral mesh and the active feature stores, joined into one dataset store."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import RecordingError
from ..dataset import ChunkData, SplitParams, assign_splits, content_hash, offsets_and_mask, write_dataset
from ..store import array_names, read_store, stores_in
from ..targets import HEAD_POSE, head_pose_from_alignment

log = logging.getLogger(__name__)


def _by_chunk(paths: Sequence, what: str, *names: str, optional: Sequence[str] = ()
              ) -> dict[tuple[str, str], tuple[str, dict, dict]]:
    """(recording, chunk) -> (path, arrays, attributes) of each store (``names``, and those of
    ``optional`` it has); two stores for one chunk are an error."""
    out = {}
    for p in paths:
        has = set(array_names(p)) if optional else set()
        arrays, attrs = read_store(p, *names, *(n for n in optional if n in has))  # only the arrays the dataset uses
        key = (attrs["recording"], attrs["chunk"])
        if key in out:
            raise RecordingError(key[0], f"chunk {key[1]} has two {what} stores: {out[key][0]} and {p}")
        out[key] = (str(p), arrays, attrs)
    return out


def _blendshape_names(meshes: Mapping) -> tuple[str, ...]:
    """The blendshape names every chunk's store gives (one list for all, or an error naming a chunk)."""
    names = None
    for (rec, ch), (path, _, attrs) in sorted(meshes.items()):
        these = tuple(attrs.get("blendshape_names", ()))
        if names is None:
            names = these
        elif these != names:
            raise RecordingError(rec, f"chunk {ch}: {path} names its blendshapes otherwise than the other chunks")
    return names


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
    chunk. Beside the offsets, every chunk gets its head pose (from the alignment's pose) and, when
    every chunk was tracked by the landmarker, its blendshapes. Writes the store atomically and
    returns its attributes."""
    params = SplitParams.from_config(dataset_config)
    meshes = _by_chunk(stores_in(aligned), "aligned", "aligned", "face_found", "pose", optional=("blendshapes",))
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
    tracked = [k for k in sorted(meshes) if "blendshapes" in meshes[k][1]]
    with_blendshapes = bool(meshes) and len(tracked) == len(meshes)
    if tracked and not with_blendshapes:
        log.warning("blendshapes left out of the dataset: %d of %d chunks have them (mesh.tracker landmarker for "
                    "some recordings only?); the rest: %s", len(tracked), len(meshes),
                    ", ".join(f"{r}/{c}" for r, c in sorted(set(meshes) - set(tracked))[:5]))
    channels = {"head_pose": HEAD_POSE}
    if with_blendshapes:
        channels["blendshapes"] = _blendshape_names(meshes)
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
        targets = {"head_pose": head_pose_from_alignment(arrays["pose"], neutrals[rec])}
        if with_blendshapes:
            targets["blendshapes"] = arrays["blendshapes"]
        for t, values in targets.items():
            bad = mask & ~np.isfinite(values).all(axis=1)
            if bad.any():  # a face with no pose or scores: masked out, not dropped, and said
                log.warning("recording '%s' chunk %s: %d frames with a face have no %s; masked out", rec, ch,
                            int(bad.sum()), t)
                mask = mask & ~bad
        targets = {t: np.where(mask[:, None], np.nan_to_num(v), 0).astype(np.float32) for t, v in targets.items()}
        hash_parts += [(f"{rec}/{ch}/{t}", v) for t, v in targets.items()]
        chunks.append(ChunkData(rec, ch, per_role, offsets, mask, split[key], targets))
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
                          next(iter(fps_of.values())), params, content_hash(hash_parts), channels)
    counts = defaultdict(lambda: [0, 0])
    for c in chunks:
        counts[c.split][0] += 1
        counts[c.split][1] += len(c.mask)
    log.info("dataset %s: %s; hash %s", out_store,
             ", ".join(f"{s}: {n} chunks, {f} frames" for s, (n, f) in sorted(counts.items())), attrs["hash"])
    return attrs
