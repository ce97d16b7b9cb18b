import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GLOG_minloglevel", "2")

from helpers import SHORT_DEMO, snakemake, workspace  # noqa: E402


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The short demo run once to the end; tests read its results.
    ANIMOTE_REUSE_DEMO_RUN=<folder> reuses a finished one (when working on the tests)."""
    if os.environ.get("ANIMOTE_REUSE_DEMO_RUN"):
        return Path(os.environ["ANIMOTE_REUSE_DEMO_RUN"])
    wd = workspace(tmp_path_factory.mktemp("demo_run"), SHORT_DEMO)
    snakemake(wd)
    return wd


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory):
    """The embedded demo run to the end as a new user gets it (default config), with the sweep cut
    to its default experiment: the short demo's tests cover the other experiments.
    ANIMOTE_REUSE_DEFAULT_DEMO=<folder> reuses a finished one (when working on the tests)."""
    if os.environ.get("ANIMOTE_REUSE_DEFAULT_DEMO"):
        return Path(os.environ["ANIMOTE_REUSE_DEFAULT_DEMO"])
    wd = workspace(tmp_path_factory.mktemp("default_demo"), {"sweep": {"run": ["baseline"]}})
    snakemake(wd)
    return wd


@pytest.fixture(scope="session")
def clap_params():
    from animote import config
    from helpers import REPO

    cfg = config.load(REPO / "config" / "config.yaml", schema=REPO / "config" / "schema.yaml")
    return config.ClapParams.from_config(cfg)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny Wav2Vec2 and emotion models with random weights, saved like hub checkpoints."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from animote.features.backends import emotion_model_class

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
               do_stable_layer_norm=True, feat_extract_norm="layer")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                                         return_attention_mask=True)
    Wav2Vec2Model(Wav2Vec2Config(**cfg)).save_pretrained(root / "w2v")
    extractor.save_pretrained(root / "w2v")
    emo_cfg = Wav2Vec2Config(**cfg, num_labels=3, final_dropout=0.1)
    emotion_model_class()(emo_cfg).save_pretrained(root / "emotion")
    extractor.save_pretrained(root / "emotion")
    return root


