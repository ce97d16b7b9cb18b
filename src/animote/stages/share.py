"""Sharing: each experiment's checkpoint as a model folder with its card (rule ``share_model``,
:mod:`animote.share`), after its evaluation, so the card holds its test scores beside the
baselines'; and the sweep's best experiment by validation loss in the MLflow registry (rule
``register_model``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .. import tracking
from ..dataset import Dataset
from ..share import write_model_folder
from ..util import atomic_path

log = logging.getLogger(__name__)


def share_model(*, input, output, params, wildcards, **_) -> Path:
    """``input``: model (model.pt), metrics (its evaluation), baselines (their metrics, in the
    order of ``params.baselines``: labels), dataset; ``output[0]``: the folder."""
    evaluation = json.loads(Path(input.metrics).read_text())
    baselines = {label: json.loads(Path(p).read_text()) for label, p in zip(params.baselines, input.baselines)}
    folder = write_model_folder(input.model, output[0], evaluation=evaluation, baselines=baselines,
                                dataset=Dataset(input.dataset).attrs)
    size = sum(f.stat().st_size for f in Path(folder).iterdir())
    log.info("experiment '%s': model folder %s (%.1f MB; model.pt %.1f MB)", wildcards.exp, folder, size / 1e6,
             Path(input.model).stat().st_size / 1e6)
    return folder


def register_model(*, input, output, params, wildcards, **_) -> dict:
    """Register the experiment of ``params.experiments`` with the lowest validation loss (the
    training summary's ``val_loss``, at each one's best epoch; never the test split) under
    ``params.model_name`` ("{sweep}" filled in), alias ``best``, tagged with the sweep, the dataset
    hash and its validation and test metrics; write what was registered to ``output[0]``."""
    import pandas as pd

    summary = pd.read_csv(input.summary, sep="\t").set_index("experiment")
    runs = {name: json.loads(Path(p).read_text()) for name, p in zip(params.experiments, input.runs)}
    key = "val_loss" if "val_loss" in summary and summary["val_loss"].notna().any() else "train_loss"
    best = str(summary.loc[list(params.experiments), key].astype(float).idxmin())
    run = runs[best]
    test = json.loads(Path(input.evaluations[list(params.experiments).index(best)]).read_text())["summary"]
    if not run.get("model_id"):
        raise ValueError(f"experiment '{best}' logged no MLflow model (trained by an older animote?): rerun its training")
    name = params.model_name.format(sweep=wildcards.sweep)
    tags = {"animote.sweep": wildcards.sweep, "animote.experiment": best, "animote.chosen_by": key,
            "animote.dataset_hash": run["dataset_hash"], key: summary.loc[best, key],
            **{f"test_{k}": v for k, v in test.items() if k in ("r2", "lve", "loss", "lip_sync_corr")}}
    version = tracking.register_best(run["tracking_uri"], name, run["model_id"], tags)
    out = {"name": name, "version": version, "alias": tracking.ALIAS, "experiment": best, "chosen_by": key,
           key: float(summary.loc[best, key]), "model_id": run["model_id"], "run_id": run["run_id"],
           "uri": f"models:/{name}@{tracking.ALIAS}"}
    with atomic_path(output[0]) as tmp:
        Path(tmp).write_text(json.dumps(out, indent=1))
    log.info("sweep '%s': %s is the best by %s (%.4g): %s version %s", wildcards.sweep, best, key,
             out[key], name, version)
    return out
