"""The paper's AudioConditionedNetwork (section 4.1), built from a config dataclass.

Input: per-frame audio features on the video frames (the cached phonetic and emotion
features, normalised and concatenated). Output: per-frame mesh offsets from the neutral
mesh, 468 x 3, in the dataset's normalised units. Data flow, with shapes::

    features (B, T, D_in)
      -> input projection                      (B, T, d_model)
      -> + positional encoding                 (switch: positional_encoding)
      -> transformer encoder, N heads          (switch: heads; causal attention or not; pre- or post-norm)
      -> layer norm                            (switch: layer_norm)
      -> fusion MLP: 3 x (linear + ReLU)       (B, T, d_model)
      -> decoder: linear -> 2-layer LSTM       (switch: bidirectional) -> linear
    {"offsets": (B, T, 468, 3)}
      and, per channel target (train.targets), one more linear head on the LSTM's output
    {"blendshapes": (B, T, 52), "head_pose": (B, T, 6)}

The paper's ResNet-18 front end over spectrograms (its 4.1.1) is not here: the paper's own
future work (5.2) replaces it with wav2vec2 features, which is what the cached features are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

N_VERTICES = 468  # MediaPipe FaceMesh


@dataclass(frozen=True)
class ModelConfig:
    """Every field has a default here only so the model can be built by hand (tests,
    notebooks); the workflow always passes the config's ``train.model`` section in full."""

    input_dim: int = 409  # whisper tiny.en (384) + eGeMAPS (25); set from the dataset, never by hand
    d_model: int = 128  # width of the encoder; the paper does not give one, 128 trains on a CPU
    heads: int = 2  # attention heads: the paper's baseline (Fig 4.3 tries 2, 4, 8)
    layers: int = 2  # transformer encoder layers
    ff_dim: int = 256  # feed-forward width inside each encoder layer (2 x d_model)
    dropout: float = 0.1  # in the encoder and fusion MLP; the demo is small and overfits without it
    positional_encoding: bool = True  # the paper's "balanced positional encoding" (ablated in Fig 4.4)
    layer_norm: bool = True  # layer norm after the encoder (ablated in Fig 4.4)
    causal: bool = True  # each frame attends only to the past: the paper's streaming-capable setting
    fusion_dim: int = 128  # width of the 3-layer fusion MLP
    lstm_hidden: int = 128  # the decoder's 2-layer LSTM
    lstm_layers: int = 2  # the paper's decoder has two
    bidirectional: bool = False  # the paper's future work: a decoder that also sees the future
    norm_first: bool = False  # pre-norm encoder layers (stabler at higher learning rates); the paper's: post-norm
    n_vertices: int = N_VERTICES
    channels: tuple[tuple[str, int], ...] = ()  # (channel target, width) of each head beside the offsets'; set
    # from train.targets and the dataset, never by hand

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **override) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        d = {**data, **override}
        d["channels"] = tuple((str(t), int(n)) for t, n in d.get("channels", ()))
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PositionalEncoding(nn.Module):
    """Fixed sinusoids (Vaswani et al.). "Balanced" as the paper asks: every position gets a
    vector of the same norm, so no frame is favoured; scaled to the projected features' size."""

    def __init__(self, d_model: int, max_len: int = 10000):
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)  # (L, 1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (d/2,)
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
        self.register_buffer("pe", pe / math.sqrt(d_model / 2), persistent=False)  # unit RMS per element

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, d)
        if x.shape[1] > self.pe.shape[0]:
            raise ValueError(f"sequence of {x.shape[1]} frames is longer than the encoding's {self.pe.shape[0]}")
        return x + self.pe[: x.shape[1]].to(x.dtype)  # (B, T, d)


class AudioConditionedNetwork(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        if c.d_model % c.heads:
            raise ValueError(f"d_model {c.d_model} is not divisible by heads {c.heads}")
        self.input_proj = nn.Linear(c.input_dim, c.d_model)
        self.pos = PositionalEncoding(c.d_model) if c.positional_encoding else nn.Identity()
        layer = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ff_dim, c.dropout, batch_first=True,
                                           norm_first=c.norm_first)
        self.encoder = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model) if c.layer_norm else nn.Identity()
        self.fusion = nn.Sequential(
            nn.Linear(c.d_model, c.fusion_dim), nn.ReLU(), nn.Dropout(c.dropout),
            nn.Linear(c.fusion_dim, c.fusion_dim), nn.ReLU(), nn.Dropout(c.dropout),
            nn.Linear(c.fusion_dim, c.fusion_dim), nn.ReLU(),
        )
        self.dec_in = nn.Linear(c.fusion_dim, c.lstm_hidden)
        self.lstm = nn.LSTM(c.lstm_hidden, c.lstm_hidden, num_layers=c.lstm_layers, batch_first=True,
                            bidirectional=c.bidirectional)
        out_dim = c.lstm_hidden * (2 if c.bidirectional else 1)
        self.head = nn.Linear(out_dim, c.n_vertices * 3)
        # Zero-initialised output heads (as FaceFormer): training starts from the mean of each target.
        self.channel_heads = nn.ModuleDict({t: nn.Linear(out_dim, n) for t, n in c.channels})
        for head in (self.head, *self.channel_heads.values()):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """features (B, T, input_dim) -> {"offsets": (B, T, n_vertices, 3), channel target: (B, T, C)}."""
        b, t, _ = features.shape
        x = self.input_proj(features)  # (B, T, d_model)
        x = self.pos(x)  # (B, T, d_model)
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=x.device, dtype=x.dtype) \
            if self.config.causal else None  # (T, T): -inf above the diagonal
        x = self.encoder(x, mask=mask, is_causal=self.config.causal)  # (B, T, d_model)
        x = self.norm(x)  # (B, T, d_model)
        x = self.fusion(x)  # (B, T, fusion_dim)
        x, _ = self.lstm(self.dec_in(x))  # (B, T, lstm_hidden x directions)
        out = {"offsets": self.head(x).view(b, t, self.config.n_vertices, 3)}  # (B, T, 468, 3)
        out.update({name: head(x) for name, head in self.channel_heads.items()})  # (B, T, C)
        return out


def build_model(config: ModelConfig | Mapping[str, Any]) -> AudioConditionedNetwork:
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config)
    return AudioConditionedNetwork(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
