"""Benchmark: real-time factor of each feature backend on a 30 s chunk of real speech, this machine.

    .venv/bin/python benchmarks/features.py            # all backends; wav2vec2 tiny and full-size (random weights)
    .venv/bin/python benchmarks/features.py --no-large # skip the full-size wav2vec2 (1.2 GB written to /tmp)

Real-time factor = compute seconds / audio seconds (model loading reported apart). The full-size
architecture is facebook/wav2vec2-large-960h-lv60-self's (24 layers, 1024-d) with random
weights: the timing is the same as with the real weights.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000


def speech(seconds: float, workdir: Path) -> np.ndarray:
    from animote.demo import speech as sp

    parts, total = [], 0
    for audio, sr, _ in sp.synthesize(sp.sentences().text.tolist()[:14], workdir):
        y = sp.restyle(audio, sr, sp.Style(1, 1, 0, 1, 0, 0), SR)
        parts += [y, np.zeros(SR // 2, np.float32)]
        total += len(y) + SR // 2
        if total >= seconds * SR:
            break
    return np.concatenate(parts)[: int(seconds * SR)]


def save_w2v(root: Path, large: bool) -> tuple[Path, Path]:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from animote.features.backends import emotion_model_class

    torch.manual_seed(0)
    if large:
        cfg = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                   do_stable_layer_norm=True, feat_extract_norm="layer")
    else:
        cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                   do_stable_layer_norm=True, feat_extract_norm="layer")
    ext = Wav2Vec2FeatureExtractor(do_normalize=True)
    tag = "large" if large else "tiny"
    Wav2Vec2Model(Wav2Vec2Config(**cfg)).save_pretrained(root / f"w2v-{tag}")
    ext.save_pretrained(root / f"w2v-{tag}")
    emotion_model_class()(Wav2Vec2Config(**cfg, num_labels=3, final_dropout=0.1)).save_pretrained(root / f"emo-{tag}")
    ext.save_pretrained(root / f"emo-{tag}")
    return root / f"w2v-{tag}", root / f"emo-{tag}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--no-large", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args()

    import torch

    from animote.features.backends import make_backend

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="animote-bench-features-"))
    try:
        audio = speech(args.seconds, root / "speech")
        specs = {
            "logmel": {"type": "logmel", "n_mels": 80, "hop_ms": 10, "n_fft": 400},
            "egemaps": {"type": "egemaps"},
            "whisper tiny.en (ctranslate2, 1 thread)": {"type": "whisper", "model": "bundled:tiny.en", "threads": 1},
            "whisper tiny.en (ctranslate2, 2 threads)": {"type": "whisper", "model": "bundled:tiny.en", "threads": 2},
        }
        sizes = [False] + ([] if args.no_large else [True])
        for large in sizes:
            w2v, emo = save_w2v(root, large)
            tag = "full-size (24 x 1024)" if large else "tiny (2 x 32)"
            common = {"revision": "main", "layer": -1, "window_s": 30, "context_s": 1, "offline": True,
                      "device": "auto"}
            specs[f"wav2vec2 {tag}"] = dict(common, type="wav2vec2", model=str(w2v))
            specs[f"wav2vec2-emotion {tag}"] = dict(common, type="wav2vec2-emotion", model=str(emo))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"audio: {len(audio) / SR:.1f} s of speech; device for wav2vec2: {device}; torch threads "
              f"{torch.get_num_threads()}")
        print(f"{'backend':48s} {'load s':>7s} {'compute s':>10s} {'RTF':>7s}  output")
        for name, spec in specs.items():
            backend = make_backend(spec)
            t = time.perf_counter()
            backend.load()
            load = time.perf_counter() - t
            backend.compute(audio[: SR])  # warm-up
            t = time.perf_counter()
            feats = backend.compute(audio)
            took = time.perf_counter() - t
            print(f"{name:48s} {load:7.2f} {took:10.3f} {took / (len(audio) / SR):7.4f}  "
                  f"{feats.frames.shape[0]} x {feats.frames.shape[1]} at {feats.rate:.0f} Hz")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
