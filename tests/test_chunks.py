import numpy as np
import pandas as pd
import pytest
from helpers import make_index_video, read_index

from animote.chunks import iter_chunk_frames, load_chunks, plan_chunks, raw_segments, write_chunks
from animote.claps import clean_to_raw, plan_cuts
from animote.config import ChunkParams
from animote.media import frame_to_sample, probe, read_wav


@pytest.mark.parametrize("n, length, min_len, expected", [
    (900, 10, 4, [(0, 300), (300, 600), (600, 900)]),
    (1050, 10, 4, [(0, 300), (300, 600), (600, 900), (900, 1050)]),  # a 5 s tail stays
    (950, 10, 4, [(0, 300), (300, 600), (600, 950)]),  # 50-frame tail joins the last chunk
    (50, 10, 4, [(0, 50)]),
])
def test_plan_chunks(n, length, min_len, expected):
    ranges = plan_chunks(n, 30.0, length, min_len)
    assert ranges == expected
    assert sum(b - a for a, b in ranges) == n


def test_raw_segments_follow_the_cuts(clap_params):
    _, kept = plan_cuts(np.array([2.0, 2.9, 7.0]), 400, 30.0, clap_params, "r")
    for c0, c1 in [(0, 100), (50, 250), (0, int(kept.n_frames.sum()))]:
        segs = raw_segments(kept, c0, c1)
        frames = np.concatenate([np.arange(a, b) for a, b in segs])
        assert (frames == clean_to_raw(np.arange(c0, c1), kept)).all()


def test_chunks_read_back_the_right_frames_and_audio(tmp_path, clap_params):
    video = make_index_video(tmp_path / "idx.mp4", 420)
    info = probe(video, "idx")
    _, kept = plan_cuts(np.array([2.0, 6.5, 11.0]), info.n_frames, info.fps, clap_params, "idx")
    n_clean = int(kept.n_frames.sum())
    # Clean audio that holds, in every sample, the raw frame it came from.
    starts = frame_to_sample(np.arange(n_clean + 1), info.fps, 16000)
    raw_frame = clean_to_raw(np.arange(n_clean), kept)
    audio = np.repeat(raw_frame.astype(np.float32), np.diff(starts))
    manifest = write_chunks(tmp_path / "chunks", "idx", str(video), info, audio, 16000, kept,
                            ChunkParams(4, 2, False))
    assert manifest.n_frames.sum() == n_clean
    chunks = load_chunks(tmp_path / "chunks")
    assert len(chunks) == len(manifest) > 2
    seen = []
    for chunk in chunks:
        got = [read_index(f) for f in iter_chunk_frames(chunk, info)]
        assert got == chunk.raw_frames.tolist()
        wav, sr = read_wav(chunk.audio)
        per_frame = np.split(wav, np.diff(frame_to_sample(np.arange(chunk.n_frames + 1), info.fps, sr))[:-1].cumsum())
        assert [int(round(float(np.median(x)))) for x in per_frame] == got
        seen += got
    assert sorted(seen) == sorted(set(seen)) and len(seen) == n_clean
    rows = pd.read_csv(tmp_path / "chunks" / "manifest.tsv", sep="\t")
    assert (rows.raw_end > rows.raw_start).all()
