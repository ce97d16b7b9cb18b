"""Benchmark: the workflow on a synthesised demo through chunking, per stage.

Prints the wall time of the whole run and each stage's time from Snakemake's
``benchmark:`` files, as seconds of work per minute of input, and what that
projects to for one hour of input. Run from the repository root:

    .venv/bin/python benchmarks/preprocess.py                      # the default demo (512², ~3 min)
    .venv/bin/python benchmarks/preprocess.py --width 1920 --height 1080 --duration 60
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import workspace  # benchmarks/workspace.py (run as a script, its folder is on the path)

STAGES = ["demo_recording", "probe", "remove_claps", "clap_picture", "split_chunks"]  # demo_recording: the synthesis alone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None, help="demo length in seconds")
    ap.add_argument("--repeat", type=int, default=1,
                    help="preprocess the demo joined end to end this many times (stream copy): a long input "
                         "without a long synthesis")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder and print its path")
    args = ap.parse_args()

    demo = {k: v for k, v in (("width", args.width), ("height", args.height), ("duration_s", args.duration)) if v}
    wd = workspace.make(Path(tempfile.mkdtemp(prefix="animote-bench-")) / "wf", {"demo": demo})

    t0 = time.perf_counter()
    workspace.snakemake(wd, "results/demo/demo.mp4", cores=args.cores)
    t1 = time.perf_counter()
    if args.repeat > 1:
        workspace.join_demo(wd, args.repeat)
        t1 = time.perf_counter()
    workspace.snakemake(wd, "results/report/preprocess.tsv", "results/demo/claps.png", cores=args.cores)
    t2 = time.perf_counter()

    report = pd.read_csv(wd / "results/report/preprocess.tsv", sep="\t").iloc[0]
    minutes = float(report["minutes"])
    rows = []
    for stage in STAGES:
        b = pd.read_csv(wd / f"results/benchmarks/{stage}/demo.tsv", sep="\t").iloc[0]
        input_min = minutes / args.repeat if stage == "demo_recording" else minutes  # synthesised once
        rows.append({"stage": stage, "seconds": b["s"], "max_rss_MB": b["max_rss"],
                     "s_per_input_min": b["s"] / input_min, "s_per_input_hour": 60 * b["s"] / input_min})
    table = pd.DataFrame(rows)
    pre = table[table.stage != "demo_recording"]
    print(f"input: {args.width or 'default'}x{args.height or 'default'}, {minutes:.2f} min, "
          f"{int(report['raw_frames'])} frames, {int(report['claps'])} claps, {int(report['chunks'])} chunks")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"wall: demo synthesis {t1 - t0:.1f} s; preprocessing through chunking {t2 - t1:.1f} s "
          f"(snakemake overhead included) = {(t2 - t1) / minutes:.2f} s per input minute")
    print(f"stages sum: {pre.seconds.sum() / minutes:.2f} s per input minute -> "
          f"{60 * pre.seconds.sum() / minutes:.1f} s for one hour of input (serial per recording)")
    if args.keep:
        print("kept:", wd)
    else:
        shutil.rmtree(wd.parent)


if __name__ == "__main__":
    main()
