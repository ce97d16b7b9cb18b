"""MLflow through animote.tracking: a real sqlite store, several writer processes at once."""

import json
import subprocess
import sys

import pytest

from animote import tracking


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating its tables takes seconds)."""
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp}/mlflow/mlflow.db"
    exp_id = tracking.init_store(uri, "unit", str(tmp / "artifacts"), tmp / "experiment.json")
    return tmp, uri, exp_id


def test_init_store_is_idempotent(store):
    tmp, uri, exp_id = store
    again = tracking.init_store(uri, "unit", str(tmp / "artifacts"), tmp / "again.json")
    assert again == exp_id
    assert json.loads((tmp / "again.json").read_text()) == {"tracking_uri": uri, "experiment": "unit",
                                                           "experiment_id": exp_id}


CHILD = """
import sys
from animote import tracking
parent, name = sys.argv[1], sys.argv[2]
with tracking.ExperimentRun(parent, name, {"lr": 0.001, "model.heads": 2}, {"animote.code_version": "t"}) as run:
    for epoch in range(1, 16):
        run.log_epoch({"train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch, "val_r2": float("nan") if epoch == 3
                       else 1 - 1.0 / epoch}, step=epoch)
    run.log_artifact(sys.argv[3])
print(run.run_id)
"""


def test_parallel_children_under_one_parent(store, tmp_path):
    root, uri, exp_id = store
    parent_id = tracking.start_sweep(root / "experiment.json", "unit-sweep", tmp_path / "parent.json")
    artifact = tmp_path / "note.txt"
    artifact.write_text("hello")
    names = [f"exp{i}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "parent.json"), n, str(artifact)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in names]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    tracking.finish_sweep(tmp_path / "parent.json", names, {"exp0.val_loss": 0.1, "bad": float("nan")}, [artifact])
    runs = [r for r in tracking.sweep_runs(uri, exp_id) if r["run_id"] == parent_id or r["parent"] == parent_id]
    parents = [r for r in runs if r["kind"] == "sweep"]
    children = [r for r in runs if r["kind"] == "experiment"]
    assert [p["run_id"] for p in parents] == [parent_id] and parents[0]["status"] == "FINISHED"
    assert "bad" not in parents[0]["metrics"] and parents[0]["metrics"]["exp0.val_loss"] == 0.1
    assert sorted(c["name"] for c in children) == names
    for c in children:
        assert c["parent"] == parent_id and c["status"] == "FINISHED"
        assert c["steps"] == {"train_loss": 15, "val_loss": 15, "val_r2": 14}  # the NaN was not logged
        assert c["params"] == {"lr": "0.001", "model.heads": "2"} and c["artifacts"] == ["note.txt"]


def test_a_failing_block_marks_the_run_failed(store, tmp_path):
    root, uri, exp_id = store
    parent_id = tracking.start_sweep(root / "experiment.json", "s", tmp_path / "parent.json")
    try:
        with tracking.ExperimentRun(tmp_path / "parent.json", "boom", {}, {}):
            raise RuntimeError("diverged")
    except RuntimeError:
        pass
    (child,) = [r for r in tracking.sweep_runs(uri, exp_id) if r["parent"] == parent_id]
    assert child["status"] == "FAILED"


MOVED = """
import sys
from animote import tracking
uri, run_id, note = sys.argv[1], sys.argv[2], sys.argv[3]
tracking.log_to_run(uri, run_id, {"test_r2": 0.5}, [note])
from mlflow.tracking import MlflowClient
print(MlflowClient(tracking_uri=uri).get_run(run_id).info.artifact_uri)
"""


MADE = """
import sys
from animote import tracking
uri, note = sys.argv[1], sys.argv[2]
tracking.init_store(uri, "unit", "results/mlflow/artifacts", "results/mlflow/experiment.json")
tracking.start_sweep("results/mlflow/experiment.json", "s", "results/mlflow/parent.json")
with tracking.ExperimentRun("results/mlflow/parent.json", "e", {}, {}) as run:
    run.log_artifact(note)
print(run.run_id)
"""


def test_a_moved_store_keeps_its_artifacts_beside_it(tmp_path):
    """Relocatable results: a sqlite store made in one folder, copied to another, logs its new
    artifacts in the new folder (MLflow itself records absolute artifact URIs). Each part runs in
    a process of its own, as the jobs do (MLflow caches a store by its URI, relative or not)."""
    import shutil

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    uri = "sqlite:///results/mlflow/mlflow.db"  # relative, as in the config
    note = tmp_path / "note.txt"
    note.write_text("hello")
    made = subprocess.run([sys.executable, "-c", MADE, uri, str(note)], cwd=old, capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    run_id = made.stdout.strip().splitlines()[-1]
    shutil.copytree(old, new)
    shutil.rmtree(old / "results/mlflow/artifacts")  # nothing may be written back there
    later = tmp_path / "later.txt"
    later.write_text("logged after the move")
    proc = subprocess.run([sys.executable, "-c", MOVED, uri, run_id, str(later)], cwd=new,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    artifact_uri = proc.stdout.strip().splitlines()[-1]
    assert artifact_uri.startswith((new / "results/mlflow/artifacts").as_uri() + "/"), artifact_uri
    assert "was moved from" in proc.stderr
    assert [p.parent for p in (new / "results/mlflow/artifacts").rglob("later.txt")] == \
        [p.parent for p in (new / "results/mlflow/artifacts").rglob("note.txt")]
    assert not (old / "results/mlflow/artifacts").exists()
    import sqlite3

    con = sqlite3.connect(new / "results/mlflow/mlflow.db")
    locations = con.execute("SELECT artifact_location FROM experiments WHERE name='unit' UNION ALL "
                            "SELECT artifact_uri FROM runs").fetchall()
    assert len(locations) == 3 and all(str(new) in loc and str(old) not in loc for (loc,) in locations)
