"""Audio feature backends, alignment to video frames, offline model loading."""

import subprocess
import sys
import time

import numpy as np
import pytest

from animote.features import ModelUnavailable, resample_to_frames
from animote.features.backends import cache_key, make_backend

SR = 16000


@pytest.mark.parametrize("rate, fps, seconds, offset", [(50, 30, 10, 0.0125), (100, 30, 7.3, 0.01), (50, 25, 3, 0.01),
                                                         (50, 29.97, 30, 0.0125)])
def test_resample_puts_feature_times_on_frame_centres(rate, fps, seconds, offset):
    n_native = int(seconds * rate)
    times = offset + np.arange(n_native) / rate
    feats = np.stack([times, -2 * times], axis=1)  # a feature that holds its own time
    n_frames = int(round(seconds * fps))
    out = resample_to_frames(feats, rate, n_frames, fps, offset)
    assert out.shape == (n_frames, 2) and out.dtype == np.float32
    centres = (np.arange(n_frames) + 0.5) / fps
    inside = (centres >= times[0]) & (centres <= times[-1])
    assert np.allclose(out[inside, 0], centres[inside], atol=1e-5)
    assert np.allclose(out[inside, 1], -2 * centres[inside], atol=1e-5)
    assert np.all(out[~inside, 0] == np.clip(centres[~inside], times[0], times[-1]).astype(np.float32))


def test_resample_keeps_an_event_in_its_frame():
    feats = np.zeros((500, 1), np.float32)
    feats[260] = 1.0  # 50 Hz frame 260 is centred at 5.2125 s
    out = resample_to_frames(feats, 50, 300, 30, 0.0125)
    assert int(np.argmax(out[:, 0])) == int(5.2125 * 30)


def test_resample_rejects_empty():
    with pytest.raises(ValueError):
        resample_to_frames(np.zeros((0, 4)), 50, 10, 30)


def test_cache_keys_name_backend_model_and_settings():
    w = {"type": "wav2vec2", "model": "facebook/wav2vec2-base", "revision": "main", "layer": -1}
    keys = {cache_key(w), cache_key(dict(w, layer=6)), cache_key(dict(w, revision="abc123")),
            cache_key(dict(w, model="/data/models/w2v")), cache_key({"type": "whisper", "model": "bundled:tiny.en"}),
            cache_key({"type": "logmel", "n_mels": 80, "hop_ms": 10, "n_fft": 400}),
            cache_key({"type": "logmel", "n_mels": 40, "hop_ms": 10, "n_fft": 400}), cache_key({"type": "egemaps"})}
    assert len(keys) == 8
    assert cache_key(w) == "wav2vec2/facebook--wav2vec2-base_layer-1"
    assert all(k.count("/") == 1 for k in keys)


@pytest.fixture(scope="module")
def speech_audio(tmp_path_factory):
    """70 s of real speech (festival), 16 kHz."""
    from animote.demo import speech

    texts = speech.sentences().text.tolist()[:24]
    parts = []
    for audio, sr, _ in speech.synthesize(texts, tmp_path_factory.mktemp("sp")):
        parts += [speech.restyle(audio, sr, speech.Style(1, 1, 0, 1, 0, 0), SR), np.zeros(SR // 2, np.float32)]
    return np.concatenate(parts)[: 70 * SR]


@pytest.mark.parametrize("spec, dim, rate", [
    ({"type": "logmel", "n_mels": 40, "hop_ms": 10, "n_fft": 400}, 40, 100),
    ({"type": "egemaps"}, 25, 100),
    ({"type": "whisper", "model": "bundled:tiny.en", "threads": 1}, 384, 50),
])
def test_offline_backends_on_speech(speech_audio, spec, dim, rate):
    feats = make_backend(spec).compute(speech_audio)
    assert feats.frames.shape[1] == dim and feats.rate == pytest.approx(rate, rel=0.01)
    assert abs(len(feats.frames) - len(speech_audio) / SR * rate) <= 6  # (Whisper: its 30 s padding trimmed)
    assert np.isfinite(feats.frames).all()
    assert feats.frames.std(axis=0).mean() > 0


def test_whisper_windows_join_without_a_seam(speech_audio):
    """A window boundary (30 s) must not leave padding frames in the middle of the output."""
    feats = make_backend({"type": "whisper", "model": "bundled:tiny.en", "threads": 1}).compute(speech_audio)
    norms = np.linalg.norm(feats.frames, axis=1)
    assert len(feats.frames) == int(np.ceil(30 * 50)) * 2 + int(np.ceil(10 * 50))
    assert norms[1495:1505].min() > 0.2 * np.median(norms)


def test_whisper_input_in_numpy_equals_transformers_feature_extractor(speech_audio):
    """The Whisper job computes its log-mel input in numpy (no torch, no transformers to import);
    it must be Whisper's own, as transformers computes it, on speech and on a short piece."""
    from transformers import WhisperFeatureExtractor

    from animote.features.backends import _whisper_mel_filters, whisper_log_mel

    extractor = WhisperFeatureExtractor(feature_size=80)
    np.testing.assert_allclose(_whisper_mel_filters(80), extractor.mel_filters, rtol=1e-12, atol=1e-15)
    for piece in (speech_audio[:30 * SR], speech_audio[SR:3 * SR]):
        want = extractor(piece, sampling_rate=SR, return_tensors="np").input_features[0]
        got = whisper_log_mel(piece, _whisper_mel_filters(80))
        assert got.shape == want.shape == (80, 3000)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_whisper_and_egemaps_jobs_do_not_import_torch(speech_audio, tmp_path):
    np.save(tmp_path / "a.npy", speech_audio[:5 * SR])
    code = ("import sys, numpy as np; from animote.features import compute_features; "
            "a = np.load(sys.argv[1]); "
            "[compute_features(a, 16000, {'type': t, 'model': 'bundled:tiny.en', 'threads': 1}, 150, 30.0) "
            " for t in ('whisper', 'egemaps')]; "
            "print(sorted(m for m in ('torch', 'transformers', 'torchaudio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.npy")], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _w2v_spec(path, kind="wav2vec2", **kw):
    return dict({"type": kind, "model": str(path), "revision": "main", "layer": -1, "window_s": 30,
                 "context_s": 1, "offline": True, "device": "cpu"}, **kw)


def test_wav2vec2_from_a_local_folder(tiny_models, speech_audio):
    feats = make_backend(_w2v_spec(tiny_models / "w2v")).compute(speech_audio)
    assert feats.frames.shape == ((len(speech_audio) - 400) // 320 + 1, 32)
    assert np.isfinite(feats.frames).all() and feats.rate == 50
    first = make_backend(_w2v_spec(tiny_models / "w2v", layer=0)).compute(speech_audio[: 5 * SR])
    last = make_backend(_w2v_spec(tiny_models / "w2v", layer=-1)).compute(speech_audio[: 5 * SR])
    assert first.frames.shape == last.frames.shape and not np.allclose(first.frames, last.frames)


def test_emotion_model_gives_hidden_states_and_adv(tiny_models, speech_audio):
    feats = make_backend(_w2v_spec(tiny_models / "emotion", "wav2vec2-emotion")).compute(speech_audio)
    assert feats.frames.shape[1] == 32
    assert feats.extra["adv"].shape == (3, 3)  # 70 s in 30 s windows: arousal, dominance, valence each
    assert np.isfinite(feats.extra["adv"]).all()


def test_missing_model_fails_fast_and_says_how_to_provide_it(tmp_path):
    code = ("from animote.features.backends import make_backend\n"
            "import numpy as np\n"
            "make_backend({'type': 'wav2vec2', 'model': 'facebook/wav2vec2-large-960h-lv60-self', 'revision': 'main',"
            " 'layer': -1, 'window_s': 30, 'context_s': 1, 'offline': True, 'device': 'cpu'})"
            ".compute(np.zeros(16000, np.float32))\n")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"})
    took = time.perf_counter() - t
    assert proc.returncode != 0 and took < 30, took  # about 3 s alone; a hub download attempt would retry for minutes
    assert "ModelUnavailable" in proc.stderr
    assert "facebook/wav2vec2-large-960h-lv60-self" in proc.stderr and "local folder" in proc.stderr


def test_folder_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="no config.json"):
        make_backend(_w2v_spec(tmp_path / "empty")).compute(np.zeros(SR, np.float32))


def test_missing_local_model_folder_names_the_download(tmp_path):
    """config/paper.yaml points at resources/models/...; without the folder the error says how to fill it."""
    spec = _w2v_spec(tmp_path / "resources/models/wav2vec2-large-960h-lv60-self")
    with pytest.raises(ModelUnavailable, match="no such local folder") as err:
        make_backend(spec).compute(np.zeros(SR, np.float32))
    assert "hf download facebook/wav2vec2-large-960h-lv60-self --local-dir" in str(err.value)


def _chunk_folder(folder, audio, n_chunks=3, seconds=4, fps=30.0):
    """A recording's chunk folder (manifest and wavs) cut from real speech."""
    from animote.chunks import MANIFEST
    from animote.media import write_wav

    folder.mkdir()
    rows = []
    for i in range(n_chunks):
        n = int(seconds * fps)
        write_wav(folder / f"c{i:03d}.wav", audio[i * seconds * SR:(i + 1) * seconds * SR], SR)
        rows.append(f"speaker\tc{i:03d}\t{i * n}\t{(i + 1) * n}\t{i * n}\t{(i + 1) * n}\t{n}\t{i * n}:{(i + 1) * n}\t"
                    f"c{i:03d}.wav\t../video.mp4\t{fps}\t{SR}\n")
    header = "recording\tchunk\tclean_start\tclean_end\traw_start\traw_end\tn_frames\tsegments\taudio\tvideo\tfps\t" \
             "sample_rate\n"
    (folder / MANIFEST).write_text(header + "".join(rows))
    return folder


def test_a_recording_job_writes_a_store_per_chunk_or_names_the_failing_chunk(speech_audio, tmp_path):
    from animote import RecordingError
    from animote.stages.features import features_chunk, features_recording
    from animote.store import read_store

    chunks = _chunk_folder(tmp_path / "chunks", speech_audio)
    spec = {"type": "whisper", "model": "bundled:tiny.en", "threads": 1}
    done = features_recording(chunks, spec, tmp_path / "whisper")
    assert sorted(p.name for p in (tmp_path / "whisper").iterdir()) == ["c000.zarr", "c001.zarr", "c002.zarr"]
    assert [a["chunk"] for a in done] == ["c000", "c001", "c002"]
    alone = features_chunk(chunks, "c001", spec, tmp_path / "alone.zarr")  # one chunk in a process of its own
    together, _ = read_store(tmp_path / "whisper/c001.zarr")
    assert alone["n_frames"] == 120
    np.testing.assert_allclose(together["features"], read_store(tmp_path / "alone.zarr")[0]["features"], atol=1e-5)
    # two chunks at once, each worker a process that loads the model once: the same stores
    in_workers = features_recording(chunks, spec, tmp_path / "workers", workers=2)
    assert [a["chunk"] for a in in_workers] == ["c000", "c001", "c002"]
    for c in ("c000", "c001", "c002"):
        np.testing.assert_allclose(read_store(tmp_path / f"workers/{c}.zarr")[0]["features"],
                                   read_store(tmp_path / f"whisper/{c}.zarr")[0]["features"], atol=1e-5)
    # a bad chunk: the error names it, and no folder appears (not even a partial one), in workers too
    from animote.media import write_wav

    write_wav(chunks / "c002.wav", speech_audio[:4 * 8000], 8000)
    for workers in (1, 2):
        with pytest.raises(RecordingError, match=r"^recording 'speaker': chunk c002: .*8000 Hz"):
            features_recording(chunks, spec, tmp_path / "again", workers=workers)
        assert not (tmp_path / "again").exists() and not list(tmp_path.glob(".tmp-*"))
