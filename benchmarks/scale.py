"""Preprocessing at scale, measured: N minutes of 1080p through the default target's preprocessing
(probe, claps, chunks, meshes, whisper and eGeMAPS features), beside the floor measured in the
same run.

    .venv/bin/python benchmarks/scale.py                          # 10 minutes of 1080p, 2 cores
    .venv/bin/python benchmarks/scale.py --minutes 10 --cores 1  # the run pinned to one CPU
    .venv/bin/python benchmarks/scale.py --minutes 60 --cores 16  # on a larger machine

The input is the demo synthesised at the size asked for and joined end to end (stream copy); it is
cached (``--cache``) between runs, so only the first run pays for the synthesis. Prints:
- wall time, and minutes of wall time per hour of video;
- per stage: jobs, job-seconds, the share of job time spent outside the work itself (process
  start-up, imports, model loading: job time, times the workers of a landmark job, minus the time
  the stage's own log or store gives for the work), and the largest peak memory of a job (with
  its worker processes);
- the floor on these cores (benchmarks/floor.py): one bare loop per core, all at once, each process
  with its decoder pinned to its own core: decode + FaceMesh on a chunk's frames, then the feature
  backends on audio already in memory. Their mean time per frame and real-time factor, scaled to
  the input and divided by the cores, is the floor; the ratio of the wall time to it is the figure that counts. The same
  loop alone on one core is printed beside it: the two differ where the machine's cores do not add
  up (shared caches, memory bandwidth, a virtual machine's neighbours).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import workspace  # benchmarks/workspace.py (run as a script, its folder is on the path)
from floor import floor
from stages import stage_table

# One recording's jobs that run one after another, before the landmark job and after it. After it is
# one job (align_mesh) now; the rules it replaced stay listed, so that a run of an older commit reads.
SERIAL_BEFORE = ("probe", "remove_claps", "split_chunks")
SERIAL_AFTER = ("neutral_mesh", "align_mesh", "mesh_report")
TARGETS = ("results/report/preprocess.tsv", "results/demo/claps.png", "results/demo/mesh_summary.tsv",
           "results/demo/features.tsv")


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


def workers_of(wd: Path, rule: str) -> int:
    """Chunks a landmark or feature job computed at once, from its logs (1 for older versions,
    which said nothing of it)."""
    said = {"face_mesh": r"tracking \d+ chunks, (\d+) at a time", "audio_features": r"chunks \((\d+) at a time\)"}
    found = [int(n) for log in (wd / "results/logs" / rule).rglob("*.log")
             for n in re.findall(said[rule], log.read_text())]
    return max(found, default=1)


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
    # the run and everything it starts (decoders too) on the first --cores CPUs: N cores are N cores
    every = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(sorted(every)[:args.cores]))
    try:
        t = time.perf_counter()
        workspace.snakemake(wd, *TARGETS, cores=args.cores)
        wall = time.perf_counter() - t
    finally:
        os.sched_setaffinity(0, every)

    report = pd.read_csv(wd / "results/report/preprocess.tsv", sep="\t").iloc[0]
    video_min = float(report["raw_frames"]) / 30.0 / 60.0
    table = stage_table(wd / "results/benchmarks")
    work = work_seconds(wd)
    table["work_s"] = table.rule.map(work)
    # a landmark or feature job runs several chunks at once (its log says how many): its time is per worker
    table["workers"] = table.rule.map({r: workers_of(wd, r) for r in ("face_mesh", "audio_features")}).fillna(1)
    table["workers"] = table.workers.astype(int)
    table["startup_share"] = 1 - table.work_s / (table.job_s * table.workers)
    where = (wd / "results/demo/chunks", wd / "results/demo/probe.json", wd / "config/config.yaml")
    solo = floor(*where, cores=1)
    full = floor(*where, cores=args.cores)
    frames = float(report["chunk_frames"])
    floor_mesh = frames * full["mesh_ms_per_frame"] / 1000 / args.cores
    floor_feat = video_min * 60 * sum(full["feature_rtf"].values()) / args.cores
    floor_s = floor_mesh + floor_feat

    print(f"\n{video_min:.1f} min of {args.width}x{args.height} at 30 fps ({int(report['raw_frames'])} frames), "
          f"{args.cores} cores")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"))
    print(f"total: {table.jobs.sum()} jobs, {table.job_s.sum():.0f} job-seconds; peak job memory "
          f"{table.max_rss_MB.max():.0f} MB")
    print(f"wall: {wall:.0f} s = {wall / 60 / video_min * 60:.1f} min per hour of video on {args.cores} cores")
    def per_core(f: dict) -> str:
        return (f"decode + FaceMesh {f['mesh_ms_per_frame']:.2f} ms/frame, features "
                + ", ".join(f"{k} {v:.4f}" for k, v in f["feature_rtf"].items()) + " x real time")
    print(f"bare loop alone on one core: {per_core(solo)}")
    print(f"bare loops on all {args.cores} cores at once, per core: {per_core(full)} "
          f"({full['mesh_ms_per_frame'] / solo['mesh_ms_per_frame']:.2f}x the mesh loop alone)")
    print(f"floor: {floor_mesh:.0f} + {floor_feat:.0f} = {floor_s:.0f} s on {args.cores} cores "
          f"= {floor_s / video_min:.1f} min per hour of video")
    print(f"wall / floor: {wall / floor_s:.2f}")
    # the chain of one recording outside its landmark and feature jobs runs one job after another:
    # more cores do not shorten it
    secs = dict(zip(table.rule, table.job_s))
    before = {r: secs[r] for r in SERIAL_BEFORE if r in secs}  # the rules of this version that ran
    after = {r: secs[r] for r in SERIAL_AFTER if r in secs}
    serial = sum(before.values()) + sum(after.values())
    print(f"serial chain: {sum(before.values()):.1f} s before the landmarks ("
          + ", ".join(f"{r} {v:.1f}" for r, v in before.items()) + f"), {sum(after.values()):.1f} s after ("
          + ", ".join(f"{r} {v:.1f}" for r, v in after.items()) + ")")
    parallel = floor_s * args.cores  # core-seconds of landmarks and features, at this machine's per-core speed
    for n in (8, 16):
        est = serial + parallel / n
        print(f"projection, not a measurement: {n} cores of this kind, one recording: {serial:.0f} + "
              f"{parallel:.0f} / {n} = {est:.0f} s = {est / video_min:.1f} min per hour of video")
    if args.keep:
        print(f"kept: {wd}")
    else:
        shutil.rmtree(wd.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
