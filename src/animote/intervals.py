"""95 % bootstrap intervals of the headline metrics over test windows.

Frames next to each other are not independent draws (the face moves smoothly), so the unit
resampled is a window: each chunk of the split is cut into consecutive windows of ``window``
frames (the last one shorter), and a bootstrap sample draws as many windows as there are, with
replacement. Each metric is recomputed on the sample from per-window sums, so a thousand samples
cost little more than one:

- R² on offsets (pooled, as :func:`animote.metrics.r2`; per region too): SSE, the count, and the
  sums of the true offsets and of their squares per window give SST around the sample's mean;
- LVE: the sum of the per-frame largest lip-vertex distance and the count;
- lip-sync r: the correlation of the true and predicted inner-lip gap at the split's lag (found
  once on the whole split), from the five sums of a correlation per window.

Two predictors scored on the same split with the same ``seed`` draw the same windows, so their
samples pair up: :func:`difference` gives the interval of a difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from . import metrics

LEVEL = 0.95


@dataclass
class WindowSums:
    """Per-window sums of one predictor on one split (W windows, V vertices)."""

    n: np.ndarray  # (W,) valid frames
    sse: np.ndarray  # (W, V) squared error, summed over frames and x, y, z
    s1: np.ndarray  # (W, V, 3) sum of the true offsets
    s2: np.ndarray  # (W, V) sum of their squares (over x, y, z)
    lve: np.ndarray  # (W,) sum over frames of the largest lip-vertex distance
    lip: np.ndarray  # (W, 6) sums of a, b, a*b, a², b² and their count, a / b the true / predicted gap at the lag


def partition(bounds: np.ndarray, window: int) -> list[tuple[int, int]]:
    """Consecutive windows of ``window`` frames inside each chunk (the last of a chunk shorter)."""
    if window < 1:
        raise ValueError(f"bootstrap window must be positive, got {window}")
    return [(s, min(s + window, int(b))) for a, b in np.asarray(bounds) for s in range(int(a), int(b), window)]


def window_sums(true: np.ndarray, pred: np.ndarray, neutral: np.ndarray, mask: np.ndarray, bounds: np.ndarray,
                window: int, lag: float) -> WindowSums:
    """``true``, ``pred`` (N, V, 3) offsets; ``neutral`` (N, V, 3) or (V, 3); ``mask`` (N,);
    ``bounds`` the chunks' [start, end); ``lag`` the lip-sync lag in frames (NaN: no correlation)."""
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    mask = np.asarray(mask, bool)
    lips = metrics.regions()["lips"]
    gap_t = metrics.inner_lip_gap(true, neutral)
    gap_p = metrics.inner_lip_gap(pred, neutral)
    # the lagged pair of each frame f: truth f with prediction f + lag, inside f's chunk
    lag = int(lag) if np.isfinite(lag) else None
    partner = np.full(len(mask), -1)
    if lag is not None:
        for a, b in np.asarray(bounds):
            f = np.arange(a, b)
            g = f + lag
            ok = (g >= a) & (g < b)
            partner[f[ok]] = g[ok]
    wins = partition(bounds, window)
    W, V = len(wins), true.shape[1]
    out = WindowSums(np.zeros(W), np.zeros((W, V)), np.zeros((W, V, 3)), np.zeros((W, V)), np.zeros(W),
                     np.zeros((W, 6)))
    for w, (a, b) in enumerate(wins):
        m = mask[a:b]
        t, p = true[a:b][m], pred[a:b][m]
        out.n[w] = len(t)
        out.sse[w] = ((t - p) ** 2).sum(axis=(0, 2))
        out.s1[w] = t.sum(axis=0)
        out.s2[w] = (t ** 2).sum(axis=(0, 2))
        if len(t):
            out.lve[w] = np.linalg.norm(t[:, lips] - p[:, lips], axis=-1).max(axis=1).sum()
        f = np.arange(a, b)
        g = partner[a:b]
        ok = (g >= 0) & mask[a:b] & mask[np.maximum(g, 0)]
        x, y = gap_t[f[ok]], gap_p[g[ok]]
        out.lip[w] = (x.sum(), y.sum(), (x * y).sum(), (x * x).sum(), (y * y).sum(), ok.sum())
    return out


def draws(n_windows: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n_windows) counts: how often each window is in each bootstrap sample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_windows, np.full(n_windows, 1.0 / n_windows), size=samples).astype(np.float64)


def r2_samples(s: WindowSums, counts: np.ndarray, vertices: np.ndarray | None = None) -> np.ndarray:
    """(samples,) pooled R² on offsets of each bootstrap sample (over ``vertices``, default all)."""
    v = slice(None) if vertices is None else np.asarray(vertices)
    n = counts @ s.n  # (B,)
    sse = counts @ s.sse[:, v].sum(axis=1)
    s1 = counts @ s.s1[:, v].reshape(len(s.n), -1)  # (B, V'*3)
    s2 = counts @ s.s2[:, v].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sst = s2 - (s1 ** 2).sum(axis=1) / n
        return np.where((n > 1) & (sst > 0), 1.0 - sse / sst, np.nan)


def lve_samples(s: WindowSums, counts: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ s.lve) / (counts @ s.n)


def lip_corr_samples(s: WindowSums, counts: np.ndarray) -> np.ndarray:
    sx, sy, sxy, sxx, syy, k = (counts @ s.lip).T
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / k
        var = (sxx - sx ** 2 / k) * (syy - sy ** 2 / k)
        return np.where((k > 2) & (var > 0), cov / np.sqrt(np.maximum(var, 0)), np.nan)


def interval(samples: np.ndarray, level: float = LEVEL) -> list[float]:
    """The percentile interval [lo, hi] of the finite samples (NaNs when there are none)."""
    x = np.asarray(samples, np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return [float("nan"), float("nan")]
    q = (1 - level) / 2
    return [float(np.quantile(x, q)), float(np.quantile(x, 1 - q))]


def bootstrap(true: np.ndarray, pred: np.ndarray, neutral: np.ndarray, mask: np.ndarray, bounds: np.ndarray,
              lag: float, window: int, samples: int, seed: int,
              regions: Mapping[str, np.ndarray] | None = None) -> dict:
    """The samples and 95 % intervals of R² (offsets), LVE and lip-sync r, and of R² per region:
    {"windows", "samples": {metric: (B,)}, "ci": {metric: [lo, hi]}, "regions": {region: [lo, hi]}}."""
    s = window_sums(true, pred, neutral, mask, bounds, window, lag)
    counts = draws(len(s.n), samples, seed)
    out = {"r2": r2_samples(s, counts), "lve": lve_samples(s, counts), "lip_sync_corr": lip_corr_samples(s, counts)}
    regions = metrics.regions() if regions is None else regions
    return {"windows": len(s.n), "window": window, "draws": samples, "samples": out,
            "ci": {k: interval(v) for k, v in out.items()},
            "regions": {name: interval(r2_samples(s, counts, ids)) for name, ids in
                        {**regions, "all": np.arange(s.sse.shape[1])}.items()}}


def channel_bootstrap(true: np.ndarray, pred: np.ndarray, mask: np.ndarray, bounds: np.ndarray, window: int,
                      samples: int, seed: int, groups: Mapping[str, np.ndarray], corr: int | None = None,
                      lag: float = 0.0) -> dict:
    """The same windows and draws as :func:`bootstrap` (same ``window`` and ``seed``: the samples
    pair up with it and across models) for channel targets (N, C): R² pooled over all channels and
    over each of ``groups`` (name -> channel indices), and with ``corr`` the correlation of that
    channel at ``lag`` (jawOpen's). {"samples": {metric: (B,)}, "ci": {metric: [lo, hi]}}."""
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    mask = np.asarray(mask, bool)
    wins = partition(bounds, window)
    W, C = len(wins), true.shape[1]
    n, sse, s1, s2, pair = np.zeros(W), np.zeros((W, C)), np.zeros((W, C)), np.zeros((W, C)), np.zeros((W, 6))
    lag = int(lag) if np.isfinite(lag) else 0
    for w, (a, b) in enumerate(wins):
        m = mask[a:b]
        t, p = true[a:b][m], pred[a:b][m]
        n[w], sse[w], s1[w], s2[w] = len(t), ((t - p) ** 2).sum(0), t.sum(0), (t * t).sum(0)
        if corr is not None:
            f = np.arange(a, b)
            g = f + lag
            ok = (g >= a) & (g < b) & m  # the pair inside the window's own chunk stretch
            ok[ok] &= mask[g[ok]]
            x, y = true[f[ok], corr], pred[g[ok], corr]
            pair[w] = (x.sum(), y.sum(), (x * y).sum(), (x * x).sum(), (y * y).sum(), ok.sum())
    counts = draws(W, samples, seed)

    def r2(ix) -> np.ndarray:
        k = counts @ n
        sst = (counts @ s2[:, ix]).sum(1) - ((counts @ s1[:, ix]) ** 2).sum(1) / np.maximum(k, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((k > 1) & (sst > 0), 1.0 - (counts @ sse[:, ix]).sum(1) / sst, np.nan)

    out = {"r2": r2(np.arange(C)), **{f"r2_{g}": r2(ix) for g, ix in groups.items() if len(ix)}}
    if corr is not None:
        sx, sy, sxy, sxx, syy, k = (counts @ pair).T
        with np.errstate(invalid="ignore", divide="ignore"):
            cov, var = sxy - sx * sy / k, (sxx - sx ** 2 / k) * (syy - sy ** 2 / k)
            out["corr"] = np.where((k > 2) & (var > 0), cov / np.sqrt(np.maximum(var, 0)), np.nan)
    return {"windows": W, "samples": out, "ci": {k: interval(v) for k, v in out.items()}}


def difference(a: np.ndarray, b: np.ndarray) -> list[float]:
    """The interval of ``a - b`` over paired samples (the same windows drawn for both)."""
    return interval(np.asarray(a) - np.asarray(b))


def overlap(a: list[float], b: list[float]) -> bool:
    """Whether two intervals share a point (NaN intervals overlap everything: nothing is known)."""
    if not all(np.isfinite(a + b)):
        return True
    return a[0] <= b[1] and b[0] <= a[1]
