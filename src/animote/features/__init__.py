"""Audio features: backends (audio array -> native frames) and their alignment to video frames.

No chunk folders here: :func:`compute_features` takes an audio array and a frame count, so the
feature stage (:mod:`animote.stages.features`) and ``animote animate`` share one call.

Store contract (written by the stage): ``features`` float32 (frames, dim), exactly the chunk's
video frame count, finite; attributes name the backend, model, revision, layer, sample rate,
native frame rate and video fps. Stores live under
``results/features/<type>/<variant>/<recording>/<chunk>.zarr`` (see
:func:`animote.features.backends.cache_key`), so switching backends never overwrites another
backend's cache, and switching back finds it again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .align import resample_to_frames
from .backends import SAMPLE_RATE, Backend, ModelUnavailable, cache_key, job_workers, make_backend, uses_torch

__all__ = ["ROLES", "FeatureSource", "active_specs", "compute_features", "AlignedFeatures", "resample_to_frames", "cache_key",
           "make_backend", "ModelUnavailable", "SAMPLE_RATE", "job_workers", "uses_torch"]

ROLES = ("phonetic", "emotion")  # the feature roles: the config names a backend for each, the network reads them


class FeatureSource(NamedTuple):
    """Where a feature role's stores come from: the backend's cache key (its folder under
    ``results/features/``) and its full spec."""

    cache_key: str
    spec: dict


def active_specs(features: Mapping[str, Any]) -> dict[str, FeatureSource]:
    """The backend the config selects for each role of :data:`ROLES`: role -> its source.
    The spec carries the config's ``offline`` and ``device`` so that they reach the job."""
    out = {}
    for role in ROLES:
        name = features[role]
        if name not in features["backends"]:
            raise ValueError(f"config key 'features.{role}': {name!r} is not one of features.backends "
                             f"({', '.join(features['backends'])})")
        spec = dict(features["backends"][name], offline=features["offline"], device=features["device"])
        out[role] = FeatureSource(cache_key(spec), spec)
    return out


@dataclass
class AlignedFeatures:
    frames: np.ndarray  # (n_frames, D) float32 on the video frames
    attrs: dict[str, Any]  # backend description, native rate and frames, real-time factor
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. the emotion model's pooled (windows, 3)


def compute_features(audio: np.ndarray, sample_rate: int, spec: Mapping[str, Any] | Backend, n_frames: int,
                     fps: float, name: str = "audio") -> AlignedFeatures:
    """One backend's features for mono ``audio`` (16 kHz float32), on exactly ``n_frames`` video
    frames at ``fps``. ``spec`` is a backend spec (or an already loaded backend, to reuse its
    model). ``name`` says what the audio is, for error messages. With ``offline`` in the spec
    (the default) the Hugging Face hub is never contacted, so a missing model fails at once."""
    backend = spec if isinstance(spec, Backend) else make_backend(spec)
    if backend.spec.get("offline", True):
        os.environ["HF_HUB_OFFLINE"] = "1"
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"{name}: audio is {sample_rate} Hz, the feature backends need {SAMPLE_RATE}")
    if len(audio) == 0:
        raise ValueError(f"{name}: no audio samples")
    t = time.perf_counter()
    try:
        feats = backend.compute(audio)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{name}: {exc}") from None
    seconds = time.perf_counter() - t
    if not np.isfinite(feats.frames).all():
        bad = int((~np.isfinite(feats.frames)).any(axis=1).sum())
        raise ValueError(f"{name}: {backend.spec['type']} gave {bad} frames with NaN/inf")
    aligned = resample_to_frames(feats.frames, feats.rate, n_frames, fps, feats.first_centre_s)
    attrs = dict(backend.attrs, cache_key=cache_key(backend.spec), n_frames=int(n_frames), fps=float(fps),
                 native_rate=feats.rate, native_frames=int(len(feats.frames)), dim=int(aligned.shape[1]),
                 real_time_factor=seconds / (len(audio) / sample_rate))
    return AlignedFeatures(aligned, attrs, feats.extra)
