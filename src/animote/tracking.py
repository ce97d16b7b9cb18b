"""Every MLflow call of animote; nothing else imports mlflow.

The layout in the tracking store:
- one experiment (``mlflow.experiment`` in the config), created once, with the store itself,
  by :func:`init_store` before any training job (several processes creating the sqlite tables
  or the same experiment by name at once race);
- a parent run per sweep (:func:`start_sweep`), closed by :func:`finish_sweep` with the sweep's
  summary table;
- a child run per experiment (:class:`ExperimentRun`), opened in the training job's own process
  with the parent's run id and the experiment id from files, never looked up by name.

Offline: telemetry is off, and nothing infers pip requirements (checkpoints are plain artifacts).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger(__name__)
T = TypeVar("T")

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000


STORE_DIR_TAG = "animote.store_dir"  # where the sqlite store was when its experiment was made
_followed: set[str] = set()


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    db = _sqlite_path(uri)
    if db is not None and uri not in _followed and db.exists():
        follow_move(db)
        _followed.add(uri)
    return MlflowClient(tracking_uri=uri)


def follow_move(db: str | Path) -> int:
    """MLflow records absolute artifact URIs in a sqlite store. When the store (a results/ folder)
    has been moved or copied, point the artifact URIs that were inside the old store folder at the
    same place inside this one, so new runs and artifacts land beside the store, not back in the
    old folder. Returns the number of rows rewritten (0 when the store has not moved)."""
    import sqlite3

    here = str(Path(db).resolve().parent)
    con = sqlite3.connect(str(db), timeout=60)
    try:
        if not con.execute("SELECT name FROM sqlite_master WHERE name='experiment_tags'").fetchone():
            return 0
        query = "SELECT experiment_id, value FROM experiment_tags WHERE key=? AND value<>?"
        if not con.execute(query, (STORE_DIR_TAG, here)).fetchall():
            return 0
        changed = 0
        with con:
            con.execute("BEGIN IMMEDIATE")  # one job rewrites; the others then find nothing to do
            for exp_id, old in con.execute(query, (STORE_DIR_TAG, here)).fetchall():
                old_uri, new_uri = Path(old).as_uri(), Path(here).as_uri()
                for table, column, key in (("experiments", "artifact_location", "experiment_id"),
                                           ("runs", "artifact_uri", "experiment_id"),
                                           ("logged_models", "artifact_location", "experiment_id")):
                    cur = con.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE {key} = ? AND ({column} = ? OR substr({column}, 1, ?) = ?)",
                        (new_uri, len(old_uri) + 1, exp_id, old_uri, len(old_uri) + 1, old_uri + "/"))
                    changed += cur.rowcount
                con.execute("UPDATE experiment_tags SET value=? WHERE experiment_id=? AND key=?",
                            (here, exp_id, STORE_DIR_TAG))
                log.warning("the tracking store %s was moved from %s: %d artifact locations now point inside "
                            "it", db, old, changed)
        return changed
    finally:
        con.close()


def _retry(call: Callable[[], T], what: str, tries: int = 8) -> T:
    """sqlite allows one writer at a time: retry a write that finds the database locked."""
    for i in range(tries):
        try:
            return call()
        except Exception as exc:  # mlflow wraps sqlalchemy's OperationalError in MlflowException
            if "database is locked" not in str(exc) or i == tries - 1:
                raise
            delay = 0.2 * 2 ** i
            log.warning("%s: the tracking store is locked by another job; retrying in %.1f s", what, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def init_store(uri: str, experiment: str, artifact_location: str | None, out_json: str | Path) -> str:
    """Create (or migrate) the tracking store and the experiment, once, before any job writes to
    it; write ``{tracking_uri, experiment, experiment_id}`` to ``out_json``. Returns the id."""
    from .util import atomic_path

    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        if db.exists():  # a store written by an older MLflow: migrate its schema (a no-op when current)
            import subprocess
            import sys

            proc = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", uri], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"cannot upgrade the MLflow store {db}: {proc.stderr.strip()[-500:]}")
    client = _client(uri)  # a new sqlite store creates its tables here
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = None
        if artifact_location:
            Path(artifact_location).mkdir(parents=True, exist_ok=True)
            location = Path(artifact_location).resolve().as_uri()
        exp_id = client.create_experiment(experiment, artifact_location=location)
        if db is not None:
            client.set_experiment_tag(exp_id, STORE_DIR_TAG, str(db.resolve().parent))
        log.info("tracking store %s: created experiment '%s' (id %s)", uri, experiment, exp_id)
    else:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        exp_id = exp.experiment_id
        here = str(db.resolve().parent) if db is not None else None
        if here and STORE_DIR_TAG not in exp.tags and exp.artifact_location.startswith(Path(here).as_uri() + "/"):
            client.set_experiment_tag(exp_id, STORE_DIR_TAG, here)  # a store made before the tag
        log.info("tracking store %s: experiment '%s' exists (id %s)", uri, experiment, exp_id)
    info = {"tracking_uri": uri, "experiment": experiment, "experiment_id": str(exp_id)}
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1))
    return str(exp_id)


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def start_sweep(store_json: str | Path, sweep: str, out_json: str | Path) -> str:
    """Open the sweep's parent run; write ``{run_id, ...}`` to ``out_json``. Returns the run id."""
    from .util import atomic_path, git_commit

    store = read_json(store_json)
    client = _client(store["tracking_uri"])
    tags = {"animote.kind": "sweep", "animote.sweep": sweep}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    run = _retry(lambda: client.create_run(store["experiment_id"], run_name=f"sweep {sweep}", tags=tags),
                 "start sweep")
    info = dict(store, run_id=run.info.run_id, sweep=sweep)
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1))
    log.info("sweep '%s': parent run %s", sweep, run.info.run_id)
    return run.info.run_id


def finish_sweep(parent_json: str | Path, experiments: list[str], summary: Mapping[str, float],
                 artifacts: list) -> None:
    """Log the sweep's experiments, summary metrics and tables into its parent run and close it."""
    from mlflow.entities import Metric

    info = read_json(parent_json)
    client = _client(info["tracking_uri"])
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if _finite(v)]
    _retry(lambda: client.set_tag(info["run_id"], "animote.experiments", ",".join(experiments)), "tag sweep")
    _retry(lambda: client.log_batch(info["run_id"], metrics=metrics), "log sweep summary")
    for path in artifacts:
        _retry(lambda: client.log_artifact(info["run_id"], str(path)), "log sweep artifact")
    _retry(lambda: client.set_terminated(info["run_id"], "FINISHED"), "finish sweep")


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


class ExperimentRun:
    """A child run of the sweep for one experiment, in the training job's process::

        with ExperimentRun(parent_json, "recipe", params, tags) as run:
            run.log_epoch({"train_loss": ...}, step=epoch)
            run.log_artifact(path)

    Ends FINISHED, or FAILED when the block raises."""

    def __init__(self, parent_json: str | Path, name: str, params: Mapping[str, Any], tags: Mapping[str, str]):
        self.parent = read_json(parent_json)
        self.name = name
        self.params = dict(params)
        self.tags = dict(tags)
        self.client = _client(self.parent["tracking_uri"])
        self.run_id: str | None = None

    def __enter__(self) -> ExperimentRun:
        from mlflow.entities import Param

        tags = {PARENT_TAG: self.parent["run_id"], "animote.kind": "experiment",
                "animote.sweep": self.parent["sweep"], "animote.experiment": self.name, **self.tags}
        run = _retry(lambda: self.client.create_run(self.parent["experiment_id"], run_name=self.name, tags=tags),
                     f"start run {self.name}")
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(self.params.items())]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            _retry(lambda: self.client.log_batch(self.run_id, params=params[i:i + 100]), f"log params {self.name}")
        log.info("experiment '%s': MLflow run %s (parent %s)", self.name, self.run_id, self.parent["run_id"])
        return self

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        """Per-epoch metrics with ``step``; a NaN or infinite value is never logged."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, int(step)) for k, v in metrics.items() if _finite(v)]
        skipped = [k for k, v in metrics.items() if not _finite(v)]
        if skipped:
            log.warning("experiment '%s' step %d: not logging non-finite %s", self.name, step, ", ".join(skipped))
        if batch:
            _retry(lambda: self.client.log_batch(self.run_id, metrics=batch), f"log metrics {self.name}")

    def log_artifact(self, path: str | Path) -> None:
        _retry(lambda: self.client.log_artifact(self.run_id, str(path)), f"log artifact {self.name}")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            _retry(lambda: self.client.set_tag(self.run_id, k, str(v)), f"tag {self.name}")

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.run_id:
            status = "FINISHED" if exc_type is None else "FAILED"
            _retry(lambda: self.client.set_terminated(self.run_id, status), f"end run {self.name}")


def sweep_runs(uri: str, experiment_id: str) -> list[dict]:
    """Every run of the experiment as plain dicts (id, name, parent, status, params, latest metrics,
    and each metric's history length): what a user or a test sees through the client."""
    client = _client(uri)
    out = []
    for run in client.search_runs([experiment_id], max_results=10000):
        history = {k: len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics}
        out.append({"run_id": run.info.run_id, "name": run.info.run_name, "status": run.info.status,
                    "parent": run.data.tags.get(PARENT_TAG), "kind": run.data.tags.get("animote.kind"),
                    "params": dict(run.data.params), "metrics": dict(run.data.metrics), "steps": history,
                    "artifacts": [a.path for a in client.list_artifacts(run.info.run_id)]})
    return out


def log_to_run(tracking_uri: str, run_id: str, metrics: Mapping[str, float], artifacts: list,
               artifact_path: str | None = None, tags: Mapping[str, str] | None = None) -> None:
    """Add metrics (step 0, non-finite ones left out), tags and artifacts to an existing run, finished
    or not: how the evaluation stage reports into the run its experiment trained in."""
    from mlflow.entities import Metric

    client = _client(tracking_uri)
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if _finite(v)]
    for i in range(0, len(batch), 500):
        _retry(lambda: client.log_batch(run_id, metrics=batch[i:i + 500]), f"log metrics {run_id}")
    for k, v in (tags or {}).items():
        _retry(lambda: client.set_tag(run_id, k, str(v)), f"tag {run_id}")
    for path in artifacts:
        if Path(path).is_dir():
            _retry(lambda: client.log_artifacts(run_id, str(path), Path(path).name if artifact_path is None
                                                else f"{artifact_path}/{Path(path).name}"), f"log {path}")
        else:
            _retry(lambda: client.log_artifact(run_id, str(path), artifact_path), f"log {path}")
