"""Evaluation, on file paths: one trained experiment on the test split (rule ``evaluate``), the
baselines on the same split (``evaluate_baseline``), and the sweep's report tables
(``sweep_report``). One function per rule, named like it (:mod:`animote.stages`)."""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import tracking
from ..baselines import fit_ridges
from ..dataset import Dataset, denormalise_channels
from ..evaluate import (
    Split,
    load_split,
    per_vertex_error,
    predict_targets,
    score,
    score_targets,
    showcase_frame,
    speech_energy,
)
from ..metrics import inner_lip_gap
from ..predict import Predictor
from ..render import Frame2D, channel_plot, error_map, lip_gap_plot, mesh_comparison, render_video
from ..targets import table_rows
from ..util import atomic_path

log = logging.getLogger(__name__)

VIDEO_NAME = "test.mp4"


def _write_json(path, data) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, default=float))


def _regions_table(regions: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"region": k, **v} for k, v in regions.items()])


def _write_scores(result: dict, out_json, out_regions) -> None:
    _write_json(out_json, result)
    with atomic_path(out_regions) as tmp:
        _regions_table(result["regions"]).to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def video_page(folder: str | Path, title: str, caption: str) -> None:
    """``index.html`` beside the video: what the report shows (Snakemake links videos, it does
    not play them)."""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} video{{max-width:100%;border:1px solid #ccc}}</style></head>
<body><h2>{html.escape(title)}</h2>
<video id="mesh-video" controls preload="metadata" src="{VIDEO_NAME}"></video>
<p>{caption}</p></body></html>
"""
    (Path(folder) / "index.html").write_text(page)


def evaluate(*, input, output, params, wildcards, threads=None, **_) -> dict:
    """Load the checkpoint ``input.model`` of experiment ``wildcards.exp``, predict the evaluation
    split of ``input.dataset``, score it, draw it, and log it all into the experiment's MLflow run
    (``input.run``). ``output``: metrics (json), regions (tsv), mesh, error_map, lip_gap (png),
    targets (png: blendshape and head-pose curves), video (a folder: the mp4 and its page);
    ``params.chunk_dirs``: recording -> chunk folder."""
    t0 = time.perf_counter()
    if threads:
        import torch

        torch.set_num_threads(threads)
    name, settings, out, chunk_dirs = wildcards.exp, params.evaluate, output, params.chunk_dirs
    dataset = Dataset(input.dataset)
    result, split, preds = score_checkpoint(dataset, input.model, settings, chunk_dirs)
    pred = preds["offsets"]
    result["experiment"] = name
    _write_scores(result, out.metrics, out.regions)
    s = result["summary"]
    log.info("experiment '%s' on %d %s frames: %s", name, s["frames"], settings["split"],
             ", ".join(f"{k} {v:.4g}" for k, v in s.items() if k != "frames"))

    # pictures: one frame (the widest true mouth of the first chunk), per-vertex error, lip gap
    f = showcase_frame(split, 0)
    rec, ch = split.names[0]
    mesh_comparison(split.neutral[f] + split.offsets[f], split.neutral[f] + pred[f], out.mesh,
                    f"{name}: {rec}/{ch} frame {f - split.bounds[0][0]} (widest true mouth)")
    error_map(dataset.neutral[split.names[0][0]], per_vertex_error(split, pred), out.error_map,
              f"{name}: mean vertex error over the {settings['split']} frames")
    c = split.chunk(0)
    lip_gap_plot(dataset.fps, inner_lip_gap(split.offsets[c], split.neutral[c]), inner_lip_gap(pred[c], split.neutral[c]),
                 out.lip_gap, f"{name}: inner-lip gap, {rec}/{ch} (lag {s['lip_sync_lag']:+.0f} frames, "
                 f"r {s['lip_sync_corr']:.2f} over the split)", split.mask[c])
    channel_plot(dataset.fps, split, preds, 0, out.targets, f"{name}: {rec}/{ch}")
    video_seconds = render_test_video(split, pred, dataset.fps, chunk_dirs, settings=settings, name=name,
                                      folder=out.video, summary=s, blendshapes=preds.get("blendshapes"))
    log.info("experiment '%s': pictures and a %.1f s video in %.1f s", name, video_seconds, time.perf_counter() - t0)

    info = json.loads(Path(input.run).read_text())
    tracking.log_to_run(info["tracking_uri"], info["run_id"],
                        {f"{settings['split']}_{k}": v for k, v in s.items()}
                        | {f"{settings['split']}_{k}_{region}": row[k] for region, row in result["regions"].items()
                           for k in ("r2", "mse")}
                        | {f"{settings['split']}_{k}_ci_{end}": v for k, ci in result["intervals"]["ci"].items()
                           for end, v in zip(("lo", "hi"), ci)}
                        | target_metrics(result.get("targets", {}), settings["split"]),
                        [out.metrics, out.regions, out.mesh, out.error_map, out.lip_gap, out.targets, out.video],
                        artifact_path="evaluation", tags={"animote.evaluated_split": settings["split"]},
                        model_id=info.get("model_id"))
    return result


def target_metrics(targets: Mapping[str, Mapping], split: str) -> dict[str, float]:
    """The channel targets' headline numbers as MLflow metrics (``test_blendshapes_r2``, ...)."""
    out = {}
    for t, r in targets.items():
        out[f"{split}_{t}_r2"] = r["r2"]
        out.update({f"{split}_{t}_r2_{g}": v["r2"] for g, v in r.get("groups", {}).items()})
        if "jaw_open" in r:
            out[f"{split}_jaw_open_r"], out[f"{split}_jaw_open_lag"] = r["jaw_open"]["r"], r["jaw_open"]["lag"]
        if t == "head_pose":
            out.update({f"{split}_head_{a}_r2": r["channels"][a]["r2"] for a in ("yaw", "pitch", "roll")})
    return {k: v for k, v in out.items() if v == v}  # MLflow takes no NaN


def score_checkpoint(dataset: Dataset, model_path: str | Path, settings: Mapping[str, Any],
                     chunk_dirs: Mapping[str, str] | None = None) -> tuple[dict, Split, dict[str, np.ndarray]]:
    """A checkpoint's predictions of the evaluation split (every target it predicts), scored with
    the evaluation's own objective (``settings["loss"]``), never the window or weights the model
    trained with; its channel targets by :func:`animote.evaluate.score_targets`."""
    predictor = Predictor.load(model_path, overlap=settings["overlap"])
    ckpt = predictor.checkpoint
    if ckpt["dataset_hash"] != dataset.hash:
        raise ValueError(f"{model_path} was trained on dataset {ckpt['dataset_hash']}, but {dataset.path} is "
                         f"{dataset.hash}: retrain it (snakemake reruns training when the dataset changes)")
    split = load_split(dataset, settings["split"], predictor.roles)
    preds = predict_targets(split, predictor.predict_targets)
    result = score(dataset, split, preds["offsets"], settings["loss"], settings["max_lag"], settings["bootstrap"])
    energy = speech_energy(split, chunk_dirs, dataset.fps) if chunk_dirs else None
    result.update({"split": settings["split"], "roles": predictor.roles, "run_id": ckpt.get("run_id"),
                   "best_epoch": ckpt.get("best_epoch"), "train_metrics": ckpt.get("metrics", {}),
                   "targets": score_targets(split, preds, dataset.fps, settings["max_lag"], energy,
                                            settings["bootstrap"]),
                   "predicts": predictor.targets})
    return result, split, preds


def render_test_video(split: Split, pred: np.ndarray, fps: float, chunk_dirs: Mapping[str, str], *,
                      settings: Mapping[str, Any], name: str, folder: str | Path, summary: Mapping,
                      blendshapes: np.ndarray | None = None) -> float:
    """The first chunk of the split: truth and prediction side by side, with the chunk's audio;
    with the predicted ``blendshapes``, a strip of the mouth channels under them."""
    from ..targets import mouth_columns

    rec, ch = split.names[0]
    c = split.chunk(0)
    n = c.stop - c.start
    if settings["video_seconds"]:
        n = min(n, int(round(settings["video_seconds"] * fps)))
    true_v = split.neutral[c][:n] + split.offsets[c][:n]
    pred_v = split.neutral[c][:n] + pred[c][:n]
    frame = Frame2D.around(np.concatenate([true_v[split.mask[c][:n]], pred_v]), settings["video_size"])
    audio = Path(chunk_dirs[rec]) / f"{ch}.wav"
    labels: tuple[str, ...] = ()
    panels = ((true_v[i], pred_v[i]) for i in range(n))
    if blendshapes is not None and "blendshapes" in split.channel_names:
        names, cols = mouth_columns(split.channel_names["blendshapes"])
        labels = tuple(f"{m} (predicted)" for m in names)
        strip = np.clip(blendshapes[c][:n][:, cols], 0, 1)
        panels = ((true_v[i], pred_v[i], strip[i]) for i in range(n))
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        render_video(panels, ("tracked (truth)", f"predicted: {name}"), frame, fps, tmp / VIDEO_NAME, audio=audio,
                     n_frames=n, bars=labels)
        video_page(tmp, f"{name}: test chunk {rec}/{ch}",
                   f"Left: the mesh MediaPipe tracked in the video (the truth); right: the mesh {html.escape(name)} "
                   f"predicted from the audio alone; both on the recording's neutral mesh, projected "
                   f"orthographically. Sound: the chunk's own audio. {n} frames at {fps:g} fps. "
                   f"Over the {settings['split']} split: R² (offsets) {summary['r2']:.3f}, lip-sync lag "
                   f"{summary['lip_sync_lag']:+.0f} frames (r {summary['lip_sync_corr']:.2f}).")
    return n / fps


def evaluate_baseline(*, input, output, params, **_) -> dict:
    """Baseline ``params.kind``, ``mean_offset`` or ``ridge`` on the feature roles ``params.roles``:
    fitted on the training split of ``input.dataset`` (ridge's context and alpha chosen on
    validation), scored on the evaluation split by the same code as the network."""
    baseline, roles, settings = params.kind, params.roles, params.evaluate
    dataset = Dataset(input.dataset)
    split = load_split(dataset, settings["split"], roles)
    channels = list(split.channels)  # the baselines predict every channel target the dataset holds
    info: dict[str, Any] = {"baseline": baseline, "roles": list(roles), "split": settings["split"]}
    if baseline == "mean_offset":
        preds = {"offsets": np.broadcast_to(dataset.norm["offset_mean"], split.offsets.shape).astype(np.float32)}
        preds.update({t: np.broadcast_to(dataset.norm[f"target_{t}_mean"], split.channels[t].shape).astype(np.float32)
                      for t in channels})
    elif baseline == "ridge":
        r = settings["ridge"]
        ridges = fit_ridges(dataset.sequences("train", roles, channels), dataset.sequences("validation", roles, channels),
                            r["contexts"], r["alphas"], ["offsets", *channels])
        x = dataset.normalise_inputs(split.features, roles)
        preds = {"offsets": dataset.denormalise_targets(ridges["offsets"].predict(x, split.bounds))}
        preds.update({t: denormalise_channels(t, ridges[t].predict(x, split.bounds), dataset.norm) for t in channels})
        ridge = ridges["offsets"]
        info.update(alpha=ridge.alpha, context=ridge.context,
                    validation_mse={f"{c}/{a:g}": m for (c, a), m in ridge.validation_mse.items()},
                    channels={t: {"alpha": ridges[t].alpha, "context": ridges[t].context} for t in channels})
        log.info("ridge on %s: context %d, alpha %g chosen on validation (MSE per context/alpha: %s)", "+".join(roles),
                 ridge.context, ridge.alpha, ", ".join(f"{k}: {m:.4f}" for k, m in info["validation_mse"].items()))
        for t in channels:
            log.info("ridge of %s: context %d, alpha %g chosen on its validation MSE", t, ridges[t].context,
                     ridges[t].alpha)
    else:
        raise ValueError(f"unknown baseline {baseline!r} (mean_offset or ridge)")
    result = score(dataset, split, preds["offsets"], settings["loss"], settings["max_lag"], settings["bootstrap"])
    energy = speech_energy(split, params.chunk_dirs, dataset.fps) if getattr(params, "chunk_dirs", None) else None
    result["targets"] = score_targets(split, preds, dataset.fps, settings["max_lag"], energy, settings["bootstrap"])
    result.update(info)
    _write_scores(result, output.metrics, output.regions)
    log.info("baseline %s (%s): %s", baseline, "+".join(roles),
             ", ".join(f"{k} {v:.4g}" for k, v in result["summary"].items()))
    log.info("95 %% intervals over %d test windows: %s", result["intervals"]["windows"],
             ", ".join(f"{k} [{a:.4g}, {b:.4g}]" for k, (a, b) in result["intervals"]["ci"].items()))
    return result


def _r2_ci(e: Mapping) -> str:
    from ..report import ci_text

    text = ci_text(e.get("ci", {}).get("r2"))
    return f"{e['test']['r2']:.3f}" + (f" (95 % CI {text})" if text else "")


def verdict_sentences(experiments: Mapping[str, dict], ridge: Mapping[str, dict]) -> list[str]:
    """Which network scores best on the test split and whether the best ridge beats the networks,
    each figure with its interval; a difference inside the noise is called that (the paired
    interval of the difference, over the same test windows, includes 0)."""
    from ..intervals import difference, overlap

    best_net = max(experiments, key=lambda n: experiments[n]["test"]["r2"])
    out = [f"Best network on the test split: {best_net}, R² (offsets) {_r2_ci(experiments[best_net])}."]
    if not ridge:
        return out
    best_ridge = max(ridge, key=lambda k: ridge[k]["test"]["r2"])
    r = ridge[best_ridge]
    beaten = [n for n, e in experiments.items() if e["test"]["r2"] < r["test"]["r2"]]
    out.append(f"The best ridge baseline, {best_ridge.removeprefix('baseline: ')}, reaches {_r2_ci(r)}: " +
               ("it beats every network of the sweep." if len(beaten) == len(experiments) else
                f"it beats {len(beaten)} of the {len(experiments)} networks ({', '.join(beaten)})."
                if beaten else "every network beats it."))
    net = experiments[best_net]
    a, b = net.get("samples", {}).get("r2"), r.get("samples", {}).get("r2")
    delta = net["test"]["r2"] - r["test"]["r2"]
    if a and b and len(a) == len(b):
        lo, hi = difference(a, b)
        where = "inside the noise (the interval includes 0)" if lo <= 0 <= hi else "outside the noise"
        out.append(f"{best_net} minus the best ridge: ΔR² {delta:+.3f}, paired 95 % interval over the same test "
                   f"windows {lo:+.3f} to {hi:+.3f}: {where}.")
    elif net.get("ci", {}).get("r2") and r.get("ci", {}).get("r2"):
        if overlap(net["ci"]["r2"], r["ci"]["r2"]):
            out.append(f"Their intervals overlap: the difference ({delta:+.3f}) is inside the noise.")
    return out


R2_NOTE = ("R² (offsets) measures the motion from the neutral mesh: 0 is predicting the test frames' mean "
           "offset, 1 is perfect. The paper's R² on absolute vertex positions is shown beside it, as the paper "
           "reported it: the spread of the vertices across the face dominates its denominator. Read the "
           "offsets column.")
DIGITS = {"test R² (absolute, the paper's)": ".6f", "lip-sync lag (frames)": "+.0f"}


TARGETS_NOTE = ("R² per blendshape group (jaw and mouth, brows, eyes, cheeks and nose) pools the group's channels "
                "around each channel's test mean; jawOpen's lag and r are found as the lip gap's (positive lag: the "
                "prediction comes late). Blinks a minute count the closings of both eyes (eyeBlink above 0.5). Head "
                "pose is only weakly predictable from audio: speech moves the head, but which way it turns is not in "
                "the sound, so its R² stays near 0 even for a good model; the correlation of head motion energy "
                "with speech energy says whether the motion comes when the speech does. A model that does not "
                "predict a target has no row for it; the baselines predict every target the dataset holds, by the "
                "same code.")


def targets_table(targets: Mapping[str, Mapping]) -> tuple[pd.DataFrame, list[str]]:
    """One row per model with channel-target scores (:func:`animote.targets.table_rows`), and the
    page's paragraphs; a sentence saying why the table is empty when no model predicts any."""
    rows = [r for r in table_rows(targets) if len(r) > 1]
    df = pd.DataFrame(rows)
    if not any(not str(name).startswith("baseline: ") for name in df.get("model", [])):
        return df, ["No experiment of this sweep predicts blendshapes or head pose: set `train.targets` (for "
                    "example `[offsets, blendshapes]`, with `mesh.tracker: landmarker`). The baselines' rows show what "
                    "a closed form gets.", TARGETS_NOTE]
    return df, [TARGETS_NOTE]


def sweep_report(*, input, output, params, wildcards, **_) -> dict[str, pd.DataFrame]:
    """The sweep table (Fig 4.3 columns, honest metrics, baselines as rows), the ablation table
    (Fig 4.4) and the features table per region; TSV, HTML and Markdown; logged into the sweep's
    parent run (``input.parent``). ``params``: configs (experiment -> training config), defaults
    (the ``train:`` section), baselines (label -> metrics json); ``input.evaluations`` in the order
    of the configs."""
    sweep, configs, defaults, baselines = wildcards.sweep, params.configs, params.defaults, params.baselines
    names, out = list(configs), {k: v for k, v in output.items()}
    from ..report import ablation_table, features_table, html_page, markdown_table, sweep_table

    def with_intervals(ev: dict) -> dict:
        iv = ev.get("intervals", {})
        return {"test": ev["summary"], "regions": ev["regions"], "ci": iv.get("ci", {}),
                "region_ci": iv.get("regions", {}), "samples": iv.get("samples", {})}

    experiments, targets = {}, {}
    for name, eval_json in zip(names, input.evaluations):
        ev = json.loads(Path(eval_json).read_text())
        experiments[name] = {"config": configs[name], "train": ev["train_metrics"], **with_intervals(ev)}
        targets[name] = ev.get("targets", {})
    base = {label: {**(b := json.loads(Path(path).read_text())), **with_intervals(b)}
            for label, path in baselines.items()}
    sweep_df = sweep_table(experiments, base)
    ablation_df = ablation_table(experiments, defaults, base)
    features_df, answer = features_table(experiments, base, defaults)
    targets.update({label: b.get("targets", {}) for label, b in base.items()})
    targets_df, targets_paras = targets_table(targets)

    verdict = verdict_sentences(experiments, {k: v for k, v in base.items() if "ridge" in k})
    if "baseline: mean offset" in base:
        mean_abs = base["baseline: mean offset"]["test"]["r2_absolute"]
        verdict.append(f"The mean-offset baseline's R² on absolute positions is {mean_abs:.6f} and on offsets "
                       f"{base['baseline: mean offset']['test']['r2']:.3f}: the paper's absolute R² cannot tell a "
                       f"face that moves right from one that does not move.")
    n_base = len(base)
    pages = {
        "sweep": (f"Sweep {sweep}: every experiment and the baselines on the test split", sweep_df,
                  [*verdict, R2_NOTE, "Train and validation loss are at each experiment's best epoch (lowest "
                   "validation loss). LVE: per frame the largest lip-vertex distance, averaged (not squared as "
                   "CodeTalker does), in thousandths of the image width. FDD: upper-face dynamics deviation, "
                   "true minus predicted (positive: the prediction's brows and eyes move less). "
                   "Italic rows are baselines, fitted on the training split and scored by the same code."],
                  list(range(len(sweep_df) - n_base, len(sweep_df)))),
        "ablation": (f"Sweep {sweep}: ablations (paper Fig 4.4)", ablation_df,
                     ["Each experiment against the `train:` defaults; ΔR² is its test R² (offsets) minus the "
                      "one of the experiment that changes nothing. Italic rows: the ridge baselines, for scale."],
                     [i for i, e in enumerate(ablation_df["experiment"]) if e.startswith("baseline: ")]),
        "features": (f"Sweep {sweep}: which features help where (test R² on offsets per region)", features_df,
                     [answer, "Regions are MediaPipe face-mesh index sets (animote.metrics.regions)."], []),
        "targets": (f"Sweep {sweep}: blendshapes and head pose (train.targets) on the test split", targets_df,
                    targets_paras, [i for i, m in enumerate(targets_df.get("model", [])) if str(m).startswith("baseline: ")]),
    }
    for key, (title, df, paras, base_rows) in pages.items():
        with atomic_path(out[f"{key}_tsv"]) as tmp:
            df.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        with atomic_path(out[f"{key}_html"]) as tmp:
            Path(tmp).write_text(html_page(title, df, paras, f"{key}-table", base_rows, DIGITS))
    with atomic_path(out["markdown"]) as tmp:
        Path(tmp).write_text("\n".join(f"## {title}\n\n" + "\n\n".join(paras) + "\n\n" + markdown_table(df, DIGITS)
                                       for title, df, paras, _ in pages.values()))
    parent = json.loads(Path(input.parent).read_text())
    tracking.log_to_run(parent["tracking_uri"], parent["run_id"],
                        {f"{n}.test_r2": e["test"]["r2"] for n, e in experiments.items()}
                        | {re.sub(r"[^\w.\- /]", "_", k) + ".test_r2": b["test"]["r2"] for k, b in base.items()},
                        [out[k] for k in out], artifact_path="report")
    log.info("sweep '%s': %s", sweep, " ".join(verdict))
    return {"sweep": sweep_df, "ablation": ablation_df, "features": features_df}
