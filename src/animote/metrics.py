"""Evaluation metrics on mesh sequences: pure functions on arrays (paper 4.2, CodeTalker, SelfTalk).

Shapes: ``true`` and ``pred`` are (T, 468, 3) offsets (or absolute vertices where a function says
so), ``mask`` is (T,) bool: frames without a face are excluded from every metric. Units are the
meshes' own (isotropic: every axis divided by the image width), unless a metric is a ratio.

The face regions are MediaPipe FaceMesh index sets, named here and nowhere else (``REGIONS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from .mesh import LOWER_LIP_INNER, N_LANDMARKS, UPPER_LIP_INNER

MOUTH_CORNERS = (61, 291, 78, 308)  # outer and inner corners, left and right
# The lower face oval from ear to ear through the chin: what the jaw carries.
JAW = (58, 132, 136, 148, 149, 150, 152, 172, 176, 377, 378, 379, 361, 365, 367, 397, 400, 288)


@lru_cache(maxsize=1)
def regions() -> dict[str, np.ndarray]:
    """Region name -> vertex indices, disjoint, covering all 468 vertices: lips, jaw, mouth
    corners, brows, eyes (from MediaPipe's face-mesh connection sets) and the rest."""
    from mediapipe.python.solutions import face_mesh_connections as fm

    def idx(*sets) -> set[int]:
        return {i for s in sets for edge in s for i in edge if i < N_LANDMARKS}

    corners = set(MOUTH_CORNERS)
    out = {"mouth_corners": corners,
           "lips": idx(fm.FACEMESH_LIPS) - corners,
           "jaw": set(JAW),
           "brows": idx(fm.FACEMESH_LEFT_EYEBROW, fm.FACEMESH_RIGHT_EYEBROW),
           "eyes": idx(fm.FACEMESH_LEFT_EYE, fm.FACEMESH_RIGHT_EYE)}
    taken: set[int] = set()
    for name, ids in out.items():
        out[name] = ids - taken
        taken |= ids
    out["rest"] = set(range(N_LANDMARKS)) - taken
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in out.items()}


def upper_face() -> np.ndarray:
    """The upper-face vertices FDD looks at: brows and eyes (MediaPipe's sets), which speech
    moves little; their motion is expression."""
    r = regions()
    return np.unique(np.concatenate([r["brows"], r["eyes"]]))


def _valid(true: np.ndarray, pred: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    if true.shape != pred.shape or true.ndim != 3 or true.shape[2] != 3:
        raise ValueError(f"true and pred must both be (frames, vertices, 3), got {true.shape} and {pred.shape}")
    if mask is None:
        return true, pred
    mask = np.asarray(mask, bool)
    if mask.shape != true.shape[:1]:
        raise ValueError(f"mask must be (frames,) = {true.shape[:1]}, got {mask.shape}")
    return true[mask], pred[mask]


def mse(true, pred, mask=None) -> float:
    """Mean squared error over every coordinate of the valid frames (units²)."""
    t, p = _valid(true, pred, mask)
    return float(np.mean((t - p) ** 2)) if t.size else float("nan")


def r2(true, pred, mask=None) -> float:
    """Pooled R²: 1 − SSE / SST, SST the sum of squares of ``true`` around its mean per coordinate
    (the mean offset of the frames evaluated), summed over every coordinate. Unitless; 0 is the
    mean offset of the evaluated frames, negative is worse. On absolute vertex positions (the
    paper's R²) SST holds the face's shape, not its motion: see :func:`r2_absolute`."""
    t, p = _valid(true, pred, mask)
    if len(t) < 2:
        return float("nan")
    sst = float(((t - t.mean(axis=0)) ** 2).sum())
    return 1.0 - float(((t - p) ** 2).sum()) / sst if sst > 0 else float("nan")


def r2_absolute(true_offsets, pred_offsets, neutral, mask=None) -> float:
    """``neutral``: (468, 3), or (T, 468, 3) when frames come from several recordings.

    The paper's R², on absolute vertex positions (neutral + offsets), SST around the mean over
    every coordinate together (sklearn's r2_score on flattened arrays, as the paper computed it).
    A face that barely moves scores near 1 here even when the motion is wrong: the spread of the
    vertices across the face dominates SST. Report it beside :func:`r2` on offsets, never alone."""
    n = np.broadcast_to(np.asarray(neutral, np.float64), np.shape(true_offsets))
    t, p = _valid(np.asarray(true_offsets) + n, np.asarray(pred_offsets) + n, mask)
    t, p = t.ravel(), p.ravel()
    sst = float(((t - t.mean()) ** 2).sum())
    return 1.0 - float(((t - p) ** 2).sum()) / sst if sst > 0 else float("nan")


def lip_vertex_error(true, pred, mask=None, lips: np.ndarray | None = None) -> float:
    """LVE: per frame, the largest Euclidean distance between true and predicted lip vertices;
    averaged over frames (mesh units). CodeTalker and FaceFormer square the distance before
    taking the maximum (units²); this is the plain distance, comparable with the mesh's size."""
    t, p = _valid(true, pred, mask)
    lips = regions()["lips"] if lips is None else lips
    if not len(t):
        return float("nan")
    dist = np.linalg.norm(t[:, lips] - p[:, lips], axis=-1)  # (T, lips)
    return float(dist.max(axis=1).mean())


def upper_face_dynamics_deviation(true, pred, mask=None, upper: np.ndarray | None = None) -> float:
    """FDD as CodeTalker and SelfTalk define it, on offsets (motion from the neutral mesh): for
    each upper-face vertex, the standard deviation over time of its squared motion magnitude;
    averaged over those vertices; true minus predicted (units²). Positive: the prediction's upper
    face moves less than the truth's; 0: the same amount of upper-face dynamics."""
    t, p = _valid(true, pred, mask)
    upper = upper_face() if upper is None else upper
    if len(t) < 2:
        return float("nan")

    def dynamics(x):
        return float(np.std((x[:, upper] ** 2).sum(axis=-1), axis=0).mean())

    return dynamics(t) - dynamics(p)


def inner_lip_gap(offsets: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Per frame, the distance between the inner upper and lower lip (landmarks 13 and 14);
    ``neutral`` (468, 3) or one per frame (T, 468, 3)."""
    n = np.asarray(neutral)
    v = np.asarray(offsets) + (n if n.ndim == 3 else n[None])
    return np.linalg.norm(v[:, LOWER_LIP_INNER] - v[:, UPPER_LIP_INNER], axis=-1)


def _flat(x: np.ndarray) -> bool:
    """Constant up to rounding (a prediction that never moves has no correlation with anything)."""
    return float(x.std()) <= 1e-9 * max(float(np.abs(x).mean()), 1e-12)


def lip_sync(true_gap: np.ndarray, pred_gap: np.ndarray, mask=None, max_lag: int = 10) -> tuple[float, float]:
    """The lag (frames) that maximises the Pearson correlation between the predicted and the true
    inner-lip gap, and the correlation there. Positive lag: the prediction comes late (its frame
    ``f + lag`` matches the truth's frame ``f``). Masked frames are left out of each correlation.
    Both are NaN when no lag gives a correlation (a prediction that never moves)."""
    t, p = np.asarray(true_gap, np.float64), np.asarray(pred_gap, np.float64)
    m = np.ones(len(t), bool) if mask is None else np.asarray(mask, bool)
    best = (float("nan"), float("nan"))
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            a, b, ok = t[:len(t) - lag], p[lag:], m[:len(m) - lag] & m[lag:]
        else:
            a, b, ok = t[-lag:], p[:lag], m[-lag:] & m[:lag]
        if ok.sum() < 3 or _flat(a[ok]) or _flat(b[ok]):
            continue
        c = float(np.corrcoef(a[ok], b[ok])[0, 1])
        if not np.isfinite(best[1]) or c > best[1]:
            best = (lag, c)
    return best


def per_region(true, pred, mask=None, neutral=None) -> dict[str, dict[str, float]]:
    """MSE, R² on offsets and mean vertex error per region (and "all"); with ``neutral``, the
    paper's absolute R² as well."""
    out: dict[str, dict[str, float]] = {}
    t, p = np.asarray(true), np.asarray(pred)
    for name, ids in {**regions(), "all": np.arange(t.shape[1])}.items():
        row = {"mse": mse(t[:, ids], p[:, ids], mask), "r2": r2(t[:, ids], p[:, ids], mask)}
        tv, pv = _valid(t[:, ids], p[:, ids], mask)
        row["mean_vertex_error"] = float(np.linalg.norm(tv - pv, axis=-1).mean()) if tv.size else float("nan")
        if neutral is not None:
            row["r2_absolute"] = r2_absolute(t[:, ids], p[:, ids], np.asarray(neutral)[..., ids, :], mask)
        out[name] = row
    return out


def summary(true, pred, neutral, mask=None, max_lag: int = 10) -> Mapping[str, float]:
    """Every headline metric of one sequence (or concatenated sequences)."""
    lag, corr = lip_sync(inner_lip_gap(true, neutral), inner_lip_gap(pred, neutral), mask, max_lag)
    return {"mse": mse(true, pred, mask), "r2": r2(true, pred, mask),
            "r2_absolute": r2_absolute(true, pred, neutral, mask),
            "lve": lip_vertex_error(true, pred, mask), "fdd": upper_face_dynamics_deviation(true, pred, mask),
            "lip_sync_lag": float(lag), "lip_sync_corr": corr}
