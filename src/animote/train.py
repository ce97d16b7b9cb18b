"""Training: the loss, the loop, and the checkpoint format (paper 4.2).

Loss = masked MSE on the normalised offsets + ``temporal_weight`` x L1 on the difference of
frame-to-frame changes (the paper's temporal coherence term, weight 0.1). Frames without a
face (mask False) and window padding are excluded from both terms.

The loop knows nothing of MLflow or files: it reports each epoch to a callback. The
checkpoint (``save_checkpoint``) holds plain types and tensors only, so it loads with
``torch.load(weights_only=True)`` and needs neither the workflow nor the dataset.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import Dataset, Sequences
from .model import AudioConditionedNetwork, ModelConfig, build_model, count_parameters
from .objective import TargetSums, target_loss, window_index, windows

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "animote-checkpoint-1"


@dataclass(frozen=True)
class TrainConfig:
    """One experiment: the config's ``train:`` section with the experiment's overrides applied.
    No defaults here: config/config.yaml holds them, with the reasons."""

    roles: tuple[str, ...]  # feature roles the model reads, concatenated in this order
    targets: tuple[str, ...]  # what the model predicts: offsets, and any of blendshapes, head_pose
    target_weights: dict  # target -> its weight in the loss (those of targets not predicted are unused)
    epochs: int  # the most epochs
    patience: int  # stop after this many epochs without a lower validation loss (0: never early)
    batch_size: int  # windows per step
    optimizer: str  # adam | adamw
    lr: float  # the peak learning rate
    warmup_epochs: float  # linear warm-up over this many epochs' steps
    schedule: str  # constant | cosine | plateau
    lr_floor: float  # cosine ends at lr_floor x lr
    weight_decay: float
    lip_weight: float  # extra squared-error weight of the lip vertices
    input_noise: float  # std of Gaussian noise on the normalised features while training
    window: int  # frames per training window (the paper's pad_or_truncate length)
    stride: int  # frames between training window starts
    temporal_weight: float  # lambda of the temporal coherence L1 (0 ablates it)
    grad_clip: float  # max gradient norm (0: none)
    seed: int
    device: str  # auto | cpu | cuda
    amp: bool  # mixed precision on CUDA (bfloat16 where supported, else float16 with loss scaling)
    threads: int  # CPU threads for torch
    model: dict = field(default_factory=dict)  # ModelConfig fields except input_dim

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown train config keys: {', '.join(sorted(unknown))}")
        missing = names - set(data)
        if missing:
            raise ValueError(f"train config lacks: {', '.join(sorted(missing))}")
        d = dict(data)
        d["roles"] = tuple(d["roles"])
        d["targets"] = tuple(dict.fromkeys(d["targets"]))
        d["target_weights"] = {k: float(v) for k, v in d["target_weights"].items()}
        d["model"] = dict(d["model"])
        if "offsets" not in d["targets"]:
            raise ValueError(f"train.targets {list(d['targets'])} lacks offsets: the mesh is what every model predicts "
                             f"(and what evaluation scores); add the others beside it")
        missing = [t for t in d["targets"] if t not in d["target_weights"]]
        if missing:
            raise ValueError(f"train.target_weights has no weight for {', '.join(missing)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["roles"] = list(self.roles)
        d["targets"] = list(self.targets)
        return d

    @property
    def channel_targets(self) -> list[str]:
        return [t for t in self.targets if t != "offsets"]

    @property
    def weights(self) -> dict[str, float]:
        """target -> its weight in the loss, for the targets predicted, in their order."""
        return {t: self.target_weights[t] for t in self.targets}


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"heads": 2}} -> {"model.heads": 2}; lists become comma-joined strings."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = ",".join(map(str, v))
        else:
            out[key] = v
    return out


def resolve_device(want: str) -> str:
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but torch sees no CUDA device here; use 'auto' or 'cpu'")
    return want


# --- the loop --------------------------------------------------------------------------------


@dataclass
class Result:
    history: list[dict[str, float]]  # one row per epoch: epoch, train_*, val_*, seconds, frames_per_s
    best_epoch: int
    best: dict[str, float]  # the row of the best epoch
    model: AudioConditionedNetwork  # with the best weights, on the CPU
    baseline: dict[str, float]  # validation loss of predicting the training mean offset for every frame
    device: str
    amp_dtype: str | None


class Windows:
    """A split's sequences on a device, cut into windows batch by batch: inputs (B, W, D), the
    targets {target: (B, W, ...)}, and the mask (B, W)."""

    def __init__(self, seq: Sequences, device: str):
        self.inputs = torch.from_numpy(seq.inputs).to(device)
        self.targets = {"offsets": torch.from_numpy(seq.targets).to(device),
                        **{t: torch.from_numpy(v).to(device) for t, v in seq.channels.items()}}
        self.mask = torch.from_numpy(seq.mask).to(device)
        self.dims = {t: int(np.prod(v.shape[1:])) for t, v in self.targets.items()}

    def __call__(self, starts: torch.Tensor, lengths: torch.Tensor, window: int):
        idx, valid = window_index(starts, lengths, window)
        return self.inputs[idx], {t: v[idx] for t, v in self.targets.items()}, self.mask[idx] & valid


def mean_offset_baseline(seq: Sequences, window: int, temporal_weight: float,
                         weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Loss and R² of predicting the training mean of every target (0 in normalised units) on
    every frame, over the same windows the validation loss uses."""
    weights = dict(weights or {"offsets": 1.0})
    starts, lengths = windows(seq.bounds, window, window)
    if len(starts) == 0:
        return {}
    data = Windows(seq, "cpu")
    sums = TargetSums(temporal_weight, weights, data.dims)
    for i in range(0, len(starts), 64):
        s, ln = torch.from_numpy(starts[i:i + 64]), torch.from_numpy(lengths[i:i + 64])
        _, y, m = data(s, ln, window)
        _, parts = target_loss({t: torch.zeros_like(v) for t, v in y.items()}, y, m, temporal_weight, weights)
        sums.add(parts, y, m)
    return sums.metrics()


@torch.no_grad()
def evaluate(model: AudioConditionedNetwork, seq: Sequences, window: int, temporal_weight: float, device: str,
             amp_dtype=None, batch_size: int = 32, weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Loss and R² over every frame of ``seq``, in non-overlapping windows of ``window`` frames;
    the loss weighs the targets by ``weights`` (default: the offsets alone)."""
    weights = dict(weights or {"offsets": 1.0})
    model.eval()
    starts, lengths = windows(seq.bounds, window, window)
    data = Windows(seq, device)
    sums = TargetSums(temporal_weight, weights, data.dims)
    for i in range(0, len(starts), batch_size):
        s = torch.from_numpy(starts[i:i + batch_size]).to(device)
        ln = torch.from_numpy(lengths[i:i + batch_size]).to(device)
        x, y, m = data(s, ln, window)
        with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
            pred = model(x)
        _, parts = target_loss({t: v.float() for t, v in pred.items()}, y, m, temporal_weight, weights)
        sums.add(parts, y, m)
    return sums.metrics()


def fit(dataset: Dataset, cfg: TrainConfig, on_epoch: Callable[[dict[str, float]], None] | None = None,
        progress: bool = True) -> Result:
    """Train one experiment on the dataset's training split; keep the weights of the epoch with
    the lowest validation loss (the last epoch when there is no validation split)."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if device == "cpu":
        torch.set_num_threads(cfg.threads)
        torch.use_deterministic_algorithms(True)
    train_seq = dataset.sequences("train", cfg.roles, cfg.channel_targets)
    val_seq = dataset.sequences("validation", cfg.roles, cfg.channel_targets)
    if train_seq.mask.sum() == 0:
        raise ValueError("no training frame has a face")
    widths = tuple((t, len(dataset.channel_names(t))) for t in cfg.channel_targets)
    model_cfg = ModelConfig.from_dict(cfg.model, input_dim=dataset.input_dim(cfg.roles), channels=widths)
    model = build_model(model_cfg).to(device)
    opt_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    opt = opt_class(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp_dtype = None
    if device == "cuda" and cfg.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    data, weights = Windows(train_seq, device), cfg.weights
    starts, lengths = windows(train_seq.bounds, cfg.window, cfg.stride)
    starts_t, lengths_t = torch.from_numpy(starts).to(device), torch.from_numpy(lengths).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(starts) / cfg.batch_size)
    schedule = LearningRate(cfg, steps_per_epoch)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2) \
        if cfg.schedule == "plateau" else None
    vertex_weight = lip_weights(model_cfg.n_vertices, cfg.lip_weight, device)
    baseline = mean_offset_baseline(val_seq, cfg.window, cfg.temporal_weight, weights) if val_seq.frames else {}
    log.info("training on %s%s: %d windows of %d frames (%d frames) from %d chunks; validation %d frames; "
             "%d parameters", device, f" with {amp_dtype}" if amp_dtype else "", len(starts), cfg.window,
             train_seq.frames, len(train_seq.names), val_seq.frames, count_parameters(model))
    history, best, best_state, step, scale = [], None, None, 0, 1.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        sums = TargetSums(cfg.temporal_weight, weights, data.dims)
        order = torch.randperm(len(starts), generator=gen)
        steps = range(0, len(order), cfg.batch_size)
        bar = _bar(steps, f"epoch {epoch}/{cfg.epochs}", progress)
        frames = 0
        for i in bar:
            idx = order[i:i + cfg.batch_size].to(device)
            x, y, m = data(starts_t[idx], lengths_t[idx], cfg.window)
            if cfg.input_noise > 0:
                x = x + cfg.input_noise * torch.randn(x.shape, generator=gen).to(device)
            for group in opt.param_groups:
                group["lr"] = schedule(step) * scale
            step += 1
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = model(x)
            loss, parts = target_loss({t: v.float() for t, v in pred.items()}, y, m, cfg.temporal_weight, weights,
                                      vertex_weight=vertex_weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sums.add(parts, y, m)
            frames += int(lengths_t[idx].sum())
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in sums.metrics().items()},
               "seconds": seconds, "frames_per_s": frames / max(seconds, 1e-9), "lr": opt.param_groups[0]["lr"]}
        if val_seq.frames:
            row.update({f"val_{k}": v for k, v in
                        evaluate(model, val_seq, cfg.window, cfg.temporal_weight, device, amp_dtype,
                                 weights=weights).items()})
        if not math.isfinite(row.get("train_loss", float("nan"))):
            raise FloatingPointError(f"training loss is not finite at epoch {epoch} (lr {cfg.lr}): lower train.lr")
        history.append(row)
        key = "val_loss" if "val_loss" in row else "train_loss"
        if best is None or row[key] < best[key]:
            best, best_state = row, copy.deepcopy(model.state_dict())
        log.info("epoch %d/%d: %s", epoch, cfg.epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
        if on_epoch:
            on_epoch(row)
        if plateau is not None:  # halves the rate (through ``scale``) when validation loss stalls
            plateau.step(row[key])
            scale = opt.param_groups[0]["lr"] / max(schedule(step - 1), 1e-30)
        if cfg.patience and epoch - int(best["epoch"]) >= cfg.patience:
            log.info("stopping early: no lower %s for %d epochs (best epoch %d)", key, cfg.patience, best["epoch"])
            break
    model.load_state_dict(best_state)
    return Result(history, int(best["epoch"]), best, model.cpu().eval(), baseline, device,
                  str(amp_dtype).removeprefix("torch.") if amp_dtype else None)


class LearningRate:
    """The learning rate at each optimiser step: a linear warm-up from 0 over ``warmup_epochs``
    epochs of steps, then constant, or a cosine from ``lr`` down to ``lr_floor`` x ``lr`` at the
    last step of ``epochs`` (plateau: constant here, halved by the loop when validation stalls)."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        self.lr, self.floor, self.kind = cfg.lr, cfg.lr_floor, cfg.schedule
        self.warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        self.total = max(cfg.epochs * steps_per_epoch, self.warmup + 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.kind != "cosine":
            return self.lr
        progress = min(1.0, (step - self.warmup) / max(self.total - self.warmup - 1, 1))
        return self.lr * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def lip_weights(n_vertices: int, lip_weight: float, device: str) -> torch.Tensor | None:
    """Per-vertex weights of the squared error: 1, and 1 + ``lip_weight`` on the lips (None
    when all are 1)."""
    if lip_weight <= 0:
        return None
    from .metrics import regions

    w = torch.ones(n_vertices)
    w[torch.as_tensor(regions()["lips"])] += lip_weight
    return w.to(device)


def _bar(steps, desc: str, enabled: bool):
    """A progress bar per epoch on the job's log (stderr); plain iteration when tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return steps
    return tqdm(steps, desc=desc, unit="step", leave=False, disable=not enabled, mininterval=2.0)


# --- the checkpoint --------------------------------------------------------------------------


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, np.float32))


def save_checkpoint(path: str | Path, model: AudioConditionedNetwork, cfg: TrainConfig, dataset: Dataset,
                    extra: Mapping[str, Any]) -> dict:
    """Everything needed to use the model without the workflow, in plain types and tensors:
    model config and weights, the input feature backends (type, model, cache key, dimension),
    normalisation, the neutral mesh of each training recording, fps, dataset hash, code version."""
    from . import __version__
    from .util import atomic_path, git_commit

    keep = {f"{r}_{s}" for r in cfg.roles for s in ("mean", "std")} | {"offset_mean", "offset_scale"} \
        | {f"target_{t}_{s}" for t in cfg.channel_targets for s in ("mean", "std")}
    norm = {k: _tensor(v) for k, v in dataset.norm.items() if k in keep}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "code_version": __version__,
        "git_commit": git_commit() or "",
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": cfg.to_dict(),
        "roles": list(cfg.roles),
        "targets": list(cfg.targets),
        "channels": {t: dataset.channel_names(t) for t in cfg.channel_targets},  # each channel target's names
        "features": {r: {"cache_key": dataset.roles[r]["cache_key"], "spec": dict(dataset.roles[r]["spec"]),
                         "dim": int(dataset.roles[r]["dim"])} for r in cfg.roles},
        "normalisation": norm,
        "neutral": {rec: _tensor(n) for rec, n in dataset.neutral.items()},
        "fps": dataset.fps,
        "dataset_hash": dataset.hash,
        **dict(extra),
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return ckpt


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[AudioConditionedNetwork, dict]:
    """Rebuild the model from a checkpoint (``weights_only=True``: no code runs while loading).
    A model folder is read by :func:`animote.share.load_model`, which takes either."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # not a torch file, or one holding objects other than plain types
        raise ValueError(f"{path} is not an animote checkpoint: {exc.__class__.__name__}: {str(exc)[:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not an {CHECKPOINT_FORMAT} checkpoint (found {found!r}); "
                         f"retrain it with this version of animote")
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
