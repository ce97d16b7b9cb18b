"""The slurm profile on a real SLURM: a throwaway single-node cluster on this machine (one fake
GPU), an MLflow server as the tracking store, a short demo run to the end through the profile."""

import json

import pytest


@pytest.mark.slow
def test_training_and_evaluation_on_a_real_slurm_with_an_mlflow_server(slurm_demo):
    """The short demo, preprocessed, moved to a cluster: its tracking store becomes an MLflow
    server, so training and evaluation rerun, submitted through the slurm profile to a real
    SLURM; training asks for the GPU (tests/slurm_cluster.py: DemoOnSlurm; it starts as soon as
    the short demo is finished and runs beside the other tests). A whole short demo through
    SLURM: benchmarks/slurm.py."""
    run = slurm_demo.wait()
    proc, jobs = run["proc"], run["jobs"]
    assert proc.returncode == 0, proc.stderr[-6000:]
    print(f"SLURM: {len(jobs)} jobs in {run['wall']:.0f} s: {jobs}")

    # training and evaluation went through SLURM and finished there, training with the GPU
    rules = {j["rule"] for j in jobs}
    assert rules == {"train", "evaluate"}, jobs
    assert all(j["state"] == "COMPLETED" for j in jobs), jobs
    assert all(("gpu:1" in j["gpus"]) == (j["rule"] == "train") for j in jobs), jobs
    metrics = json.loads((slurm_demo.wd / slurm_demo.TARGET).read_text())

    # the runs are in the server's store, the checkpoint among the artifacts behind it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(slurm_demo.uri)
    exp = client.get_experiment_by_name("animote")
    runs = client.search_runs([exp.experiment_id])
    child = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(child) == 1 and child[0].info.run_id == metrics["run_id"]
    assert child[0].data.metrics["test_r2"] == pytest.approx(metrics["summary"]["r2"])
    assert list((slurm_demo.store / "artifacts").rglob("model.pt"))

