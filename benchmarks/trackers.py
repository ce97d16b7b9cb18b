"""The landmark stage with each tracker (mesh.tracker): FaceMesh against the Face Landmarker.

    .venv/bin/python benchmarks/trackers.py                      # 448x448 and 1920x1080, 20 s each
    .venv/bin/python benchmarks/trackers.py --sizes 448x448 --duration 10

For each size it synthesises a demo (through the workflow, to one chunk), then runs the stage's
chunk job (``mesh_chunk``: decode through the ffmpeg pipe, the tracker, the store) once per
tracker, each in a fresh process pinned to one core with its ffmpeg, and prints ms per frame of
the whole job and of the tracker's calls alone (the floor the decode and the store add to).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import workspace  # benchmarks/workspace.py (run as a script, its folder is on the path)

CHILD = r"""
import json, os, sys, time
from pathlib import Path
os.sched_setaffinity(0, {0})
from animote.chunks import load_chunks
from animote.mesh import TrackParams
from animote.stages.mesh import mesh_chunk
from animote.store import read_store
wd, tracker, max_side = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
params = TrackParams(max_side=max_side, max_faces=1, min_detection_confidence=0.5, min_tracking_confidence=0.5,
                     decode_threads=1, tracker=tracker)
chunk = load_chunks(wd / "results/demo/chunks")[0]
t = time.perf_counter()
attrs = mesh_chunk(wd / "results/demo/chunks", chunk.chunk, wd / "results/demo/probe.json", wd / f"{tracker}.zarr",
                   params=params)
wall = time.perf_counter() - t
print(json.dumps({"frames": chunk.n_frames, "ms_job": 1000 * wall / chunk.n_frames, "ms_stage": attrs["ms_per_frame"],
                  "ms_model": attrs["ms_per_frame_model"], "face": attrs["face_found_share"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="448x448,1920x1080")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--max-side", type=int, default=640, help="frames decoded at this longer side (mesh.tracking."
                                                                   "max_side; the default config's 640)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="animote-bench-trackers-"))
    try:
        print("| size | tracker | frames | stage ms/frame | tracker alone ms/frame | landmarker / facemesh |")
        print("| --- | --- | --- | --- | --- | --- |")
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            wd = root / size
            workspace.make(wd, {"demo": {"width": w, "height": h, "duration_s": args.duration, "n_claps": 1},
                                "chunks": {"length_s": args.duration + 30, "min_length_s": 1}})
            workspace.snakemake(wd, "results/demo/chunks")
            res = {}
            for tracker in ("facemesh", "landmarker"):
                out = subprocess.run([sys.executable, "-c", CHILD, str(wd), tracker, str(args.max_side)], capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(out.stderr[-3000:])
                res[tracker] = json.loads(out.stdout.strip().splitlines()[-1])
            for tracker, r in res.items():
                ratio = r["ms_stage"] / res["facemesh"]["ms_stage"]
                print(f"| {size} | {tracker} | {r['frames']} | {r['ms_stage']:.2f} | {r['ms_model']:.2f} | "
                      f"{ratio:.2f} |", flush=True)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
