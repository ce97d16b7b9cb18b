"""Baselines the network must beat, computed on the same split by the same metric code.

- mean offset: every frame gets the training frames' mean offset (0 in normalised units);
- ridge: a linear map from the same normalised input features (each frame with ``context``
  frames either side, edges repeated) to the normalised offsets, closed form, its context and
  its regularisation chosen on the validation split (the bar is as high as a closed form gets).
  Channel targets (blendshapes, head pose) get their own ridge from the same decomposition, their
  context and regularisation chosen on their own validation MSE, so asking for them changes
  nothing of the offsets' ridge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dataset import Sequences


def with_context(x: np.ndarray, bounds: np.ndarray, context: int) -> np.ndarray:
    """(N, D) -> (N, D * (2 * context + 1)): each frame beside its neighbours within its own
    chunk (a chunk's first and last frames repeated at its edges)."""
    if context == 0:
        return x
    out = np.empty((len(x), x.shape[1] * (2 * context + 1)), x.dtype)
    for a, b in np.asarray(bounds):
        idx = np.arange(a, b)
        cols = [x[np.clip(idx + k, a, b - 1)] for k in range(-context, context + 1)]
        out[a:b] = np.concatenate(cols, axis=1)
    return out


@dataclass
class Ridge:
    """y ≈ x @ weight + bias, fitted on masked frames; ``context`` and ``alpha`` the chosen
    neighbourhood and regularisation."""

    weight: np.ndarray  # (D, V*3)
    bias: np.ndarray  # (V*3,)
    alpha: float
    context: int
    validation_mse: dict[tuple[int, float], float]  # (context, alpha) -> validation MSE (normalised units)
    shape: tuple[int, ...] = (-1, 3)  # a frame's prediction: (V, 3) offsets, or (C,) channels

    def predict(self, inputs: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """Normalised predictions, (N, V, 3) offsets or (N, C) channels, for every frame of
        normalised ``inputs`` (N, D) made of chunks ``bounds``."""
        x = with_context(inputs, bounds, self.context).astype(np.float64)
        return (x @ self.weight + self.bias).reshape(len(x), *self.shape).astype(np.float32)


def _target(seq: Sequences, target: str) -> np.ndarray:
    y = seq.targets if target == "offsets" else seq.channels[target]
    return y[seq.mask].reshape(int(seq.mask.sum()), -1).astype(np.float64)


def _gram(seq: Sequences, context: int, targets: Sequence[str] = ("offsets",)):
    x = with_context(seq.inputs, seq.bounds, context)[seq.mask].astype(np.float64)
    return x, np.concatenate([_target(seq, t) for t in targets], axis=1)


def _ridge_path(x: np.ndarray, y: np.ndarray, xv: np.ndarray | None, yv: np.ndarray | None, alphas,
                columns: dict[str, slice] | None = None):
    """Ridge for every alpha from one eigendecomposition: of XᵀX when there are more frames than
    inputs, of XXᵀ otherwise (the same solutions, the smaller matrix). Returns the centring means,
    a function alpha -> weights, and the validation MSE per alpha (with ``columns``, per alpha
    a dict of the MSE of each named slice of y's columns)."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    primal = len(x) >= x.shape[1]
    if primal:
        lam, q = np.linalg.eigh(xc.T @ xc)  # (D,), (D, D)
        r = q.T @ (xc.T @ yc)  # (D, M)
        proj = (xv - mx) @ q if xv is not None else None  # (Nv, D)
    else:
        lam, u = np.linalg.eigh(xc @ xc.T)  # (N,), (N, N)
        r = u.T @ yc  # (N, M)
        proj = ((xv - mx) @ xc.T) @ u if xv is not None else None  # (Nv, N)
    lam = np.maximum(lam, 0.0)
    scores = {}
    if proj is not None:
        for a in alphas:
            err = (proj @ (r / (lam + a)[:, None]) + my - yv) ** 2
            scores[float(a)] = float(np.mean(err)) if columns is None else \
                {t: float(np.mean(err[:, c])) for t, c in columns.items()}

    def weights(a: float) -> np.ndarray:
        coef = r / (lam + a)[:, None]
        return q @ coef if primal else xc.T @ (u @ coef)

    return mx, my, weights, scores


def fit_ridge(train: Sequences, validation: Sequences, contexts=(2,),
              alphas=(0.1, 1, 10, 100, 1e3, 1e4, 1e5)) -> Ridge:
    """Closed-form ridge on the training frames for each context (frames either side) and each
    ``alpha`` (the penalty on the weights, not the bias); keep the pair with the lowest
    validation MSE (without a validation frame: the smallest context and the largest alpha, the
    safest)."""
    return fit_ridges(train, validation, contexts, alphas)["offsets"]


def fit_ridges(train: Sequences, validation: Sequences, contexts=(2,), alphas=(0.1, 1, 10, 100, 1e3, 1e4, 1e5),
               targets: Sequence[str] = ("offsets",)) -> dict[str, Ridge]:
    """:func:`fit_ridge` of each target (offsets, and channel targets the sequences hold) from one
    decomposition per context; each target's context and alpha chosen on its own validation MSE."""
    contexts = [contexts] if isinstance(contexts, (int, np.integer)) else list(contexts)
    widths = {t: _target(train, t).shape[1] for t in targets}
    columns, at = {}, 0
    for t, n in widths.items():
        columns[t], at = slice(at, at + n), at + n
    scores: dict[str, dict[tuple[int, float], float]] = {t: {} for t in targets}
    best: dict[str, tuple] = {}
    for c in contexts:
        x, y = _gram(train, c, targets)
        if not len(x):
            raise ValueError("no training frame has a face: nothing to fit the ridge baseline on")
        xv, yv = _gram(validation, c, targets) if validation.frames else (None, None)
        if xv is not None and not len(xv):
            xv = yv = None
        mx, my, weights, sc = _ridge_path(x, y, xv, yv, alphas, columns)
        solved: dict[float, np.ndarray] = {}
        for t, cols in columns.items():
            mse = {a: m[t] for a, m in sc.items()}
            scores[t].update({(c, a): m for a, m in mse.items()})
            pick = min(mse, key=mse.get) if mse else float(max(alphas))
            if t not in best or (mse and mse[pick] < best[t][0]):
                if pick not in solved:
                    solved[pick] = weights(pick)
                w = solved[pick][:, cols]
                best[t] = (mse.get(pick, np.inf), c, pick, w.astype(np.float32), (my[cols] - mx @ w).astype(np.float32))
        if not sc:  # nothing to choose with: the first (smallest) context
            break
    return {t: Ridge(w, b, float(a), int(c), scores[t], (-1, 3) if t == "offsets" else (widths[t],))
            for t, (_, c, a, w, b) in best.items()}


def baseline_set(experiments) -> dict[str, dict]:
    """The baselines a sweep is compared with: the mean offset, and ridge on each feature-role set
    its experiments use. name (a file-name-safe key) -> {kind, roles, label}."""
    role_sets = list(dict.fromkeys(tuple(cfg["roles"]) for cfg in experiments.values()))
    # the mean offset reads no feature: nothing about the experiments may change it
    out = {"mean_offset": {"kind": "mean_offset", "roles": [], "label": "baseline: mean offset"}}
    for roles in role_sets:
        out[f"ridge_{'-'.join(roles)}"] = {"kind": "ridge", "roles": list(roles),
                                           "label": f"baseline: ridge ({'+'.join(roles)})"}
    return out
