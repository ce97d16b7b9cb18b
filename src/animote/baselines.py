"""Baselines the network must beat, computed on the same split by the same metric code.

- mean offset: every frame gets the training frames' mean offset (0 in normalised units);
- ridge: a linear map from the same normalised input features (each frame with ``context``
  frames either side, edges repeated) to the normalised offsets, closed form, its
  regularisation chosen on the validation split.
"""

from __future__ import annotations

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
    """y ≈ x @ weight + bias, fitted on masked frames; ``alpha`` the chosen regularisation."""

    weight: np.ndarray  # (D, V*3)
    bias: np.ndarray  # (V*3,)
    alpha: float
    context: int
    validation_mse: dict[float, float]  # alpha -> validation MSE (normalised units)

    def predict(self, inputs: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """Normalised offsets (N, V, 3) for every frame of normalised ``inputs`` (N, D) made of
        chunks ``bounds``."""
        x = with_context(inputs, bounds, self.context).astype(np.float64)
        return (x @ self.weight + self.bias).reshape(len(x), -1, 3).astype(np.float32)


def _gram(seq: Sequences, context: int):
    x = with_context(seq.inputs, seq.bounds, context)[seq.mask].astype(np.float64)
    y = seq.targets[seq.mask].reshape(int(seq.mask.sum()), -1).astype(np.float64)
    return x, y


def fit_ridge(train: Sequences, validation: Sequences, context: int = 2,
              alphas=(0.1, 1, 10, 100, 1e3, 1e4, 1e5)) -> Ridge:
    """Closed-form ridge on the training frames for each ``alpha`` (the penalty on the weights,
    not the bias); keep the one with the lowest validation MSE (the largest alpha when there is
    no validation frame: the safest)."""
    x, y = _gram(train, context)
    if not len(x):
        raise ValueError("no training frame has a face: nothing to fit the ridge baseline on")
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    xtx, xty = xc.T @ xc, xc.T @ (y - my)
    scores: dict[float, float] = {}
    fits = {}
    xv, yv = _gram(validation, context) if validation.frames else (None, None)
    for a in alphas:
        w = np.linalg.solve(xtx + a * np.eye(len(xtx)), xty)
        b = my - mx @ w
        fits[a] = (w, b)
        if xv is not None and len(xv):
            scores[float(a)] = float(np.mean((xv @ w + b - yv) ** 2))
    best = min(scores, key=scores.get) if scores else float(max(alphas))
    w, b = fits[best]
    return Ridge(w.astype(np.float32), b.astype(np.float32), float(best), context, scores)


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
