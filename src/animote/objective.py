"""The objective, one definition for training and evaluation: the windows a split is cut into,
the masked loss on them, and the accumulator that pools it over batches.

Loss = masked MSE on the normalised offsets (optionally weighted per vertex, e.g. the lips) +
``temporal_weight`` x L1 on the difference of frame-to-frame changes (the paper's temporal
coherence term, weight 0.1). Frames without a face (mask False) and window padding are excluded
from both terms. A model that also predicts channel targets (``train.targets``: blendshapes, head
pose) adds each one's loss of the same form, on its z-scored channels, times its weight
(``train.target_weights``). Training uses its experiment's settings; the test loss of every model
(networks and baselines alike) uses the evaluation's own window and weight (``evaluate.loss``) on
the offsets alone, so one objective ranks them all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch


def windows(bounds: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Window starts and valid lengths over concatenated chunks (the paper's pad_or_truncate).

    In each chunk, windows start every ``stride`` frames; a last window is added when needed so
    every frame is in at least one; a chunk shorter than ``window`` gives one window, padded
    (its padding is excluded from the loss). Windows never cross a chunk's end."""
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
    starts, lengths = [], []
    for a, b in np.asarray(bounds):
        n = int(b - a)
        if n <= 0:
            continue
        local = list(range(0, max(1, n - window + 1), stride))
        if local[-1] + window < n:
            local.append(n - window)
        for s in local:
            starts.append(int(a) + s)
            lengths.append(min(window, n - s))
    return np.asarray(starts, np.int64), np.asarray(lengths, np.int64)


def window_index(starts, lengths, window: int):
    """(B, W) frame indices of windows and (B, W) whether each is inside its window's valid
    length (numpy arrays or torch tensors on any device): frames past it repeat the last one."""
    if hasattr(starts, "device"):  # torch
        ar = torch.arange(window, device=starts.device)
        idx = starts[:, None] + torch.minimum(ar[None, :], lengths[:, None] - 1)  # (B, W)
    else:
        ar = np.arange(window)
        idx = starts[:, None] + np.minimum(ar[None, :], lengths[:, None] - 1)
    return idx, ar[None, :] < lengths[:, None]


def gather_windows(seq_inputs, seq_targets, seq_mask, starts, lengths, window: int):
    """Cut windows out of concatenated sequences (numpy arrays or torch tensors on any device).

    Returns inputs (B, W, D), targets (B, W, 468, 3), mask (B, W): frames past a window's valid
    length repeat the chunk's last frame and are masked out."""
    idx, valid = window_index(starts, lengths, window)
    return seq_inputs[idx], seq_targets[idx], seq_mask[idx] & valid



def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, temporal_weight: float,
                reduce: bool = True, vertex_weight: torch.Tensor | None = None):
    """pred, target (B, T, V, 3); mask (B, T) bool.

    Returns (loss, parts) where parts holds the sums a caller needs to pool over batches:
    squared error and its frame count, temporal L1 and its pair count. With ``reduce`` the loss
    is the batch mean; masked frames contribute nothing to either term."""
    m = mask.to(pred.dtype)  # (B, T)
    se = ((pred - target) ** 2).mean(dim=3)  # (B, T, V)
    if vertex_weight is None:
        per_frame = se.mean(dim=2)  # (B, T)
    else:  # a weighted mean over vertices: the loss keeps its scale
        per_frame = (se * vertex_weight).sum(dim=2) / vertex_weight.sum()
    sq = (per_frame * m).sum()
    n = m.sum()
    pairs = m[:, 1:] * m[:, :-1]  # (B, T-1): both frames have a face
    dp = pred[:, 1:] - pred[:, :-1]  # (B, T-1, V, 3)
    dt = target[:, 1:] - target[:, :-1]
    tl = ((dp - dt).abs().mean(dim=(2, 3)) * pairs).sum()
    n_pairs = pairs.sum()
    mse = sq / n.clamp(min=1)
    temporal = tl / n_pairs.clamp(min=1)
    loss = mse + temporal_weight * temporal
    return loss, {"sq": sq.detach(), "n": n.detach(), "tl": tl.detach(), "pairs": n_pairs.detach()}


def target_loss(pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], mask: torch.Tensor,
                temporal_weight: float, weights: Mapping[str, float], vertex_weight: torch.Tensor | None = None):
    """The weighted sum of :func:`masked_loss` over the targets of ``weights`` (offsets (B, T, V, 3),
    channel targets (B, T, C)); ``vertex_weight`` applies to the offsets. Returns (loss, parts per
    target)."""
    total, parts = 0.0, {}
    for name, w in weights.items():
        p, t = pred[name], target[name]
        if p.ndim == 3:  # (B, T, C): each channel a "vertex" of one coordinate
            p, t = p[..., None], t[..., None]
        loss, parts[name] = masked_loss(p, t, mask, temporal_weight,
                                        vertex_weight=vertex_weight if name == "offsets" else None)
        total = total + w * loss
    return total, parts


class TargetSums:
    """:class:`LossSums` of each target. ``metrics()``: the offsets' as before (``mse``,
    ``temporal``, ``r2``); with channel targets, ``loss`` is the weighted sum of every target's,
    and ``<target>_loss``, ``_mse``, ``_r2`` are each channel target's."""

    def __init__(self, temporal_weight: float, weights: Mapping[str, float], dims: Mapping[str, int]):
        self.weights = dict(weights)
        self.sums = {t: LossSums(temporal_weight, dims[t]) for t in self.weights}

    def add(self, parts: Mapping[str, Mapping], target: Mapping[str, torch.Tensor], mask: torch.Tensor) -> None:
        for t, sums in self.sums.items():
            sums.add(parts[t], target[t], mask)

    def metrics(self) -> dict[str, float]:
        each = {t: s.metrics() for t, s in self.sums.items()}
        if not all(each.values()):
            return {}
        out = dict(each["offsets"])
        if len(each) > 1:
            out["loss"] = sum(self.weights[t] * m["loss"] for t, m in each.items())
            for t, m in each.items():
                if t != "offsets":
                    out.update({f"{t}_{k}": v for k, v in m.items() if k in ("loss", "mse", "r2")})
        return out


class LossSums:
    """The sums of the loss parts and of R²'s terms over batches (float64): loss = mse + lambda * temporal, and
    R² = 1 - SSE / SST on the offsets, SST around the mean offset of the frames seen."""

    def __init__(self, temporal_weight: float, n_coords: int):
        self.w = temporal_weight
        self.sq = self.n = self.tl = self.pairs = 0.0
        self.sum_y = torch.zeros(n_coords, dtype=torch.float64)
        self.sum_y2 = torch.zeros(n_coords, dtype=torch.float64)

    def add(self, parts: Mapping[str, torch.Tensor], target: torch.Tensor, mask: torch.Tensor) -> None:
        for k in ("sq", "n", "tl", "pairs"):
            setattr(self, k, getattr(self, k) + float(parts[k]))
        y = target[mask].reshape(int(mask.sum()), len(self.sum_y)).double().cpu()  # (frames, V*3)
        self.sum_y += y.sum(0)
        self.sum_y2 += (y * y).sum(0)

    def metrics(self) -> dict[str, float]:
        if self.n == 0:
            return {}
        n_coords = len(self.sum_y)
        mse = self.sq / self.n
        sst = float((self.sum_y2 - self.sum_y ** 2 / self.n).sum())  # around the mean, summed over coords
        sse = self.sq * n_coords  # sq is per-frame mean over coords, summed over frames
        out = {"mse": mse, "loss": mse + self.w * (self.tl / max(self.pairs, 1)),
               "temporal": self.tl / max(self.pairs, 1)}
        if sst > 0:
            out["r2"] = 1.0 - sse / sst
        return {k: v for k, v in out.items() if math.isfinite(v)}


def windowed_loss(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, bounds: np.ndarray, window: int,
                  temporal_weight: float) -> dict[str, float]:
    """The loss and R² of normalised predictions over non-overlapping windows of ``window``
    frames (never across a chunk's end); ``pred``, ``target`` (N, V, 3), ``mask`` (N,)."""
    y = np.where(mask[:, None, None], target, 0).astype(np.float32)
    p = np.asarray(pred, np.float32)
    starts, lengths = windows(bounds, window, window)
    sums = LossSums(temporal_weight, y.shape[1] * 3)
    for i in range(0, len(starts), 64):
        pw, yw, mw = gather_windows(p, y, mask, starts[i:i + 64], lengths[i:i + 64], window)
        pw, yw, mw = torch.from_numpy(pw), torch.from_numpy(yw), torch.from_numpy(mw)
        _, parts = masked_loss(pw, yw, mw, temporal_weight)
        sums.add(parts, yw, mw)
    return sums.metrics()
