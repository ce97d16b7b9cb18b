"""Scoring predictions on a split (seed 4.2, 5.1): the network and the baselines go through the
same functions here, so their numbers are comparable.

Every predictor hands over, per chunk, offsets from the neutral mesh in mesh units (T, 468, 3).
``score`` then reports:

- ``loss``: the training loss (masked MSE + temporal L1 on normalised offsets) over
  non-overlapping windows of ``train.window`` frames, as the validation loss was computed;
- the metrics of :mod:`animote.metrics` on mesh units, pooled over the split's frames (masked
  frames excluded), per region, and per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from . import metrics
from .dataset import Dataset, gather_windows, windows


@dataclass
class Split:
    """A split's chunks, concatenated: raw features per role, true offsets (mesh units), each
    frame's neutral mesh (its recording's), the face mask, and each chunk's [start, end)."""

    names: list[tuple[str, str]]
    features: dict[str, np.ndarray]
    offsets: np.ndarray
    neutral: np.ndarray
    mask: np.ndarray
    bounds: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.mask)

    def chunk(self, i: int) -> slice:
        a, b = self.bounds[i]
        return slice(int(a), int(b))


def load_split(dataset: Dataset, split: str, roles) -> Split:
    names = dataset.chunk_names(split)
    if not names:
        raise ValueError(f"the dataset {dataset.path} has no {split} chunk: give dataset.split a {split} share "
                         f"or dataset.test_recordings")
    feats: dict[str, list] = {r: [] for r in roles}
    offs, neut, masks, bounds, at = [], [], [], [], 0
    for rec, ch in names:
        c = dataset.read_chunk(rec, ch, roles)
        for r in roles:
            feats[r].append(np.asarray(c.features[r], np.float32))
        offs.append(c.offsets)
        neut.append(np.broadcast_to(dataset.neutral[rec], c.offsets.shape))
        masks.append(np.asarray(c.mask, bool))
        bounds.append((at, at + len(c.mask)))
        at += len(c.mask)
    return Split(names, {r: np.concatenate(v) for r, v in feats.items()}, np.concatenate(offs),
                 np.concatenate(neut).astype(np.float32), np.concatenate(masks), np.asarray(bounds, np.int64))


def predict_split(split: Split, predict_chunk: Callable[[Mapping[str, np.ndarray]], np.ndarray]) -> np.ndarray:
    """Offsets (N, 468, 3) for the whole split, one chunk at a time (a chunk is one recording's
    continuous stretch: no window crosses chunks)."""
    out = np.zeros_like(split.offsets)
    for i in range(len(split.names)):
        s = split.chunk(i)
        out[s] = predict_chunk({r: f[s] for r, f in split.features.items()})
    return out


def windowed_loss(dataset: Dataset, split: Split, pred: np.ndarray, window: int, temporal_weight: float) -> dict:
    """The training loss and R² on normalised offsets over non-overlapping windows."""
    import torch

    from .train import Pool, masked_loss

    y = np.where(split.mask[:, None, None], dataset.normalise_targets(split.offsets), 0).astype(np.float32)
    p = dataset.normalise_targets(pred)
    starts, lengths = windows(split.bounds, window, window)
    pool = Pool(temporal_weight, y.shape[1] * 3)
    for i in range(0, len(starts), 64):
        s, ln = starts[i:i + 64], lengths[i:i + 64]
        pw, yw, mw = gather_windows(p, y, split.mask, s, ln, window)
        pw, yw, mw = torch.from_numpy(pw), torch.from_numpy(yw), torch.from_numpy(mw)
        _, parts = masked_loss(pw, yw, mw, temporal_weight)
        pool.add(parts, yw, mw)
    return pool.metrics()


def score(dataset: Dataset, split: Split, pred: np.ndarray, window: int, temporal_weight: float,
          max_lag: int = 10) -> dict:
    """Every number of one predictor on one split: {"summary", "regions", "chunks"}."""
    loss = windowed_loss(dataset, split, pred, window, temporal_weight)
    summary = dict(metrics.summary(split.offsets, pred, split.neutral, split.mask, max_lag))
    summary.update({"loss": loss.get("loss", float("nan")), "frames": int(split.mask.sum())})
    chunks = {}
    for i, (rec, ch) in enumerate(split.names):
        s = split.chunk(i)
        chunks[f"{rec}/{ch}"] = dict(metrics.summary(split.offsets[s], pred[s], split.neutral[s], split.mask[s],
                                                     max_lag))
    return {"summary": summary, "regions": metrics.per_region(split.offsets, pred, split.mask, split.neutral),
            "chunks": chunks}


def per_vertex_error(split: Split, pred: np.ndarray) -> np.ndarray:
    """(468,) mean Euclidean error of each vertex over the split's valid frames (mesh units)."""
    d = np.linalg.norm(split.offsets[split.mask] - pred[split.mask], axis=-1)
    return d.mean(axis=0) if len(d) else np.full(split.offsets.shape[1], np.nan)


def showcase_frame(split: Split, chunk: int = 0) -> int:
    """The frame of a chunk (index into the split) whose true mouth is open widest: the frame
    where a wrong prediction shows."""
    s = split.chunk(chunk)
    gap = metrics.inner_lip_gap(split.offsets[s], split.neutral[s])
    gap = np.where(split.mask[s], gap, -np.inf)
    return int(s.start + np.argmax(gap))

