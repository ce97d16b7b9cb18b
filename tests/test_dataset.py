"""The dataset: split by chunk, masks, normalisation from the training split, windows."""

import numpy as np
import pytest
import torch

from animote.dataset import (
    ChunkData,
    Dataset,
    SplitParams,
    assign_splits,
    gather_windows,
    offsets_and_mask,
    windows,
    write_dataset,
)

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
