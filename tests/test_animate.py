"""`animote animate`: a trained model turns new speech into a mesh video, a mesh sequence and OBJs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from animote import cli
from animote.export import MeshSequenceWriter, obj_faces_text, obj_text, read_mesh_sequence, read_obj
from animote.mesh import face_triangles, lip_gap

ANIMOTE = str(Path(sys.executable).parent / "animote")
MODEL = "results/train/default/recipe/model.pt"


# --- the mesh's triangles and the files (quick) ------------------------------------------------


def test_face_triangles_are_mediapipes_tessellation_as_an_oriented_surface():
    from mediapipe.python.solutions import face_mesh_connections as fm
    from skimage import data

    from animote.mesh import landmarks_of_image, to_isotropic

    tris = face_triangles()
    assert tris.shape == (852, 3) and tris.min() == 0 and tris.max() == 467
    assert len({tuple(sorted(t)) for t in tris.tolist()}) == 852
    edges = {frozenset(e) for t in tris.tolist() for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    assert edges == {frozenset(e) for e in fm.FACEMESH_TESSELATION}
    # consistently wound: every directed edge once; the ones without a twin are the open borders
    half = [e for t in tris.tolist() for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))]
    assert len(set(half)) == len(half)
    border = {frozenset(e) for e in half if (e[1], e[0]) not in set(half)}
    inner_lips = {frozenset(e) for e in fm.FACEMESH_LIPS} & border
    expected = {frozenset(e) for e in fm.FACEMESH_FACE_OVAL | fm.FACEMESH_LEFT_EYE | fm.FACEMESH_RIGHT_EYE}
    assert len(border) == 88 and len(inner_lips) == 20 and border - inner_lips == expected
    # counter-clockwise seen from the camera in OBJ axes (y up, z towards the viewer), on a real face
    image = data.astronaut()
    v = to_isotropic(landmarks_of_image(image), image.shape[1], image.shape[0]) * np.array([1, -1, -1])
    normals = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    assert (normals[:, 2] > 0).mean() > 0.9


def test_mesh_sequence_npz_and_obj_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    meshes = rng.normal(size=(23, 468, 3)).astype(np.float32)
    w = MeshSequenceWriter(tmp_path / "m.npz", 23, meshes[0], face_triangles(), 30.0, {"speech": "x.wav"})
    w.write(meshes[:10])
    w.write(meshes[10:])
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # the streamed part is gone
    d = read_mesh_sequence(tmp_path / "m.npz")
    np.testing.assert_array_equal(d["meshes"], meshes)
    assert d["fps"] == 30.0 and d["info"] == {"speech": "x.wav"} and d["triangles"].shape == (852, 3)
    (tmp_path / "f.obj").write_text(obj_text(meshes[3], obj_faces_text(face_triangles()), "frame 4"))
    v, f = read_obj(tmp_path / "f.obj")
    assert v.shape == (468, 3) and f.shape == (852, 3)
    np.testing.assert_allclose(v, meshes[3], atol=1e-6)
    np.testing.assert_array_equal(f, face_triangles())

    short = MeshSequenceWriter(tmp_path / "s.npz", 5, meshes[0], face_triangles(), 30.0, {})
    short.write(meshes[:4])
    with pytest.raises(ValueError, match="4 frames written, 5 expected"):
        short.close()
    with pytest.raises(ValueError, match="does not fit"):
        MeshSequenceWriter(tmp_path / "t.npz", 5, meshes[0], face_triangles(), 30.0, {}).write(meshes[:6])


def test_help_explains_every_option():
    out = subprocess.run([ANIMOTE, "animate", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("SPEECH", "--model", "--out", "--neutral", "--obj", "--size", "--device", "--block-seconds",
                   "--overlap", "--backend-model", "--no-progress"):
        assert option in out
    assert "animate" in subprocess.run([ANIMOTE, "--help"], capture_output=True, text=True, check=True).stdout


# --- on the demo's trained model (slow) -----------------------------------------------------------


def _test_chunk(wd: Path):
    from animote.dataset import Dataset

    ds = Dataset(wd / "results/dataset/dataset.zarr")
    rec, ch = ds.chunk_names("test")[0]
    c = ds.read_chunk(rec, ch, [])
    return wd / f"results/{rec}/chunks/{ch}.wav", ds.neutral[rec] + c.offsets, c.mask


def _frames_and_durations(video: Path) -> tuple[int, float, float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,nb_read_frames,duration", "-of", "json", str(video)],
                         capture_output=True, text=True, check=True).stdout
    streams = {s["codec_type"]: s for s in json.loads(out)["streams"]}
    return int(streams["video"]["nb_read_frames"]), float(streams["video"]["duration"]), \
        float(streams["audio"]["duration"])


@pytest.mark.slow
def test_animate_held_out_speech_follows_the_true_lips(default_demo, tmp_path):
    wav, true_meshes, mask = _test_chunk(default_demo)
    # the test chunk as a user might have it: the stereo 44.1 kHz AAC track of a video
    speech = tmp_path / "held_out.mp4"
    seconds = sf.info(str(wav)).duration
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-t", f"{seconds:.3f}", "-i", "color=c=gray:s=64x64:r=25",
                    "-i", str(wav), "-c:v", "libx264", "-ac", "2", "-ar", "44100", "-c:a", "aac", str(speech)],
                   check=True)
    out = tmp_path / "out" / "held_out.mp4"
    r = subprocess.run([ANIMOTE, "animate", str(speech), "--model", str(default_demo / MODEL), "--out", str(out),
                        "--obj", str(tmp_path / "obj"), "--size", "256"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "real time" in r.stdout and "Traceback" not in r.stderr

    fps = 30.0
    n_video, video_s, audio_s = _frames_and_durations(out)
    assert abs(n_video - seconds * fps) <= 1
    assert abs(audio_s - seconds) <= 1 / fps
    d = read_mesh_sequence(out.with_suffix(".npz"))
    assert d["meshes"].shape == (n_video, 468, 3) and d["fps"] == fps
    assert d["info"]["speech"] == "held_out.mp4" and d["info"]["experiment"] == "recipe"
    n = min(len(true_meshes), n_video)
    pred_gap, true_gap = lip_gap(d["meshes"][:n]), lip_gap(true_meshes[:n])
    r_gap = np.corrcoef(pred_gap[mask[:n]], true_gap[mask[:n]])[0, 1]
    print(f"inner-lip gap correlation with the tracked truth on held-out speech: {r_gap:.3f}")
    assert r_gap >= 0.7

    objs = sorted((tmp_path / "obj").glob("frame_*.obj"))
    assert len(objs) == n_video
    for i in (0, n_video - 1):
        v, f = read_obj(objs[i])
        assert v.shape == (468, 3) and f.shape == (852, 3)
        np.testing.assert_allclose(v, d["meshes"][i], atol=2e-6)
    assert not list(tmp_path.glob("out/.*")), "temporary files left beside the outputs"


@pytest.mark.slow
def test_animate_new_speech_with_a_face_from_a_photograph(default_demo, tmp_path):
    """espeak-ng speech the model never heard, on the astronaut's face: the README's example."""
    import cv2
    from skimage import data

    subprocess.run(["espeak-ng", "-w", str(tmp_path / "hello.wav"), "Hello, this is a new sentence."], check=True)
    cv2.imwrite(str(tmp_path / "face.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    r = subprocess.run([ANIMOTE, "animate", "hello.wav", "--model", str(default_demo / MODEL), "--neutral",
                        "face.png", "--size", "128"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = read_mesh_sequence(tmp_path / "hello_animote.npz")
    assert d["info"]["neutral"] == "image face.png"
    model_neutral = torch.load(default_demo / MODEL, weights_only=True)["neutral"]["demo"].numpy()
    assert np.abs(d["neutral"] - model_neutral).max() > 1e-3  # the photograph's face, not the model's
    # brought to the model's scale: eye corners as far apart as the model's within 20 %
    eyes = np.linalg.norm(d["neutral"][33] - d["neutral"][263]) / np.linalg.norm(model_neutral[33] - model_neutral[263])
    assert 0.8 < eyes < 1.2
    gap = lip_gap(d["meshes"])
    assert np.ptp(gap) > 0.2 * lip_gap(d["neutral"][None])[0]  # the mouth moves with the speech


def _bad(tmp_path, *argv):
    r = subprocess.run([ANIMOTE, "animate", *argv], capture_output=True, text=True, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    return r.returncode, lines


@pytest.mark.slow
def test_bad_input_gives_one_line_naming_the_file(default_demo, tiny_models, tmp_path, capsys, monkeypatch):
    model = str(default_demo / MODEL)
    sf.write(tmp_path / "silent.wav", np.zeros(32000, np.float32), 16000)
    (tmp_path / "notes.wav").write_text("not audio\n")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=64x64:d=1", "-c:v", "libx264",
                    str(tmp_path / "mute.mp4")], check=True)
    sf.write(tmp_path / "speech.wav", 0.3 * np.sin(np.linspace(0, 2000, 32000)).astype(np.float32), 16000)
    ckpt = torch.load(model, weights_only=True)
    ckpt["format"] = "animote-checkpoint-0"
    torch.save(ckpt, tmp_path / "old.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    ckpt["format"] = torch.load(model, weights_only=True)["format"]
    ckpt["features"]["phonetic"]["spec"] = {"type": "wav2vec2", "model": str(tmp_path / "models/wav2vec2-large"),
                                            "revision": "main", "layer": -1, "offline": True, "device": "auto"}
    torch.save(ckpt, tmp_path / "w2v.pt")

    cases = {  # argv -> what the message must say
        ("missing.wav", "--model", model): ["missing.wav", "no such file"],
        ("notes.wav", "--model", model): ["notes.wav", "not an audio file"],
        ("silent.wav", "--model", model): ["silent.wav", "silent"],
        ("mute.mp4", "--model", model): ["mute.mp4", "no audio track"],
        ("speech.wav", "--model", "missing.pt"): ["missing.pt", "no such checkpoint"],
        ("speech.wav", "--model", "old.pt"): ["old.pt", "animote-checkpoint-0", "retrain"],
        ("speech.wav", "--model", "notes.pt"): ["notes.pt", "not an animote checkpoint"],
        ("speech.wav", "--model", model, "--neutral", "nobody"): ["nobody", "demo"],
        ("speech.wav", "--model", "w2v.pt"): ["w2v.pt", "wav2vec2-large", "not available", "--backend-model"],
        ("speech.wav", "--model", "w2v.pt", "--backend-model", f"phonetic={tiny_models / 'w2v'}"):
            ["w2v.pt", "phonetic features are", "384"],
    }
    # the entry point once (exit status, no traceback), the rest in this process (same code, faster)
    code, lines = _bad(tmp_path, "missing.wav", "--model", model)
    assert code != 0 and len(lines) == 1 and "missing.wav" in lines[0], lines
    for argv, words in cases.items():
        monkeypatch.chdir(tmp_path)
        code = cli.main(["animate", *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1, (argv, err)
        assert all(w in err[0] for w in words), (argv, err[0])
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".mp4", ".npz")) == ["mute.mp4"]


def _peak_rss_mb(cwd, *argv) -> float:
    """Peak RSS of the animate process (and of the ffmpeg it starts, whichever is larger)."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", code, ANIMOTE, "animate", *argv], capture_output=True, text=True,
                       cwd=cwd)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_ten_minutes_of_speech_in_bounded_memory(default_demo, tmp_path):
    """10 minutes of the demo's speech against 2 minutes of it (many batches of
    prediction windows): the peak grows far less than the 10-minute sequence would take in memory
    (audio, features and meshes held whole)."""
    audio, sr = sf.read(default_demo / "results/demo/clean.wav", dtype="float32")
    ten = np.tile(audio, int(np.ceil(600 * sr / len(audio))))[:600 * sr]
    sf.write(tmp_path / "ten.flac", ten, sr)
    sf.write(tmp_path / "two.flac", ten[:120 * sr], sr)
    model = str(default_demo / MODEL)
    small = _peak_rss_mb(tmp_path, "two.flac", "--model", model, "--size", "64")
    big = _peak_rss_mb(tmp_path, "ten.flac", "--model", model, "--size", "64")
    frames = 600 * 30
    whole_mb = (frames * 468 * 3 * 4 * 2 + 600 * 16000 * 4 + frames * (384 + 25) * 4) / 2**20
    print(f"peak RSS: 2 min {small:.0f} MB, 10 min {big:.0f} MB (+{big - small:.0f} MB); "
          f"holding the 10-minute sequence whole would take {whole_mb:.0f} MB more")
    assert big - small < 0.25 * whole_mb
    d = np.load(tmp_path / "ten_animote.npz")
    assert d["meshes"].shape == (frames, 468, 3) and np.isfinite(d["meshes"]).all()
