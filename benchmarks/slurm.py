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
import os
import re
import shutil
import signal
import socket
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

REPO = workspace.REPO


def job_spans(wd: Path) -> pd.DataFrame:
    """Per job of the run's newest Snakemake log: rule, seconds from its start (local) or
    submission (SLURM) to Snakemake seeing it finished, and the seconds its benchmark file gives."""
    log = max((wd / ".snakemake/log").glob("*.snakemake.log"))
    started, rules, bench, rows = {}, {}, {}, []
    stamp, block = None, None
    for line in log.read_text().splitlines():
        if re.match(r"^\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]$", line):
            stamp = datetime.strptime(line[1:-1], "%a %b %d %H:%M:%S %Y")
            continue
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            block = {"rule": m.group(1), "start": stamp}
            continue
        if block is not None:
            if line.startswith("    benchmark: "):
                block["benchmark"] = line.split(": ", 1)[1]
            elif line.startswith("    jobid: "):
                jid = int(line.split(": ", 1)[1])
                started[jid], rules[jid], bench[jid] = block["start"], block["rule"], block.get("benchmark")
            elif not line.startswith("    "):
                block = None
        m = re.match(r"^Finished jobid: (\d+)", line)
        if m and int(m.group(1)) in started:
            jid = int(m.group(1))
            ran = None
            if bench[jid] and (wd / bench[jid]).exists():
                ran = float(pd.read_csv(wd / bench[jid], sep="\t")["s"].iloc[0])
            rows.append({"rule": rules[jid], "span_s": (stamp - started[jid]).total_seconds(), "ran_s": ran})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    timed = df.dropna(subset=["ran_s"]).assign(overhead_s=lambda d: d.span_s - d.ran_s)
    return timed.groupby("rule").agg(jobs=("rule", "size"), ran_s=("ran_s", "mean"),
                                     overhead_s=("overhead_s", "mean")).round(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        out = subprocess.run(["bash", str(REPO / "scripts/mlflow_server.sh"), "--store", str(store), "--port",
                              str(_free_port()), "--host", "127.0.0.1"], capture_output=True, text=True, check=True)
        uri = out.stdout.strip().splitlines()[-1]
        overrides = yaml.safe_load((cluster / workspace.OVERRIDE).read_text())
        overrides["mlflow"] = {"tracking_uri": uri, "artifact_location": None}
        (cluster / workspace.OVERRIDE).write_text(yaml.safe_dump(overrides))
        profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
        # what this throwaway cluster lacks: accounts and accounting (see tests/test_slurm.py)
        profile.update({"slurm-no-account": True, "slurm-status-command": "squeue",
                        "slurm-init-seconds-before-status-checks": 2, "latency-wait": 5})
        (cluster / "profile").mkdir()
        (cluster / "profile/config.yaml").write_text(yaml.safe_dump(profile))
        try:
            with slurm_cluster.cluster(root / "slurm-state"):
                slurm_wall = _run(cluster, "--profile", "profile")
        finally:
            pid = store / "server.pid"
            if pid.exists():
                try:
                    os.kill(int(pid.read_text()), signal.SIGTERM)
                except ProcessLookupError:
                    pass
        print(f"SLURM: {slurm_wall:.0f} s", flush=True)

        spans = {"local": job_spans(local), "slurm": job_spans(cluster)}
        table = pd.concat({k: summary(v) for k, v in spans.items()}, axis=1)
        print("\nper rule: jobs, mean seconds a job ran, mean overhead per job (span - ran)")
        print(table.to_string())
        for name, df in spans.items():
            timed = df.dropna(subset=["ran_s"])
            print(f"{name}: {len(df)} jobs, {len(timed)} with benchmark files; overhead per job: mean "
                  f"{(timed.span_s - timed.ran_s).mean():.1f} s, median {(timed.span_s - timed.ran_s).median():.1f} s")
        print(f"\nwall: --cores 2 {local_wall:.0f} s, SLURM {slurm_wall:.0f} s "
              f"({slurm_wall / local_wall:.1f}x)")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
