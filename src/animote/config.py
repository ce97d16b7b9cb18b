"""Typed views of the validated config.

``config/config.yaml`` is the one source of defaults and ``config/schema.yaml``
requires every key, so nothing here carries a default of its own: a section is
turned into a dataclass after validation and passed explicitly.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base`` (as Snakemake merges --configfile)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Keys that once existed: their use is an error that says what replaced them.
RENAMED = {
    ("claps", "threshold_dbfs"): "claps are found by their shape now, relative to the recording's own level, "
                                 "never by an absolute level: use claps.min_over_floor_db (dB above the "
                                 "recording's quiet level) to ask candidates to be louder",
    ("claps", "min_onset_ratio"): "the rise test is a constant of animote.claps now (MIN_RISE_DB, in dB: the old "
                                  "ratio 4 is 12 dB); remove it from the config",
    ("resources", "neutral_mesh"): "the neutral mesh is made by the align_mesh job now: set resources.align_mesh",
    ("resources", "mesh_report"): "the mesh summary is made by the align_mesh job now: set resources.align_mesh",
    ("evaluate", "ridge", "context"): "ridge's context is chosen on the validation split now, like its alpha: "
                                      "list the candidates in evaluate.ridge.contexts (e.g. [0, 2, 5, 10])",
    **{("claps", key): f"the clap detector's internals are constants of animote.claps now ({key.upper()}, "
                       f"beside the benchmark that set it); remove it from the config"
       for key in ("highpass_hz", "window_ms", "floor_percentile", "min_rise_db", "max_rise_ms",
                   "onset_lookback_ms", "min_width_ms", "max_after_db", "min_high_share", "max_high_share",
                   "merge_ms")},
}


def _has(config: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(config, Mapping) or key not in config:
            return False
        config = config[key]
    return True


def check_renamed(config: Mapping[str, Any]) -> None:
    """Refuse keys that were renamed or removed, naming what replaced them."""
    found = [f"  config key '{'.'.join(path)}' is no longer read: {why}" for path, why in RENAMED.items()
             if _has(config, path)]
    if found:
        raise ValueError("invalid config:\n" + "\n".join(found))


def validate(config: Mapping[str, Any], schema_path: str | Path) -> None:
    """Validate ``config`` against the JSON schema; the error names the offending key."""
    check_renamed(config)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"  config key '{where}': {err.message}")
        raise ValueError("invalid config:\n" + "\n".join(lines))


def load(*paths: str | Path, schema: str | Path | None = None) -> dict[str, Any]:
    """Load config files (later ones override earlier ones) and validate the result."""
    config: dict[str, Any] = {}
    for p in paths:
        config = deep_merge(config, yaml.safe_load(Path(p).read_text()) or {})
    if schema is not None:
        validate(config, schema)
    return config


DEMO_VIDEO = "results/demo/demo.mp4"  # what the workflow's demo_recording rule writes


def add_demo_defaults(config: dict[str, Any], recording_paths, defaults_file: str | Path) -> bool:
    """When a recording of the sheet is the demo video, put the demo's settings (``defaults_file``,
    config/demo.yaml) under the config's own ``demo:`` keys, in place (Snakemake's config object).
    Returns whether it did."""
    if DEMO_VIDEO not in {str(p) for p in recording_paths}:
        return False
    defaults = yaml.safe_load(Path(defaults_file).read_text())["demo"]
    config["demo"] = deep_merge(defaults, config.get("demo") or {})
    return True


def from_mapping(cls, data: Mapping[str, Any]):
    """``cls`` (a dataclass) from the keys of ``data`` it has fields for."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class VideoParams:
    fps: float | None  # target constant frame rate; None keeps the recording's own
    normalise_crf: int  # x264 quality when variable frame rate input is re-encoded
    vfr_tolerance: float  # relative fps spread above which input counts as variable

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VideoParams:
        return from_mapping(cls, config["video"])


@dataclass(frozen=True)
class ChunkParams:
    length_s: float  # chunk length (the paper used 30 s)
    min_length_s: float  # a shorter tail is merged into the chunk before it
    export_video: bool  # also write each chunk as an mp4 to look at

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ChunkParams:
        return from_mapping(cls, config["chunks"])


# --- the sweep (here, not in train.py, so that reading the Snakefile does not import torch) ---------


def merge_experiment(train: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """An experiment's full training config: ``train`` with ``overrides`` (``model`` and
    ``target_weights`` merged key by key)."""
    out = copy.deepcopy(dict(train))
    for k, v in (overrides or {}).items():
        if k in ("model", "target_weights"):
            out[k] = {**out[k], **v}
        else:
            out[k] = copy.deepcopy(v)
    return out


def gpu_visible() -> bool:
    """Whether this machine has an NVIDIA GPU that CUDA may use (without importing torch)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def needs_gpu(device: str, gpu_here: bool = True) -> int:
    """How many GPUs a job on ``device`` (cpu, cuda, auto) asks the scheduler for. ``auto`` asks for
    one where the job may get one: on a cluster, or on a machine with a GPU (``gpu_here``); on a
    machine without, it runs on the CPU and must not queue behind the other "GPU" jobs."""
    if device == "cpu":
        return 0
    return 1 if device != "auto" or gpu_here else 0


def sweep_experiments(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The experiments the config's sweep runs: name -> full training config (``train`` with the
    experiment's overrides), in the config's order. ``sweep.run`` picks some; empty runs all."""
    sweep = config["sweep"]
    chosen = list(sweep["run"]) or list(sweep["experiments"])
    unknown = [n for n in chosen if n not in sweep["experiments"]]
    if unknown:
        raise ValueError(f"config key 'sweep.run': {unknown} are not among sweep.experiments "
                         f"({', '.join(sweep['experiments'])})")
    out = {n: merge_experiment(config["train"], sweep["experiments"][n] or {}) for n in chosen}
    tracker = config.get("mesh", {}).get("tracker", "facemesh")
    wants = [n for n, e in out.items() if "blendshapes" in e.get("targets", ())]
    if wants and tracker != "landmarker":
        raise ValueError(f"config key 'train.targets': experiments {', '.join(wants)} predict blendshapes, which only "
                         f"mesh.tracker: landmarker gives (it is {tracker}); set it, or leave blendshapes out")
    return out
