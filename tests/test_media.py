import numpy as np
import pytest
from helpers import ffmpeg, make_index_video, read_index

from animote import RecordingError
from animote.config import VideoParams
from animote.media import extract_audio, iter_frames, probe
from animote.stages.preprocess import prepare_recording
from animote.util import atomic_path


@pytest.fixture(scope="module")
def index_video(tmp_path_factory):
    return make_index_video(tmp_path_factory.mktemp("media") / "index.mp4", 150)


def test_probe_reads_streams(index_video):
    info = probe(index_video, "idx")
    assert info.n_frames == 150
    assert info.fps == 30
    assert (info.audio_rate, info.audio_channels) == (48000, 1)
    assert not info.variable_frame_rate
    assert info.duration_s == pytest.approx(5.0, abs=0.05)


@pytest.mark.parametrize("start, count", [(0, 5), (1, 3), (47, 4), (48, 10), (95, 55), (149, 1)])
def test_iter_frames_is_frame_exact(index_video, start, count):
    info = probe(index_video, "idx")
    got = [read_index(f) for f in iter_frames(index_video, start, count, info)]
    assert got == list(range(start, start + count))


def test_iter_frames_raises_when_frames_run_out(index_video):
    info = probe(index_video, "idx")
    with pytest.raises(RuntimeError, match="expected 10 frames"):
        list(iter_frames(index_video, 145, 10, info))


def test_a_recording_cut_without_re_encoding_counts_the_frames_that_decode(index_video, tmp_path):
    """``ffmpeg -ss T -i in.mp4 -c copy`` starts the copy at the keyframe before T and marks the
    packets before T to be discarded (an mp4 edit list): they are not frames of the recording."""
    cut = tmp_path / "cut.mp4"
    ffmpeg("-ss", "1.7", "-i", str(index_video), "-c", "copy", str(cut))  # GOP 48: frame 51 is mid-GOP
    info = probe(cut, "cut")
    assert not info.variable_frame_rate  # so the pipeline links it as it is, and trusts this count
    frames = [read_index(f) for f in iter_frames(cut, 0, info.n_frames, info)]
    with pytest.raises(RuntimeError, match="expected 1 frames"):  # and not one more
        list(iter_frames(cut, info.n_frames, 1, info))
    assert 50 <= frames[0] <= 52 and frames == list(range(frames[0], 150))
    assert [read_index(f) for f in iter_frames(cut, 30, 3, info)] == frames[30:33]  # seeks stay frame-exact


def test_probe_bad_inputs_name_the_recording(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video at all" * 100)
    silent = make_index_video(tmp_path / "silent.mp4", 30, audio=False)
    audio_only = tmp_path / "audio.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio_only))
    no_frames = tmp_path / "noframes.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=30", "-f", "lavfi", "-i", "sine=duration=1",
           "-frames:v", "0", "-c:v", "libx264", "-c:a", "aac", "-t", "1", str(no_frames))
    cases = [(tmp_path / "missing.mp4", "file not found"), (empty, "empty"), (garbage, "ffprobe cannot read"),
             (silent, "no audio stream"), (audio_only, "no video stream"), (no_frames, "no video stream|zero")]
    for path, msg in cases:
        with pytest.raises(RecordingError, match=msg) as exc:
            probe(path, "rec42")
        assert "recording 'rec42'" in str(exc.value)


def test_variable_frame_rate_is_normalised(tmp_path):
    src = tmp_path / "vfr.mp4"
    # 30 frames at 30 fps, then 30 frames at 15 fps: 3 s in all.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x96:rate=30", "-f", "lavfi", "-i", "sine=duration=3",
           "-frames:v", "60", "-vf", r"setpts='if(lt(N,30),N/30,1+(N-30)/15)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-c:a", "aac", str(src))
    assert probe(src, "vfr").variable_frame_rate
    params = VideoParams(fps=30, normalise_crf=18, vfr_tolerance=0.02)
    info = prepare_recording(src, "vfr", probe_json=tmp_path / "p.json", video_out=tmp_path / "v.mp4",
                             audio_out=tmp_path / "a.wav", video=params, sample_rate=16000)
    assert not info.variable_frame_rate
    assert info.fps == 30
    assert info.n_frames == pytest.approx(90, abs=1)
    assert not (tmp_path / "v.mp4").is_symlink()


def test_audio_is_aligned_to_video_start(tmp_path):
    src = tmp_path / "late.mp4"
    # The audio starts 0.5 s after the video.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=30:duration=3", "-itsoffset", "0.5",
           "-f", "lavfi", "-i", "sine=frequency=300:duration=2", "-c:v", "libx264", "-c:a", "aac",
           "-map", "0:v", "-map", "1:a", str(src))
    info = probe(src, "late")
    audio = extract_audio(src, info, 16000, "late")
    assert len(audio) == round(info.n_frames * 16000 / info.fps)
    onset = np.argmax(np.abs(audio) > 0.05) / 16000
    assert onset == pytest.approx(0.5, abs=1 / 30)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.zarr"
    with pytest.raises(ZeroDivisionError):
        with atomic_path(final) as tmp:
            tmp.mkdir()
            (tmp / "part").write_text("half")
            1 / 0
    assert list(tmp_path.iterdir()) == []
    with atomic_path(final) as tmp:
        tmp.write_text("done")
    assert final.read_text() == "done" and list(tmp_path.iterdir()) == [final]


def test_rotated_phone_video_streams_upright(tmp_path, index_video):
    rotated = tmp_path / "portrait.mp4"
    ffmpeg("-i", str(index_video), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    plain, info = probe(index_video, "plain"), probe(rotated, "portrait")
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (plain.height, plain.width)
    frame = next(iter_frames(rotated, 7, 1, info))
    assert frame.shape == (info.height, info.width, 3)
    upright = np.rot90(frame, k=-1 if info.rotation == 90 else 1)
    assert read_index(upright) == 7
