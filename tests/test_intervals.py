"""Bootstrap intervals over test windows: the per-window sums give back the metrics, the intervals
cover the true value of a synthetic case about as often as they claim, and shrink with more data."""

import numpy as np
import pytest

from animote import intervals, metrics

V = 468


def _case(rng, frames, noise=0.5, chunks=2):
    """True offsets: three latent AR(1) signals (unit variance, correlation time ~3 frames) spread
    over the face by fixed loadings; the prediction: the truth plus white noise on every
    coordinate. Population R² on offsets = 1 - noise variance / signal variance."""
    z = np.zeros((frames, 3))
    e = rng.normal(size=(frames, 3)) * np.sqrt(1 - 0.7 ** 2)
    z[0] = rng.normal(size=3)
    for i in range(1, frames):
        z[i] = 0.7 * z[i - 1] + e[i]
    load = LOADINGS  # (3, V * 3)
    true = (z @ load).reshape(frames, V, 3)
    signal_var = float((load ** 2).sum())  # E[SST] per frame
    sigma = noise * np.sqrt(signal_var / (V * 3))
    pred = true + rng.normal(scale=sigma, size=true.shape)
    neutral = np.zeros((V, 3))
    neutral[14, 1] = 0.02  # lower inner lip below the upper one: a lip gap to correlate
    mask = np.ones(frames, bool)
    mask[5] = False  # a frame with no face is left out of every sum
    bounds = np.array([[i * frames // chunks, (i + 1) * frames // chunks] for i in range(chunks)])
    return true, pred, neutral, mask, bounds, 1.0 - noise ** 2


LOADINGS = np.random.default_rng(99).normal(scale=0.01, size=(3, V * 3))


def test_window_sums_give_back_the_pooled_metrics():
    rng = np.random.default_rng(0)
    true, pred, neutral, mask, bounds, _ = _case(rng, 600)
    lag, corr = metrics.lip_sync(metrics.inner_lip_gap(true, neutral), metrics.inner_lip_gap(pred, neutral), mask)
    s = intervals.window_sums(true, pred, neutral, mask, bounds, 50, lag)
    ones = np.ones((1, len(s.n)))
    assert len(s.n) == 12 and s.n.sum() == mask.sum()
    assert intervals.r2_samples(s, ones)[0] == pytest.approx(metrics.r2(true, pred, mask), abs=1e-9)
    lips = metrics.regions()["lips"]
    assert intervals.r2_samples(s, ones, lips)[0] == pytest.approx(metrics.r2(true[:, lips], pred[:, lips], mask))
    assert intervals.lve_samples(s, ones)[0] == pytest.approx(metrics.lip_vertex_error(true, pred, mask))
    # the lip-sync pairs stay inside each chunk, as lip_sync's do for one sequence
    one = intervals.window_sums(true[:300], pred[:300], neutral, mask[:300], np.array([[0, 300]]), 50, lag)
    _, corr_one = metrics.lip_sync(metrics.inner_lip_gap(true[:300], neutral),
                                   metrics.inner_lip_gap(pred[:300], neutral), mask[:300], max_lag=0)
    assert lag == 0 and intervals.lip_corr_samples(one, np.ones((1, 6)))[0] == pytest.approx(corr_one)


def test_intervals_cover_the_true_value_and_shrink_as_test_windows_grow():
    rng = np.random.default_rng(1)
    covered = []
    for rep in range(40):  # 80 windows of 20 frames: measured 95 % coverage over 60 repetitions
        true, pred, neutral, mask, bounds, r2_true = _case(rng, 1600)
        lo, hi = intervals.bootstrap(true, pred, neutral, mask, bounds, 0, 20, 400, seed=rep)["ci"]["r2"]
        covered.append(lo <= r2_true <= hi)
    assert np.mean(covered) >= 0.85, np.mean(covered)  # a 95 % interval rarely misses
    widths = {}
    for frames in (400, 3200):
        w = []
        for rep in range(8):
            b = intervals.bootstrap(*_case(rng, frames)[:5], 0, 20, 400, seed=rep)
            assert b["windows"] == frames // 20
            w.append(b["ci"]["r2"][1] - b["ci"]["r2"][0])
        widths[frames] = float(np.median(w))
    assert widths[3200] < 0.5 * widths[400], widths  # 8 x the windows: about 1 / sqrt(8) as wide


def test_paired_samples_tell_a_small_difference_apart():
    """Two predictors scored on the same windows with the same seed: their difference's interval
    is narrower than either interval, and excludes 0 when one is always a little better."""
    rng = np.random.default_rng(2)
    true, pred, neutral, mask, bounds, _ = _case(rng, 800, noise=0.5)
    better = true + 0.9 * (pred - true)
    a = intervals.bootstrap(true, better, neutral, mask, bounds, 0, 40, 500, seed=0)
    b = intervals.bootstrap(true, pred, neutral, mask, bounds, 0, 40, 500, seed=0)
    diff = intervals.difference(a["samples"]["r2"], b["samples"]["r2"])
    assert diff[0] > 0 and diff[1] - diff[0] < a["ci"]["r2"][1] - a["ci"]["r2"][0]
    assert intervals.overlap([0, 1], [0.5, 2]) and not intervals.overlap([0, 1], [1.5, 2])
