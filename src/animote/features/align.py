"""Aligning feature frames to video frames: the one place this happens."""

from __future__ import annotations

import numpy as np


def resample_to_frames(features: np.ndarray, native_rate: float, n_frames: int, fps: float,
                       first_centre_s: float = 0.0) -> np.ndarray:
    """Resample ``features`` (T, D), whose frame ``i`` is centred at ``first_centre_s + i / native_rate``
    seconds, to exactly ``n_frames`` video frames (frame ``f`` centred at ``(f + 0.5) / fps``).

    Linear interpolation between the two nearest feature frames; before the first or after
    the last feature frame the edge value holds. Works for any pair of rates (50 Hz wav2vec2,
    100 Hz eGeMAPS, 30 or 25 fps video).
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features must be (frames, dim) with frames > 0, got {features.shape}")
    pos = ((np.arange(n_frames) + 0.5) / fps - first_centre_s) * native_rate  # in feature frames
    pos = np.clip(pos, 0, len(features) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(features) - 1)
    w = (pos - lo)[:, None].astype(np.float32)
    return (1 - w) * features[lo] + w * features[hi]
