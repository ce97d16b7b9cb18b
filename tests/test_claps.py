import dataclasses

import numpy as np
import pytest

from animote import RecordingError
from animote.claps import clean_to_raw, detect_claps, plan_cuts, splice_audio
from animote.demo import speech
from animote.media import frame_to_sample

SR = 16000


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """Real speech with many plosives and fricatives (festival), at 16 kHz, loud."""
    texts = ["Press the pants and sew a button on the vest.", "Kick the ball straight and follow through.",
             "The box was thrown beside the parked truck."]
    out = []
    for audio, sr, _ in speech.synthesize(texts, tmp_path_factory.mktemp("speech")):
        y = speech.restyle(audio, sr, speech.Style(1, 1, 0, 1, 0, 0), SR)
        out.append(y / np.abs(y).max() * 0.5)  # peaks at -6 dBFS: louder than the demo's speech
    return out


def _mix(spoken, clap_times, rng, peak=0.9):
    gap = int(0.8 * SR)
    track = np.concatenate([np.concatenate([np.zeros(gap, np.float32), y]) for y in spoken] + [np.zeros(gap)])
    for t in clap_times:
        burst = speech.clap(SR, rng, peak)
        i = int(t * SR)
        track[i:i + len(burst)] += burst
    return track.astype(np.float32)


def test_speech_alone_has_no_claps(spoken, clap_params):
    assert len(detect_claps(_mix(spoken, [], np.random.default_rng(0)), SR, clap_params)) == 0


def test_claps_found_in_pauses_and_over_speech(spoken, clap_params):
    rng = np.random.default_rng(1)
    n = len(_mix(spoken, [], rng))
    times = [0.3, 3.9, n / SR - 0.5, 2.0]  # the last one lands on speech
    found = detect_claps(_mix(spoken, times, rng), SR, clap_params)
    assert len(found) == len(times)
    assert np.abs(np.sort(found) - np.sort(times)).max() < 0.01


def test_threshold_comes_from_the_params(spoken, clap_params):
    rng = np.random.default_rng(2)
    track = _mix(spoken, [1.0], rng, peak=0.12)  # a distant clap, about -18 dBFS
    lenient = dataclasses.replace(clap_params, threshold_dbfs=-30)
    assert len(detect_claps(track, SR, clap_params)) == 0
    assert np.abs(detect_claps(track, SR, lenient) - 1.0).min() < 0.01


def test_cuts_are_whole_frames_and_account_for_every_frame(clap_params):
    fps, n = 30.0, 600
    cuts, kept = plan_cuts(np.array([0.01, 5.0, 5.1, 10.0, 19.99]), n, fps, clap_params, "r")
    assert len(cuts) == 4  # 5.0 and 5.1 merge
    assert cuts.start_frame.iloc[0] == 0 and cuts.end_frame.iloc[-1] == n
    assert int(kept.n_frames.sum() + cuts.n_frames.sum()) == n
    covered = np.zeros(n, int)
    for r in cuts.itertuples():
        covered[r.start_frame:r.end_frame] += 1
    for r in kept.itertuples():
        covered[r.raw_start:r.raw_end] += 1
    assert (covered == 1).all()
    assert (kept.clean_start.to_numpy()[1:] == kept.clean_end.to_numpy()[:-1]).all()


def test_cutting_everything_is_an_error(clap_params):
    wide = dataclasses.replace(clap_params, cut_before_s=100, cut_after_s=100)
    with pytest.raises(RecordingError, match="recording 'shorty'.*every frame"):
        plan_cuts(np.array([1.0]), 60, 30.0, wide, "shorty")


@pytest.mark.parametrize("fps, sr", [(30.0, 16000), (29.97, 16000), (25.0, 48000)])
def test_spliced_audio_keeps_frame_sync(clap_params, fps, sr):
    n = 900
    raw = np.arange(int(frame_to_sample(n, fps, sr)), dtype=np.float64)  # each sample holds its own index
    cuts, kept = plan_cuts(np.array([3.0, 17.5, 22.0]), n, fps, clap_params, "r")
    clean = splice_audio(raw.astype(np.float64), kept, fps, sr)
    n_clean = int(kept.n_frames.sum())
    assert len(clean) == frame_to_sample(n_clean, fps, sr)
    c = np.arange(n_clean)
    starts = frame_to_sample(c, fps, sr)
    expected = frame_to_sample(clean_to_raw(c, kept), fps, sr)
    assert np.abs(clean[starts] - expected).max() <= 1  # within one sample at every frame
