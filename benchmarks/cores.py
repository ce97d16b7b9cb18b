"""The landmark stage's scaling with cores, without Snakemake: ``mesh_recording`` with 1, 2, 4, ...
workers beside the floor on as many cores (benchmarks/floor.py), on 1080p.

    .venv/bin/python benchmarks/cores.py --prepare DIR                  # here, once: about 25 MB
    .venv/bin/python benchmarks/cores.py --run DIR --workers 1 2        # on this machine
    python3 benchmarks/cores.py --run DIR --workers 1 2 4 8 16          # on a larger one

``--prepare`` cuts a 30 s clip (encoded as the demo is) from the 1080p video benchmarks/scale.py caches (it
makes it if needed), and runs the workflow on it to its chunks (10 s each). It writes the clip,
its probe and a manifest of 64 chunks: the clip's chunks over and over, each a real chunk (the
same frames decoded and tracked again). The folder is small enough to copy to another machine,
which needs only the package's own dependencies for this stage (mediapipe, zarr, pandas, OpenCV)
and an ffmpeg on the PATH, not the workflow.

``--run`` tracks, for each worker count W, 4W chunks (four each) with W workers, then runs the
bare loop on W cores at once, and prints per W: wall time, frames per second, speed-up over one
worker, ms per frame per worker against the floor's ms per frame per core, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from floor import floor

REPO = Path(__file__).resolve().parents[1]
CHUNKS = 64


def prepare(folder: Path, cache: Path) -> None:
    import scale
    import workspace

    video = scale.source_video(cache, 10, 1920, 1080, 2)
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / "clip.mp4"
    # re-encoded as the demo is, so that the clip starts on a keyframe and ends on whole groups of
    # pictures like a recording (a stream copy cut would not)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(video), "-t", "30", "-c:v", "libx264",
                    "-preset", "superfast", "-crf", "18", "-pix_fmt", "yuv420p", "-g", "60", "-c:a", "aac",
                    "-b:a", "128k", str(clip)], check=True)
    wd = workspace.make(Path(tempfile.mkdtemp(prefix="animote-cores-")) / "wf",
                        {"chunks": {"length_s": 10, "min_length_s": 5, "export_video": False}})
    workspace.set_recording(wd, str(clip))
    workspace.snakemake(wd, "results/demo/chunks")
    shutil.copy(wd / "results/demo/probe.json", folder / "probe.json")
    (folder / "chunks").mkdir(exist_ok=True)
    real = pd.read_csv(wd / "results/demo/chunks/manifest.tsv", sep="\t", dtype={"chunk": str})
    for wav in real.audio:
        shutil.copy(wd / "results/demo/chunks" / wav, folder / "chunks" / wav)
    rows = pd.concat([real] * (CHUNKS // len(real) + 1)).head(CHUNKS).reset_index(drop=True)
    rows["chunk"] = [f"c{i:03d}" for i in range(len(rows))]
    rows["video"] = "../clip.mp4"
    rows.to_csv(folder / "chunks/manifest.tsv", sep="\t", index=False)
    shutil.rmtree(wd.parent)
    print(f"{folder}: {clip.stat().st_size / 1e6:.1f} MB clip, {len(real)} chunks repeated to {CHUNKS}")


def run(folder: Path, workers: list[int], config: Path) -> None:
    from animote.config import load
    from animote.mesh import TrackParams
    from animote.stages.mesh import mesh_recording

    params = TrackParams.from_config(load(config))
    folder = folder.resolve()
    manifest = pd.read_csv(folder / "chunks/manifest.tsv", sep="\t", dtype={"chunk": str})
    cpus = len(os.sched_getaffinity(0))
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    print(f"{cpus} CPUs ({model}), Python {platform.python_version()}", flush=True)
    rows = []
    for w in workers:
        if w > cpus:
            print(f"skipped {w} workers: {cpus} CPUs here")
            continue
        work = Path(tempfile.mkdtemp(prefix=f"animote-cores-{w}-"))
        (work / "chunks").mkdir()
        part = manifest.head(4 * w).copy()
        part["video"] = str(folder / "clip.mp4")
        part["audio"] = [str(folder / "chunks" / a) for a in part.audio]
        part.to_csv(work / "chunks/manifest.tsv", sep="\t", index=False)
        frames = int(part.n_frames.sum())
        t = time.perf_counter()
        mesh_recording(work / "chunks", folder / "probe.json", work / "mesh", params, workers=w)
        wall = time.perf_counter() - t
        base = floor(work / "chunks", folder / "probe.json", config, cores=w, seconds=10, features=False)
        rows.append({"workers": w, "chunks": len(part), "frames": frames, "wall_s": wall, "frames_per_s": frames / wall,
                     "ms_per_frame_per_worker": 1000 * wall * w / frames,
                     "floor_ms_per_frame_per_core": base["mesh_ms_per_frame"]})
        shutil.rmtree(work)
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["speed_up"] = table.frames_per_s / table.frames_per_s.iloc[0] if len(table) else []
    table["ratio_to_floor"] = table.ms_per_frame_per_worker / table.floor_ms_per_frame_per_core
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if len(table):
        best = table.iloc[-1]
        print(f"an hour of 1080p (108000 frames) through this stage at {int(best.workers)} workers: "
              f"{108000 / best.frames_per_s / 60:.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare", type=Path, help="make the input folder here")
    ap.add_argument("--run", type=Path, help="time the stage on a prepared folder")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "animote-scale-cache")
    args = ap.parse_args()
    if not args.prepare and not args.run:
        ap.error("--prepare DIR or --run DIR")
    if args.prepare:
        prepare(args.prepare, args.cache)
    if args.run:
        run(args.run, args.workers, args.config)


if __name__ == "__main__":
    sys.exit(main())
