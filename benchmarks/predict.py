"""Prediction alone (the part of `animote animate` and of evaluation that runs the network): frames
per second of ``Predictor.stream`` on a checkpoint, CPU and CUDA, and whether CUDA's result equals
the CPU's. Needs only torch and numpy, so it also runs on a GPU machine without the rest.

    .venv/bin/python benchmarks/predict.py --model results/train/default/recipe/model.pt
    python3 benchmarks/predict.py --model model.pt --minutes 10 --devices cpu cuda

The features are random (prediction time does not depend on their values), fed in 30 s blocks as
`animote animate` feeds them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from animote.predict import Predictor  # noqa: E402


def run(predictor: Predictor, feats: dict[str, np.ndarray], block: int) -> tuple[np.ndarray, float]:
    n = len(next(iter(feats.values())))
    blocks = ({r: f[a:a + block] for r, f in feats.items()} for a in range(0, n, block))
    if predictor.device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = np.concatenate(list(predictor.stream(blocks, n)))
    if predictor.device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    reference = None
    rng = np.random.default_rng(0)
    for device in args.devices:
        for batch in args.batch:
            p = Predictor.load(args.model, device, batch=batch)
            n = int(args.minutes * 60 * p.fps)
            if reference is None:
                feats = {r: rng.normal(size=(n, p.features[r]["dim"])).astype(np.float32) for r in p.roles}
            run(p, {r: f[:p.window * 2] for r, f in feats.items()}, int(30 * p.fps))  # warm-up
            out, secs = run(p, feats, int(30 * p.fps))
            diff = "" if reference is None else f", max |diff| from {args.devices[0]} batch {args.batch[0]}: " \
                                                f"{np.abs(out - reference).max():.2e} (offsets up to {np.abs(reference).max():.2e})"
            if reference is None:
                reference = out
            print(f"{device:5s} batch {batch:3d}: {n} frames in {secs:.2f} s = {n / secs:,.0f} frames/s "
                  f"({n / p.fps / secs:,.0f}x real time){diff}")


if __name__ == "__main__":
    main()
