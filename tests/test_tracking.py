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
