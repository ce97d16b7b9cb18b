import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GLOG_minloglevel", "2")

from helpers import SHORT_DEMO, snakemake, start_snakemake, workspace  # noqa: E402

# The two demo runs the workflow tests read. The default demo, the longer, starts in the background
# as soon as the tests that need them are collected, and its tests go last: meanwhile the other
# tests run on the core they leave idle. The SLURM test's run starts in the background as soon as
# the short demo is finished (it is mostly waiting), and that test goes last of all.
# ANIMOTE_REUSE_<NAME>=<folder> reuses a finished run instead (when working on the tests).
RUNS = {
    "demo_run": SHORT_DEMO,  # the short demo: 45 s, small frames, 10 s chunks, a 4-experiment sweep
    # the embedded demo as a new user gets it (default config), with the sweep cut to its default
    # experiment: the short demo's tests cover the other experiments
    "default_demo": {"sweep": {"run": ["recipe"]}},
}
BACKGROUND_RUNS = ("default_demo",)
_background: dict = {}  # name -> (folder, process, output file); "slurm" -> DemoOnSlurm
_wanted: set = set()  # fixtures the collected tests need


def _needs(item, name: str) -> bool:
    return name in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: (_needs(item, "slurm_demo"), _needs(item, "default_demo")))  # stable sort


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    _wanted.update(name for name in (*RUNS, "slurm_demo") if any(_needs(i, name) for i in session.items))
    for name in BACKGROUND_RUNS:
        if os.environ.get(f"ANIMOTE_REUSE_{name.upper()}") or name not in _wanted:
            continue
        wd = workspace(session.config._tmp_path_factory.mktemp(name), RUNS[name])
        out = open(wd / "snakemake.out", "w")
        # torch's OpenMP threads sleep rather than spin while they wait: the foreground tests share the cores
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        _background[name] = (wd, start_snakemake(wd, stdout=out, env=env), out)


def pytest_sessionfinish(session, exitstatus):
    for name, value in _background.items():
        if name == "slurm":
            value.stop_server()
            continue
        _, proc, out = value
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


def _finished_run(name: str, tmp_path_factory) -> Path:
    if os.environ.get(f"ANIMOTE_REUSE_{name.upper()}"):
        return Path(os.environ[f"ANIMOTE_REUSE_{name.upper()}"])
    if name not in _background:
        wd = workspace(tmp_path_factory.mktemp(name), RUNS[name])
        snakemake(wd)
        return wd
    wd, proc, out = _background[name]
    rc = proc.wait(timeout=1800)
    out.flush()
    if rc != 0:
        raise AssertionError(f"the {name} workflow run failed ({rc}):\n{(wd / 'snakemake.out').read_text()[-6000:]}")
    return wd


def _start_slurm(demo_run: Path, tmp_path_factory):
    import slurm_cluster
    from helpers import REPO

    why = slurm_cluster.available()
    if why:
        pytest.fail(why)
    _background["slurm"] = slurm_cluster.DemoOnSlurm(demo_run, tmp_path_factory.mktemp("slurm"), REPO).start()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The short demo run once to the end; tests read its results."""
    wd = _finished_run("demo_run", tmp_path_factory)
    if "slurm_demo" in _wanted and "slurm" not in _background:
        _start_slurm(wd, tmp_path_factory)  # copies the run now, before other tests change it
    return wd


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory):
    """The embedded demo run to the end (default config, the default experiment only)."""
    return _finished_run("default_demo", tmp_path_factory)


@pytest.fixture(scope="session")
def slurm_demo(demo_run, tmp_path_factory):
    """The short demo's training and evaluation on a throwaway SLURM (slurm_cluster.DemoOnSlurm),
    started when the short demo finished; wait() gives the result."""
    if "slurm" not in _background:
        _start_slurm(demo_run, tmp_path_factory)
    return _background["slurm"]


@pytest.fixture(scope="session")
def clap_params():
    from helpers import REPO

    from animote import claps, config

    cfg = config.load(REPO / "config" / "config.yaml", schema=REPO / "config" / "schema.yaml")
    return claps.ClapParams.from_config(cfg)


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


