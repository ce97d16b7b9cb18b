"""Evaluation pieces on hand-made data: windowed prediction, the ridge baseline, scoring, the
report tables, and the mesh video (real ffmpeg)."""

import json
import subprocess

import numpy as np
import pytest
import torch

from animote import metrics
from animote.baselines import baseline_set, fit_ridge, with_context
from animote.dataset import Sequences
from animote.predict import Predictor, crossfade_weights, window_plan
from animote.render import Frame2D, render_video
from animote.report import ablation_table, config_changes, features_table, sweep_table


@pytest.mark.parametrize("n,window,overlap", [(1, 120, 30), (120, 120, 30), (121, 120, 30), (1000, 120, 30),
                                              (1000, 50, 0), (333, 64, 63)])
def test_windows_cover_every_frame_and_weights_sum_to_one(n, window, overlap):
    plan = window_plan(n, window, overlap)
    assert plan[0][0] == 0 and plan[-1][1] == n
    assert all(e - s == min(window, n) for s, e in plan)
    total = np.zeros(n)
    for (s, e), w in zip(plan, crossfade_weights(plan, n)):
        assert (w > 0).all()
        total[s:e] += w
    np.testing.assert_allclose(total, 1, atol=1e-6)


class _Frames(torch.nn.Module):
    """Frame-wise (no context) or with a running mean over the window (context-dependent); the
    running one also predicts a channel target of 4 channels."""

    def __init__(self, dim, running=False):
        super().__init__()
        self.config = type("C", (), {"n_vertices": 2, "channels": (("blendshapes", 4),) if running else ()})()
        self.w = torch.nn.Linear(dim, 10)
        self.running = running

    def forward(self, x):
        y = self.w(x)
        if self.running:
            y = torch.cumsum(y, 1) / torch.arange(1, x.shape[1] + 1)[None, :, None]
        out = {"offsets": y[..., :6].reshape(x.shape[0], x.shape[1], 2, 3)}
        if self.running:
            out["blendshapes"] = y[..., 6:]
        return out


def _predictor(model, window=40, overlap=10):
    return Predictor(model, {"train_config": {"window": window}}, overlap=overlap, batch=3)


def test_windowed_prediction_of_a_framewise_model_equals_one_pass():
    torch.manual_seed(0)
    model = _Frames(5).eval()
    x = np.random.default_rng(0).normal(size=(517, 5)).astype(np.float32)
    with torch.no_grad():
        whole = model(torch.from_numpy(x)[None])["offsets"][0].numpy()
    np.testing.assert_allclose(_predictor(model).predict_normalised(x), whole, atol=1e-5)


def test_streaming_in_uneven_blocks_gives_the_one_pass_result_in_order():
    torch.manual_seed(0)
    model = _Frames(5, running=True).eval()  # not frame-wise: the windows matter
    x = np.random.default_rng(1).normal(size=(517, 5)).astype(np.float32)
    p = _predictor(model, overlap=12)
    p.checkpoint.update(roles=["phonetic"], features={"phonetic": {"dim": 5, "cache_key": "test"}},
                        normalisation={"phonetic_mean": torch.zeros(5), "phonetic_std": torch.ones(5),
                                       "offset_mean": torch.zeros(2, 3), "offset_scale": torch.ones(2, 3),
                                       "target_blendshapes_mean": torch.full((4,), 0.5),
                                       "target_blendshapes_std": torch.full((4,), 2.0)})
    whole = p.predict_normalised(x)
    cuts = [0, 7, 150, 151, 390, 517]
    pieces = list(p.stream(({"phonetic": x[a:b]} for a, b in zip(cuts[:-1], cuts[1:])), 517))
    assert len(pieces) > 1  # frames come out before the last block is read
    np.testing.assert_allclose(np.concatenate([q["offsets"] for q in pieces]), whole, atol=1e-6)
    all_at_once = p.predict_targets({"phonetic": x})
    streamed = np.concatenate([q["blendshapes"] for q in pieces])
    np.testing.assert_allclose(streamed, all_at_once["blendshapes"], atol=1e-6)
    with torch.no_grad():  # the first window's frames, denormalised: 0.5 + 2 x the model's output
        first = model(torch.from_numpy(x[None, :20]))["blendshapes"][0].numpy()
    np.testing.assert_allclose(streamed[:20], 0.5 + 2.0 * first, atol=1e-5)
    with pytest.raises(ValueError, match="end at frame 390, 517 frames expected"):
        list(p.stream(({"phonetic": x[a:b]} for a, b in zip(cuts[:-2], cuts[1:-1])), 517))
    with pytest.raises(ValueError, match="hold 527 frames, 517 expected"):
        list(p.stream([{"phonetic": x}, {"phonetic": x[:10]}], 517))


def test_crossfade_leaves_no_jump_at_window_seams():
    torch.manual_seed(0)
    model = _Frames(5, running=True).eval()
    t = np.linspace(0, 20, 400)
    x = np.stack([np.sin(t + k) for k in range(5)], 1).astype(np.float32)  # smooth input
    faded = _predictor(model, overlap=16).predict_normalised(x)[:, 0, 0]
    hard = _predictor(model, overlap=0).predict_normalised(x)[:, 0, 0]
    assert np.abs(np.diff(faded)).max() < 0.6 * np.abs(np.diff(hard)).max()


def _seq(x, y, bounds, mask=None):
    mask = np.ones(len(x), bool) if mask is None else mask
    return Sequences(x.astype(np.float32), y.astype(np.float32), mask, np.asarray(bounds), [])


def test_context_stays_inside_each_chunk():
    x = np.arange(6, dtype=np.float32)[:, None]
    out = with_context(x, np.array([[0, 3], [3, 6]]), 1)
    assert out.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 4], [3, 4, 5], [4, 5, 5]]


def test_ridge_recovers_a_linear_map_and_picks_little_regularisation():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 6))
    x = rng.normal(size=(600, 4))
    y = (x @ w + 0.5).reshape(600, 2, 3) + rng.normal(scale=0.01, size=(600, 2, 3))
    xv = rng.normal(size=(200, 4))
    yv = (xv @ w + 0.5).reshape(200, 2, 3)
    r = fit_ridge(_seq(x, y, [[0, 600]]), _seq(xv, yv, [[0, 200]]), contexts=[0], alphas=[0.01, 10, 1e4])
    assert r.alpha == 0.01
    np.testing.assert_allclose(r.predict(xv.astype(np.float32), np.array([[0, 200]])), yv, atol=0.01)


def test_ridge_on_noise_chooses_the_strongest_penalty():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(300, 20)), rng.normal(size=(300, 2, 3))
    xv, yv = rng.normal(size=(300, 20)), rng.normal(size=(300, 2, 3))
    r = fit_ridge(_seq(x, y, [[0, 300]]), _seq(xv, yv, [[0, 300]]), contexts=[1], alphas=[0.01, 1, 1e5])
    assert r.alpha == 1e5 and r.weight.shape == (60, 6)


def test_ridge_chooses_its_context_on_validation():
    """The offsets follow the features 3 frames earlier: a context of 0 or 2 cannot see that far, 5 can."""
    rng = np.random.default_rng(3)

    def make(n):
        x = rng.normal(size=(n, 3))
        y = np.zeros((n, 1, 3))
        y[3:, 0] = x[:-3]
        return x, y

    (x, y), (xv, yv) = make(800), make(300)
    r = fit_ridge(_seq(x, y, [[0, 800]]), _seq(xv, yv, [[0, 300]]), contexts=[0, 2, 5], alphas=[0.01, 100])
    assert r.context == 5 and r.validation_mse[(5, 0.01)] < 0.01 < r.validation_mse[(2, 0.01)]
    assert set(r.validation_mse) == {(c, a) for c in (0, 2, 5) for a in (0.01, 100)}


@pytest.mark.parametrize("frames", [30, 400])  # fewer frames than inputs (the dual form), and more
def test_ridge_matches_the_direct_solution(frames):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(frames, 40)), rng.normal(size=(frames, 2, 3))
    r = fit_ridge(_seq(x, y, [[0, frames]]), _seq(x[:5], y[:5], [[0, 5]]), contexts=[1], alphas=[3.0])
    xc = with_context(x.astype(np.float32), np.array([[0, frames]]), 1).astype(np.float64)
    yf = y.reshape(frames, -1)
    xm = xc - xc.mean(0)
    w = np.linalg.solve(xm.T @ xm + 3.0 * np.eye(xc.shape[1]), xm.T @ (yf - yf.mean(0)))
    np.testing.assert_allclose(r.weight, w, atol=1e-4)
    np.testing.assert_allclose(r.bias, yf.mean(0) - xc.mean(0) @ w, atol=1e-4)


def test_baselines_cover_every_role_set_once():
    exps = {"a": {"roles": ["phonetic", "emotion"]}, "b": {"roles": ["phonetic"]},
            "c": {"roles": ["phonetic", "emotion"]}}
    assert list(baseline_set(exps)) == ["mean_offset", "ridge_phonetic-emotion", "ridge_phonetic"]


def _exp(roles, r2, regions, **model):
    cfg = {"lr": 0.001, "batch_size": 16, "epochs": 20, "roles": roles, "model": {"heads": 2, "causal": True, **model}}
    return {"config": cfg, "train": {"train_loss": 0.2, "val_loss": 0.3},
            "test": {"r2": r2, "loss": 1 - r2, "r2_absolute": 0.9999}, "regions": regions}


def test_report_tables_name_the_changes_and_answer_where_emotion_helps():
    defaults = {"lr": 0.001, "batch_size": 16, "epochs": 20, "roles": ["phonetic", "emotion"],
                "model": {"heads": 2, "causal": True}}
    reg = lambda lips, brows: {"lips": {"r2": lips}, "brows": {"r2": brows}, "all": {"r2": (lips + brows) / 2}}  # noqa
    exps = {"recipe": _exp(["phonetic", "emotion"], 0.7, reg(0.8, 0.6)),
            "phonetic_only": _exp(["phonetic"], 0.6, reg(0.8, 0.4)),
            "noncausal": _exp(["phonetic", "emotion"], 0.75, reg(0.8, 0.7), causal=False)}
    base = {"baseline: ridge (phonetic)": {"roles": ["phonetic"], "test": {"r2": 0.65}, "regions": reg(0.7, 0.6)},
            "baseline: mean offset": {"roles": ["phonetic"], "test": {"r2": 0.0}, "regions": reg(0, 0)}}
    sweep = sweep_table(exps, base)
    assert list(sweep["model"]) == ["recipe", "phonetic_only", "noncausal", "baseline: ridge (phonetic)",
                                    "baseline: mean offset"]
    assert sweep.loc[3, "test R² (offsets)"] == 0.65 and np.isnan(sweep.loc[3, "lr"])
    abl = ablation_table(exps, defaults, base).set_index("experiment")
    assert abl.loc["baseline: ridge (phonetic)", "ΔR² vs defaults"] == pytest.approx(-0.05)
    assert abl.loc["noncausal", "change from the defaults"] == "model.causal = false"
    assert abl.loc["recipe", "change from the defaults"] == "(defaults)"
    assert abl.loc["noncausal", "ΔR² vs defaults"] == pytest.approx(0.05)
    table, answer = features_table(exps, base, defaults)
    assert list(table.columns) == ["region", "network: phonetic+emotion", "network: phonetic", "ridge: phonetic"]
    assert "brows (+0.200)" in answer and "lips" not in answer
    assert config_changes(exps["phonetic_only"]["config"], defaults) == {"roles": "phonetic"}


def test_mean_prediction_scores_zero_and_truth_scores_one():
    rng = np.random.default_rng(3)
    true = rng.normal(size=(50, 468, 3)) * 1e-3
    neutral = rng.normal(size=(468, 3))
    mean = np.broadcast_to(true.mean(0), true.shape)
    assert metrics.r2(true, mean) == pytest.approx(0, abs=1e-12)
    assert metrics.r2(true, true) == 1 and metrics.r2_absolute(true, mean, neutral) > 0.999
    assert np.isnan(metrics.lip_sync(metrics.inner_lip_gap(true, neutral), metrics.inner_lip_gap(mean, neutral))[0])


def _probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,nb_read_frames,duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


def test_video_has_every_frame_and_the_audio(tmp_path):
    import soundfile

    sr, fps, n = 16000, 30, 45
    t = np.arange(int(sr * 2.5)) / sr  # audio longer than the video: cut to it
    soundfile.write(tmp_path / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * t), sr)
    rng = np.random.default_rng(0)
    meshes = rng.uniform(0.3, 0.7, size=(n, 468, 3))
    frame = Frame2D.around(meshes, 128)
    written = render_video(((m, m + 0.01) for m in meshes), ("true", "predicted"), frame, fps,
                           tmp_path / "v.mp4", audio=tmp_path / "a.wav", n_frames=n)
    s = _probe(tmp_path / "v.mp4")
    assert written == n and int(s["video"]["nb_read_frames"]) == n
    assert (s["video"]["codec_name"], s["audio"]["codec_name"]) == ("h264", "aac")
    assert abs(float(s["audio"]["duration"]) - n / fps) < 1 / fps + 0.025  # AAC frames are 64 ms at 16 kHz
    assert not list(tmp_path.glob(".tmp-*"))


def test_orthographic_frame_keeps_the_mesh_inside():
    rng = np.random.default_rng(1)
    v = rng.uniform([0.2, 0.3, -0.1], [0.6, 0.9, 0.1], size=(468, 3))
    p = Frame2D.around(v, 200)(v)
    assert p.min() > 0 and p.max() < 200
    assert np.ptp(p[:, 1]) == pytest.approx(200 / 1.24, rel=1e-6)  # the longer side, less the margins
