"""The short demo to the end on a real SLURM, beside the same run with ``--cores 2``: wall time, and
each job's overhead (the scheduler's span for it minus the time it ran, from its benchmark file).

    .venv/bin/python benchmarks/slurm.py [--workdir DIR] [--keep]

Needs root and Debian's slurmctld, slurmd, slurm-client and munge (``scripts/bootstrap.sh --tests``
installs them): it starts the same throwaway single-node SLURM as the tests (tests/slurm_cluster.py:
this machine's cores, one fake GPU), and an MLflow server as the tracking store, as on a cluster.
Both runs start from nothing (the demo recording is synthesised in each). Takes about 10 minutes
on 2 cores.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import slurm_cluster  # noqa: E402
import workspace  # noqa: E402
from helpers import SHORT_DEMO  # noqa: E402
from stages import stage_table  # noqa: E402

REPO = workspace.REPO


def job_spans(wd: Path) -> pd.DataFrame:
    """Per job of the run's Snakemake logs: its rule and the seconds from its start (a local
    job) or submission (a SLURM job) to Snakemake seeing it finished (the log's time stamps, to the
    second)."""
    rows = []
    for log in sorted((wd / ".snakemake/log").glob("*.snakemake.log")):
        rows += _spans(log.read_text())
    return pd.DataFrame(rows, columns=["rule", "span_s"])


def _spans(text: str) -> list[dict]:
    started, rows, stamp, block = {}, [], None, False
    for line in text.splitlines():
        if re.match(r"^\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]$", line):
            stamp = datetime.strptime(line[1:-1], "%a %b %d %H:%M:%S %Y")
        elif re.match(r"^(?:local)?rule \w+:$", line):
            block = True
        elif block and line.startswith("    jobid: "):
            started[int(line.split(": ", 1)[1])] = stamp
        elif m := re.match(r"^Job (\d+) has been submitted", line):
            started[int(m.group(1))] = stamp
        elif m := re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)", line):
            if int(m.group(1)) in started:
                rows.append({"rule": m.group(2), "span_s": (stamp - started[int(m.group(1))]).total_seconds()})
        if not line.startswith("    ") and not re.match(r"^(?:local)?rule \w+:$", line):
            block = False
    return rows


def summary(wd: Path) -> pd.DataFrame:
    """Per rule: jobs, mean span, mean seconds a job ran (its benchmark files), the difference."""
    spans = job_spans(wd).groupby("rule").agg(jobs=("rule", "size"), span_s=("span_s", "mean"))
    ran = stage_table(wd / "results/benchmarks").set_index("rule")
    spans["ran_s"] = ran.job_s / ran.jobs
    spans["overhead_s"] = spans.span_s - spans.ran_s
    return spans.round(1)


def _run(wd: Path, *args: str) -> float:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--configfile",
           workspace.OVERRIDE, *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {wd}:\n{proc.stderr[-4000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, help="where to run (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the two run folders")
    args = ap.parse_args()
    why = slurm_cluster.available()
    if why:
        raise SystemExit(why)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="animote-slurm-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        local = workspace.make(root / "local", SHORT_DEMO)
        local_wall = _run(local, "--cores", "2")
        print(f"--cores 2: {local_wall:.0f} s", flush=True)

        cluster = workspace.make(root / "slurm", SHORT_DEMO)
        store = root / "mlflow-server"
        uri = slurm_cluster.start_mlflow_server(store, REPO)
        overrides = yaml.safe_load((cluster / workspace.OVERRIDE).read_text())
        overrides["mlflow"] = {"tracking_uri": uri, "artifact_location": None}
        (cluster / workspace.OVERRIDE).write_text(yaml.safe_dump(overrides))
        slurm_cluster.write_profile(REPO, cluster / "profile")
        try:
            with slurm_cluster.cluster(root / "slurm-state"):
                slurm_wall = _run(cluster, "--profile", "profile")
        finally:
            slurm_cluster.stop_mlflow_server(store)
        print(f"SLURM: {slurm_wall:.0f} s", flush=True)

        tables = {"local": summary(local), "slurm": summary(cluster)}
        print("\nper rule: jobs, mean span of a job (start or submission to seen finished), mean seconds it ran "
              "(benchmark files), overhead = span - ran")
        print(pd.concat(tables, axis=1).to_string())
        for name, t in tables.items():
            timed = t.dropna(subset=["ran_s"])
            print(f"{name}: {int(t.jobs.sum())} jobs; overhead per job, weighted by jobs: "
                  f"{(timed.overhead_s * timed.jobs).sum() / timed.jobs.sum():.1f} s")
        print(f"\nwall: --cores 2 {local_wall:.0f} s, SLURM {slurm_wall:.0f} s "
              f"({slurm_wall / local_wall:.1f}x)")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
