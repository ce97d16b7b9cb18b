import dataclasses

import numpy as np
import pytest

from animote import RecordingError
from animote.claps import clean_to_raw, detect_claps, plan_cuts, splice_audio
from animote.demo import clapset, speech
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


def test_claps_found_in_pauses(spoken, clap_params):
    # A clap rises out of quiet: one clapped over ongoing speech is not claimed (the README says so).
    rng = np.random.default_rng(1)
    n = len(_mix(spoken, [], rng))
    times = [0.3, 3.9, n / SR - 0.5]
    found = detect_claps(_mix(spoken, times, rng), SR, clap_params)
    assert len(found) == len(times)
    assert np.abs(np.sort(found) - np.sort(times)).max() < 0.01


def test_level_threshold_is_relative_to_the_recordings_quiet_level(spoken, clap_params):
    rng = np.random.default_rng(2)
    # a distant clap (peak 0.12, under the speech's 0.5) in the pause before the speech
    track = _mix(spoken, [0.3], rng, peak=0.12) + rng.normal(scale=1e-4, size=len(_mix(spoken, [], rng)))
    strict = dataclasses.replace(clap_params, min_over_floor_db=90)  # it stands about 60 dB over the noise
    found = detect_claps(track, SR, clap_params)
    assert len(found) == 1 and abs(found[0] - 0.3) < 0.01
    assert len(detect_claps(track, SR, strict)) == 0
    for gain in (10 ** (-30 / 20), 4.0):  # the same recording 30 dB quieter, and clipped
        found = detect_claps(np.clip(track * gain, -1, 1).astype(np.float32), SR, clap_params)
        assert len(found) == 1 and abs(found[0] - 0.3) < 0.01


def _assert_exact(found, truth):
    assert len(found) == len(truth), (found, truth)
    assert np.abs(np.sort(found) - np.sort(truth)).max() < 0.05, (found, truth)


@pytest.fixture(scope="module")
def male_voice(tmp_path_factory):
    """espeak-ng's male US voice on sentences full of sibilants and plosives."""
    texts = ["She sells sea shells by the sea shore.", "Press the pants and sew a button on the vest.",
             "Stop the cat from scratching the post."]
    return clapset.say(texts, "espeak-us-m", tmp_path_factory.mktemp("espeak"))


def _hp_peak(x):
    from scipy import signal

    sos = signal.butter(4, 2000, btype="highpass", fs=SR, output="sos")
    return np.abs(signal.sosfiltfilt(sos, x.astype(np.float64))).max()


def test_hot_microphone_consonants_louder_than_the_claps_are_not_claps(male_voice, clap_params):
    case = clapset.Case("hot", "espeak-us-m", [], [("clap", -10, 0.5), ("clap", -12, 0.3), ("clap", -9, 1.0)],
                        gain_db=-3, hot_db=12)
    rec = clapset.build(case, male_voice)
    speech_only = clapset.build(dataclasses.replace(case, events=[]), male_voice)
    loudest_clap = max(_hp_peak(rec.audio[int(t * SR):int((t + 0.06) * SR)]) for t in rec.claps_s)
    assert _hp_peak(speech_only.audio) > loudest_clap  # the case the level detector failed
    _assert_exact(detect_claps(rec.audio, SR, clap_params), rec.claps_s)


def test_soft_clap_20_db_under_the_speech_in_a_pause(spoken, clap_params):
    case = clapset.Case("soft", "slt", [], [("clap", -20, 0.6)], gain_db=-6)
    rec = clapset.build(case, spoken)
    _assert_exact(detect_claps(rec.audio, SR, clap_params), rec.claps_s)


def test_clap_right_after_a_loud_consonant(male_voice, clap_params):
    # "...on the vest." ends on a sibilant and a burst; the clap comes 0.2 s later, both loud
    case = clapset.Case("close", "espeak-us-m", [], [("clap", 0, 0.2), ("clap", -2, 0.2)], gain_db=0, hot_db=6)
    rec = clapset.build(case, male_voice[1:])
    _assert_exact(detect_claps(rec.audio, SR, clap_params), rec.claps_s)


def test_no_clap_means_no_cut_and_other_transients_are_not_claps(male_voice, clap_params):
    case = clapset.Case("none", "espeak-us-m", [], [("click", 6, 0.5), ("thump", 6, 0.5), ("cough", 0, 0.5)],
                        gain_db=-1, hot_db=12)
    rec = clapset.build(case, male_voice)
    found = detect_claps(rec.audio, SR, clap_params)
    assert len(found) == 0, found
    cuts, kept = plan_cuts(found, int(len(rec.audio) / SR * 30), 30.0, clap_params, "none")
    assert cuts.empty and len(kept) == 1


def test_a_rejected_candidate_cannot_hide_a_clap_beside_it(male_voice, clap_params):
    # a cough 0.3 s before a clap, louder than it: the spacing rule sees only claps
    case = clapset.Case("hidden", "espeak-us-m", [], [("cough", 6, 0.2), ("clap", -3, 0.06, True)], gain_db=-6)
    rec = clapset.build(case, male_voice[:2])
    cough_at = rec.others_s[0][1]
    assert 0 < rec.claps_s[0] - cough_at < clap_params.min_spacing_s
    _assert_exact(detect_claps(rec.audio, SR, clap_params), rec.claps_s)


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


@pytest.mark.parametrize("phase", range(4))
def test_a_single_window_spike_inside_a_clap_does_not_make_it_a_click(clap_params, phase, monkeypatch):
    """At 16 kHz a 0.5 ms window holds 8 samples: one loud sample of a noise burst alone in its
    window lifts that window 16 dB over the rest of the clap. Measured from that window the clap is
    "a click" (under 2 ms within 10 dB of the peak: how a real clap of a 44.1 kHz recording was
    missed); measured from the burst's own level it is a clap, at every phase of the burst
    against the windows. A lone click is still a click."""
    from animote import claps

    sr = 16000
    rng = np.random.default_rng(phase)
    x = rng.normal(scale=1e-3, size=3 * sr).astype(np.float32)
    burst = speech.clap(sr, rng, 0.15)
    burst[int(0.0015 * sr)] = 1.0  # one sample, 1.5 ms in
    at = sr + 2 * phase
    x[at:at + len(burst)] += burst
    click = np.zeros(int(0.004 * sr), np.float32)
    click[int(0.002 * sr)] = 0.9
    x[2 * sr:2 * sr + len(click)] += click
    found = detect_claps(x, sr, clap_params)
    assert len(found) == 1 and abs(found[0] - at / sr) < 0.005
    monkeypatch.setattr(claps, "SPIKE_DB", 0.0)  # measured from the spike, as before
    why = [c.why for c in claps.clap_candidates(x, sr, clap_params) if abs(c.time_s - at / sr) < 0.005]
    assert why and why[0].startswith("a click"), why


def test_a_long_recording_is_searched_in_blocks_with_the_same_claps(spoken, clap_params, monkeypatch):
    """Past BLOCK_S the search goes block by block (memory of one block at 44.1 kHz and more),
    the quiet level from the whole recording: the same claps as in one piece, claps at the
    blocks' edges included."""
    from animote import claps

    case = clapset.Case("long", "slt", [], [("clap", 6.0, 0.4), ("clap", 0.0, 0.3), ("clap", 10.0, 0.6),
                                              ("clap", 3.0, 0.5)], gain_db=-12, seed=5)
    rec = clapset.build(case, spoken, sr=44100)
    whole = detect_claps(rec.audio, 44100, clap_params)
    assert len(whole) == 4 and clapset.score(whole, rec.claps_s)["fn"] == 0
    block = float(whole[0]) - 0.005  # the first block ends 5 ms before the first clap's peak
    assert len(rec.audio) / 44100 > 3 * block  # cut in three blocks or more
    monkeypatch.setattr(claps, "BLOCK_S", block)
    monkeypatch.setattr(claps, "CONTEXT_S", 0.5)
    np.testing.assert_allclose(detect_claps(rec.audio, 44100, clap_params), whole, atol=1e-4)
