"""The slurm profile on a real SLURM: a throwaway single-node cluster on this machine (one fake
GPU), an MLflow server as the tracking store, a short demo run to the end through the profile."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
import yaml
from helpers import REPO, snakemake

import slurm_cluster

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_jobs() -> list[dict[str, str]]:
    """Rule, state and GPU request of every job SLURM still remembers (for MinJobAge)."""
    ids = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True,
                         check=True).stdout.split()
    jobs = []
    for i in ids:
        show = subprocess.run(["scontrol", "show", "job", "-o", i], capture_output=True, text=True, check=True).stdout
        field = dict(re.findall(r"(\w+)=(\S*)", show))
        rule = re.match(r"rule_([a-z_]+?)(_wildcards_.*)?$", field.get("Comment", ""))
        jobs.append({"rule": rule.group(1) if rule else field.get("Comment", ""), "state": field.get("JobState"),
                     "gpus": field.get("TresPerJob", "")})
    return jobs


@pytest.mark.slow
def test_training_and_evaluation_on_a_real_slurm_with_an_mlflow_server(demo_run, tmp_path):
    """The short demo, preprocessed, moved to a cluster: its tracking store becomes an MLflow
    server, so training and evaluation rerun, submitted through the slurm profile to a real
    SLURM; training asks for the GPU. (A whole short demo through SLURM: see the note on
    benchmarks in the README; it takes minutes of per-job overhead on 2 cores.)"""
    why = slurm_cluster.available()
    if why:
        pytest.fail(why)
    wd = tmp_path / "wd"
    shutil.copytree(demo_run, wd, symlinks=True)  # .snakemake too: its metadata tells what changed
    port = _free_port()
    store = tmp_path / "mlflow-server"
    started = subprocess.run(["bash", str(REPO / "scripts/mlflow_server.sh"), "--store", str(store), "--port",
                              str(port), "--host", "127.0.0.1"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    uri = started.stdout.strip().splitlines()[-1]
    assert uri == f"http://127.0.0.1:{port}"
    (wd / "cluster.yaml").write_text(yaml.safe_dump({
        "mlflow": {"tracking_uri": uri, "artifact_location": None},
        "sweep": {"run": ["baseline"]}}))
    # The repository's profile, with what this cluster lacks: accounts and accounting (no sacct,
    # so squeue, which forgets a job MinJobAge = 300 s after it ends: far beyond 3 x 2 s).
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    profile.update({"slurm-no-account": True, "slurm-status-command": "squeue",
                    "slurm-init-seconds-before-status-checks": 2, "latency-wait": 5})
    (wd / "profile").mkdir()
    (wd / "profile/config.yaml").write_text(yaml.safe_dump(profile))
    try:
        with slurm_cluster.cluster(tmp_path / "slurm"):
            t = time.perf_counter()
            # to the evaluation: the sweep's tables after it are local rules, already tested elsewhere
            proc = snakemake(wd, "results/evaluate/default/baseline/metrics.json", "--profile", "profile",
                             configs=("test.yaml", "cluster.yaml"), check=False, timeout=600)
            wall = time.perf_counter() - t
            jobs = _slurm_jobs()
        assert proc.returncode == 0, proc.stderr[-6000:]
        print(f"SLURM: {len(jobs)} jobs in {wall:.0f} s: {jobs}")

        # training and evaluation went through SLURM and finished there, training with the GPU
        rules = {j["rule"] for j in jobs}
        assert rules == {"train", "evaluate"}, jobs
        assert all(j["state"] == "COMPLETED" for j in jobs), jobs
        assert all(("gpu:1" in j["gpus"]) == (j["rule"] == "train") for j in jobs), jobs
        metrics = json.loads((wd / "results/evaluate/default/baseline/metrics.json").read_text())

        # the runs are in the server's store, the checkpoint among the artifacts behind it
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("animote")
        runs = client.search_runs([exp.experiment_id])
        child = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
        assert len(child) == 1 and child[0].info.run_id == metrics["run_id"]
        assert child[0].data.metrics["test_r2"] == pytest.approx(metrics["summary"]["r2"])
        assert list((store / "artifacts").rglob("model.pt"))
    finally:
        pid = store / "server.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
