"""Metrics on hand-made arrays: each definition checked against a value worked out by hand."""

import numpy as np
import pytest

from animote import metrics
from animote.mesh import LOWER_LIP_INNER, UPPER_LIP_INNER


def test_regions_are_disjoint_and_cover_the_mesh():
    r = metrics.regions()
    assert set(r) == {"lips", "jaw", "mouth_corners", "brows", "eyes", "rest"}
    every = np.concatenate(list(r.values()))
    assert sorted(every.tolist()) == list(range(468))  # each vertex in exactly one region
    assert {UPPER_LIP_INNER, LOWER_LIP_INNER} <= set(r["lips"]) and 61 in r["mouth_corners"]
    assert len(r["lips"]) >= 30 and len(r["brows"]) == 20 and len(r["eyes"]) == 32


def test_mse_and_r2_by_hand_with_a_mask():
    true = np.zeros((4, 2, 3))
    true[:, 0, 0] = [0, 2, 0, 100]  # frame 3 has no face: its wild value must not count
    pred = np.zeros((4, 2, 3))
    pred[:, 0, 0] = [1, 1, 1, -50]
    mask = np.array([True, True, True, False])
    # Valid frames: errors 1, 1, 1 on one coordinate of 6 -> MSE 3 / 18.
    assert metrics.mse(true, pred, mask) == pytest.approx(3 / 18)
    # SST: values 0, 2, 0 around 2/3 -> 4/9 + 16/9 + 4/9 = 24/9; SSE 3 -> R² = 1 - 27/24.
    assert metrics.r2(true, pred, mask) == pytest.approx(1 - 3 / (24 / 9))
    assert metrics.r2(true, true, mask) == 1.0
    mean = np.broadcast_to(true[mask].mean(axis=0), true.shape)
    assert metrics.r2(true, mean, mask) == pytest.approx(0.0)


def test_absolute_r2_flatters_a_face_that_does_not_move():
    rng = np.random.default_rng(0)
    neutral = rng.normal(size=(468, 3))  # the face's shape: large spread
    true = 0.01 * rng.normal(size=(50, 468, 3))  # small motion
    still = np.zeros_like(true)  # a prediction that never moves
    assert metrics.r2(true, still) < 0.01  # on offsets: no better than nothing
    assert metrics.r2_absolute(true, still, neutral) > 0.99  # the paper's R²: looks excellent


def test_lve_is_the_largest_lip_distance_averaged_over_frames():
    lips = np.array([0, 1])
    true = np.zeros((2, 3, 3))
    pred = np.zeros((2, 3, 3))
    pred[0, 0] = [3, 4, 0]  # distance 5
    pred[0, 1] = [1, 0, 0]
    pred[1, 1] = [0, 0, 2]  # distance 2
    pred[1, 2] = [100, 0, 0]  # not a lip vertex
    assert metrics.lip_vertex_error(true, pred, lips=lips) == pytest.approx((5 + 2) / 2)


def test_fdd_sign_and_value():
    upper = np.array([0])
    t = np.zeros((4, 1, 3))
    t[:, 0, 0] = [0, 1, 0, 1]  # squared motion 0,1,0,1: std 0.5
    still = np.zeros_like(t)
    assert metrics.upper_face_dynamics_deviation(t, still, upper=upper) == pytest.approx(0.5)
    assert metrics.upper_face_dynamics_deviation(t, t, upper=upper) == 0.0
    assert metrics.upper_face_dynamics_deviation(still, t, upper=upper) == pytest.approx(-0.5)


def test_lip_sync_finds_the_lag_of_a_late_prediction():
    rng = np.random.default_rng(1)
    gap = np.convolve(rng.random(300), np.ones(4) / 4, mode="same")
    late = np.roll(gap, 3)  # the prediction's frame f + 3 is the truth's frame f
    lag, corr = metrics.lip_sync(gap, late)
    assert lag == 3 and corr > 0.99
    lag, corr = metrics.lip_sync(gap, np.roll(gap, -2))
    assert lag == -2
    mask = np.ones(300, bool)
    mask[100:150] = False
    noisy = late.copy()
    noisy[100:150] = rng.random(50) * 10  # garbage where there is no face
    assert metrics.lip_sync(gap, noisy, mask)[0] == 3


def test_summary_on_meshes_and_inner_lip_gap():
    rng = np.random.default_rng(2)
    neutral = rng.normal(size=(468, 3))
    true = 0.01 * rng.normal(size=(40, 468, 3))
    true[:, LOWER_LIP_INNER, 1] += np.sin(np.linspace(0, 8, 40))  # the mouth opens and closes
    s = metrics.summary(true, true, neutral)
    assert s["r2"] == 1.0 and s["lve"] == 0.0 and s["lip_sync_lag"] == 0 and s["lip_sync_corr"] > 0.999
    gap = metrics.inner_lip_gap(true, neutral)
    assert gap.shape == (40,) and np.isclose(gap[0], np.linalg.norm(
        true[0, LOWER_LIP_INNER] + neutral[LOWER_LIP_INNER] - true[0, UPPER_LIP_INNER] - neutral[UPPER_LIP_INNER]))
    regions = metrics.per_region(true, 0.5 * true, neutral=neutral)
    assert set(regions) == set(metrics.regions()) | {"all"}
    lips = metrics.regions()["lips"]
    assert regions["all"]["r2"] == pytest.approx(metrics.r2(true, 0.5 * true))
    assert regions["lips"]["mse"] == pytest.approx(np.mean((0.5 * true[:, lips]) ** 2))
    assert all(np.isfinite(v) for row in regions.values() for v in row.values())


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="both be"):
        metrics.mse(np.zeros((3, 468, 3)), np.zeros((4, 468, 3)))
    with pytest.raises(ValueError, match="mask must be"):
        metrics.r2(np.zeros((3, 2, 3)), np.zeros((3, 2, 3)), np.ones(4, bool))
