"""Per-stage time and memory of a finished run, from Snakemake's ``benchmark:`` files.

Run after the workflow (the demo, or your own), from the folder it ran in:

    .venv/bin/python benchmarks/stages.py                 # results/benchmarks, every rule
    .venv/bin/python benchmarks/stages.py --rules evaluate evaluate_baseline sweep_report

Prints, per rule: jobs, job-seconds (summed), the slowest job, the largest peak RSS; then the
total. Job-seconds are CPU-side wall time per job; with several cores the run's wall time is less.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def stage_table(folder: Path, rules: list[str] | None = None) -> pd.DataFrame:
    rows = []
    for rule_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if rules and rule_dir.name not in rules:
            continue
        files = sorted(rule_dir.rglob("*.tsv"))
        if not files:
            continue
        b = pd.concat([pd.read_csv(f, sep="\t").iloc[[0]] for f in files])
        rows.append({"rule": rule_dir.name, "jobs": len(files), "job_s": b["s"].sum(), "slowest_s": b["s"].max(),
                     "max_rss_MB": pd.to_numeric(b["max_rss"], errors="coerce").max()})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results", help="the run's results folder")
    ap.add_argument("--rules", nargs="*", help="only these rules")
    args = ap.parse_args()
    table = stage_table(Path(args.results) / "benchmarks", args.rules)
    if table.empty:
        raise SystemExit(f"no benchmark files under {args.results}/benchmarks: run the workflow first")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"total: {table.jobs.sum()} jobs, {table.job_s.sum():.1f} job-seconds")


if __name__ == "__main__":
    main()
