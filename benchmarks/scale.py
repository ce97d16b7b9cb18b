"""Preprocessing at scale, measured: N minutes of 1080p through the default target's preprocessing
(probe, claps, chunks, meshes, whisper and eGeMAPS features), beside the floor measured in the
same run.

    .venv/bin/python benchmarks/scale.py                          # 10 minutes of 1080p, 2 cores
    .venv/bin/python benchmarks/scale.py --minutes 10 --cores 1
    .venv/bin/python benchmarks/scale.py --minutes 60 --cores 16  # on a larger machine

The input is the demo synthesised at the size asked for and joined end to end (stream copy); it is
cached (``--cache``) between runs, so only the first run pays for the synthesis. Prints:
- wall time, and minutes of wall time per hour of video;
- per stage: jobs, job-seconds, the share of job time spent outside the work itself (process
  start-up, imports, model loading: job time minus the time the stage's own log or store gives
  for the work), and the largest peak memory of a job;
- the floor on these cores: a bare decode + FaceMesh loop (one process and its decoder pinned to one
  core) and the feature backends on audio already in memory, scaled to the input and divided by
  the cores; and the ratio of the wall time to it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import workspace  # benchmarks/workspace.py (run as a script, its folder is on the path)
from stages import stage_table

PY = sys.executable
TARGETS = ("results/report/preprocess.tsv", "results/demo/mesh_summary.tsv", "results/demo/features.tsv")

FLOOR = r"""
import json, os, sys, time
from pathlib import Path
import numpy as np
wd, seconds, pin = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "pin"
if pin:  # this process, its ffmpeg decoder and every thread on one CPU: the work of one core
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
from animote.chunks import load_chunks, iter_chunk_frames
from animote.config import load
from animote.features import make_backend
from animote.media import ProbeInfo, read_wav
from animote.mesh import TrackParams, decode_size
import mediapipe as mp
cfg = load(wd / "config/config.yaml")
params = TrackParams.from_config(cfg)
chunk = load_chunks(wd / "results/demo/chunks")[0]
info = ProbeInfo.load(wd / "results/demo/probe.json")
size = decode_size(info.width, info.height, params.max_side)
fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1)
t = time.perf_counter()
n = 0
for f in iter_chunk_frames(chunk, info, size=size, threads=params.decode_threads):
    fm.process(f)
    n += 1
    if n >= int(seconds * chunk.fps):
        break
mesh_ms = 1000 * (time.perf_counter() - t) / n
audio, sr = read_wav(wd / "results/demo/clean.wav")
audio = audio[: int(seconds * sr)]
rtf = {}
for role in ("phonetic", "emotion"):
    name = cfg["features"][role]
    backend = make_backend(dict(cfg["features"]["backends"][name], offline=True, device="cpu"))
    backend.compute(audio[: sr])  # the model loaded, its first call made
    t = time.perf_counter()
    backend.compute(audio)
    rtf[name] = (time.perf_counter() - t) / (len(audio) / sr)
print(json.dumps({"mesh_ms_per_frame": mesh_ms, "frames": n, "feature_rtf": rtf}))
"""


def source_video(cache: Path, minutes: float, width: int, height: int, cores: int) -> Path:
    """The demo at ``width``x``height`` joined end to end to about ``minutes``; made once."""
    folder = cache / f"{width}x{height}-{minutes:g}min"
    video = folder / "long.mp4"
    if video.exists():
        return video
    repeat = max(1, round(minutes * 60 / 150))
    synth = folder / "synth"
    if synth.exists():
        shutil.rmtree(synth)
    workspace.make(synth, {"demo": {"width": width, "height": height, "duration_s": minutes * 60 / repeat}})
    print(f"synthesising {minutes:g} min of {width}x{height} (once; cached in {folder}) ...", flush=True)
    workspace.snakemake(synth, "results/demo/demo.mp4", cores=cores)
    workspace.join_demo(synth, repeat)
    (synth / "long.mp4").rename(video)
    shutil.rmtree(synth)
    return video


def work_seconds(wd: Path) -> dict[str, float]:
    """Seconds of the work itself per stage, from what the stages record: the mesh stores' time per
    frame, the feature stores' real-time factor."""
    from animote.chunks import load_chunks
    from animote.store import read_store

    chunks = load_chunks(wd / "results/demo/chunks")
    mesh = sum(read_store(wd / f"results/demo/mesh/{c.chunk}.zarr", "face_found")[1]["ms_per_frame"] * c.n_frames
               for c in chunks) / 1000
    feats = 0.0
    for folder in (wd / "results/features").glob("*/*/demo"):
        for c in chunks:
            attrs = read_store(folder / f"{c.chunk}.zarr", "features")[1]
            feats += attrs["real_time_factor"] * c.n_frames / c.fps
    return {"face_mesh": mesh, "audio_features": feats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "animote-scale-cache")
    ap.add_argument("--keep", action="store_true", help="keep the run folder and print its path")
    args = ap.parse_args()

    video = source_video(args.cache, args.minutes, args.width, args.height, args.cores)
    wd = workspace.make(Path(tempfile.mkdtemp(prefix="animote-scale-")) / "wf",
                        {"chunks": {"export_video": False}})
    workspace.set_recording(wd, str(video))
    t = time.perf_counter()
    workspace.snakemake(wd, *TARGETS, cores=args.cores)
    wall = time.perf_counter() - t

    report = pd.read_csv(wd / "results/report/preprocess.tsv", sep="\t").iloc[0]
    video_min = float(report["raw_frames"]) / 30.0 / 60.0
    table = stage_table(wd / "results/benchmarks")
    work = work_seconds(wd)
    table["work_s"] = table.rule.map(work)
    table["startup_share"] = 1 - table.work_s / table.job_s
    floors = {how: json.loads(subprocess.run([PY, "-c", FLOOR, str(wd), "30", how], capture_output=True, text=True,
                                             check=True).stdout.strip().splitlines()[-1]) for how in ("pin", "free")}
    floor = floors["pin"]
    frames = float(report["chunk_frames"])
    floor_mesh = frames * floor["mesh_ms_per_frame"] / 1000 / args.cores
    floor_feat = video_min * 60 * sum(floor["feature_rtf"].values()) / args.cores
    floor_s = floor_mesh + floor_feat

    print(f"\n{video_min:.1f} min of {args.width}x{args.height} at 30 fps ({int(report['raw_frames'])} frames), "
          f"{args.cores} cores")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"))
    print(f"total: {table.jobs.sum()} jobs, {table.job_s.sum():.0f} job-seconds; peak job memory "
          f"{table.max_rss_MB.max():.0f} MB")
    print(f"wall: {wall:.0f} s = {wall / 60 / video_min * 60:.1f} min per hour of video on {args.cores} cores")
    print(f"floor: decode + FaceMesh {floor['mesh_ms_per_frame']:.2f} ms/frame on one core "
          f"({floors['free']['mesh_ms_per_frame']:.2f} unpinned: decoder and model overlap on two), features "
          + ", ".join(f"{k} {v:.4f}" for k, v in floor["feature_rtf"].items())
          + f" x real time: {floor_mesh:.0f} + {floor_feat:.0f} = {floor_s:.0f} s on {args.cores} cores")
    print(f"wall / floor: {wall / floor_s:.2f}")
    if args.keep:
        print(f"kept: {wd}")
    else:
        shutil.rmtree(wd.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
