"""Stage entry points of the first third of the DAG, on file paths: probe, remove claps, the clap
picture, split.

Each function reads its inputs, calls the pure functions of ``media``,
``claps`` and ``chunks``, and writes its outputs atomically. The workflow's
scripts call exactly one of these. Each job is a fresh process, so a stage imports what only it
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
from ..config import ChunkParams, ClapParams, VideoParams
from ..media import (
    ProbeInfo,
    align_audio,
    decode_audio,
    extract_audio,
    normalise_frame_rate,
    probe,
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


def prepare_recording(src: str | Path, recording: str, probe_json: str | Path, video_out: str | Path,
                      audio_out: str | Path, video: VideoParams, sample_rate: int) -> ProbeInfo:
    """Probe a recording; give the pipeline a constant-frame-rate video at ``video_out`` (a link
    to the source when it already is one, else a re-encoding) and its aligned mono audio."""
    with ThreadPoolExecutor(1) as pool:  # the audio decodes while ffprobe lists the video packets
        decoding = pool.submit(decode_audio, src, sample_rate, recording)
        info = probe(src, recording, video.vfr_tolerance)
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
        info = probe(video_out, recording, video.vfr_tolerance)
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


def remove_claps(probe_json: str | Path, audio_wav: str | Path, recording: str, params: ClapParams,
                 cuts_out: str | Path, kept_out: str | Path, clean_out: str | Path) -> pd.DataFrame:
    """Find claps, plan whole-frame cuts, and write the cut table, the kept segments and the
    cleaned audio. Returns the cut table. The picture is :func:`draw_claps`, a job of its own, so
    the chunks need not wait for it."""
    from collections import Counter

    from ..claps import clap_candidates, detect_claps, plan_cuts, splice_audio

    info = ProbeInfo.load(probe_json)
    audio, sr = read_wav(audio_wav)
    candidates = clap_candidates(audio, sr, params)
    times = detect_claps(audio, sr, params, candidates)
    reasons = Counter(c.why.split(":")[0] for c in candidates if not c.clap)
    log.info("recording '%s': %d candidate peaks %.0f+ dB over the quiet level; not claps: %s", recording,
             len(candidates), params.min_over_floor_db,
             ", ".join(f"{n} ({why})" for why, n in reasons.most_common()) or "none")
    cuts, kept = plan_cuts(times, info.n_frames, info.fps, params, recording)
    log.info("recording '%s': %d claps at %s s; cut %d of %d frames in %d intervals", recording, len(times),
             ", ".join(f"{t:.2f}" for t in times) or "-", int(cuts.n_frames.sum()), info.n_frames, len(cuts))
    write_wav(clean_out, splice_audio(audio, kept, info.fps, sr), sr)
    for df, path in ((cuts, cuts_out), (kept, kept_out)):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    return cuts


def draw_claps(audio_wav: str | Path, cuts_tsv: str | Path, recording: str, params: ClapParams,
               out_png: str | Path) -> None:
    """The picture to check clap removal by eye: the high-passed envelope with every cut, and a
    zoom on each clap (times from the cut table)."""
    import pandas as pd

    from ..claps import clap_envelope
    from ..render import clap_picture

    audio, sr = read_wav(audio_wav)
    cuts = pd.read_csv(cuts_tsv, sep="\t", dtype={"clap_s": str})
    times = sorted(float(t) for joined in cuts.clap_s for t in joined.split(";"))
    env, hop = clap_envelope(audio, sr, params)
    clap_picture(audio, sr, env, hop, times, list(zip(cuts.start_s, cuts.end_s)), out_png,
                 f"recording '{recording}'")


def split_chunks(probe_json: str | Path, video: str | Path, clean_wav: str | Path, kept_tsv: str | Path,
                 recording: str, params: ChunkParams, out_dir: str | Path) -> pd.DataFrame:
    """Write the recording's chunk folder (wavs, manifest, optional mp4s) atomically."""
    import pandas as pd

    from ..chunks import export_chunk_video, load_chunks, write_chunks

    info = ProbeInfo.load(probe_json)
    audio, sr = read_wav(clean_wav)
    kept = pd.read_csv(kept_tsv, sep="\t")
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        # the video relative to the chunk folder: a results/ folder moved elsewhere still finds it
        video_rel = os.path.relpath(os.path.abspath(video), os.path.abspath(out_dir))
        manifest = write_chunks(tmp, recording, video_rel, info, audio, sr, kept, params)
        if params.export_video:
            for chunk in load_chunks(tmp):
                export_chunk_video(chunk, info, Path(tmp) / f"{chunk.chunk}.mp4")
    return manifest


def frame_accounting(recordings: list[str], probe_jsons: list, cut_tsvs: list, chunk_dirs: list,
                     out_tsv: str | Path) -> pd.DataFrame:
    """One row per recording: raw frames = frames in chunks + frames cut, checked and written."""
    import pandas as pd

    from ..chunks import load_chunks

    rows = []
    for rec, pj, ct, cd in zip(recordings, probe_jsons, cut_tsvs, chunk_dirs):
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
    with atomic_path(out_tsv) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.3f")
    return df
