"""Benchmark: the face mesh stage against a bare MediaPipe loop, parallel throughput, memory.

    .venv/bin/python benchmarks/mesh.py                       # demo size (512²) and 1080p
    .venv/bin/python benchmarks/mesh.py --sizes 512x512       # one size only

For each frame size it synthesises a short demo (through the workflow, to chunks), then:
1. single core (the process and its ffmpeg pinned to CPU 0): ms per frame of the stage
   (``mesh_chunk``: decode through the ffmpeg pipe, FaceMesh, landmarks, Zarr store) beside a
   bare FaceMesh loop over the same frames decoded beforehand into memory;
2. frames per second with 1 and 2 stage jobs at once, and the projection to one hour of 1080p
   on 8 cores (linear in jobs, as measured from 1 to 2);
3. peak memory (the job and its ffmpeg) on a 30 s chunk and on a long one (the demo joined
   end to end, one chunk), to show it does not grow with the chunk.
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

import workspace  # benchmarks/workspace.py (run as a script, its folder is on the path)

PY = sys.executable


def workflow(wd: Path, width: int, height: int, duration: float, repeat: int, chunk_s: float) -> None:
    workspace.make(wd, {"demo": {"width": width, "height": height, "duration_s": duration},
                        "chunks": {"length_s": chunk_s, "min_length_s": 1, "export_video": False}})
    workspace.snakemake(wd, "results/demo/demo.mp4")
    if repeat > 1:
        workspace.join_demo(wd, repeat)
    workspace.snakemake(wd, "results/demo/chunks")


WORKER = r"""
import json, os, resource, sys, time
from pathlib import Path
mode, wd, cpu = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if cpu != "any":
    os.sched_setaffinity(0, {int(cpu)})
from animote.chunks import load_chunks, iter_chunk_frames
from animote.config import load
from animote.media import ProbeInfo
from animote.mesh import TrackParams, decode_size
from animote.stages.mesh import mesh_chunk
import mediapipe as mp, zarr  # imported and loaded before timing: one-off costs per job, not per frame
mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1).close()
cfg = load(wd / "config/config.yaml")
params = TrackParams.from_config(cfg)
chunk = load_chunks(wd / "results/demo/chunks")[0]
info = ProbeInfo.load(wd / "results/demo/probe.json")
out = {}
if mode.startswith("bare"):
    size = decode_size(info.width, info.height, params.max_side)
    # As the stage runs it on a one-face recording (see FaceTracker).
    fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1)
    if mode == "bare":  # frames decoded beforehand, into memory
        frames = list(iter_chunk_frames(chunk, info, size=size))
        t = time.perf_counter()
        for f in frames:
            fm.process(f)
    else:  # frames decoded as the loop goes, through the same decoder pipe
        t = time.perf_counter()
        for f in iter_chunk_frames(chunk, info, size=size):
            fm.process(f)
    out["seconds"] = time.perf_counter() - t
else:
    t = time.perf_counter()
    mesh_chunk(wd / "results/demo/chunks", chunk.chunk, wd / "results/demo/probe.json",
               wd / f"results/bench-{os.getpid()}.zarr", params=params)
    out["seconds"] = time.perf_counter() - t
out["frames"] = chunk.n_frames
out["rss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def worker(mode: str, wd: Path, cpu: str = "any") -> subprocess.Popen:
    return subprocess.Popen([PY, "-c", WORKER, mode, str(wd), cpu], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def result(proc: subprocess.Popen) -> dict:
    """Wait for a worker; its peak memory is the largest sum of RSS over it and its ffmpeg, polled."""
    import psutil

    peak = 0
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.05)
    except psutil.Error:
        pass
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode})")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_tree_mb"] = peak / 2**20
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512x512,1920x1080")
    ap.add_argument("--duration", type=float, default=30, help="demo (= chunk) length, seconds")
    ap.add_argument("--long-repeat", type=int, default=4, help="the long chunk: the demo this many times")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="animote-bench-mesh-"))
    fps1080 = None
    try:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            wd = root / size
            workflow(wd, w, h, args.duration, 1, args.duration + 5)
            bare = result(worker("bare", wd, "0"))
            stage = result(worker("stage", wd, "0"))
            free = result(worker("stage", wd))
            bare_stream = result(worker("bare_stream", wd))
            ms_bare = 1000 * bare["seconds"] / bare["frames"]
            ms_stage = 1000 * stage["seconds"] / stage["frames"]
            ms_free = 1000 * free["seconds"] / free["frames"]
            print(f"[{size}] bare FaceMesh loop over {bare['frames']} frames decoded beforehand, one core: "
                  f"{ms_bare:.2f} ms/frame")
            ms_bs = 1000 * bare_stream["seconds"] / bare_stream["frames"]
            print(f"[{size}] bare FaceMesh loop over the same frames decoded as it goes (same ffmpeg pipe): "
                  f"{ms_bs:.2f} ms/frame")
            print(f"[{size}] stage, one job, ffmpeg decoding beside it in its own process: {ms_free:.2f} ms/frame "
                  f"-> {ms_free / ms_bare:.2f} x bare, {ms_free / ms_bs:.2f} x bare with decoding")
            print(f"[{size}] stage, job and its ffmpeg pinned to one core (decode included): {ms_stage:.2f} "
                  f"ms/frame -> {ms_stage / ms_bare:.2f} x bare")
            fps = {}
            for jobs in (1, 2):
                t = time.perf_counter()
                res = [result(p) for p in [worker("stage", wd) for _ in range(jobs)]]
                wall = time.perf_counter() - t
                fps[jobs] = sum(r["frames"] for r in res) / wall
                print(f"[{size}] {jobs} parallel job(s): {fps[jobs]:.1f} frames/s in all "
                      f"({wall:.1f} s wall for {sum(r['frames'] for r in res)} frames, process start included)")
            print(f"[{size}] peak memory, {stage['frames'] / 30:.0f} s chunk: job {stage['rss_self_mb']:.0f} MB, "
                  f"job + ffmpeg {stage['peak_tree_mb']:.0f} MB")
            if (w, h) == (1920, 1080):
                fps1080 = fps
                long_wd = root / f"{size}-long"
                workflow(long_wd, w, h, args.duration, args.long_repeat, args.duration * args.long_repeat + 5)
                big = result(worker("stage", long_wd, "0"))
                print(f"[{size}] peak memory, {big['frames'] / 30:.0f} s chunk ({big['frames']} frames): job "
                      f"{big['rss_self_mb']:.0f} MB, job + ffmpeg {big['peak_tree_mb']:.0f} MB")
        if fps1080:
            per_job = fps1080[2] / 2
            hour = 3600 * 30
            print(f"projection: one hour of 1080p at 30 fps = {hour} frames; 8 parallel jobs at "
                  f"{per_job:.1f} frames/s each (measured with 2) -> {hour / (8 * per_job) / 60:.1f} min")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
