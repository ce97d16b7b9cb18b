"""Training throughput of the default experiment: frames per second (forward + backward) and peak memory.

    .venv/bin/python benchmarks/train.py                       # CPU, 5 minutes of data, default model
    .venv/bin/python benchmarks/train.py --minutes 60 --device cuda --amp both   # a GPU, with and without AMP
    .venv/bin/python benchmarks/train.py --input-dim 2048      # the paper's dual wav2vec2 input width

The data are random arrays of the dataset's shapes (frames x input dim, frames x 468 x 3) in
30 s chunks, in memory: throughput does not depend on the values. An epoch is one pass over every training
frame (stride = window, as the paper's epochs over its chunks), so "frames/s" compares with the
paper's anchor: 50 epochs over an hour (108,000 frames) in 10 minutes on an NVIDIA L4 = 9,000 frames/s.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from animote.config import merge_experiment
from animote.dataset import Sequences
from animote.train import TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]


class MemoryDataset:
    """Random arrays of the dataset's shapes, in memory: what ``fit`` reads of a Dataset (its
    splits as concatenated sequences), without a store, so the benchmark also runs where only
    torch is installed (a GPU machine)."""

    def __init__(self, minutes: float, input_dim: int):
        rng = np.random.default_rng(0)
        self.dim = input_dim
        n_chunks = max(3, int(round(minutes * 2)))  # 30 s chunks of 900 frames
        self.splits = {"train": self._seq(rng, n_chunks - 1), "validation": self._seq(rng, 1)}

    def _seq(self, rng, n_chunks: int, frames: int = 900) -> Sequences:
        n = n_chunks * frames
        return Sequences(rng.normal(size=(n, self.dim)).astype(np.float32),
                         (0.1 * rng.normal(size=(n, 468, 3))).astype(np.float32), np.ones(n, bool),
                         np.array([[i * frames, (i + 1) * frames] for i in range(n_chunks)]),
                         [f"c{i:03d}" for i in range(n_chunks)])

    def sequences(self, split: str, roles) -> Sequences:
        return self.splits[split]

    def input_dim(self, roles) -> int:
        return self.dim


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(ds: MemoryDataset, cfg: dict, device: str, amp: bool, epochs: int) -> dict:
    c = TrainConfig.from_dict({**cfg, "device": device, "amp": amp, "epochs": epochs, "stride": cfg["window"]})
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = fit(ds, c, progress=False)
    timed = result.history[1:] or result.history  # the first epoch pays for warm-up (allocations, cuDNN plans)
    fps = float(np.mean([h["frames_per_s"] for h in timed]))
    out = {"device": device, "amp": result.amp_dtype or "off", "frames_per_s": fps,
           "epoch_s": float(np.mean([h["seconds"] for h in timed])), "peak_rss_mb": peak_rss_mb(),
           "train_loss": result.history[-1]["train_loss"]}
    if device == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    out["seed_anchor_minutes"] = 50 * 108_000 / fps / 60  # 50 epochs over an hour of data
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="minutes of training data (30 s chunks)")
    ap.add_argument("--input-dim", type=int, default=409, help="feature width: 409 whisper+eGeMAPS, 2048 the paper's")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--amp", default="on", choices=["on", "off", "both"], help="mixed precision on CUDA")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, help="default: the config's train.batch_size")
    ap.add_argument("--threads", type=int, help="CPU threads (default: the config's train.threads)")
    ap.add_argument("--window", type=int, help="frames per window (default: the config's train.window; "
                                                "the paper's whole chunks: 900)")
    args = ap.parse_args()
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg = merge_experiment(config["train"], {})
    if args.batch_size:
        cfg["batch_size"] = args.batch_size
    if args.threads:
        cfg["threads"] = args.threads
    if args.window:
        cfg["window"] = args.window
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    t = time.perf_counter()
    ds = MemoryDataset(args.minutes, args.input_dim)
    print(f"data: {args.minutes:g} min ({ds.splits['train'].frames} training frames), input {args.input_dim}-d, "
          f"window {cfg['window']}, batch {cfg['batch_size']}, threads {cfg['threads']}; "
          f"made in {time.perf_counter() - t:.1f} s")
    amps = {"on": [True], "off": [False], "both": [False, True]}[args.amp] if device == "cuda" else [False]
    for amp in amps:
        try:
            r = run(ds, cfg, device, amp, args.epochs)
        except Exception as exc:  # report and go on to the next setting
            print(f"{device} amp {amp}: failed: {exc.__class__.__name__}: {exc}", flush=True)
            continue
        line = (f"{r['device']:4s} amp {r['amp']:8s} {r['frames_per_s']:9.0f} frames/s (forward+backward), "
                f"{r['epoch_s']:.2f} s/epoch, last train loss {r['train_loss']:.4f}, peak RSS {r['peak_rss_mb']:.0f} MB")
        if "peak_gpu_mb" in r:
            line += f", peak GPU {r['peak_gpu_mb']:.0f} MB ({r['gpu']})"
        print(line + f"; the paper's 50 epochs over an hour would take {r['seed_anchor_minutes']:.1f} min "
                     "(seed: 10 min on an L4)", flush=True)

if __name__ == "__main__":
    main()
