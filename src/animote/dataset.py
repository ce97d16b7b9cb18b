"""The training dataset: whole chunk sequences, masks, a split by chunk, normalisation, and the
fixed-length windows the loader cuts from them.

One module owns the format. A dataset is a Zarr (v3) store::

    dataset.zarr/
      chunks/<recording>/<chunk>/phonetic   float32 (T, D_phonetic)   one array per feature role
      chunks/<recording>/<chunk>/emotion    float32 (T, D_emotion)
      chunks/<recording>/<chunk>/offsets    float32 (T, 468, 3)  aligned mesh - neutral mesh (0 where masked)
      chunks/<recording>/<chunk>/mask       bool (T,)            a face was found; False frames are kept, never
                                                                 deleted, and excluded from every loss and metric
      chunks/<recording>/<chunk>/head_pose  float32 (T, 6)       yaw, pitch, roll, x, y, z (animote.targets; 0 where masked)
      chunks/<recording>/<chunk>/blendshapes float32 (T, 52)     the landmarker's scores (0 where masked); only when
                                                                 every chunk was tracked with mesh.tracker: landmarker
      neutral/<recording>                   float32 (468, 3)     the recording's neutral mesh
      norm/<role>_mean, norm/<role>_std     float32 (D_role,)    inputs, from the training split only
      norm/offset_mean                      float32 (468, 3)     targets, from the training split's masked frames
      norm/offset_scale                     float32 ()           one RMS for every coordinate (see normalise_targets)
      norm/target_<target>_mean, _std       float32 (C,)         each channel target's, per channel (animote.targets)
    attrs: hash, fps, roles {role: {cache_key, spec, dim}}, targets {target: {channels}} (beside offsets),
           chunks [{recording, chunk, split, frames, faces}], split parameters, format version

Windows (the paper's pad_or_truncate) are cut when the data is loaded, so a change of window
length or stride does not rebuild the dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitParams:
    train: float  # share of chunks for training
    validation: float  # ... for choosing the checkpoint
    test: float  # ... held out for evaluation
    seed: int  # the split is a deterministic function of this and the chunk names
    test_recordings: tuple[str, ...] = ()  # whole recordings held out as test (cross-recording generalisation)

    @classmethod
    def from_config(cls, dataset: Mapping[str, Any]) -> SplitParams:
        s = dataset["split"]
        return cls(float(s["train"]), float(s["validation"]), float(s["test"]), int(dataset["seed"]),
                   tuple(dataset["test_recordings"]))


def assign_splits(chunks: Sequence[tuple[str, str]], params: SplitParams) -> dict[tuple[str, str], str]:
    """Split (recording, chunk) pairs into train / validation / test by whole chunks.

    Chunks of ``test_recordings`` are all test. The others are shuffled by ``seed`` (the order
    of ``chunks`` does not matter) and cut by the ratios; with three or more chunks, validation
    and test each get at least one and training keeps at least one."""
    total = params.train + params.validation + params.test
    if total <= 0:
        raise ValueError("dataset.split ratios sum to zero")
    held = set(params.test_recordings)
    out = {c: "test" for c in chunks if c[0] in held}
    rest = sorted(c for c in chunks if c[0] not in held)
    rng = np.random.default_rng(params.seed)
    rest = [rest[i] for i in rng.permutation(len(rest))]
    n = len(rest)
    n_val = int(round(n * params.validation / total))
    n_test = int(round(n * params.test / total))
    if n >= 3:
        n_val = max(n_val, 1 if params.validation > 0 else 0)
        n_test = max(n_test, 1 if params.test > 0 and not held else n_test)
        while n_val + n_test > n - 1:
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
    for i, c in enumerate(rest):
        out[c] = "validation" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


def offsets_and_mask(aligned: np.ndarray, face_found: np.ndarray, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets of one chunk: aligned mesh - neutral mesh (T, 468, 3), 0 where no face; and the mask."""
    mask = np.asarray(face_found, bool) & np.isfinite(aligned).all(axis=(1, 2))
    offsets = np.where(mask[:, None, None], aligned - neutral[None], 0.0).astype(np.float32)
    return offsets, mask


def _moments(arrays: Iterable[np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Row count, mean and variance over the first axis of every array together (float64 sums)."""
    n, s, ss = 0, 0.0, 0.0
    for a in arrays:
        a = np.asarray(a, np.float64)
        n += len(a)
        s = s + a.sum(axis=0)
        ss = ss + (a * a).sum(axis=0)
    if n == 0:
        return 0, np.zeros(0), np.zeros(0)
    mean = s / n
    return n, mean, np.maximum(ss / n - mean * mean, 0.0)


def input_stats(arrays: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation over every frame (std floored so a constant
    dimension does not divide by zero)."""
    n, mean, var = _moments(arrays)
    if n == 0:
        raise ValueError("no training frames to compute normalisation statistics from")
    return mean.astype(np.float32), np.maximum(np.sqrt(var), 1e-6).astype(np.float32)


def target_stats(offsets: Iterable[np.ndarray], masks: Iterable[np.ndarray]) -> tuple[np.ndarray, float]:
    """Mean offset per coordinate (468, 3) over the masked-in frames, and one scale: the RMS of the
    centred offsets over all coordinates. One scale, not one per coordinate: per-coordinate
    z-scores would give the forehead's tracker jitter the weight of the lips' motion."""
    n, mean, var = _moments(np.asarray(o)[np.asarray(m, bool)] for o, m in zip(offsets, masks))
    if n == 0:
        raise ValueError("no training frame has a face: cannot compute the target normalisation")
    return mean.astype(np.float32), float(max(np.sqrt(var.mean()), 1e-9))


def channel_stats(arrays: Iterable[np.ndarray], masks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of a channel target over the masked-in frames, the
    standard deviation floored at :data:`animote.targets.SCALE_FLOOR` (a still channel)."""
    from .targets import SCALE_FLOOR

    n, mean, var = _moments(np.asarray(a)[np.asarray(m, bool)] for a, m in zip(arrays, masks))
    if n == 0:
        raise ValueError("no training frame has a face: cannot compute the target normalisation")
    return mean.astype(np.float32), np.maximum(np.sqrt(var), SCALE_FLOOR).astype(np.float32)


def content_hash(parts: Iterable[tuple[str, Any]]) -> str:
    """sha256 over named parts: numpy arrays by dtype, shape and bytes, anything else as JSON."""
    h = hashlib.sha256()
    for name, value in parts:
        h.update(name.encode())
        if isinstance(value, np.ndarray):
            h.update(f"{value.dtype}{value.shape}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@dataclass
class Sequences:
    """The chunks of one split, concatenated: what the loader cuts windows from.

    ``inputs`` (N, D) normalised, ``targets`` (N, 468, 3) normalised, ``mask`` (N,),
    ``bounds`` (chunks, 2): each chunk's [start, end) in the concatenation, and ``channels``: each
    channel target asked for, (N, C) normalised (0 where masked)."""

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    bounds: np.ndarray
    names: list[str]
    channels: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.mask)


# --- the store -------------------------------------------------------------------------------


@dataclass
class ChunkData:
    recording: str
    chunk: str
    features: dict[str, np.ndarray]  # role -> (T, D_role) float32
    offsets: np.ndarray  # (T, 468, 3)
    mask: np.ndarray  # (T,)
    split: str = "train"
    channels: dict[str, np.ndarray] = field(default_factory=dict)  # channel target -> (T, C), 0 where masked


def write_dataset(path, chunks: Sequence[ChunkData], neutrals: Mapping[str, np.ndarray], roles: Mapping[str, dict],
                  fps: float, split_params: SplitParams, built_from: str,
                  channels: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Write the dataset store atomically; normalisation from the training chunks only.
    ``roles``: role -> {cache_key, spec, dim}; ``channels``: channel target -> its channel names
    (every chunk holds each). Returns the store's attributes."""
    import zarr

    from .util import atomic_path

    channels = dict(channels or {})

    train = [c for c in chunks if c.split == "train"]
    if not train:
        raise ValueError("the split leaves no chunk for training")
    norm: dict[str, np.ndarray] = {}
    for role in roles:
        norm[f"{role}_mean"], norm[f"{role}_std"] = input_stats(c.features[role] for c in train)
    offset_mean, scale = target_stats((c.offsets for c in train), (c.mask for c in train))
    norm["offset_mean"], norm["offset_scale"] = offset_mean, np.float32(scale)
    for target in channels:
        norm[f"target_{target}_mean"], norm[f"target_{target}_std"] = channel_stats(
            (c.channels[target] for c in train), (c.mask for c in train))
    attrs = {
        "format_version": FORMAT_VERSION, "hash": built_from, "fps": float(fps),
        "roles": {r: dict(v) for r, v in roles.items()},
        "split": {"train": split_params.train, "validation": split_params.validation, "test": split_params.test,
                  "seed": split_params.seed, "test_recordings": list(split_params.test_recordings)},
        "chunks": [{"recording": c.recording, "chunk": c.chunk, "split": c.split, "frames": int(len(c.mask)),
                    "faces": int(c.mask.sum())} for c in chunks],
        "offset_units": "isotropic (every axis / image width), neutral mesh frame, minus the neutral mesh",
        "targets": {t: {"channels": list(names)} for t, names in channels.items()},
    }
    with atomic_path(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        for c in chunks:
            g = root.require_group(f"chunks/{c.recording}/{c.chunk}")
            for role in roles:
                g.create_array(role, data=np.asarray(c.features[role], np.float32))
            g.create_array("offsets", data=c.offsets.astype(np.float32))
            g.create_array("mask", data=c.mask.astype(bool))
            for target in channels:
                g.create_array(target, data=np.asarray(c.channels[target], np.float32))
        for rec, n in neutrals.items():
            root.require_group("neutral").create_array(rec, data=np.asarray(n, np.float32))
        for name, value in norm.items():
            root.require_group("norm").create_array(name, data=np.asarray(value, np.float32))
        root.attrs.update(attrs)
    return attrs


def normalise_inputs(features: Mapping[str, np.ndarray], roles: Sequence[str], norm: Mapping[str, Any]) -> np.ndarray:
    """(T, sum D) float32: each role's features z-scored by ``norm`` (the dataset's, or a
    checkpoint's copy of it), side by side."""
    parts = [(np.asarray(features[r], np.float32) - np.asarray(norm[f"{r}_mean"])) / np.asarray(norm[f"{r}_std"])
             for r in roles]
    return np.concatenate(parts, axis=1).astype(np.float32)


def normalise_channels(target: str, y: np.ndarray, norm: Mapping[str, Any]) -> np.ndarray:
    """A channel target's values (frames, C) z-scored by the training statistics in ``norm``."""
    mean, std = np.asarray(norm[f"target_{target}_mean"]), np.asarray(norm[f"target_{target}_std"])
    return ((np.asarray(y, np.float32) - mean) / std).astype(np.float32)


def denormalise_channels(target: str, y: np.ndarray, norm: Mapping[str, Any]) -> np.ndarray:
    mean, std = np.asarray(norm[f"target_{target}_mean"]), np.asarray(norm[f"target_{target}_std"])
    return (np.asarray(y, np.float32) * std + mean).astype(np.float32)


def denormalise_targets(y: np.ndarray, norm: Mapping[str, Any]) -> np.ndarray:
    """Normalised offsets back to mesh units."""
    out = np.asarray(y, np.float32) * np.asarray(norm["offset_scale"], np.float32)
    out += np.asarray(norm["offset_mean"], np.float32)
    return out


class Dataset:
    """A dataset store opened for reading: attributes, normalisation, neutral meshes, splits."""

    def __init__(self, path):
        import warnings

        import zarr

        self.path = str(path)
        with warnings.catch_warnings():  # Snakemake leaves a timestamp file in directory outputs
            warnings.filterwarnings("ignore", message=".*snakemake_timestamp.*")
            self.root = zarr.open_group(self.path, mode="r")
        self.attrs = dict(self.root.attrs)
        if self.attrs.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{self.path} is not an animote dataset of format {FORMAT_VERSION}")
        self.norm = {k: np.asarray(self.root["norm"][k][...]) for k in self.root["norm"].array_keys()}
        self.neutral = {k: np.asarray(self.root["neutral"][k][...]) for k in self.root["neutral"].array_keys()}

    @property
    def hash(self) -> str:
        return self.attrs["hash"]

    @property
    def fps(self) -> float:
        return float(self.attrs["fps"])

    @property
    def roles(self) -> dict[str, dict]:
        return self.attrs["roles"]

    def chunk_names(self, split: str) -> list[tuple[str, str]]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        return [(c["recording"], c["chunk"]) for c in self.attrs["chunks"] if c["split"] == split]

    @property
    def targets(self) -> list[str]:
        """What a model can learn from this dataset: offsets and each channel target it holds."""
        return ["offsets", *self.attrs.get("targets", {})]

    def channel_names(self, target: str) -> list[str]:
        if target not in self.attrs.get("targets", {}):
            raise ValueError(f"the dataset {self.path} holds no {target} (it has {', '.join(self.targets)})"
                             + ("; blendshapes come from mesh.tracker: landmarker" if target == "blendshapes" else ""))
        return list(self.attrs["targets"][target]["channels"])

    def normalise_channels(self, target: str, y: np.ndarray) -> np.ndarray:
        return normalise_channels(target, y, self.norm)

    def input_dim(self, roles: Sequence[str]) -> int:
        return int(sum(self.roles[r]["dim"] for r in roles))

    def normalise_inputs(self, features: Mapping[str, np.ndarray], roles: Sequence[str]) -> np.ndarray:
        """(T, sum D) float32: each role's features z-scored by the training statistics, side by side."""
        return normalise_inputs(features, roles, self.norm)

    def normalise_targets(self, offsets: np.ndarray) -> np.ndarray:
        return ((offsets - self.norm["offset_mean"]) / self.norm["offset_scale"]).astype(np.float32)

    def denormalise_targets(self, y: np.ndarray) -> np.ndarray:
        return denormalise_targets(y, self.norm)

    def read_chunk(self, recording: str, chunk: str, roles: Sequence[str], channels: Sequence[str] = ()) -> ChunkData:
        g = self.root["chunks"][recording][chunk]
        split = next(c["split"] for c in self.attrs["chunks"] if (c["recording"], c["chunk"]) == (recording, chunk))
        for t in channels:
            self.channel_names(t)  # a clear error when the dataset lacks it
        return ChunkData(recording, chunk, {r: g[r][...] for r in roles}, g["offsets"][...], g["mask"][...], split,
                         {t: g[t][...] for t in channels})

    def sequences(self, split: str, roles: Sequence[str], channels: Sequence[str] = ()) -> Sequences:
        """Every chunk of ``split``, normalised and concatenated, for the loader; with the channel
        targets ``channels`` (normalised, 0 where masked)."""
        unknown = [r for r in roles if r not in self.roles]
        if unknown:
            raise ValueError(f"roles {unknown} are not in the dataset (it has {list(self.roles)})")
        xs, ys, ms, bounds, names, at = [], [], [], [], [], 0
        cs: dict[str, list] = {t: [] for t in channels}
        for rec, ch in self.chunk_names(split):
            c = self.read_chunk(rec, ch, roles, channels)
            xs.append(self.normalise_inputs(c.features, roles))
            ys.append(np.where(c.mask[:, None, None], self.normalise_targets(c.offsets), 0).astype(np.float32))
            for t in channels:
                cs[t].append(np.where(c.mask[:, None], self.normalise_channels(t, c.channels[t]), 0).astype(np.float32))
            ms.append(c.mask)
            bounds.append((at, at + len(c.mask)))
            names.append(f"{rec}/{ch}")
            at += len(c.mask)
        if not xs:
            dim = self.input_dim(roles)
            return Sequences(np.zeros((0, dim), np.float32), np.zeros((0, 468, 3), np.float32),
                             np.zeros(0, bool), np.zeros((0, 2), np.int64), [],
                             {t: np.zeros((0, len(self.channel_names(t))), np.float32) for t in channels})
        return Sequences(np.concatenate(xs), np.concatenate(ys), np.concatenate(ms),
                         np.asarray(bounds, np.int64), names, {t: np.concatenate(v) for t, v in cs.items()})
