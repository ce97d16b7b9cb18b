"""Model, loss, loop and checkpoint, on small datasets made of arrays."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from animote.config import merge_experiment, sweep_experiments
from animote.dataset import ChunkData, Dataset, SplitParams, assign_splits, write_dataset
from animote.model import AudioConditionedNetwork, ModelConfig, build_model
from animote.objective import LossSums, masked_loss
from animote.train import TrainConfig, fit, load_checkpoint, save_checkpoint

SMALL_MODEL = dict(d_model=32, heads=2, layers=1, ff_dim=64, dropout=0.0, positional_encoding=True, layer_norm=True,
                   causal=True, fusion_dim=32, lstm_hidden=32, lstm_layers=2, bidirectional=False)


def _cfg(**kw):
    base = dict(roles=["phonetic", "emotion"], targets=["offsets"],
                target_weights={"offsets": 1.0, "blendshapes": 1.0, "head_pose": 0.1}, epochs=20, patience=0, batch_size=4, optimizer="adam", lr=3e-3,
                warmup_epochs=0, schedule="constant", lr_floor=0.05, weight_decay=0.0, lip_weight=0.0,
                input_noise=0.0, window=40, stride=20, temporal_weight=0.1, grad_clip=1.0, seed=0, device="cpu",
                amp=False, threads=1, model=dict(SMALL_MODEL))
    base.update(kw)
    return TrainConfig.from_dict(base)


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """Six chunks where the mouth opens with a smoothed 'loudness' feature (as in speech) and the
    emotion features carry a slow 'smile'; a chunk of noise features with no face at all."""
    return _learnable(tmp_path_factory.mktemp("ds") / "dataset.zarr")


@pytest.fixture(scope="module")
def learnable_channels(tmp_path_factory):
    """The same chunks with channel targets: blendshapes whose jawOpen follows the loudness (the
    others noise), and a head pose that is noise."""
    return _learnable(tmp_path_factory.mktemp("dsc") / "dataset.zarr", channels=True)


def _learnable(path, channels=False):
    from animote.landmarker import BLENDSHAPES
    from animote.targets import HEAD_POSE

    extra = np.random.default_rng(5)  # its own stream: the offsets and features stay those of the plain dataset
    rng = np.random.default_rng(0)
    lips, corners = np.arange(0, 20), np.arange(20, 30)
    names = [("rec", f"c{i:03d}") for i in range(7)]
    split = assign_splits(names[:6], SplitParams(0.7, 0.15, 0.15, 0))
    split[names[6]] = "train"
    chunks = []
    for i, (rec, ch) in enumerate(names):
        frames = 150
        loud = np.convolve(rng.random(frames + 4), np.ones(5) / 5, mode="valid")[:frames]
        smile = np.sin(np.linspace(0, 12, frames) + i)
        phon = np.stack([loud, rng.normal(size=frames), *(rng.normal(size=(4, frames)))], 1)
        emo = np.stack([smile, rng.normal(size=frames), rng.normal(size=frames)], 1)
        offsets = 0.0005 * rng.normal(size=(frames, 468, 3))
        offsets[:, lips, 1] += 0.05 * loud[:, None]
        offsets[:, corners, 0] += 0.02 * smile[:, None]
        mask = np.ones(frames, bool)
        if i == 6:
            mask[:] = False
            offsets[:] = 0
        targets = {}
        if channels:
            scores = 0.05 * extra.random((frames, len(BLENDSHAPES)))
            scores[:, BLENDSHAPES.index("jawOpen")] = 0.6 * loud
            targets = {"blendshapes": np.where(mask[:, None], scores, 0).astype(np.float32),
                       "head_pose": np.where(mask[:, None], extra.normal(size=(frames, 6)), 0).astype(np.float32)}
        chunks.append(ChunkData(rec, ch, {"phonetic": phon.astype(np.float32), "emotion": emo.astype(np.float32)},
                                offsets.astype(np.float32), mask, split[(rec, ch)], targets))
    roles = {"phonetic": {"cache_key": "p/x", "spec": {"type": "whisper", "model": "bundled:tiny.en"}, "dim": 6},
             "emotion": {"cache_key": "e/x", "spec": {"type": "egemaps"}, "dim": 3}}
    write_dataset(path, chunks, {"rec": np.zeros((468, 3), np.float32)}, roles, 30.0,
                  SplitParams(0.7, 0.15, 0.15, 0), "testhash",
                  {"blendshapes": BLENDSHAPES, "head_pose": HEAD_POSE} if channels else None)
    return path


def test_model_shapes_and_switches():
    x = torch.randn(3, 17, 11)
    for over in ({}, {"positional_encoding": False, "layer_norm": False}, {"causal": False, "bidirectional": True},
                 {"heads": 4}):
        model = build_model(ModelConfig.from_dict(SMALL_MODEL, input_dim=11, **over))
        assert model(x)["offsets"].shape == (3, 17, 468, 3)
    with pytest.raises(ValueError, match="unknown model config keys: wings"):
        ModelConfig.from_dict({"wings": 2})


def test_causal_model_does_not_see_the_future():
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(SMALL_MODEL, input_dim=5)).eval()
    torch.nn.init.normal_(model.head.weight)  # the zero-initialised head would hide everything
    x = torch.randn(1, 20, 5)
    y = x.clone()
    y[:, 10:] = torch.randn(1, 10, 5)
    with torch.no_grad():
        a, b = model(x)["offsets"], model(y)["offsets"]
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-5) and not torch.allclose(a[:, 10:], b[:, 10:])
    bi = build_model(ModelConfig.from_dict(SMALL_MODEL, input_dim=5, causal=False, bidirectional=True)).eval()
    torch.nn.init.normal_(bi.head.weight)
    with torch.no_grad():
        assert not torch.allclose(bi(x)["offsets"][:, :10], bi(y)["offsets"][:, :10])


def test_loss_by_hand():
    pred = torch.zeros(1, 3, 468, 3)
    target = torch.zeros(1, 3, 468, 3)
    target[0, 1] = 1.0  # frame 1 is off by 1 everywhere
    mask = torch.tensor([[True, True, True]])
    loss, parts = masked_loss(pred, target, mask, temporal_weight=0.1)
    # MSE: (0 + 1 + 0) / 3 frames; temporal: |0 - 1| and |0 - (-1)| over 2 pairs = 1
    assert torch.isclose(loss, torch.tensor(1 / 3 + 0.1 * 1.0))
    assert float(parts["n"]) == 3 and float(parts["pairs"]) == 2


def test_faceless_frames_change_nothing_in_the_loss():
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(SMALL_MODEL, input_dim=4))
    torch.nn.init.normal_(model.head.weight, std=0.01)
    x, y = torch.randn(2, 10, 4), torch.randn(2, 10, 468, 3)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False

    def loss_and_grad(x, y, mask):
        model.zero_grad()
        loss, _ = masked_loss(model(x)["offsets"], y, mask, 0.1)
        loss.backward()
        return loss.item(), model.head.weight.grad.clone()

    base = loss_and_grad(x, y, mask)
    y2 = y.clone()
    y2[1, 6:] = 1e3  # wild targets where there is no face
    x3, y3 = torch.cat([x, torch.randn(1, 10, 4)]), torch.cat([y, torch.randn(1, 10, 468, 3) * 50])
    m3 = torch.cat([mask, torch.zeros(1, 10, dtype=torch.bool)])  # a whole window without a face
    for other in (loss_and_grad(x, y2, mask), loss_and_grad(x3, y3, m3)):
        assert other[0] == pytest.approx(base[0], rel=1e-6) and torch.allclose(other[1], base[1], atol=1e-7)


def test_pooled_r2_matches_numpy():
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.normal(size=(2, 5, 468, 3)).astype(np.float32))
    pred = y + 0.5 * torch.from_numpy(rng.normal(size=(2, 5, 468, 3)).astype(np.float32))
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 0] = False
    pool = LossSums(0.0, 468 * 3)
    _, parts = masked_loss(pred, y, mask, 0.0)
    pool.add(parts, y, mask)
    yt, pt = y[mask].reshape(9, -1).numpy(), pred[mask].reshape(9, -1).numpy()
    r2 = 1 - ((yt - pt) ** 2).sum() / ((yt - yt.mean(0)) ** 2).sum()
    assert pool.metrics()["r2"] == pytest.approx(r2, rel=1e-5)


def test_training_learns_beats_the_mean_and_is_reproducible(learnable):
    ds = Dataset(learnable)
    a = fit(ds, _cfg(), progress=False)
    b = fit(ds, _cfg(), progress=False)
    timing = ("seconds", "frames_per_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in a.history] == \
        [{k: v for k, v in r.items() if k not in timing} for r in b.history]
    assert a.best["val_loss"] == b.best["val_loss"]
    assert a.best["val_loss"] < 0.6 * a.baseline["loss"]
    assert a.best["val_r2"] > 0.5
    c = fit(ds, _cfg(seed=1), progress=False)
    assert c.best["val_loss"] != a.best["val_loss"]  # the seed matters, so the check above can fail


def test_emotion_only_experiment_reads_its_role(learnable):
    result = fit(Dataset(learnable), _cfg(roles=["emotion"], epochs=2), progress=False)
    assert result.model.config.input_dim == 3


def test_checkpoint_loads_weights_only_in_a_fresh_process(learnable, tmp_path):
    ds = Dataset(learnable)
    cfg = _cfg(epochs=1)
    result = fit(ds, cfg, progress=False)
    path = tmp_path / "model.pt"
    save_checkpoint(path, result.model, cfg, ds, {"experiment": "t", "run_id": "abc"})
    x = torch.randn(1, 30, 9)
    with torch.no_grad():
        expected = result.model(x)["offsets"].numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    code = f"""
import numpy as np, torch
ckpt = torch.load({str(path)!r}, weights_only=True)
from animote.train import load_checkpoint
model, ckpt = load_checkpoint({str(path)!r})
with torch.no_grad():
    out = model(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r})))["offsets"]
np.save({str(tmp_path / 'out.npy')!r}, out.numpy())
print(ckpt["features"]["phonetic"]["spec"]["model"], ckpt["dataset_hash"], ckpt["fps"],
      tuple(ckpt["neutral"]["rec"].shape), sorted(ckpt["normalisation"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert np.allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)
    assert "bundled:tiny.en testhash 30.0 (468, 3)" in proc.stdout
    assert "emotion_mean" in proc.stdout and "offset_scale" in proc.stdout
    model, ckpt = load_checkpoint(path)
    assert isinstance(model, AudioConditionedNetwork) and ckpt["code_version"] and ckpt["run_id"] == "abc"


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt is not an animote checkpoint"):
        load_checkpoint(junk)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="retrain"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_experiments_merge_over_the_defaults():
    train = {"lr": 0.001, "roles": ["phonetic", "emotion"], "model": {"heads": 2, "layer_norm": True}}
    merged = merge_experiment(train, {"lr": 0.01, "model": {"layer_norm": False}})
    assert merged == {"lr": 0.01, "roles": ["phonetic", "emotion"], "model": {"heads": 2, "layer_norm": False}}
    assert train["model"]["layer_norm"] is True  # the defaults are not touched
    config = {"train": train, "sweep": {"run": [], "experiments": {"a": {}, "b": {"lr": 0.1}}}}
    assert list(sweep_experiments(config)) == ["a", "b"]
    config["sweep"]["run"] = ["b", "nope"]
    with pytest.raises(ValueError, match="'sweep.run'.*nope"):
        sweep_experiments(config)


def test_learning_rate_warms_up_then_decays_to_its_floor():
    from animote.train import LearningRate

    cfg = _cfg(epochs=10, lr=1e-3, warmup_epochs=1, schedule="cosine", lr_floor=0.1)
    lr = LearningRate(cfg, steps_per_epoch=20)
    assert lr(0) == pytest.approx(1e-3 / 20) and lr(19) == pytest.approx(1e-3)  # linear over the first epoch
    assert lr(20) == pytest.approx(1e-3) and lr(199) == pytest.approx(1e-4)  # cosine down to lr_floor x lr
    mid = lr(20 + 90)  # half-way through the cosine: half-way between the peak and the floor
    assert mid == pytest.approx(1e-4 + 0.5 * 9e-4, rel=0.02)
    assert LearningRate(_cfg(schedule="constant"), 20)(150) == pytest.approx(3e-3)


def test_training_stops_early_when_validation_stalls_and_records_the_rate(learnable):
    ds = Dataset(learnable)
    res = fit(ds, _cfg(epochs=40, patience=2, lr=3e-2, optimizer="adamw", weight_decay=0.01,
                       model={**SMALL_MODEL, "norm_first": True}), progress=False)
    last = res.history[-1]["epoch"]
    assert last < 40 and last - res.best_epoch == 2  # stopped two epochs after the best
    assert all(r["lr"] == pytest.approx(3e-2) for r in res.history)
    warm = fit(ds, _cfg(epochs=3, warmup_epochs=1, schedule="cosine"), progress=False)
    assert warm.history[0]["lr"] == pytest.approx(3e-3)  # the last step of the warm-up epoch reaches the peak
    assert warm.history[2]["lr"] == pytest.approx(3e-3 * 0.05)


def test_lip_weight_weighs_the_lip_vertices_in_the_loss():
    from animote.metrics import regions
    from animote.train import lip_weights

    lips = torch.as_tensor(regions()["lips"])
    target = torch.zeros(1, 4, 468, 3)
    pred = torch.zeros(1, 4, 468, 3)
    pred[:, :, lips] = 1.0  # error on the lips only
    mask = torch.ones(1, 4, dtype=torch.bool)
    plain, _ = masked_loss(pred, target, mask, 0.0)
    weighted, _ = masked_loss(pred, target, mask, 0.0, vertex_weight=lip_weights(468, 3.0, "cpu"))
    share = len(lips) / 468
    assert float(plain) == pytest.approx(share)
    assert float(weighted) == pytest.approx(4 * share / (1 + 3 * share))  # lips count 4x in a weighted mean
    assert lip_weights(468, 0.0, "cpu") is None


def test_every_experiment_is_tested_with_the_evaluation_window_not_its_own(learnable, tmp_path):
    """Two experiments trained with windows of 20 and 40 frames: each one's test loss is the
    objective over the evaluation's windows (30 frames), computed here independently."""
    from animote.evaluate import load_split
    from animote.objective import windowed_loss
    from animote.stages.evaluate import score_checkpoint

    ds = Dataset(learnable)
    settings = {"split": "test", "overlap": 4, "max_lag": 5, "loss": {"window": 30, "temporal_weight": 0.5},
                "bootstrap": {"window": 30, "samples": 50, "seed": 0}}
    split = load_split(ds, "test", ["phonetic", "emotion"])
    y = ds.normalise_targets(split.offsets)
    losses = {}
    for window in (20, 40):
        cfg = _cfg(epochs=2, window=window, stride=window // 2, temporal_weight=0.0)
        res = fit(ds, cfg, progress=False)
        save_checkpoint(tmp_path / f"w{window}.pt", res.model, cfg, ds, {"experiment": f"w{window}"})
        result, _, preds = score_checkpoint(ds, tmp_path / f"w{window}.pt", settings)
        p = ds.normalise_targets(preds["offsets"])
        expected = windowed_loss(p, y, split.mask, split.bounds, 30, 0.5)["loss"]
        own = windowed_loss(p, y, split.mask, split.bounds, window, 0.0)["loss"]
        assert result["summary"]["loss"] == pytest.approx(expected) and expected != pytest.approx(own)
        assert result["loss_settings"] == settings["loss"] and result["intervals"]["windows"] == 5
        losses[window] = result["summary"]["loss"]
    assert losses[20] != losses[40]


def test_channel_targets_get_their_heads_and_leave_the_offsets_alone(learnable, learnable_channels, tmp_path):
    """Offsets alone train the same on a dataset that also holds channel targets; asking for
    blendshapes and head pose adds a head each, learns jawOpen (which follows the loudness), and
    the checkpoint's predictor returns every target in its own units."""
    from animote.predict import Predictor

    timing = ("seconds", "frames_per_s")
    plain = fit(Dataset(learnable), _cfg(epochs=3), progress=False)
    same = fit(Dataset(learnable_channels), _cfg(epochs=3), progress=False)
    assert [{k: v for k, v in r.items() if k not in timing} for r in plain.history] == \
        [{k: v for k, v in r.items() if k not in timing} for r in same.history]
    ds = Dataset(learnable_channels)
    cfg = _cfg(targets=["offsets", "blendshapes", "head_pose"])
    res = fit(ds, cfg, progress=False)
    assert sorted(res.model.channel_heads) == ["blendshapes", "head_pose"]
    best = res.best
    assert best["val_r2"] > 0.5 and best["val_blendshapes_r2"] < 0.5  # the noise channels are not learnable
    total = best["val_loss"]
    parts = cfg.target_weights
    assert total == pytest.approx(best["val_mse"] + 0.1 * best["val_temporal"] + parts["blendshapes"] *
                                  best["val_blendshapes_loss"] + parts["head_pose"] * best["val_head_pose_loss"])
    save_checkpoint(tmp_path / "m.pt", res.model, cfg, ds, {"experiment": "c"})
    p = Predictor.load(tmp_path / "m.pt")
    assert p.targets == ["offsets", "blendshapes", "head_pose"] and len(p.channel_names("blendshapes")) == 52
    chunk = ds.read_chunk(*ds.chunk_names("validation")[0], ["phonetic", "emotion"], ["blendshapes"])
    out = p.predict_targets(chunk.features)
    assert out["offsets"].shape == (150, 468, 3) and out["blendshapes"].shape == (150, 52)
    assert out["head_pose"].shape == (150, 6)
    jaw = p.channel_names("blendshapes").index("jawOpen")
    r = np.corrcoef(out["blendshapes"][:, jaw], chunk.channels["blendshapes"][:, jaw])[0, 1]
    lip = np.corrcoef(out["offsets"][:, 0, 1], chunk.offsets[:, 0, 1])[0, 1]  # a lip vertex, moved by the same loudness
    assert r > 0.5 and r > lip - 0.15  # it follows the true curve as well as the mesh does
    assert abs(out["blendshapes"][:, jaw].mean() - chunk.channels["blendshapes"][:, jaw].mean()) < 0.1
    with pytest.raises(ValueError, match="lacks offsets"):
        _cfg(targets=["blendshapes"])


def test_baselines_predict_every_target_and_their_offsets_do_not_change(learnable, learnable_channels, tmp_path):
    """The mean and ridge baselines score each channel target the dataset holds by the same code;
    the ridge of the offsets is chosen and fitted as it is without them."""
    from types import SimpleNamespace as NS

    from animote.stages.evaluate import evaluate_baseline, score_checkpoint

    settings = {"split": "test", "overlap": 4, "max_lag": 5, "loss": {"window": 30, "temporal_weight": 0.1},
                "bootstrap": {"window": 30, "samples": 20, "seed": 0},
                "ridge": {"contexts": [0, 2], "alphas": [1.0, 100.0]}}
    out = {}
    for name, ds in (("plain", learnable), ("channels", learnable_channels)):
        for kind in ("mean_offset", "ridge"):
            o = NS(metrics=tmp_path / f"{name}_{kind}.json", regions=tmp_path / f"{name}_{kind}.tsv")
            out[name, kind] = evaluate_baseline(input=NS(dataset=ds), output=o,
                                                params=NS(kind=kind, roles=["phonetic", "emotion"], evaluate=settings))
    assert out["plain", "ridge"]["summary"] == out["channels", "ridge"]["summary"]
    assert out["plain", "ridge"]["targets"] == {} and set(out["channels", "ridge"]["targets"]) == {"blendshapes",
                                                                                                   "head_pose"}
    ridge, mean = out["channels", "ridge"]["targets"]["blendshapes"], out["channels", "mean_offset"]["targets"]
    assert ridge["jaw_open"]["lag"] == 0 and ridge["jaw_open"]["r"] > 0.8  # jawOpen is linear in the loudness
    assert ridge["channels"]["jawOpen"]["r2"] > 0.5 and mean["blendshapes"]["channels"]["jawOpen"]["r2"] <= 0.01
    assert out["channels", "ridge"]["channels"]["blendshapes"]["context"] in (0, 2)
    # a network of the offsets alone is scored on the offsets; one with blendshapes on those too
    ds = Dataset(learnable_channels)
    cfg = _cfg(epochs=8, targets=["offsets", "blendshapes"])
    res = fit(ds, cfg, progress=False)
    save_checkpoint(tmp_path / "b.pt", res.model, cfg, ds, {"experiment": "b"})
    result, split, preds = score_checkpoint(ds, tmp_path / "b.pt", settings)
    assert result["predicts"] == ["offsets", "blendshapes"] and set(result["targets"]) == {"blendshapes"}
    assert abs(result["targets"]["blendshapes"]["jaw_open"]["lag"]) <= 1 and preds["blendshapes"].shape[1] == 52
