"""ARKit curves for engines: the Live Link Face CSV (header as the app writes it, one row per
frame, 63 fields each), the JSON, and `animote arkit` on a recording tracked by the landmarker."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from animote.arkit import (
    ARKIT_CSV,
    HEADER,
    euler_yaw_pitch_roll,
    export_tracked,
    read_arkit_json,
    timecode,
    to_arkit,
    write_arkit_json,
    write_livelink_csv,
)
from animote.landmarker import BLENDSHAPES

ANIMOTE = str(Path(sys.executable).parent / "animote")


def test_the_header_is_the_apps():
    assert len(HEADER) == 63 and HEADER[:2] == ("Timecode", "BlendShapeCount")
    assert HEADER[2:4] == ("EyeBlinkLeft", "EyeLookDownLeft")
    i = HEADER.index("JawForward")
    assert HEADER[i:i + 9] == ("JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
                               "MouthPucker", "MouthRight", "MouthLeft")
    assert HEADER[52:] == ("NoseSneerRight", "TongueOut", "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw",
                           "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
    # every MediaPipe score but _neutral has its column; TongueOut is the one ARKit adds
    names = {n[0].upper() + n[1:] for n in BLENDSHAPES[1:]}
    assert names == set(ARKIT_CSV) - {"TongueOut"}


@pytest.mark.parametrize("frame, fps, text", [
    (0, 30, "00:00:00:00.000"), (1, 30, "00:00:00:02.000"), (45, 30, "00:00:01:30.000"),
    (1, 25, "00:00:00:02.400"), (30 * 3725, 30, "01:02:05:00.000"), (59, 60, "00:00:00:59.000"),
])
def test_timecode_counts_the_apps_60_fps_frames(frame, fps, text):
    assert timecode(frame, fps) == text


def test_csv_reads_back_with_pandas_and_json_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.2, 1.2, (90, len(BLENDSHAPES))).astype(np.float32)
    scores[10] = np.nan  # a frame without a face
    head = rng.uniform(-30, 30, (90, 3))
    csv = write_livelink_csv(tmp_path / "slate_1_me.csv", scores, 30.0, head_deg=head)
    df = pd.read_csv(csv)
    assert tuple(df.columns) == HEADER and len(df) == 90
    assert (df.BlendShapeCount == 61).all()
    assert all(len(line.split(",")) == 63 for line in csv.read_text().splitlines())
    values = df[list(ARKIT_CSV)].to_numpy()
    assert values.min() >= 0 and values.max() <= 1 and (df.TongueOut == 0).all()
    assert (values[10] == 0).all()
    jaw = BLENDSHAPES.index("jawOpen")
    np.testing.assert_allclose(df.JawOpen[:10], np.clip(scores[:10, jaw], 0, 1), atol=1e-6)
    np.testing.assert_allclose(df.HeadYaw, head[:, 0] / 180, atol=1e-6)
    assert (df[["LeftEyeYaw", "RightEyeRoll"]].to_numpy() == 0).all()
    assert df.Timecode[3] == "00:00:00:06.000"
    names, fps, frames, back = read_arkit_json(write_arkit_json(tmp_path / "take.json", scores, 30.0, head_deg=head))
    assert fps == 30.0 and names[ARKIT_CSV.index("JawOpen")] == "jawOpen"
    np.testing.assert_allclose(frames, to_arkit(scores), atol=1e-6)
    np.testing.assert_allclose(back, head, atol=1e-4)


def test_head_angles_come_back_from_a_transform():
    from scipy.spatial.transform import Rotation

    angles = np.array([[20.0, -10.0, 5.0], [0.0, 0.0, 0.0]])
    m = np.tile(np.eye(4), (3, 1, 1))
    m[:2, :3, :3] = 1.7 * Rotation.from_euler("YXZ", angles, degrees=True).as_matrix()  # with a scale
    m[2] = np.nan
    out = euler_yaw_pitch_roll(m)
    np.testing.assert_allclose(out[:2], angles, atol=1e-6)
    assert np.isnan(out[2]).all()


def test_animote_arkit_exports_a_landmarker_recording(demo_run, tmp_path):
    """The demo tracked by the landmarker, exported by the command: one row per cleaned frame, in
    chunk order, each column the store's curve under its ARKit name; a FaceMesh folder is refused
    with what to change."""
    from animote.chunks import load_chunks
    from animote.mesh import TrackParams
    from animote.stages.mesh import mesh_recording

    chunks, probe = demo_run / "results/demo/chunks", demo_run / "results/demo/probe.json"
    params = TrackParams(640, 1, 0.5, 0.5, 1, tracker="landmarker")
    mesh_recording(chunks, probe, tmp_path / "mesh", params, workers=2)
    out = tmp_path / "demo_1_animote.csv"
    r = subprocess.run([ANIMOTE, "arkit", str(tmp_path / "mesh"), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert len(df) == sum(c.n_frames for c in load_chunks(chunks)) and tuple(df.columns) == HEADER
    from animote.store import read_store

    stored = np.concatenate([read_store(tmp_path / f"mesh/{c.chunk}.zarr", "blendshapes")[0]["blendshapes"]
                             for c in load_chunks(chunks)])
    for name in ("jawOpen", "mouthLowerDownLeft", "eyeBlinkRight"):
        column = df[name[0].upper() + name[1:]].to_numpy()
        np.testing.assert_allclose(column, np.clip(stored[:, BLENDSHAPES.index(name)], 0, 1), atol=2e-6)
    assert df.MouthLowerDownLeft.std() > 0.05  # the mouth moves
    assert export_tracked(tmp_path / "mesh", tmp_path / "t.json")["frames"] == len(df)
    bad = subprocess.run([ANIMOTE, "arkit", str(demo_run / "results/demo/mesh"), "--out", str(tmp_path / "x.csv")],
                         capture_output=True, text=True)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode != 0 and len(lines) == 1 and "mesh.tracker: landmarker" in lines[0]
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_a_model_learns_arkit_curves_and_animate_exports_them(demo_run, tmp_path):
    """The short demo again with mesh.tracker: landmarker and an experiment that predicts the
    blendshapes and the head pose: only the stages downstream of the tracker rerun; the dataset
    holds the 52 scores; evaluation scores every target beside the baselines' in the report; and
    `animote animate --arkit` writes the curves Unreal reads, the npz keeps them, the video has
    their strip. A model without blendshapes is refused with what to do."""
    import json
    import shutil

    import yaml
    from helpers import scheduled, snakemake

    from animote.dataset import Dataset
    from animote.export import read_mesh_sequence

    wd = tmp_path / "arkit"
    shutil.copytree(demo_run, wd, symlinks=True)
    over = yaml.safe_load((wd / "test.yaml").read_text())
    over["mesh"] = {"tracker": "landmarker"}
    over["sweep"] = {"name": "arkit", "run": ["curves"],
                     "experiments": {"curves": {"targets": ["offsets", "blendshapes", "head_pose"], "epochs": 6}}}
    (wd / "arkit.yaml").write_text(yaml.safe_dump(over))
    plan = scheduled(snakemake(wd, "-n", configs=("arkit.yaml",)))
    assert plan.get("face_mesh") == 1 and "remove_claps" not in plan and "audio_features" not in plan
    snakemake(wd, configs=("arkit.yaml",))
    ds = Dataset(wd / "results/dataset/dataset.zarr")
    assert ds.targets == ["offsets", "head_pose", "blendshapes"] and ds.channel_names("blendshapes") == list(BLENDSHAPES)

    ev = json.loads((wd / "results/evaluate/arkit/curves/metrics.json").read_text())
    assert ev["predicts"] == ["offsets", "blendshapes", "head_pose"]
    b, h = ev["targets"]["blendshapes"], ev["targets"]["head_pose"]
    assert set(b["groups"]) == {"jaw_mouth", "brows", "eyes", "cheeks_nose"} and np.isfinite(b["jaw_open"]["r"])
    assert set(b["blinks_per_min"]) == {"true", "predicted"} and set(h["channels"]) == {"yaw", "pitch", "roll", "x",
                                                                                         "y", "z"}
    assert "motion_vs_speech" in h  # the speech energy came from the chunks' audio
    table = pd.read_csv(wd / "results/report/arkit/targets.tsv", sep="\t")
    assert list(table.model) == ["curves", "baseline: mean offset", "baseline: ridge (phonetic+emotion)"]
    assert table["jaw_mouth R²"].notna().all() and table.loc[1, "jaw_mouth R²"] <= 0.01  # the mean scores ~0
    assert (wd / "results/evaluate/arkit/curves/targets.png").stat().st_size > 10_000

    test_rec, test_chunk = ds.chunk_names("test")[0]
    speech = wd / f"results/{test_rec}/chunks/{test_chunk}.wav"
    model = wd / "results/train/arkit/curves/model.pt"
    csv = tmp_path / "demo_1_animote.csv"
    out = tmp_path / "out.mp4"
    r = subprocess.run([ANIMOTE, "animate", str(speech), "--model", str(model), "--out", str(out), "--arkit", str(csv),
                        "--size", "128"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meshes = read_mesh_sequence(out.with_suffix(".npz"))
    n = len(meshes["meshes"])
    assert meshes["blendshapes"].shape == (n, 52) and meshes["head_pose"].shape == (n, 6)
    assert list(meshes["blendshapes_names"]) == list(BLENDSHAPES)
    df = pd.read_csv(csv)
    assert tuple(df.columns) == HEADER and len(df) == n and (df.BlendShapeCount == 61).all()
    values = df[list(ARKIT_CSV)].to_numpy()
    assert values.min() >= 0 and values.max() <= 1 and df.JawOpen.std() > 0
    np.testing.assert_allclose(df.JawOpen, meshes["blendshapes"][:, BLENDSHAPES.index("jawOpen")], atol=2e-6)
    np.testing.assert_allclose(df.HeadRoll, np.clip(meshes["head_pose"][:, 2] / 180, -1, 1), atol=2e-6)
    size = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                           "-of", "csv=p=0", str(out)], capture_output=True, text=True, check=True).stdout.strip()
    assert size.split(",")[0] == "128" and int(size.split(",")[1]) > 128 + 6 * 14  # the mouth channels' strip

    plain = subprocess.run([ANIMOTE, "animate", str(speech), "--model", str(demo_run / "results/train/default/recipe/model.pt"),
                            "--out", str(tmp_path / "p.mp4"), "--arkit", str(tmp_path / "p.csv")],
                           capture_output=True, text=True)
    lines = plain.stderr.strip().splitlines()
    assert plain.returncode == 2 and len(lines) == 1 and "no blendshapes" in lines[0] and not (tmp_path / "p.csv").exists()
