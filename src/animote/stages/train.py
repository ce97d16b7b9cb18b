"""Training, on file paths: the tracking store (rule ``tracking_store``), the sweep's parent run
(``sweep_run``), one experiment's training job (``train``) and the sweep summary
(``sweep_summary``). One function per rule, named like it (:mod:`animote.stages`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd

from .. import tracking
from ..dataset import Dataset
from ..predict import Predictor
from ..render import loss_curves
from ..train import TrainConfig, fit, flatten, save_checkpoint
from ..util import atomic_path, git_commit

log = logging.getLogger(__name__)


def tracking_store(*, output, params, **_) -> str:
    """Create the tracking store and the experiment once (``params.mlflow``), before any training job."""
    mlflow_config = params.mlflow
    return tracking.init_store(mlflow_config["tracking_uri"], mlflow_config["experiment"],
                               mlflow_config["artifact_location"], output[0])


def sweep_run(*, input, output, wildcards, **_) -> str:
    """Open the sweep's parent run. Its experiments are not its parameters, so that adding or
    editing one does not start a new parent run (and retrain the others)."""
    return tracking.start_sweep(input[0], wildcards.sweep, output[0])


def train(*, input, output, params, wildcards, **_) -> dict:
    """Train experiment ``wildcards.exp`` (its full training config ``params.train``) in its own
    MLflow child run under ``input.parent``; write the best checkpoint (``output.model``), the run
    id (``output.run``), the per-epoch history and the loss plot. Returns the best epoch's metrics."""
    name, parent_json = wildcards.exp, input.parent
    out_model, out_history, out_plot = output.model, output.history, output.plot
    cfg = TrainConfig.from_dict(params.train)
    dataset = Dataset(input.dataset)
    params = {**flatten(cfg.to_dict()), "dataset_hash": dataset.hash,
              **{f"features.{r}": dataset.roles[r]["cache_key"] for r in cfg.roles}}
    from .. import __version__

    tags = {"animote.code_version": __version__, "animote.dataset_hash": dataset.hash,
            "mlflow.source.name": f"animote {__version__}: train {wildcards.sweep}/{name}", "mlflow.source.type": "LOCAL"}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    with tracking.ExperimentRun(parent_json, name, params, tags) as run:
        run.log_dataset(input.dataset, dataset.hash, f"dataset {dataset.hash}")
        with run.system_metrics():
            result = fit(dataset, cfg, on_epoch=lambda row: run.log_epoch(row, step=int(row["epoch"])))
        summary = {"best_epoch": result.best_epoch,
                   **{f"best_{k}": v for k, v in result.best.items() if k != "epoch"},
                   **{f"val_mean_offset_{k}": v for k, v in result.baseline.items()}}
        run.log_epoch(summary, step=result.best_epoch)
        run.set_tags({"animote.device": result.device, "animote.amp": result.amp_dtype or "off"})
        ckpt = save_checkpoint(out_model, result.model, cfg, dataset,
                        {"experiment": name, "run_id": run.run_id, "best_epoch": result.best_epoch,
                         "metrics": {k: float(v) for k, v in result.best.items()}})
        with atomic_path(out_history) as tmp:
            pd.DataFrame(result.history).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        loss_curves(result.history, out_plot, f"{name}: loss per epoch", result.baseline.get("loss"))
        for path in (out_model, out_history, out_plot):
            run.log_artifact(path)
        t_model = time.perf_counter()
        model_id = run.log_model(out_model, *model_example(Predictor(result.model, ckpt), dataset), requirements())
        log.info("experiment '%s': the MLflow logged model took %.1f s", name, time.perf_counter() - t_model)
        info = {"run_id": run.run_id, "model_id": model_id, "dataset_hash": dataset.hash, "experiment": name, "parent_run_id": run.parent["run_id"],
                "tracking_uri": run.parent["tracking_uri"], "experiment_id": run.parent["experiment_id"],
                "best_epoch": result.best_epoch, "device": result.device, "amp": result.amp_dtype,
                "best": result.best, "val_mean_offset": result.baseline}
    with atomic_path(output.run) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1))
    log.info("experiment '%s': best epoch %d of %d, %s; mean-offset baseline: %s", name, result.best_epoch,
             cfg.epochs, ", ".join(f"{k} {v:.4f}" for k, v in result.best.items() if k.startswith("val_")),
             ", ".join(f"{k} {v:.4f}" for k, v in result.baseline.items()))
    return summary


def model_example(predictor: Predictor, dataset: Dataset, frames: int = 30):
    """A logged model's input example, the first ``frames`` frames of a training chunk's raw
    features side by side in the model's role order, and the offsets ``predictor`` (the model just
    saved, as its checkpoint holds it) predicts for them."""
    import numpy as np

    chunk = dataset.read_chunk(*dataset.chunk_names("train")[0], predictor.roles)
    features = {r: np.asarray(chunk.features[r][:frames], np.float32) for r in predictor.roles}
    offsets = predictor.predict(features)
    return np.concatenate([features[r] for r in predictor.roles], axis=1), offsets.reshape(len(offsets), -1)


def requirements() -> list[str]:
    """The logged model's pip requirements, explicit (MLflow infers none, over no network)."""
    from importlib.metadata import version

    return [f"{p}=={version(p).split('+')[0]}" for p in ("animote", "torch", "numpy", "mlflow", "safetensors")]


def sweep_summary(*, input, output, params, **_) -> pd.DataFrame:
    """One row per experiment of ``params.configs`` (name -> training config; the paper's Fig 4.3
    columns so far: learning rate, batch size, epochs, heads, train and validation loss and R² at
    the best epoch); logged into the parent run ``input.parent``, which it closes."""
    configs, out_tsv = params.configs, output[0]
    names = list(configs)
    rows = []
    for name, run_json, hist in zip(names, input.runs, input.histories):
        info = json.loads(Path(run_json).read_text())
        h = pd.read_csv(hist, sep="\t")
        best = h.loc[h.epoch == info["best_epoch"]].iloc[0]
        cfg = configs[name]
        rows.append({"experiment": name, "lr": cfg["lr"], "batch_size": cfg["batch_size"], "epochs": cfg["epochs"],
                     "heads": cfg["model"]["heads"], "roles": "+".join(cfg["roles"]),
                     "best_epoch": info["best_epoch"],
                     **{k: best.get(k) for k in ("train_loss", "val_loss", "train_r2", "val_r2") if k in best},
                     "run_id": info["run_id"]})
    df = pd.DataFrame(rows)
    with atomic_path(out_tsv) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.5f")
    summary = {f"{r['experiment']}.val_loss": r.get("val_loss") for r in rows}
    tracking.finish_sweep(input.parent, names, summary, [out_tsv])
    return df
