import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GLOG_minloglevel", "2")

from helpers import SHORT_DEMO, snakemake, start_snakemake, workspace  # noqa: E402


# The two demo runs the workflow tests read, started in the background as soon as the tests that
# need them are collected (each takes minutes on 2 cores; meanwhile the other tests run on the
# cores they leave idle). ANIMOTE_REUSE_<NAME>=<folder> reuses a finished one instead (when
# working on the tests).
RUNS = {
    "demo_run": SHORT_DEMO,  # the short demo: 45 s, small frames, 10 s chunks, a 4-experiment sweep
    # the embedded demo as a new user gets it (default config), with the sweep cut to its default
    # experiment: the short demo's tests cover the other experiments
    "default_demo": {"sweep": {"run": ["baseline"]}},
}
_background: dict = {}  # name -> (folder, process, output file)


def _needs(item, name: str) -> bool:
    return name in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """Tests on the default demo go last: its run, the longer, has then had the longest to finish."""
    items.sort(key=lambda item: _needs(item, "default_demo"))  # stable: the order within each part is kept


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    for name, overrides in RUNS.items():
        if os.environ.get(f"ANIMOTE_REUSE_{name.upper()}") or not any(_needs(i, name) for i in session.items):
            continue
        wd = workspace(session.config._tmp_path_factory.mktemp(name), overrides)
        out = open(wd / "snakemake.out", "w")
        _background[name] = (wd, start_snakemake(wd, stdout=out), out)


def pytest_sessionfinish(session, exitstatus):
    for _, proc, out in _background.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


def _finished_run(name: str, tmp_path_factory) -> Path:
    if os.environ.get(f"ANIMOTE_REUSE_{name.upper()}"):
        return Path(os.environ[f"ANIMOTE_REUSE_{name.upper()}"])
    if name not in _background:  # not started at collection
        wd = workspace(tmp_path_factory.mktemp(name), RUNS[name])
        snakemake(wd)
        return wd
    wd, proc, out = _background[name]
    rc = proc.wait(timeout=1800)
    out.flush()
    if rc != 0:
        raise AssertionError(f"the {name} workflow run failed ({rc}):\n{(wd / 'snakemake.out').read_text()[-6000:]}")
    return wd


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The short demo run once to the end; tests read its results."""
    return _finished_run("demo_run", tmp_path_factory)


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory):
    """The embedded demo run to the end (default config, the default experiment only)."""
    return _finished_run("default_demo", tmp_path_factory)


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


