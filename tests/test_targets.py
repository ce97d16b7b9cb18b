"""Channel targets beside the offsets (animote.targets): blink counting, groups, and the scores of
a channel target, on curves whose answers are known."""

import numpy as np
import pytest

from animote.landmarker import BLENDSHAPES
from animote.targets import GROUPS, blinks_per_minute, group_indices, motion_speech_corr, score_channels, table_rows


def _blinks(n_frames: int, at: list[int], width: int = 5) -> np.ndarray:
    b = np.full((n_frames, 2), 0.05)
    for f in at:
        b[f:f + width] = 0.9
    return b


def test_blinks_are_counted_once_each_and_per_minute_of_face():
    fps, n = 30.0, 1800  # a minute
    b = _blinks(n, [100, 400, 403 + 10, 1000])  # 413 starts after 400's blink ended: 4 blinks
    mask = np.ones(n, bool)
    assert blinks_per_minute(b, mask, fps) == pytest.approx(4.0)
    jitter = b.copy()
    jitter[102] = 0.45  # a dip above the hysteresis's floor (0.4) inside a blink is not a new blink
    assert blinks_per_minute(jitter, mask, fps) == pytest.approx(4.0)
    half = mask.copy()
    half[900:] = False  # half the minute without a face: the 3 blinks before it in 30 s
    assert blinks_per_minute(b, half, fps) == pytest.approx(6.0)
    one_eye = b.copy()
    one_eye[:, 1] = 0.05  # one eye closing: mean 0.475, not a blink
    assert blinks_per_minute(one_eye, mask, fps) == 0


def test_every_blendshape_but_neutral_is_in_exactly_one_group():
    idx = group_indices(BLENDSHAPES)
    assert set(idx) == set(GROUPS)
    flat = np.concatenate(list(idx.values()))
    assert len(flat) == len(set(flat)) == len(BLENDSHAPES) - 1 and BLENDSHAPES.index("_neutral") not in flat
    assert BLENDSHAPES.index("jawOpen") in idx["jaw_mouth"] and BLENDSHAPES.index("noseSneerLeft") in idx["cheeks_nose"]


def test_scores_find_a_late_jaw_and_keep_the_groups_apart():
    rng = np.random.default_rng(0)
    n, fps = 900, 30.0
    true = np.clip(0.1 + 0.05 * rng.normal(size=(n, len(BLENDSHAPES))), 0, 1)
    jaw, brow = BLENDSHAPES.index("jawOpen"), BLENDSHAPES.index("browInnerUp")
    true[:, jaw] = 0.3 + 0.3 * np.sin(np.arange(n) / 7)
    pred = np.broadcast_to(true.mean(0), true.shape).copy()
    pred[2:, jaw] = true[:-2, jaw]  # two frames late
    pred[:, brow] = true[:, brow]  # a perfect brow
    mask = np.ones(n, bool)
    s = score_channels("blendshapes", true, pred, mask, BLENDSHAPES, fps, max_lag=5)
    assert s["jaw_open"]["lag"] == 2 and s["jaw_open"]["r"] > 0.99
    assert s["channels"]["browInnerUp"]["r2"] == pytest.approx(1.0) and s["channels"]["mouthFunnel"]["r2"] < 0.01
    assert 0 < s["groups"]["brows"]["r2"] < 1 and s["groups"]["cheeks_nose"]["r2"] < 0.01
    assert s["blinks_per_min"]["true"] == 0 and s["frames"] == n
    row = table_rows({"net": {"blendshapes": s}})[0]
    assert row["jawOpen lag"] == 2 and row["brows R²"] == s["groups"]["brows"]["r2"]


def test_head_motion_that_comes_with_speech_correlates_with_its_energy():
    rng = np.random.default_rng(1)
    n = 3000
    speech = np.repeat(rng.random(n // 60) > 0.5, 60).astype(float) * (0.5 + 0.1 * rng.random(n))  # 2 s turns
    angles = np.cumsum(rng.normal(size=(n, 3)) * (0.05 + speech[:, None]), axis=0)  # moves more while speaking
    mask = np.ones(n, bool)
    assert motion_speech_corr(angles, mask, speech) > 0.6
    still = np.cumsum(rng.normal(size=(n, 3)) * 0.3, axis=0)  # moves regardless of the speech
    assert abs(motion_speech_corr(still, mask, speech)) < 0.2
    true = np.concatenate([angles, rng.normal(size=(n, 3))], axis=1)
    s = score_channels("head_pose", true, true * 0 + true.mean(0), mask, ("yaw", "pitch", "roll", "x", "y", "z"),
                       30.0, 5, speech)
    assert s["motion_vs_speech"]["true"] > 0.6 and np.isnan(s["motion_vs_speech"]["predicted"])
    assert abs(s["rotation_r2"]) < 1e-9


def test_channel_intervals_cover_the_pooled_value_and_pair_up_across_models():
    from animote.intervals import channel_bootstrap

    rng = np.random.default_rng(2)
    n, c = 2400, 6
    true = rng.normal(size=(n, c)).cumsum(0) * 0.01
    good, bad = true + 0.005 * rng.normal(size=(n, c)), true + 0.02 * rng.normal(size=(n, c))
    mask, bounds = np.ones(n, bool), np.array([[0, 1200], [1200, 2400]])
    groups = {"a": np.arange(3), "b": np.arange(3, 6)}
    g = channel_bootstrap(true, good, mask, bounds, 120, 300, 0, groups, corr=0)
    b = channel_bootstrap(true, bad, mask, bounds, 120, 300, 0, groups, corr=0)
    pooled = 1 - ((true - good) ** 2).sum() / ((true - true.mean(0)) ** 2).sum()
    lo, hi = g["ci"]["r2"]
    assert g["windows"] == 20 and lo <= pooled <= hi and hi - lo < 0.2
    assert set(g["ci"]) == {"r2", "r2_a", "r2_b", "corr"} and g["ci"]["corr"][0] > 0.9
    diff = np.asarray(g["samples"]["r2"]) - np.asarray(b["samples"]["r2"])  # the same windows drawn: paired
    assert np.quantile(diff, 0.025) > 0
