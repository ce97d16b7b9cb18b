"""The dataset: split by chunk, masks, normalisation from the training split, windows."""

import numpy as np
import pytest
import torch

from animote.dataset import (
    ChunkData,
    Dataset,
    SplitParams,
    assign_splits,
    offsets_and_mask,
    write_dataset,
)
from animote.objective import gather_windows, windows

ROLES = {"phonetic": {"cache_key": "whisper/tiny.en", "spec": {"type": "whisper"}, "dim": 6},
         "emotion": {"cache_key": "egemaps/eGeMAPSv02-lld", "spec": {"type": "egemaps"}, "dim": 3}}


def _params(**kw):
    return SplitParams(**{"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 0, **kw})


def _chunks(n_recs=2, n_chunks=5):
    return [(f"rec{r}", f"c{c:03d}") for r in range(n_recs) for c in range(n_chunks)]


def test_split_is_by_whole_chunk_deterministic_and_order_free():
    chunks = _chunks()
    a = assign_splits(chunks, _params())
    b = assign_splits(list(reversed(chunks)), _params())
    assert a == b and set(a) == set(chunks)  # every chunk in exactly one split
    assert {s: list(a.values()).count(s) for s in ("train", "validation", "test")} == {"train": 6, "validation": 2,
                                                                                      "test": 2}
    assert assign_splits(chunks, _params(seed=1)) != a  # the seed matters


def test_small_recording_still_gets_validation_and_test():
    split = assign_splits(_chunks(1, 3), _params())
    assert sorted(split.values()) == ["test", "train", "validation"]


def test_held_out_recordings_are_all_test():
    split = assign_splits(_chunks(3, 4), _params(test_recordings=("rec1",)))
    assert all(split[c] == "test" for c in split if c[0] == "rec1")
    others = [split[c] for c in split if c[0] != "rec1"]
    assert "train" in others and "validation" in others


def test_offsets_and_mask_keep_faceless_frames():
    rng = np.random.default_rng(0)
    neutral = rng.normal(size=(468, 3)).astype(np.float32)
    aligned = neutral + 0.01 * rng.normal(size=(5, 468, 3)).astype(np.float32)
    aligned[2] = np.nan
    found = np.array([True, True, False, True, False])
    offsets, mask = offsets_and_mask(aligned, found, neutral)
    assert offsets.shape == (5, 468, 3) and mask.tolist() == [True, True, False, True, False]
    assert np.allclose(offsets[0], aligned[0] - neutral, atol=1e-6) and (offsets[2] == 0).all()


def _make_dataset(path, n_chunks=6, frames=50, seed=0, faceless_chunk=False):
    rng = np.random.default_rng(seed)
    split = assign_splits([("r", f"c{i:03d}") for i in range(n_chunks)], _params())
    chunks = []
    for i in range(n_chunks):
        offsets = rng.normal(scale=0.01 * (i + 1), size=(frames, 468, 3)).astype(np.float32)
        mask = rng.random(frames) > 0.1
        if faceless_chunk and i == 0:
            mask[:] = False
        offsets[~mask] = 0
        feats = {"phonetic": rng.normal(loc=i, size=(frames, 6)).astype(np.float32),
                 "emotion": rng.normal(scale=i + 1, size=(frames, 3)).astype(np.float32)}
        chunks.append(ChunkData("r", f"c{i:03d}", feats, offsets, mask, split[("r", f"c{i:03d}")]))
    write_dataset(path, chunks, {"r": np.zeros((468, 3), np.float32)}, ROLES, 30.0, _params(), "hash0")
    return chunks


def test_normalisation_comes_from_the_training_frames_alone(tmp_path):
    chunks = _make_dataset(tmp_path / "d.zarr")
    ds = Dataset(tmp_path / "d.zarr")
    train = [c for c in chunks if c.split == "train"]
    assert 0 < len(train) < len(chunks)
    p = np.concatenate([c.features["phonetic"] for c in train])
    assert np.allclose(ds.norm["phonetic_mean"], p.mean(0), atol=1e-5)
    assert np.allclose(ds.norm["phonetic_std"], p.std(0), atol=1e-5)
    off = np.concatenate([c.offsets[c.mask] for c in train])
    assert np.allclose(ds.norm["offset_mean"], off.mean(0), atol=1e-6)
    assert np.isclose(ds.norm["offset_scale"], np.sqrt(off.var(0).mean()), rtol=1e-4)
    every = np.concatenate([c.features["phonetic"] for c in chunks])
    assert not np.allclose(ds.norm["phonetic_mean"], every.mean(0), atol=1e-3)  # the test can fail
    seq = ds.sequences("train", ["phonetic", "emotion"])
    assert seq.inputs.shape == (len(p), 9)
    assert np.allclose(seq.inputs.mean(0), 0, atol=1e-4) and np.allclose(seq.inputs.std(0), 1, atol=1e-3)


def test_roles_are_kept_apart_and_picked_at_load(tmp_path):
    _make_dataset(tmp_path / "d.zarr")
    ds = Dataset(tmp_path / "d.zarr")
    both = ds.sequences("validation", ["phonetic", "emotion"])
    emo = ds.sequences("validation", ["emotion"])
    assert both.inputs.shape[1] == 9 and emo.inputs.shape[1] == 3
    assert np.array_equal(both.inputs[:, 6:], emo.inputs)
    with pytest.raises(ValueError, match="not in the dataset"):
        ds.sequences("train", ["prosody"])


def test_windows_cover_every_frame_and_never_cross_a_chunk():
    bounds = np.array([[0, 100], [100, 130], [130, 400]])
    starts, lengths = windows(bounds, window=40, stride=25)
    covered = np.zeros(400, int)
    for s, n in zip(starts, lengths):
        chunk = next(b for b in bounds if b[0] <= s < b[1])
        assert s + n <= chunk[1]  # never past the chunk's end
        covered[s:s + n] += 1
    assert (covered > 0).all()
    assert (lengths[starts == 100] == 30).all()  # the 30-frame chunk: one padded window


def test_gather_windows_pads_with_masked_frames_same_in_numpy_and_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(130, 4)).astype(np.float32)
    y = rng.normal(size=(130, 468, 3)).astype(np.float32)
    m = np.ones(130, bool)
    starts, lengths = windows(np.array([[0, 100], [100, 130]]), 40, 40)
    xn, yn, mn = gather_windows(x, y, m, starts, lengths, 40)
    xt, yt, mt = gather_windows(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m),
                                torch.from_numpy(starts), torch.from_numpy(lengths), 40)
    assert np.array_equal(xn, xt.numpy()) and np.array_equal(mn, mt.numpy())
    last = list(starts).index(100)
    assert mn[last].sum() == 30 and np.array_equal(xn[last, :30], x[100:130])


def _pose(yaw_deg: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The alignment's pose (frame -> neutral) of a head turned by ``yaw_deg`` about the camera's
    vertical axis, scaled by 2 and moved; NaN where no face."""
    from scipy.spatial.transform import Rotation

    flip = np.diag([1.0, -1.0, -1.0])
    head = Rotation.from_euler("YXZ", np.stack([yaw_deg, 0 * yaw_deg, 0 * yaw_deg], 1), degrees=True).as_matrix()
    pose = np.tile(np.eye(4), (len(yaw_deg), 1, 1))
    pose[:, :3, :3] = 2.0 * (flip @ head @ flip).transpose(0, 2, 1)  # the inverse rotation, image axes
    pose[:, :3, 3] = [0.1, -0.2, 0.05]
    pose[~found] = np.nan
    return pose.astype(np.float32)


def _stores(tmp_path, frames=(30, 30, 30, 30), feature_frames=None, blendshapes=()):
    """Aligned-mesh, neutral and feature stores as the mesh and feature stages write them; the
    chunks numbered in ``blendshapes`` as the landmarker's (with blendshape scores)."""
    from animote.landmarker import BLENDSHAPES
    from animote.store import write_store

    rng = np.random.default_rng(1)
    neutral = rng.normal(size=(468, 3)).astype(np.float32)
    write_store(tmp_path / "neutral.zarr", {"neutral": neutral}, {"recording": "take1"})
    paths = {"aligned": [], "phonetic": [], "emotion": []}
    for i, n in enumerate(frames):
        chunk = f"c{i:03d}"
        found = np.ones(n, bool)
        found[:3] = False
        aligned = neutral + 0.01 * rng.normal(size=(n, 468, 3)).astype(np.float32)
        aligned[~found] = np.nan
        attrs = {"recording": "take1", "chunk": chunk, "fps": 30.0}
        arrays = {"aligned": aligned, "face_found": found, "pose": _pose(np.linspace(-10, 10, n) + i, found)}
        if i in blendshapes:
            scores = rng.random((n, len(BLENDSHAPES))).astype(np.float32)
            scores[~found] = np.nan
            arrays["blendshapes"] = scores
            attrs = dict(attrs, blendshape_names=list(BLENDSHAPES))
        write_store(tmp_path / f"aligned_{chunk}.zarr", arrays, attrs)
        paths["aligned"].append(tmp_path / f"aligned_{chunk}.zarr")
        for role, dim in (("phonetic", 5), ("emotion", 2)):
            m = (feature_frames or frames)[i]
            write_store(tmp_path / f"{role}_{chunk}.zarr", {"features": rng.normal(size=(m, dim)).astype(np.float32)},
                        attrs)
            paths[role].append(tmp_path / f"{role}_{chunk}.zarr")
    return paths


CONFIG = {"split": {"train": 0.5, "validation": 0.25, "test": 0.25}, "seed": 0, "test_recordings": []}
ROLE_SPECS = {"phonetic": {"cache_key": "p/x", "spec": {"type": "whisper"}},
              "emotion": {"cache_key": "e/x", "spec": {"type": "egemaps"}}}


def test_build_dataset_from_stage_stores(tmp_path):
    from types import SimpleNamespace as NS

    from animote.stages.dataset import build_dataset, dataset

    paths = _stores(tmp_path)
    # the rule's entry point, with namespaces like Snakemake's
    attrs = dataset(input=NS(aligned=paths["aligned"], neutral=[tmp_path / "neutral.zarr"], phonetic=paths["phonetic"],
                             emotion=paths["emotion"]),
                    output=[tmp_path / "dataset.zarr"], params=NS(roles=ROLE_SPECS, dataset=CONFIG))
    ds = Dataset(tmp_path / "dataset.zarr")
    assert ds.hash == attrs["hash"] and len(ds.hash) == 16
    assert {r: v["dim"] for r, v in ds.roles.items()} == {"phonetic": 5, "emotion": 2}
    assert sorted(c["split"] for c in ds.attrs["chunks"]) == ["test", "train", "train", "validation"]
    chunk = ds.read_chunk("take1", "c000", ["phonetic"])
    assert chunk.mask.tolist() == [False] * 3 + [True] * 27 and (chunk.offsets[:3] == 0).all()
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    # Same inputs, same hash; another split seed, another hash.
    again = build_dataset(paths["aligned"], [tmp_path / "neutral.zarr"],
                          {"phonetic": paths["phonetic"], "emotion": paths["emotion"]}, roles=ROLE_SPECS,
                          dataset_config=dict(CONFIG, seed=5), out_store=tmp_path / "other.zarr")
    assert again["hash"] != attrs["hash"]


def test_head_pose_always_and_blendshapes_when_every_chunk_has_them(tmp_path, caplog):
    from animote.landmarker import BLENDSHAPES
    from animote.stages.dataset import build_dataset
    from animote.targets import HEAD_POSE

    def build(name, **kw):
        paths = _stores(tmp_path / name, **kw)
        build_dataset(paths["aligned"], [tmp_path / name / "neutral.zarr"],
                      {"phonetic": paths["phonetic"], "emotion": paths["emotion"]}, roles=ROLE_SPECS,
                      dataset_config=CONFIG, out_store=tmp_path / name / "dataset.zarr")
        return Dataset(tmp_path / name / "dataset.zarr")

    for name in ("plain", "some", "all"):
        (tmp_path / name).mkdir()
    plain = build("plain")
    assert plain.targets == ["offsets", "head_pose"] and plain.channel_names("head_pose") == list(HEAD_POSE)
    c = plain.read_chunk("take1", "c001", [], ["head_pose"])
    yaw = c.channels["head_pose"][:, 0]
    assert (c.channels["head_pose"][:3] == 0).all()  # no face: 0, and masked
    np.testing.assert_allclose(yaw[3:], np.linspace(-10, 10, 30)[3:] + 1, atol=1e-3)  # the yaw the pose was made with
    np.testing.assert_allclose(c.channels["head_pose"][3:, 1:3], 0, atol=1e-3)
    with pytest.raises(ValueError, match="holds no blendshapes .*mesh.tracker: landmarker"):
        plain.read_chunk("take1", "c001", [], ["blendshapes"])
    some = build("some", blendshapes=(0, 1))
    assert some.targets == ["offsets", "head_pose"] and "blendshapes left out" in caplog.text
    every = build("all", blendshapes=(0, 1, 2, 3))
    assert every.targets == ["offsets", "head_pose", "blendshapes"]
    assert every.channel_names("blendshapes") == list(BLENDSHAPES) and every.hash != plain.hash
    seq = every.sequences("train", ["phonetic"], ["blendshapes", "head_pose"])
    b = seq.channels["blendshapes"][seq.mask]
    np.testing.assert_allclose(b.mean(0), 0, atol=1e-5)  # z-scored by the training frames
    np.testing.assert_allclose(b.std(0), 1, atol=1e-3)
    assert (seq.channels["blendshapes"][~seq.mask] == 0).all() and seq.channels["head_pose"].shape == (len(seq.mask), 6)


def test_frame_count_mismatch_names_recording_and_chunk(tmp_path):
    from animote import RecordingError
    from animote.stages.dataset import build_dataset

    paths = _stores(tmp_path, feature_frames=(30, 29, 30, 30))
    with pytest.raises(RecordingError, match="recording 'take1': chunk c001: phonetic features have 29 frames"):
        build_dataset(paths["aligned"], [tmp_path / "neutral.zarr"],
                      {"phonetic": paths["phonetic"], "emotion": paths["emotion"]}, roles=ROLE_SPECS,
                      dataset_config=CONFIG, out_store=tmp_path / "dataset.zarr")
    assert not (tmp_path / "dataset.zarr").exists()
