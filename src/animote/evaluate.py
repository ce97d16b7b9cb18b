"""Scoring predictions on a split (paper 4.2, 5.1): the network and the baselines go through the
same functions here, so their numbers are comparable.

Every predictor hands over, per chunk, offsets from the neutral mesh in mesh units (T, 468, 3).
``score`` then reports:

- ``loss``: the objective of :mod:`animote.objective` (masked MSE + temporal L1 on normalised
  offsets) over non-overlapping windows, with the evaluation's own window and temporal weight
  (``evaluate.loss``) for every predictor, whatever each trained with;
- the metrics of :mod:`animote.metrics` on mesh units, pooled over the split's frames (masked
  frames excluded), per region, and per chunk;
- 95 % bootstrap intervals over test windows (:mod:`animote.intervals`) of R², LVE, lip-sync r
  and each region's R², with the samples, so two predictors' differences pair up.

A predictor of channel targets (blendshapes, head pose) hands those over too, and
``score_targets`` scores each with :func:`animote.targets.score_channels`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import intervals, metrics
from .dataset import Dataset
from .objective import windowed_loss


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
    channels: dict[str, np.ndarray] = field(default_factory=dict)  # channel target -> true (N, C), own units
    channel_names: dict[str, list[str]] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.mask)

    def chunk(self, i: int) -> slice:
        a, b = self.bounds[i]
        return slice(int(a), int(b))


def load_split(dataset: Dataset, split: str, roles, channels: Sequence[str] | None = None) -> Split:
    """The chunks of ``split`` with the features of ``roles`` and the channel targets ``channels``
    (default: every one the dataset holds)."""
    channels = [t for t in dataset.targets if t != "offsets"] if channels is None else list(channels)
    names = dataset.chunk_names(split)
    if not names:
        raise ValueError(f"the dataset {dataset.path} has no {split} chunk: give dataset.split a {split} share "
                         f"or dataset.test_recordings")
    feats: dict[str, list] = {r: [] for r in roles}
    offs, neut, masks, bounds, at = [], [], [], [], 0
    chans: dict[str, list] = {t: [] for t in channels}
    for rec, ch in names:
        c = dataset.read_chunk(rec, ch, roles, channels)
        for t in channels:
            chans[t].append(c.channels[t])
        for r in roles:
            feats[r].append(np.asarray(c.features[r], np.float32))
        offs.append(c.offsets)
        neut.append(np.broadcast_to(dataset.neutral[rec], c.offsets.shape))
        masks.append(np.asarray(c.mask, bool))
        bounds.append((at, at + len(c.mask)))
        at += len(c.mask)
    return Split(names, {r: np.concatenate(v) for r, v in feats.items()}, np.concatenate(offs),
                 np.concatenate(neut).astype(np.float32), np.concatenate(masks), np.asarray(bounds, np.int64),
                 {t: np.concatenate(v) for t, v in chans.items()}, {t: dataset.channel_names(t) for t in channels})


def predict_targets(split: Split, predict_chunk: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
                    ) -> dict[str, np.ndarray]:
    """Every target ``predict_chunk`` gives ({target: array}, offsets (T, 468, 3) among them) for
    the whole split, one chunk at a time (a chunk is one recording's continuous stretch: no window
    crosses chunks)."""
    out: dict[str, np.ndarray] = {}
    for i in range(len(split.names)):
        s = split.chunk(i)
        for t, v in predict_chunk({r: f[s] for r, f in split.features.items()}).items():
            if t not in out:
                out[t] = np.zeros((split.frames,) + np.shape(v)[1:], np.float32)
            out[t][s] = v
    return out


def score_targets(split: Split, pred: Mapping[str, np.ndarray], fps: float, max_lag: int,
                  speech_energy: np.ndarray | None = None, bootstrap: Mapping | None = None) -> dict:
    """Each channel target of ``pred`` the split holds, scored by :func:`animote.targets.score_channels`
    (with ``bootstrap``, the intervals over the windows :func:`score` draws)."""
    from .targets import score_channels

    return {t: score_channels(t, split.channels[t], v, split.mask, split.channel_names[t], fps, max_lag,
                              speech_energy, split.bounds, bootstrap)
            for t, v in pred.items() if t != "offsets" and t in split.channels}


def speech_energy(split: Split, chunk_dirs: Mapping[str, str | Path], fps: float) -> np.ndarray | None:
    """Per frame of the split, the RMS of its chunk's audio (``<chunk dir>/<chunk>.wav``) over the
    frame's samples; None when a chunk's audio is missing."""
    import soundfile

    out = np.zeros(split.frames)
    for i, (rec, ch) in enumerate(split.names):
        wav = Path(chunk_dirs.get(rec, "")) / f"{ch}.wav"
        if not wav.is_file():
            return None
        audio, sr = soundfile.read(wav, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        s = split.chunk(i)
        n = s.stop - s.start
        edges = np.round(np.arange(n + 1) * sr / fps).astype(np.int64).clip(0, len(audio))
        sq = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
        out[s] = np.sqrt((sq[edges[1:]] - sq[edges[:-1]]) / np.maximum(edges[1:] - edges[:-1], 1))
    return out


def score(dataset: Dataset, split: Split, pred: np.ndarray, loss: Mapping, max_lag: int = 10,
          bootstrap: Mapping | None = None) -> dict:
    """Every number of one predictor on one split: {"summary", "regions", "chunks", "intervals"}.
    ``loss``: the objective's ``window`` and ``temporal_weight``; ``bootstrap``: ``window``,
    ``samples`` and ``seed`` of the intervals (none without it)."""
    test_loss = windowed_loss(dataset.normalise_targets(pred), dataset.normalise_targets(split.offsets), split.mask,
                              split.bounds, loss["window"], loss["temporal_weight"])
    summary = dict(metrics.summary(split.offsets, pred, split.neutral, split.mask, max_lag))
    summary.update({"loss": test_loss.get("loss", float("nan")), "frames": int(split.mask.sum())})
    chunks = {}
    for i, (rec, ch) in enumerate(split.names):
        s = split.chunk(i)
        chunks[f"{rec}/{ch}"] = dict(metrics.summary(split.offsets[s], pred[s], split.neutral[s], split.mask[s],
                                                     max_lag))
    out = {"summary": summary, "regions": metrics.per_region(split.offsets, pred, split.mask, split.neutral),
           "chunks": chunks, "loss_settings": dict(loss)}
    if bootstrap:
        b = intervals.bootstrap(split.offsets, pred, split.neutral, split.mask, split.bounds, summary["lip_sync_lag"],
                                bootstrap["window"], bootstrap["samples"], bootstrap["seed"])
        out["intervals"] = {"ci": b["ci"], "regions": b["regions"], "windows": b["windows"], "window": b["window"],
                            "samples": {k: np.round(v, 6).tolist() for k, v in b["samples"].items()}}
    return out


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

