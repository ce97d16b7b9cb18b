"""A trained model as a function: features in, mesh offsets out (and the other targets it was
trained on: blendshapes, head pose); the evaluation stage and ``animote animate`` both use this,
one code path.

The network was trained on windows of ``train.window`` frames, so a longer sequence runs in
windows of that length that overlap by ``overlap`` frames; in each overlap the two windows'
predictions are crossfaded linearly. Memory is bounded by ``batch`` windows at a time, whatever
the sequence's length; the output array itself is the only thing that grows with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .dataset import denormalise_channels, denormalise_targets, normalise_inputs
from .share import load_model


def window_plan(n: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of the windows covering ``n`` frames: every ``window - overlap`` frames, the
    last one ending at ``n`` (so none is padded unless ``n < window``)."""
    if n <= 0:
        return []
    if n <= window:
        return [(0, n)]
    hop = window - overlap
    if hop < 1:
        raise ValueError(f"overlap ({overlap}) must be smaller than the window ({window})")
    starts = list(range(0, n - window, hop)) + [n - window]
    return [(s, s + window) for s in starts]


def crossfade_weights(plan: list[tuple[int, int]], n: int) -> list[np.ndarray]:
    """Per window, the weight of each of its frames: a linear ramp over the part shared with the
    window before (up) and after (down); the weights of every frame sum to 1."""
    out = []
    for i, (s, e) in enumerate(plan):
        w = np.ones(e - s, np.float32)
        if i > 0 and plan[i - 1][1] > s:  # shared with the previous window: ramp up
            k = plan[i - 1][1] - s
            w[:k] = np.minimum(w[:k], (np.arange(k, dtype=np.float32) + 1) / (k + 1))
        if i + 1 < len(plan) and plan[i + 1][0] < e:  # shared with the next: ramp down
            k = e - plan[i + 1][0]
            w[e - s - k:] = np.minimum(w[e - s - k:], 1 - (np.arange(k, dtype=np.float32) + 1) / (k + 1))
        out.append(w)
    total = np.zeros(n, np.float32)
    for (s, e), w in zip(plan, out):
        total[s:e] += w
    return [w / total[s:e] for (s, e), w in zip(plan, out)]


@dataclass
class Predictor:
    """A checkpoint loaded for inference. ``predict(features)`` takes each role's raw features
    (frames, D_role) on the video frames, as the feature backends write them."""

    model: torch.nn.Module
    checkpoint: dict
    device: str = "cpu"
    overlap: int | None = None  # frames shared by consecutive windows; default: a quarter window
    batch: int = 16  # windows per forward pass

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **kw) -> Predictor:
        model, ckpt = load_model(path, device)
        return cls(model, ckpt, device, **kw)

    @property
    def roles(self) -> list[str]:
        return list(self.checkpoint["roles"])

    @property
    def features(self) -> dict[str, dict]:
        """role -> {cache_key, spec, dim}: the backends the model was trained on."""
        return self.checkpoint["features"]

    @property
    def fps(self) -> float:
        return float(self.checkpoint["fps"])

    @property
    def targets(self) -> list[str]:
        """What the model predicts: offsets, then its channel targets (checkpoints from before
        ``train.targets`` predict offsets alone)."""
        return list(self.checkpoint.get("targets", ["offsets"]))

    def channel_names(self, target: str) -> list[str]:
        return list(self.checkpoint["channels"][target])

    @property
    def window(self) -> int:
        return int(self.checkpoint["train_config"]["window"])

    def neutral(self, recording: str | None = None) -> np.ndarray:
        """A training recording's neutral mesh (468, 3); the first one when none is named."""
        meshes = self.checkpoint["neutral"]
        if recording is None:
            recording = sorted(meshes)[0]
        if recording not in meshes:
            raise KeyError(f"the model holds no neutral mesh of recording {recording!r} (it has {sorted(meshes)})")
        return meshes[recording].detach().cpu().numpy()

    def normalise(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        n = {len(np.asarray(features[r])) for r in self.roles}
        if len(n) != 1:
            raise ValueError(f"feature roles have different frame counts: "
                             f"{ {r: len(features[r]) for r in self.roles} }")
        for r in self.roles:
            x = np.asarray(features[r], np.float32)
            if x.ndim != 2 or x.shape[1] != self.features[r]["dim"]:
                raise ValueError(f"{r} features are {x.shape}, the model takes (frames, {self.features[r]['dim']}) "
                                 f"from {self.features[r]['cache_key']}")
        return normalise_inputs(features, self.roles, self._norm)

    def denormalise(self, y: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each target of normalised ``y`` in its own units (offsets in mesh units)."""
        return {t: denormalise_targets(v, self._norm) if t == "offsets" else denormalise_channels(t, v, self._norm)
                for t, v in y.items()}

    @cached_property
    def _norm(self) -> dict[str, np.ndarray]:
        # the checkpoint is loaded onto the model's device; the statistics are used on the host
        return {k: torch.as_tensor(v).detach().cpu().numpy() for k, v in self.checkpoint["normalisation"].items()}

    def stream(self, blocks: Iterable[Mapping[str, np.ndarray]], n: int) -> Iterator[dict[str, np.ndarray]]:
        """The targets of a sequence of ``n`` frames whose raw features arrive in ``blocks`` (each a
        dict role -> (frames, D) for the next frames; together ``n``). Yields pieces in frame order,
        {target: (k, ...)}: offsets (k, 468, 3) in mesh units and each channel target (k, C), as soon
        as every window covering them has run: memory holds one block and one batch of windows,
        however long the sequence."""
        for y in self._windows((self.normalise(b) for b in blocks), n):
            yield self.denormalise(y)

    def _windows(self, blocks: Iterable[np.ndarray], n: int) -> Iterator[dict[str, np.ndarray]]:
        """Normalised input blocks (frames, D) -> normalised targets, windowed and crossfaded."""
        overlap = self.window // 4 if self.overlap is None else self.overlap
        plan = window_plan(n, self.window, overlap)
        weights = crossfade_weights(plan, n)
        blocks = iter(blocks)
        x: np.ndarray | None = None  # the inputs from frame x_at on
        x_at = 0
        done = 0  # frames yielded; acc[0] is frame ``done``
        acc = self._empty()
        with torch.no_grad():
            for i in range(0, len(plan), self.batch):
                part = plan[i:i + self.batch]
                need = part[-1][1]
                while x is None or x_at + len(x) < need:  # read until the batch's last window is covered
                    block = next(blocks, None)
                    if block is None:
                        have = 0 if x is None else x_at + len(x)
                        raise ValueError(f"the features end at frame {have}, {n} frames expected")
                    x = block if x is None else np.concatenate([x, block])
                have = len(acc["offsets"])
                if have < need - done:
                    acc = {t: np.concatenate([a, np.zeros((need - done - have,) + a.shape[1:], np.float32)])
                           for t, a in acc.items()}
                length = max(e - s for s, e in part)
                xb = np.zeros((len(part), length, x.shape[1]), np.float32)
                for j, (s, e) in enumerate(part):
                    xb[j, :e - s] = x[s - x_at:e - x_at]
                y = {t: v.float().cpu().numpy() for t, v in self.model(torch.from_numpy(xb).to(self.device)).items()}
                for t, a in acc.items():
                    for j, (s, e) in enumerate(part):
                        w = weights[i + j].reshape((-1,) + (1,) * (a.ndim - 1))
                        a[s - done:e - done] += y[t][j, :e - s] * w
                final = plan[i + self.batch][0] if i + self.batch < len(plan) else n  # no later window reaches back
                yield {t: a[:final - done] for t, a in acc.items()}
                acc = {t: a[final - done:].copy() for t, a in acc.items()}
                done = final
                x, x_at = x[final - x_at:], final
        left = (0 if x is None else len(x)) + sum(len(b) for b in blocks)
        if left:
            raise ValueError(f"the features hold {n + left} frames, {n} expected")

    def predict_normalised(self, x: np.ndarray) -> np.ndarray:
        """(T, D) normalised inputs -> (T, 468, 3) normalised offsets, windowed and crossfaded."""
        return self._concat(self._windows([np.asarray(x, np.float32)], len(x)))["offsets"]

    def predict(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw features per role -> offsets from the neutral mesh (T, 468, 3), in mesh units."""
        return self.predict_targets(features)["offsets"]

    def predict_targets(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw features per role -> every target: offsets (T, 468, 3) in mesh units, each channel
        target (T, C) in its own (blendshape scores, degrees and mesh units)."""
        return self._concat(self.stream([features], len(np.asarray(features[self.roles[0]]))))

    def _empty(self) -> dict[str, np.ndarray]:
        c = self.model.config
        return {"offsets": np.zeros((0, c.n_vertices, 3), np.float32),
                **{t: np.zeros((0, n), np.float32) for t, n in c.channels}}

    def _concat(self, pieces: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        out = list(pieces)
        if not out:
            return self._empty()
        return {t: np.concatenate([p[t] for p in out]) for t in out[0]}
