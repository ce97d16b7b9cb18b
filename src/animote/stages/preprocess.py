"""The first third of the DAG, on file paths: probe, remove claps, the clap picture, split, and
the frame accounting. One function per rule, named like it (:mod:`animote.stages`).

Each function reads its inputs, calls the pure functions of ``media``, ``claps`` and ``chunks``,
and writes its outputs atomically. Each job is a fresh process, so a stage imports what only it
needs (scipy, pandas, matplotlib) inside its function: the probe job, for one, does not pay for them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .. import RecordingError
from ..config import ChunkParams, VideoParams
from ..media import (
    ProbeInfo,
    align_audio,
    decode_audio,
    extract_audio,
    normalise_frame_rate,
    probe as probe_file,
    read_wav,
    write_wav,
)
from ..util import atomic_path

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _link_target(src: str | Path, link: str | Path) -> str:
    """What the link to a recording holds: a relative path when the sheet gave one (a recording
    inside the working folder, like the demo, moves with it), else the sheet's absolute path."""
    if Path(src).is_absolute():
        return str(src)
    return os.path.relpath(os.path.abspath(src), os.path.dirname(os.path.abspath(link)))


def probe(*, input, output, params, wildcards, **_) -> ProbeInfo:
    """Rule ``probe``: the recording ``input.video`` probed (``output.info``), as a constant-rate
    ``output.video`` and its aligned audio ``output.audio``."""
    return prepare_recording(input.video, wildcards.rec, probe_json=output.info, video_out=output.video,
                             audio_out=output.audio, video=VideoParams(**params.video),
                             sample_rate=params.sample_rate)


def prepare_recording(src: str | Path, recording: str, *, probe_json: str | Path, video_out: str | Path,
                      audio_out: str | Path, video: VideoParams, sample_rate: int) -> ProbeInfo:
    """Probe a recording; give the pipeline a constant-frame-rate video at ``video_out`` (a link
    to the source when it already is one, else a re-encoding) and its aligned mono audio."""
    with ThreadPoolExecutor(1) as pool:  # the audio decodes while ffprobe lists the video packets
        decoding = pool.submit(decode_audio, src, sample_rate, recording)
        info = probe_file(src, recording, video.vfr_tolerance)
        decoded = decoding.result()
    log.info("recording '%s': %dx%d, %d frames at %.3f fps (%.2f s), audio %d Hz x%d", recording,
             info.width, info.height, info.n_frames, info.fps, info.duration_s, info.audio_rate,
             info.audio_channels)
    target = video.fps or round(info.fps * 1000) / 1000
    if info.variable_frame_rate or abs(target - info.fps) > 1e-3:
        why = (f"variable frame rate (interval spread {info.frame_interval_spread:.2f})"
               if info.variable_frame_rate else f"{info.fps:.3f} fps, config asks for {target}")
        log.warning("recording '%s': %s; re-encoding at a constant %s fps", recording, why, target)
        normalise_frame_rate(src, video_out, target, video.normalise_crf, recording)
        info = probe_file(video_out, recording, video.vfr_tolerance)
        audio = extract_audio(video_out, info, sample_rate, recording)  # its start may have moved
    else:  # already constant-rate: link it, and the probe still holds (one packet scan is enough)
        with atomic_path(video_out) as tmp:
            os.symlink(_link_target(src, video_out), tmp)
        info = dataclasses.replace(info, path=str(video_out))
        audio = align_audio(decoded, info, sample_rate, recording)
    write_wav(audio_out, audio, sample_rate)
    with atomic_path(probe_json) as tmp:
        Path(tmp).write_text(info.to_json())
    return info


def remove_claps(*, input, output, params, wildcards, **_) -> pd.DataFrame:
    """Find claps in the audio of ``input.video`` at the recording's own rate (at least 44.1 kHz),
    plan whole-frame cuts, and write the cut table (``output.cuts``), the kept segments
    (``output.kept``) and the cleaned audio (``output.audio``, ``input.audio`` spliced). Returns the
    cut table.
    The picture is :func:`clap_picture`, a job of its own, so the chunks need not wait for it."""
    from collections import Counter

    from ..claps import DETECT_RATE, ClapParams, clap_candidates, detect_claps, plan_cuts, splice_audio

    recording, params = wildcards.rec, ClapParams(**params.claps)
    info = ProbeInfo.load(input.info)
    audio, sr = read_wav(input.audio)
    # found at the recording's own rate (at least DETECT_RATE), aligned to the video like audio.wav
    rate = max(int(info.audio_rate), DETECT_RATE)
    native = extract_audio(input.video, info, rate, recording)
    candidates = clap_candidates(native, rate, params)
    times = detect_claps(native, rate, params, candidates)
    del native
    reasons = Counter(c.why.split(":")[0] for c in candidates if not c.clap)
    log.info("recording '%s': at %d Hz, %d candidate peaks %.0f+ dB over the quiet level; not claps: %s",
             recording, rate, len(candidates), params.min_over_floor_db,
             ", ".join(f"{n} ({why})" for why, n in reasons.most_common()) or "none")
    cuts, kept = plan_cuts(times, info.n_frames, info.fps, params, recording)
    log.info("recording '%s': %d claps at %s s; cut %d of %d frames in %d intervals", recording, len(times),
             ", ".join(f"{t:.2f}" for t in times) or "-", int(cuts.n_frames.sum()), info.n_frames, len(cuts))
    write_wav(output.audio, splice_audio(audio, kept, info.fps, sr), sr)
    for df, path in ((cuts, output.cuts), (kept, output.kept)):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    return cuts


def clap_picture(*, input, output, params, wildcards, **_) -> None:
    """The picture to check clap removal by eye: the high-passed envelope of ``input.audio`` with
    every cut, and a zoom on each clap (times from the cut table ``input.cuts``)."""
    import pandas as pd

    from ..claps import ClapParams, clap_envelope
    from ..render import clap_picture as draw

    audio, sr = read_wav(input.audio)
    cuts = pd.read_csv(input.cuts, sep="\t", dtype={"clap_s": str})
    times = sorted(float(t) for joined in cuts.clap_s for t in joined.split(";"))
    env, hop = clap_envelope(audio, sr, ClapParams(**params.claps))
    draw(audio, sr, env, hop, times, list(zip(cuts.start_s, cuts.end_s)), output[0], f"recording '{wildcards.rec}'")


def split_chunks(*, input, output, params, wildcards, **_) -> pd.DataFrame:
    """Write the recording's chunk folder (wavs, manifest, optional mp4s) atomically: the clean
    audio ``input.audio`` cut to the kept segments ``input.kept`` of ``input.video``."""
    import pandas as pd

    from ..chunks import export_chunk_video, load_chunks, write_chunks

    params = ChunkParams(**params.chunks)
    info = ProbeInfo.load(input.info)
    audio, sr = read_wav(input.audio)
    kept = pd.read_csv(input.kept, sep="\t")
    out_dir = Path(output[0])
    with atomic_path(out_dir) as tmp:
        # the video relative to the chunk folder: a results/ folder moved elsewhere still finds it
        video_rel = os.path.relpath(os.path.abspath(input.video), os.path.abspath(out_dir))
        manifest = write_chunks(tmp, wildcards.rec, video_rel, info, audio, sr, kept, params)
        if params.export_video:
            for chunk in load_chunks(tmp):
                export_chunk_video(chunk, info, Path(tmp) / f"{chunk.chunk}.mp4")
    return manifest


def preprocess_report(*, input, output, params, **_) -> pd.DataFrame:
    """The frame accounting, one row per recording of ``params.recordings``: raw frames = frames
    in chunks + frames cut, checked and written."""
    import pandas as pd

    from ..chunks import load_chunks

    rows = []
    for rec, pj, ct, cd in zip(params.recordings, input.info, input.cuts, input.chunks):
        info = ProbeInfo.load(pj)
        cuts = pd.read_csv(ct, sep="\t")
        chunks = load_chunks(cd)
        in_chunks = sum(c.n_frames for c in chunks)
        cut = int(cuts.n_frames.sum())
        n_claps = sum(len(str(s).split(";")) for s in cuts.clap_s) if len(cuts) else 0
        rows.append({"recording": rec, "raw_frames": info.n_frames, "chunk_frames": in_chunks,
                     "cut_frames": cut, "claps": n_claps, "chunks": len(chunks), "fps": info.fps,
                     "minutes": info.n_frames / info.fps / 60})
        if info.n_frames != in_chunks + cut:
            raise RecordingError(rec, f"frame accounting fails: {info.n_frames} raw frames != "
                                      f"{in_chunks} in chunks + {cut} cut")
    df = pd.DataFrame(rows)
    with atomic_path(output[0]) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.3f")
    return df
