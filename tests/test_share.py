"""Model folders to share (animote.share): safetensors, JSON and npz with a model card; no pickle;
the licence a model inherits from its feature models; a folder animates from anywhere."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from animote.dataset import ChunkData, Dataset, SplitParams, write_dataset
from animote.export import read_mesh_sequence
from animote.predict import Predictor
from animote.share import FILES, licence, load_model, read_model_folder, write_model_folder
from animote.train import TrainConfig, fit, save_checkpoint

ANIMOTE = str(Path(sys.executable).parent / "animote")
SMALL = dict(d_model=16, heads=2, layers=1, ff_dim=32, dropout=0.0, positional_encoding=True, layer_norm=True,
             causal=False, fusion_dim=16, lstm_hidden=16, lstm_layers=1, bidirectional=True)


def _speech(tmp_path: Path, text: str, name: str) -> Path:
    wav = tmp_path / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    return wav


def _trained_on(tmp_path: Path, specs: dict) -> Path:
    """A checkpoint trained (2 epochs) on real speech featurised by the backends of ``specs``
    (role -> spec), with random mesh offsets: what matters here is what it was trained on."""
    from animote.features import SAMPLE_RATE, compute_features
    from animote.features.backends import cache_key
    from animote.media import decode_audio_file, read_samples

    rng = np.random.default_rng(0)
    chunks = []
    for i, text in enumerate(["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue "
                              "background.", "It is easy to tell the depth of a well."]):
        raw = tmp_path / f"s{i}.f32"
        n = decode_audio_file(_speech(tmp_path, text, f"s{i}"), raw, SAMPLE_RATE)
        audio = read_samples(raw, 0, n)
        frames = int(n / SAMPLE_RATE * 30)
        feats = {r: compute_features(audio, SAMPLE_RATE, s, frames, 30.0).frames for r, s in specs.items()}
        chunks.append(ChunkData("rec", f"c{i:03d}", feats, (0.01 * rng.normal(size=(frames, 468, 3))).astype(np.float32),
                                np.ones(frames, bool), ("train", "validation", "test")[i]))
    roles = {r: {"cache_key": cache_key(s), "spec": s, "dim": int(chunks[0].features[r].shape[1])}
             for r, s in specs.items()}
    neutral = (0.5 + 0.1 * rng.normal(size=(468, 3))).astype(np.float32)  # a face-sized cloud, not a point
    write_dataset(tmp_path / "ds.zarr", chunks, {"rec": neutral}, roles, 30.0, SplitParams(1, 1, 1, 0), "h")
    ds = Dataset(tmp_path / "ds.zarr")
    cfg = TrainConfig.from_dict(dict(
        roles=list(specs), targets=["offsets"], target_weights={"offsets": 1.0, "blendshapes": 1.0, "head_pose": 0.1},
        epochs=2, patience=0, batch_size=2, optimizer="adam", lr=1e-3, warmup_epochs=0, schedule="constant",
        lr_floor=0.05, weight_decay=0.0, lip_weight=0.0, input_noise=0.0, window=30, stride=15, temporal_weight=0.1,
        grad_clip=1.0, seed=0, device="cpu", amp=False, threads=1, model=SMALL))
    res = fit(ds, cfg, progress=False)
    save_checkpoint(tmp_path / "model.pt", res.model, cfg, ds, {"experiment": "tiny", "run_id": "r1"})
    return tmp_path / "model.pt"


def test_the_licence_follows_the_feature_models():
    def f(kind):
        return {"spec": {"type": kind}, "cache_key": kind, "dim": 1}

    assert licence({"phonetic": f("whisper"), "emotion": f("logmel")})[0].startswith("MIT")
    head, lines = licence({"phonetic": f("whisper"), "emotion": f("egemaps")})
    assert head.startswith("Non-commercial") and "audEERING Research License" in head and len(lines) == 2
    head, _ = licence({"phonetic": f("wav2vec2"), "emotion": f("wav2vec2-emotion")})
    assert head.startswith("CC BY-NC-SA 4.0")


def test_a_folder_of_an_emotion_model_checkpoint_says_cc_by_nc_sa_first_and_animates_from_a_copy(tiny_models, tmp_path):
    """A model trained on the (tiny, local) emotion model's features: its folder holds no pickle,
    loads to the same predictions as the checkpoint, says CC BY-NC-SA 4.0 at the top of its card,
    and animates from another folder with nothing else of the run beside it."""
    spec = {"type": "wav2vec2-emotion", "model": str(tiny_models / "emotion"), "revision": "main", "layer": -1,
            "window_s": 30, "context_s": 1, "offline": True, "device": "cpu"}
    work = tmp_path / "work"
    work.mkdir()
    ckpt = _trained_on(work, {"emotion": spec})
    folder = write_model_folder(ckpt, work / "shared", evaluation=None, dataset=Dataset(work / "ds.zarr").attrs)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    card = (folder / "README.md").read_text().splitlines()
    assert card[0] == "# animote model: tiny" and card[2].startswith("**Licence: CC BY-NC-SA 4.0")
    assert "wav2vec2-emotion" in "\n".join(card)
    for name in ("model.safetensors", "arrays.npz", "config.json"):
        assert b"\x80\x04" not in (folder / name).read_bytes()[:2]  # no pickle protocol header
    with np.load(folder / "arrays.npz", allow_pickle=False) as z:  # plain arrays: loads without pickle
        assert "normalisation.offset_mean" in z.files and "neutral.rec" in z.files
    x = {"emotion": np.random.default_rng(1).normal(size=(75, Predictor.load(ckpt).features["emotion"]["dim"]))}
    np.testing.assert_array_equal(Predictor.load(ckpt).predict(x), Predictor.load(folder).predict(x))
    elsewhere = tmp_path / "another_machine" / "model"
    shutil.copytree(folder, elsewhere)
    shutil.rmtree(work)  # nothing of the run is left: no dataset, no model.pt, no results/
    speech = _speech(tmp_path, "A model folder travels on its own.", "new")
    r = subprocess.run([ANIMOTE, "animate", str(speech), "--model", str(elsewhere), "--out", str(tmp_path / "o.mp4"),
                        "--size", "128"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    meshes = read_mesh_sequence(tmp_path / "o.npz")
    assert meshes["meshes"].shape[1:] == (468, 3) and meshes["info"]["experiment"] == "tiny"
    assert abs(len(meshes["meshes"]) - sf.info(str(speech)).duration * 30) <= 1


def test_a_broken_folder_is_refused_naming_what_it_lacks(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"format": "animote-model-folder-1"}))
    with pytest.raises(ValueError, match="not an animote model folder: it has no model.safetensors, arrays.npz"):
        read_model_folder(tmp_path / "m")
    with pytest.raises(ValueError, match="not an animote model folder"):
        load_model(tmp_path / "m")
