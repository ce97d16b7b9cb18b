"""What the network can predict beside the mesh offsets (``train.targets``), and how each is scored.

- ``offsets`` (T, 468, 3): the aligned mesh minus the neutral mesh (:mod:`animote.dataset`);
- ``blendshapes`` (T, 52): MediaPipe's Face Landmarker scores in its order
  (:data:`animote.landmarker.BLENDSHAPES`: ``_neutral`` and 51 of ARKit's 52), in [0, 1]; only
  where the recordings were tracked with ``mesh.tracker: landmarker``;
- ``head_pose`` (T, 6): :data:`HEAD_POSE`, the head's yaw, pitch and roll in degrees and the
  position of its centre, from the similarity the alignment fitted to every frame (so every
  tracker has it).

Each channel is z-scored by the training split's frames (:func:`animote.dataset.channel_stats`);
a channel that never moves keeps a floor on its scale (:data:`SCALE_FLOOR`) so it does not blow
up. The dataset stores what :func:`head_pose_from_alignment` computes, evaluation calls
:func:`score_channels`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

HEAD_POSE = ("yaw", "pitch", "roll", "x", "y", "z")
# Blendshape groups scored together (ARKit's own grouping of the 52; `_neutral` in none).
GROUPS = {
    "jaw_mouth": ("jaw", "mouth"),
    "brows": ("brow",),
    "eyes": ("eye",),
    "cheeks_nose": ("cheek", "nose"),
}
MOUTH_CHANNELS = ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthFunnel", "mouthPucker",
                  "mouthClose")  # the plots' and the video strip's
BLINK_THRESHOLD = 0.5  # eyeBlink score above which the eye counts as closed
SCALE_FLOOR = 1e-3  # the smallest per-channel scale (blendshape units, degrees, mesh units)


def head_pose_from_alignment(pose: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(frames, 6): yaw, pitch, roll (degrees) and the neutral mesh's centre in the frame (x right,
    y up, z towards the camera; isotropic units), from the alignment's ``pose`` (frames, 4, 4),
    the similarity mapping each frame's mesh onto ``neutral`` (468, 3). The head's rotation is the
    inverse of the pose's, turned from the image's axes (y down, z away) into the camera's (y up,
    z towards the viewer) that MediaPipe's facial transform and ARKit use, turned into angles as
    the landmarker's transform is (:func:`animote.arkit.euler_yaw_pitch_roll`). NaN frames (no
    face) stay NaN."""
    from .arkit import euler_yaw_pitch_roll

    pose = np.asarray(pose, np.float64)
    out = np.full((len(pose), 6), np.nan)
    ok = np.isfinite(pose).all(axis=(1, 2))
    if not ok.any():
        return out.astype(np.float32)
    a = pose[ok, :3, :3]  # s R
    s = np.cbrt(np.linalg.det(a))[:, None, None]
    r = a / s
    flip = np.diag([1.0, -1.0, -1.0])
    head = flip @ r.transpose(0, 2, 1) @ flip  # the head's rotation, camera axes
    out[ok, :3] = euler_yaw_pitch_roll(head)
    centre = np.asarray(neutral, np.float64).mean(axis=0)
    inv = r.transpose(0, 2, 1) / s  # frame = (1/s) Rᵀ (neutral - t)
    pos = np.einsum("fij,fj->fi", inv, centre[None] - pose[ok, :3, 3])
    out[ok, 3:] = pos @ flip
    return out.astype(np.float32)


def mouth_columns(names: Sequence[str]) -> tuple[tuple[str, ...], list[int]]:
    """The :data:`MOUTH_CHANNELS` among blendshape ``names`` and their indices (a video's strip)."""
    labels = tuple(n for n in MOUTH_CHANNELS if n in names)
    return labels, [list(names).index(n) for n in labels]


def group_indices(names: Sequence[str]) -> dict[str, np.ndarray]:
    """Blendshape group -> indices of ``names`` in it (:data:`GROUPS`, by name prefix)."""
    return {g: np.array([i for i, n in enumerate(names) if n.startswith(prefixes)], np.int64)
            for g, prefixes in GROUPS.items()}


def _r2(t: np.ndarray, p: np.ndarray) -> float:
    """Pooled R² of (frames, channels): 1 - SSE / SST, SST around each channel's mean."""
    if len(t) < 2:
        return float("nan")
    sst = float(((t - t.mean(axis=0)) ** 2).sum())
    return 1.0 - float(((t - p) ** 2).sum()) / sst if sst > 0 else float("nan")


def blinks_per_minute(blink: np.ndarray, mask: np.ndarray, fps: float, threshold: float = BLINK_THRESHOLD) -> float:
    """Blinks a minute of ``blink`` (frames, 2: eyeBlinkLeft and Right): the closings of the mean of
    both eyes across ``threshold`` (with a hysteresis of a fifth of it), over the masked-in time."""
    b = np.asarray(blink, np.float64).mean(axis=1)
    m = np.asarray(mask, bool)
    closed, count = False, 0
    for value, ok in zip(b, m):
        if not ok:
            continue
        if not closed and value > threshold:
            closed, count = True, count + 1
        elif closed and value < threshold * 0.8:
            closed = False
    minutes = m.sum() / fps / 60.0
    return float(count / minutes) if minutes > 0 else float("nan")


def score_channels(target: str, true: np.ndarray, pred: np.ndarray, mask: np.ndarray, names: Sequence[str],
                   fps: float, max_lag: int, speech_energy: np.ndarray | None = None,
                   bounds: np.ndarray | None = None, bootstrap: Mapping | None = None) -> dict:
    """Every number of one channel target on one split: R² and MAE per channel and pooled; for
    blendshapes per group too, the lip-sync lag and r of ``jawOpen`` (as the lip gap's, by
    :func:`animote.metrics.lip_sync`) and the blink rates; for head pose, the correlation of the
    true and the predicted head motion energy with ``speech_energy`` (frames,) when given. With
    ``bounds`` (the chunks) and ``bootstrap`` (window, samples, seed), 95 % intervals of the pooled
    and group R² and of jawOpen's r over the windows the offsets' intervals draw."""
    from .metrics import lip_sync

    m = np.asarray(mask, bool)
    t, p = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    tv, pv = t[m], p[m]
    per = {n: {"r2": _r2(tv[:, [i]], pv[:, [i]]), "mae": float(np.abs(tv[:, i] - pv[:, i]).mean()) if len(tv) else
               float("nan"), "std": float(tv[:, i].std()) if len(tv) else float("nan")}
           for i, n in enumerate(names)}
    out: dict = {"channels": per, "r2": _r2(tv, pv), "mae": float(np.abs(tv - pv).mean()) if len(tv) else float("nan"),
                 "frames": int(m.sum())}
    if target == "blendshapes":
        out["groups"] = {g: {"r2": _r2(tv[:, ix], pv[:, ix]), "mae": float(np.abs(tv[:, ix] - pv[:, ix]).mean())}
                         for g, ix in group_indices(names).items() if len(ix) and len(tv)}
        index = {n: i for i, n in enumerate(names)}
        if "jawOpen" in index:
            lag, corr = lip_sync(t[:, index["jawOpen"]], p[:, index["jawOpen"]], m, max_lag)
            out["jaw_open"] = {"lag": float(lag), "r": corr}
        if {"eyeBlinkLeft", "eyeBlinkRight"} <= set(index):
            cols = [index["eyeBlinkLeft"], index["eyeBlinkRight"]]
            out["blinks_per_min"] = {"true": blinks_per_minute(t[:, cols], m, fps),
                                     "predicted": blinks_per_minute(p[:, cols], m, fps)}
    if bootstrap and bounds is not None:
        from .intervals import channel_bootstrap

        groups = group_indices(names) if target == "blendshapes" else {"rotation": np.arange(3)}
        jaw = list(names).index("jawOpen") if "jaw_open" in out else None
        b = channel_bootstrap(t, p, m, bounds, bootstrap["window"], bootstrap["samples"], bootstrap["seed"], groups,
                              jaw, out["jaw_open"]["lag"] if jaw is not None else 0.0)
        out["intervals"] = {"ci": b["ci"], "windows": b["windows"],
                            "samples": {k: np.round(v, 6).tolist() for k, v in b["samples"].items()
                                        if k in ("r2", "corr")}}
    if target == "head_pose":
        rot = slice(0, 3)
        out["rotation_r2"] = _r2(tv[:, rot], pv[:, rot])
        if speech_energy is not None:
            out["motion_vs_speech"] = {k: motion_speech_corr(x[:, rot], m, speech_energy)
                                       for k, x in (("true", t), ("predicted", p))}
    return out


def motion_speech_corr(angles: np.ndarray, mask: np.ndarray, energy: np.ndarray, smooth: int = 15) -> float:
    """Pearson r of the head's motion energy (the squared frame-to-frame change of its angles,
    averaged over ``smooth`` frames) with the speech energy averaged the same way; frames next to
    a faceless one are left out."""
    d = np.diff(np.asarray(angles, np.float64), axis=0)
    e = (d * d).sum(axis=1)
    ok = np.asarray(mask, bool)[1:] & np.asarray(mask, bool)[:-1] & np.isfinite(e)
    if ok.sum() < smooth * 2:
        return float("nan")
    kernel = np.ones(smooth) / smooth
    motion = np.convolve(np.where(ok, e, 0.0), kernel, "same")
    speech = np.convolve(np.asarray(energy, np.float64)[1:], kernel, "same")
    a, b = motion[ok], speech[ok]
    if a.std() <= 0 or b.std() <= 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def table_rows(results: Mapping[str, Mapping]) -> list[dict]:
    """The report's rows (one per model) from each model's ``targets`` scores: R² per blendshape
    group, jawOpen's lag and r, blink rates, head-pose R² per angle."""
    rows = []
    for name, t in results.items():
        row: dict = {"model": name}
        b = t.get("blendshapes")
        if b:
            row["blendshapes R²"] = b["r2"]
            ci = b.get("intervals", {}).get("ci", {})
            if "r2" in ci:
                row["blendshapes R² 95 % CI"] = f"{ci['r2'][0]:.3f}–{ci['r2'][1]:.3f}"
            row.update({f"{g} R²": v["r2"] for g, v in b.get("groups", {}).items()})
            if "jaw_open" in b:
                row["jawOpen r"], row["jawOpen lag"] = b["jaw_open"]["r"], b["jaw_open"]["lag"]
                if "corr" in ci:
                    row["jawOpen r 95 % CI"] = f"{ci['corr'][0]:.3f}–{ci['corr'][1]:.3f}"
            if "blinks_per_min" in b:
                row["blinks/min true"] = b["blinks_per_min"]["true"]
                row["blinks/min predicted"] = b["blinks_per_min"]["predicted"]
        h = t.get("head_pose")
        if h:
            row.update({f"head {a} R²": h["channels"][a]["r2"] for a in HEAD_POSE[:3]})
            mv = h.get("motion_vs_speech")
            if mv:
                row["head motion ~ speech r (true)"] = mv["true"]
                row["head motion ~ speech r (predicted)"] = mv["predicted"]
        rows.append(row)
    return rows
