"""Typed views of the validated config.

``config/config.yaml`` is the one source of defaults and ``config/schema.yaml``
requires every key, so nothing here carries a default of its own: a section is
turned into a dataclass after validation and passed explicitly.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

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
    ("claps", "min_onset_ratio"): "renamed claps.min_rise_db, in dB (the old ratio 4 is 12 dB)",
    ("resources", "neutral_mesh"): "the neutral mesh is made by the align_mesh job now: set resources.align_mesh",
    ("resources", "mesh_report"): "the mesh summary is made by the align_mesh job now: set resources.align_mesh",
    ("evaluate", "ridge", "context"): "ridge's context is chosen on the validation split now, like its alpha: "
                                      "list the candidates in evaluate.ridge.contexts (e.g. [0, 2, 5, 10])",
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


def _from_mapping(cls, data: Mapping[str, Any]):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class VideoParams:
    fps: float | None  # target constant frame rate; None keeps the recording's own
    normalise_crf: int  # x264 quality when variable frame rate input is re-encoded
    vfr_tolerance: float  # relative fps spread above which input counts as variable

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "VideoParams":
        return _from_mapping(cls, config["video"])


@dataclass(frozen=True)
class ClapParams:
    """config/config.yaml's ``claps:`` says why each default is what it is."""

    highpass_hz: float  # claps are broadband; speech energy sits mostly below this
    window_ms: float  # envelope resolution
    floor_percentile: float  # the recording's quiet level: this percentile of the envelope
    min_over_floor_db: float  # a candidate peak stands this far above the quiet level
    min_rise_db: float  # ... and this far above the loudest of the lookback before its onset
    max_rise_ms: float  # a clap rises from its onset to within 6 dB of its peak within this
    onset_lookback_ms: float  # how far back "before" reaches
    min_width_ms: float  # shorter within 10 dB of the peak: a click
    max_decay_ms: float  # a clap falls 20 dB below its peak within this
    max_after_db: float  # the low band 40-140 ms later, relative to the peak: above this, speech follows
    min_high_share: float  # share of the first 10 ms's energy above highpass_hz: at least (not a thump) ...
    max_high_share: float  # ... and at most (not a hiss or a lone burst from a bright microphone)
    merge_ms: float  # peaks of one burst closer than this are one candidate
    min_spacing_s: float  # two claps closer than this are one (the louder)
    cut_before_s: float  # cut this much before the clap peak ...
    cut_after_s: float  # ... and this much after it (the clap's ring)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ClapParams":
        return _from_mapping(cls, config["claps"])


@dataclass(frozen=True)
class ChunkParams:
    length_s: float  # chunk length (the seed used 30 s)
    min_length_s: float  # a shorter tail is merged into the chunk before it
    export_video: bool  # also write each chunk as an mp4 to look at

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ChunkParams":
        return _from_mapping(cls, config["chunks"])


# --- the sweep (here, not in train.py, so that reading the Snakefile does not import torch) ---------


def merge_experiment(train: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """An experiment's full training config: ``train`` with ``overrides`` (``model`` merged key by key)."""
    out = copy.deepcopy(dict(train))
    for k, v in (overrides or {}).items():
        if k == "model":
            out["model"] = {**out["model"], **v}
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
    return {n: merge_experiment(config["train"], sweep["experiments"][n] or {}) for n in chosen}


# The library modules behind each stage of the workflow (paths inside the animote package). A
# rule's ``code`` parameter is their hash, so editing one reruns that stage's jobs (and what
# depends on them), and ``snakemake --list-changes params`` names their outputs first.
STAGE_CODE = {
    "demo": ("demo/*.py", "data/sentences.tsv"),
    "preprocess": ("stages/preprocess.py", "media.py", "claps.py", "chunks.py"),
    "mesh": ("stages/mesh.py", "mesh.py"),
    "features": ("stages/features.py", "features/*.py"),
    "dataset": ("stages/dataset.py", "dataset.py"),
    "train": ("stages/train.py", "train.py", "model.py", "objective.py", "metrics.py"),
    "evaluate": ("stages/evaluate.py", "evaluate.py", "objective.py", "predict.py", "metrics.py", "baselines.py", "render.py",
                 "report.py"),
}


@functools.cache  # several rules share a stage: its sources are read once per workflow parse
def code_version(stage: str) -> str:
    """A short hash of the source of ``stage``'s library modules (see :data:`STAGE_CODE`)."""
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for pattern in STAGE_CODE[stage]:
        files = sorted(root.glob(pattern))
        if not files:
            raise FileNotFoundError(f"stage '{stage}': no library module matches {pattern} in {root}")
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
