"""Every MLflow call of animote; nothing else imports mlflow.

The layout in the tracking store:
- one experiment (``mlflow.experiment`` in the config), created once, with the store itself,
  by :func:`init_store` before any training job (several processes creating the sqlite tables
  or the same experiment by name at once race);
- a parent run per sweep (:func:`start_sweep`), closed by :func:`finish_sweep` with the sweep's
  summary table;
- a child run per experiment (:class:`ExperimentRun`), opened in the training job's own process
  with the parent's run id and the experiment id from files, never looked up by name; it logs the
  training dataset as its input (digest: the dataset hash), system metrics while training, and the
  model as an MLflow logged model (a pyfunc, :mod:`animote.mlflow_model`) with a signature and an
  input example, to which the evaluation's metrics are linked;
- the sweep's best experiment by validation loss registered (:func:`register_best`) under the
  config's model name with the alias ``best``.

The experiment is tagged as a model-training experiment (``mlflow.experimentKind``), so MLflow 3's
UI opens on its runs, not on the GenAI overview.

Offline: telemetry is off, pip requirements are given, never inferred, and nothing contacts a hub.
"""

from __future__ import annotations

import contextlib
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
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"  # MLflow 3's UI: the training view
MODEL_NAME = "model"  # the logged model's name in its run
ALIAS = "best"
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
                if con.execute("SELECT name FROM sqlite_master WHERE name='model_versions'").fetchone():
                    cur = con.execute(  # registered versions keep where their model's files are
                        "UPDATE model_versions SET storage_location = ? || substr(storage_location, ?) "
                        "WHERE substr(storage_location, 1, ?) = ?",
                        (new_uri, len(old_uri) + 1, len(old_uri) + 1, old_uri + "/"))
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
        client.set_experiment_tag(exp_id, KIND_TAG, KIND)
        log.info("tracking store %s: created experiment '%s' (id %s)", uri, experiment, exp_id)
    else:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        exp_id = exp.experiment_id
        here = str(db.resolve().parent) if db is not None else None
        if here and STORE_DIR_TAG not in exp.tags and exp.artifact_location.startswith(Path(here).as_uri() + "/"):
            client.set_experiment_tag(exp_id, STORE_DIR_TAG, here)  # a store made before the tag
        if KIND_TAG not in exp.tags:  # a store made before the kind was set
            client.set_experiment_tag(exp_id, KIND_TAG, KIND)
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

    def system_metrics(self, interval_s: float = 5.0):
        """A context that samples CPU, memory (and a GPU's, where MLflow can read one) into the run
        every ``interval_s`` seconds while it is open (MLflow's own monitor, offline)."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        run = self

        class _Monitor(contextlib.AbstractContextManager):
            def __enter__(self):
                self.monitor = SystemMetricsMonitor(run.run_id, sampling_interval=interval_s,
                                                    tracking_uri=run.parent["tracking_uri"])
                self.monitor.start()
                return self

            def __exit__(self, *exc):
                self.monitor.finish()

        return _Monitor()

    def log_dataset(self, path: str | Path, digest: str, name: str) -> None:
        """The training dataset as the run's input: its folder as the source, its content hash as
        the digest (what the runs table's Dataset column shows)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        dataset = MetaDataset(resolve_dataset_source(str(Path(path).resolve())), name=name, digest=digest)
        entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])
        _retry(lambda: self.client.log_inputs(self.run_id, [entity]), f"log dataset {self.name}")

    def log_model(self, checkpoint: str | Path, input_example, output_example, requirements: list[str]) -> str:
        """The checkpoint as this run's MLflow logged model (a pyfunc from code, the checkpoint its
        artifact), with the signature of ``input_example`` -> ``output_example`` and the explicit
        pip ``requirements``; returns the model id."""
        import mlflow
        from mlflow.models import infer_signature

        from .mlflow_model import ENTRY
        from .stagecode import module_file

        mlflow.set_tracking_uri(self.parent["tracking_uri"])
        code = module_file(ENTRY.split(":")[0])
        with mlflow.start_run(run_id=self.run_id):
            info = _retry(lambda: mlflow.pyfunc.log_model(
                name=MODEL_NAME, python_model=str(code), artifacts={"model": str(checkpoint)},
                signature=infer_signature(input_example, output_example), input_example=input_example,
                pip_requirements=requirements, tags={"animote.experiment": self.name}), f"log model {self.name}")
        log.info("experiment '%s': logged model %s", self.name, info.model_id)
        return info.model_id

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
               artifact_path: str | None = None, tags: Mapping[str, str] | None = None,
               model_id: str | None = None) -> None:
    """Add metrics (step 0, non-finite ones left out), tags and artifacts to an existing run, finished
    or not: how the evaluation stage reports into the run its experiment trained in; with
    ``model_id`` the metrics are linked to that logged model too."""
    from mlflow.entities import Metric

    client = _client(tracking_uri)
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0, model_id=model_id, run_id=run_id) if model_id else Metric(k, float(v), now, 0)
             for k, v in metrics.items() if _finite(v)]
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


def register_best(tracking_uri: str, name: str, model_id: str, tags: Mapping[str, str]) -> str:
    """Register the logged model ``model_id`` under ``name`` (created when new) and point its alias
    :data:`ALIAS` at the new version, tagged with ``tags``; returns the version."""
    import mlflow

    client = _client(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    if _retry(lambda: client.search_registered_models(f"name = '{name}'"), "find model") == []:
        _retry(lambda: client.create_registered_model(name, description="animote models; alias 'best': the "
                                                      "sweep's lowest validation loss"), "create model")
    version = _retry(lambda: client.create_model_version(name, f"models:/{model_id}", model_id=model_id,
                                                         tags={k: str(v) for k, v in tags.items()}),
                     "register model")
    _retry(lambda: client.set_registered_model_alias(name, ALIAS, version.version), "set alias")
    log.info("registered model %s version %s (@%s): %s", name, version.version, ALIAS, model_id)
    return str(version.version)


def download_model(uri: str, tracking_uri: str, dst: str | Path) -> Path:
    """The checkpoint behind an MLflow model URI (``models:/<name>@<alias>``, ``models:/<name>/<version>``,
    ``models:/<model id>``, ``runs:/<run id>/<path>``), downloaded into ``dst``: the pyfunc's
    ``model.pt`` artifact, a logged ``model.pt`` itself, or a model folder. A missing alias, model or
    run, or an unreachable server, is a ``LookupError`` of one line."""
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # animote draws its own progress
    if tracking_uri.startswith(("http://", "https://")):  # a server that does not answer: say so now, not
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # after minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                         tracking_uri=tracking_uri))
    except MlflowException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise LookupError(f"{uri} on {tracking_uri}: {first[:300]}") from None
    except OSError as exc:
        raise LookupError(f"{uri}: cannot reach {tracking_uri} ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if local.is_file():
        return local
    found = sorted(local.rglob("model.pt")) or sorted(p.parent for p in local.rglob("model.safetensors"))
    if not found:
        raise LookupError(f"{uri} holds no animote model (no model.pt or model folder)")
    return found[0]
