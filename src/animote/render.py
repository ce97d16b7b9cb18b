"""Pictures: loss curves (more to come: 2D orthographic mesh projection, the mesh video)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from .util import atomic_path


def loss_curves(history: Sequence[Mapping[str, float]], path: str | Path, title: str,
                baseline: float | None = None) -> None:
    """Training and validation loss per epoch (and validation R² on a second axis), as a PNG.
    ``baseline``: the validation loss of predicting the training mean offset, drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        ys = [h.get(key, float("nan")) for h in history]
        ax.plot(epochs, ys, marker=".", label=label)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="validation: mean offset")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised offsets)")
    ax.set_title(title)
    if any("val_r2" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.get("val_r2", float("nan")) for h in history], color="tab:green", ls=":",
                 label="validation R²")
        ax2.set_ylabel("validation R² (offsets)")
        ax2.set_ylim(min(0.0, min(h.get("val_r2", 0.0) for h in history)), 1.0)
        ax2.legend(loc="upper center", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
