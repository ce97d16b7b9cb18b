"""Learning curve: the network against ridge and the mean as training speech grows.

    .venv/bin/python benchmarks/learning_curve.py                       # 2.5, 5, 10, 20 min on this machine
    .venv/bin/python benchmarks/learning_curve.py --minutes 2.5 5 10 20 40 60 --device cuda   # on a GPU

Builds demo recordings with disjoint text (``demo.sentence_offset``): training takes read by the
voices ``--voices`` (their minutes add up to each size of ``--minutes``), and two held-out test
recordings, the same for every size: new sentences by the training voices (``heldout_text``) and
new sentences by a voice never trained on (``heldout_voice``, ``--test-voice``). Each size runs
the workflow's preprocessing and dataset stage over its takes and the two test recordings (held out
whole: ``dataset.test_recordings``; validation chunks come from the takes), then trains the
experiments of ``--experiments`` (the default sweep's, the config's recipe), fits ridge (context
and alpha chosen on validation) and the mean, and scores every model on each test recording by
the evaluation code, with 95 % bootstrap intervals over test windows. The test split chooses
nothing.

Prints one table per test recording and writes ``learning_curve.tsv`` and ``learning_curve.png``
(test R² on offsets, LVE and lip-sync r against minutes) into ``--work``. Preprocessed recordings
are kept there, so a rerun with more sizes only adds the new takes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_RECORDINGS = ("heldout_text", "heldout_voice")
TEST_MINUTES = 5.0


def takes_plan(minutes: list[float], voices: list[str], test_voice: str, config: dict) -> list[dict]:
    """Training takes (one per step of ``minutes``) and the two test recordings, each with a
    sentence offset past every earlier one's planned sentences."""
    from animote.demo import DemoParams
    from animote.demo.speech import sentences

    n_table = len(sentences())
    plan, offset, steps = [], 0, []
    for i, m in enumerate(minutes):  # take i brings the training speech from minutes[i - 1] to m
        steps.append((f"take{i + 1:02d}", m - (minutes[i - 1] if i else 0.0), voices))
    steps += [("heldout_text", TEST_MINUTES, voices), ("heldout_voice", TEST_MINUTES, [test_voice])]
    for name, mins, vs in steps:
        demo = {**config["demo"], "duration_s": mins * 60, "voices": list(vs), "sentence_offset": offset,
                "seed": config["demo"]["seed"] + len(plan)}
        rows, _, _ = DemoParams.from_config({"demo": demo}).plan(n_table)
        plan.append({"name": name, "minutes": mins, "demo": demo})
        offset = rows.stop
    if offset > n_table:
        raise SystemExit(f"{sum(p['minutes'] for p in plan):g} minutes need more sentences than the table's {n_table}")
    return plan


def make_takes(work: Path, plan: list[dict]) -> None:
    from animote.demo import DemoParams, make_demo

    for p in plan:
        folder = work / "takes"
        folder.mkdir(parents=True, exist_ok=True)
        video = folder / f"{p['name']}.mp4"
        if video.exists():
            continue
        t0 = time.perf_counter()
        make_demo(video, folder / f"{p['name']}.truth.tsv", folder / f"{p['name']}.events.json",
                  DemoParams.from_config({"demo": p["demo"]}))
        print(f"  {p['name']}: {p['minutes']:g} min, voices {','.join(p['demo']['voices'])}, sentences from "
              f"{p['demo']['sentence_offset']}: made in {time.perf_counter() - t0:.0f} s", flush=True)


def prepare(work: Path, plan: list[dict], n_takes: int, cores: int) -> Path:
    """The dataset of the first ``n_takes`` takes and the test recordings (the workflow's own
    preprocessing and dataset stage); returns its copy under ``work/datasets``."""
    names = [p["name"] for p in plan[:n_takes]] + list(TEST_RECORDINGS)
    out = work / "datasets" / f"{n_takes:02d}.zarr"
    if out.exists():
        return out
    (work / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "config.yaml", work / "config" / "config.yaml")
    (work / "config" / "recordings.tsv").write_text(
        "id\tpath\tneutral\n" + "".join(f"{n}\ttakes/{n}.mp4\t\n" for n in names))
    (work / "curve.yaml").write_text(yaml.safe_dump({"dataset": {
        "split": {"train": 0.85, "validation": 0.15, "test": 0.0}, "test_recordings": list(TEST_RECORDINGS)}}))
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "snakemake"), "results/dataset/dataset.zarr", "-s",
                    str(REPO / "workflow" / "Snakefile"), "--configfile", "curve.yaml", "--cores", str(cores),
                    "--quiet", "all"], cwd=work, check=True)
    out.parent.mkdir(exist_ok=True)
    shutil.copytree(work / "results" / "dataset" / "dataset.zarr", out)
    print(f"  dataset of {n_takes} take(s) + tests: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[2.5, 5, 10, 20])
    ap.add_argument("--voices", nargs="+", default=["slt", "kal"])
    ap.add_argument("--test-voice", default="ked")
    ap.add_argument("--work", type=Path, default=Path("/tmp/animote-learning-curve"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--stage", choices=["prepare", "all"], default="all")
    ap.add_argument("--experiments", nargs="+", default=["baseline", "seed"],
                    help="experiments of the config's default sweep to train at every size")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (the maximum)")
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args()
    minutes = sorted(args.minutes)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    plan = takes_plan(minutes, args.voices, args.test_voice, config)
    args.work.mkdir(parents=True, exist_ok=True)
    print("recordings: " + ", ".join(f"{p['name']} {p['minutes']:g} min" for p in plan), flush=True)
    make_takes(args.work, plan)
    datasets = {}
    for k, m in enumerate(minutes, start=1):
        t0 = time.perf_counter()
        datasets[m] = prepare(args.work, plan, k, args.cores)
        (args.work / "datasets" / f"{k:02d}.seconds").write_text(f"{time.perf_counter() - t0:.1f}")
    if args.stage == "prepare":
        return
    from curve_models import run_curve  # benchmarks/curve_models.py

    run_curve(args, config, datasets)


if __name__ == "__main__":
    main()
