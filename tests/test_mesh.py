"""Face mesh library: pose removal maths, tracking on real faces, bad input."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation
from skimage import data as skdata

from animote import RecordingError
from animote.chunks import load_chunks
from animote.mesh import (
    STABLE,
    NeutralParams,
    TrackParams,
    apply,
    neutral_from_frames,
    remove_pose,
    track_frames,
    umeyama,
)
from animote.stages.mesh import mesh_chunk, neutral_mesh
from animote.store import read_store

PARAMS = TrackParams(max_side=640, max_faces=2, min_detection_confidence=0.5, min_tracking_confidence=0.5,
                     decode_threads=1)
NEUTRAL = NeutralParams(max_missing_share=0.2, silence_quantile=0.2)


def _similarity(seed):
    rng = np.random.default_rng(seed)
    t = np.eye(4)
    t[:3, :3] = rng.uniform(0.5, 2) * Rotation.from_euler("xyz", rng.uniform(-0.4, 0.4, 3)).as_matrix()
    t[:3, 3] = rng.normal(size=3)
    return t


def test_umeyama_recovers_a_similarity():
    pts = np.random.default_rng(0).normal(size=(30, 3))
    t = _similarity(1)
    est = umeyama(pts, apply(t, pts))
    assert np.allclose(est, t, atol=1e-9)


def test_remove_pose_undoes_head_motion_but_keeps_the_mouth():
    rng = np.random.default_rng(2)
    neutral = rng.normal(size=(468, 3))
    frames, found = [], np.array([True, True, False, True])
    for i in range(4):
        m = neutral.copy()
        m[14, 1] += 0.1 * i  # the lower lip moves: not a stable landmark
        frames.append(apply(_similarity(10 + i), m))
    aligned, pose, residual = remove_pose(np.stack(frames), found, neutral)
    assert np.isnan(aligned[2]).all() and np.isnan(pose[2]).all()
    for i in (0, 1, 3):
        assert residual[i] < 1e-6
        assert np.allclose(aligned[i, 14, 1] - neutral[14, 1], 0.1 * i, atol=1e-5)
        assert np.allclose(apply(np.linalg.inv(pose[i]), aligned[i]), frames[i], atol=1e-5)


def test_neutral_from_frames_is_the_median_shape():
    rng = np.random.default_rng(3)
    shape = rng.normal(size=(468, 3))
    frames = np.stack([apply(_similarity(20 + i), shape + rng.normal(scale=0.01, size=shape.shape))
                       for i in range(25)])
    neutral = neutral_from_frames(frames, np.arange(25))
    t = umeyama(neutral[STABLE], shape[STABLE])
    assert np.abs(apply(t, neutral) - shape).max() < 0.02


def _face(scale):
    img = skdata.astronaut()[20:250, 110:340]
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _two_faces(left_scale, right_scale, size=(320, 640)):
    canvas = np.full(size + (3,), 200, np.uint8)
    for scale, x0 in ((left_scale, 0), (right_scale, size[1] // 2)):
        f = _face(scale)
        y0 = (size[0] - f.shape[0]) // 2
        canvas[y0:y0 + f.shape[0], x0:x0 + f.shape[1]] = f
    return canvas


def test_tracker_follows_the_largest_face_first_seen(caplog):
    # The left face is larger at first; later the right one grows larger. Keep the left person.
    frames = [_two_faces(1.2, 0.8)] * 10 + [_two_faces(0.8, 1.3)] * 10
    with caplog.at_level(logging.INFO):
        lm, found, _, _ = track_frames(iter(frames), len(frames), PARAMS, "two-faces")
    assert found.all()
    assert (lm[:, :, 0].mean(axis=1) < 0.5).all()
    assert "following the largest" in caplog.text


def test_frames_without_a_face_are_kept_and_marked():
    face, blank = _face(1.0), np.full((230, 230, 3), 127, np.uint8)
    frames = [face, face, blank, face]
    lm, found, _, _ = track_frames(iter(frames), 4, PARAMS, "blank")
    assert found.tolist() == [True, True, False, True]
    assert np.isnan(lm[2]).all() and np.isfinite(lm[[0, 1, 3]]).all()
    with pytest.raises(ValueError, match="3 frames decoded, 4 expected"):
        track_frames(iter(frames[:3]), 4, PARAMS, "short")


def test_chunk_without_a_face_completes_then_is_refused(tmp_path, caplog, clap_params):
    from helpers import ffmpeg

    from animote.chunks import write_chunks
    from animote.claps import plan_cuts
    from animote.config import ChunkParams
    from animote.media import probe

    video = tmp_path / "noface.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=30:duration=2", "-f", "lavfi", "-i",
           "sine=duration=2", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(video))
    info = probe(video, "noface")
    _, kept = plan_cuts(np.zeros(0), info.n_frames, info.fps, clap_params, "noface")
    audio = np.zeros(round(info.n_frames * 16000 / info.fps), np.float32)
    write_chunks(tmp_path / "chunks", "noface", str(video), info, audio, 16000, kept, ChunkParams(30, 10, False))
    (tmp_path / "probe.json").write_text(info.to_json())
    with caplog.at_level(logging.WARNING):
        mesh_chunk(tmp_path / "chunks", "c000", tmp_path / "probe.json", tmp_path / "m.zarr", params=PARAMS)
    assert "recording 'noface' chunk c000: no face" in caplog.text
    arrays, attrs = read_store(tmp_path / "m.zarr")
    assert arrays["landmarks"].shape == (info.n_frames, 468, 3) == (attrs["n_frames"], 468, 3)
    assert not arrays["face_found"].any() and np.isnan(arrays["landmarks"]).all()
    with pytest.raises(RecordingError, match=r"recording 'noface': no face in 100.0% of its 60 frames"):
        neutral_mesh("noface", [tmp_path / "m.zarr"], tmp_path / "chunks", neutral_image=None,
                     out_store=tmp_path / "n.zarr", params=NEUTRAL)
    assert not (tmp_path / "n.zarr").exists()


def test_neutral_from_a_reference_image(demo_run, tmp_path):
    still = tmp_path / "neutral.png"
    cv2.imwrite(str(still), cv2.cvtColor(_face(1.0), cv2.COLOR_RGB2BGR))
    chunks = demo_run / "results/demo/chunks"
    stores = [demo_run / f"results/demo/mesh/{c.chunk}.zarr" for c in load_chunks(chunks)]
    source = neutral_mesh("demo", stores, chunks, neutral_image=str(still), out_store=tmp_path / "n.zarr", params=NEUTRAL)
    assert "reference image neutral.png" in source
    neutral = read_store(tmp_path / "n.zarr")[0]["neutral"]
    assert neutral.shape == (468, 3) and np.isfinite(neutral).all()
    bad = tmp_path / "wall.png"
    cv2.imwrite(str(bad), np.full((200, 200, 3), 90, np.uint8))
    with pytest.raises(RecordingError, match="no face in the neutral image"):
        neutral_mesh("demo", stores, chunks, neutral_image=str(bad), out_store=tmp_path / "n2.zarr", params=NEUTRAL)


def test_a_recording_job_tracks_in_workers_resumes_and_names_a_failing_chunk(demo_run, tmp_path, caplog):
    """Chunks tracked by two worker processes equal a chunk tracked alone; a killed job's finished
    chunks are reused when their source key holds, and only then; a failing chunk is named and no
    folder appears under the final name."""
    import shutil

    import zarr

    from animote.stages.mesh import mesh_recording

    chunks, probe = demo_run / "results/demo/chunks", demo_run / "results/demo/probe.json"
    ids = [c.chunk for c in load_chunks(chunks)]
    assert len(ids) >= 3
    done = mesh_recording(chunks, probe, tmp_path / "mesh", PARAMS, workers=2, code="v1")
    assert [a["chunk"] for a in done] == ids
    assert sorted(p.name for p in (tmp_path / "mesh").iterdir()) == [f"{c}.zarr" for c in ids]
    assert not (tmp_path / "mesh.partial").exists()
    mesh_chunk(chunks, ids[1], probe, tmp_path / "alone.zarr", params=PARAMS)  # in this process, on its own
    alone, _ = read_store(tmp_path / "alone.zarr")
    together, _ = read_store(tmp_path / f"mesh/{ids[1]}.zarr")
    np.testing.assert_allclose(together["landmarks"], alone["landmarks"], atol=1e-5)
    np.testing.assert_array_equal(together["face_found"], alone["face_found"])

    # what a killed job leaves: one chunk finished, one finished under other code, a writer's temporary
    partial = tmp_path / "again.partial"
    partial.mkdir()
    shutil.copytree(tmp_path / f"mesh/{ids[0]}.zarr", partial / f"{ids[0]}.zarr")
    shutil.copytree(tmp_path / f"mesh/{ids[1]}.zarr", partial / f"{ids[1]}.zarr")
    zarr.open_group(str(partial / f"{ids[1]}.zarr"), mode="r+").attrs["source_key"] = "older code"
    (partial / f".tmp-0123abcd-{ids[2]}.zarr").mkdir()
    with caplog.at_level(logging.INFO):
        again = mesh_recording(chunks, probe, tmp_path / "again", PARAMS, workers=2, code="v1")
    assert f"1 of {len(ids)} chunks kept from an interrupted run ({ids[0]})" in caplog.text
    assert f"tracking {len(ids) - 1} chunks, 2 at a time" in caplog.text
    kept = read_store(tmp_path / f"again/{ids[0]}.zarr")[1]
    assert kept["ms_per_frame"] == done[0]["ms_per_frame"]  # the store itself, not tracked again
    assert again[1]["source_key"] == done[1]["source_key"] != "older code"
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [f"{c}.zarr" for c in ids]
    assert not partial.exists()

    # a chunk whose video cannot be read: named, the others kept for the next run, no final folder
    broken = tmp_path / "chunks"
    shutil.copytree(chunks, broken)
    (tmp_path / "garbage.mp4").write_bytes(b"\x00not a video" * 300)
    manifest = pd.read_csv(broken / "manifest.tsv", sep="\t", dtype={"chunk": str})
    manifest["video"] = [str(tmp_path / "garbage.mp4") if c == ids[1] else str(Path(v).resolve())
                         for c, v in zip(manifest.chunk, (chunks / v for v in manifest.video))]
    manifest.to_csv(broken / "manifest.tsv", sep="\t", index=False)
    with pytest.raises(RecordingError, match=rf"(?s)recording 'demo': chunk {ids[1]}: .*garbage.mp4.*kept in .*broken.partial"):
        mesh_recording(broken, probe, tmp_path / "broken", PARAMS, workers=2, code="v1")
    assert not (tmp_path / "broken").exists()
    assert f"{ids[1]}.zarr" not in {p.name for p in (tmp_path / "broken.partial").iterdir()}
