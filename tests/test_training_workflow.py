"""End-to-end: dataset, one training job per sweep experiment, MLflow, evaluation and the sweep's
report, on the short demo."""

import json
import subprocess
import sys
from datetime import datetime

import pandas as pd
import pytest
import yaml
from helpers import scheduled, snakemake

from animote import tracking

pytestmark = pytest.mark.slow

EXPERIMENTS = ["recipe", "paper", "phonetic_only", "emotion_only"]


def _log_span(path):
    stamps = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in path.read_text().splitlines()
              if line[:4].isdigit()]
    return min(stamps), max(stamps)


def test_every_experiment_is_a_child_run_with_per_epoch_metrics(demo_run, monkeypatch):
    store = json.loads((demo_run / "results/mlflow/experiment.json").read_text())
    parent = json.loads((demo_run / "results/train/default/parent_run.json").read_text())
    assert store["tracking_uri"] == "sqlite:///results/mlflow/mlflow.db"  # relative: the folder moves with results/
    monkeypatch.chdir(demo_run)  # the store's URI is relative to the folder snakemake ran in
    runs = tracking.sweep_runs(store["tracking_uri"], store["experiment_id"])
    parents = [r for r in runs if r["kind"] == "sweep"]
    children = {r["name"]: r for r in runs if r["kind"] == "experiment"}
    assert [p["run_id"] for p in parents] == [parent["run_id"]] and parents[0]["status"] == "FINISHED"
    assert sorted(children) == sorted(EXPERIMENTS)
    epochs = yaml.safe_load((demo_run / "test.yaml").read_text())["train"]["epochs"]
    for name, run in children.items():
        info = json.loads((demo_run / f"results/train/default/{name}/run.json").read_text())
        assert run["run_id"] == info["run_id"] and run["parent"] == parent["run_id"] and run["status"] == "FINISHED"
        for key in ("train_loss", "val_loss", "train_r2", "val_r2"):
            assert run["steps"][key] == epochs, (name, key, run["steps"])
        assert run["params"]["dataset_hash"] and run["params"]["model.heads"] == "2"
        assert {"model.pt", "loss.png", "history.tsv"} <= set(run["artifacts"])
    assert children["emotion_only"]["params"]["roles"] == "emotion"
    assert children["paper"]["params"]["model.causal"] == "True" and children["paper"]["params"]["optimizer"] == "adam"
    assert children["recipe"]["params"]["model.bidirectional"] == "True"
    # Training jobs ran side by side with other jobs (the test runs snakemake with 2 cores, one
    # thread per job): with another training job, or with an evaluation (an experiment's or a baseline's).
    trains = [_log_span(demo_run / f"results/logs/train/default/{n}.log") for n in EXPERIMENTS]
    others = [_log_span(p) for folder in ("evaluate_baseline", "evaluate/default")
              for p in (demo_run / "results/logs" / folder).glob("*.log")]
    assert any(a is not b and a[0] < b[1] and b[0] < a[1] for a in trains for b in trains + others), (trains, others)


def test_sweep_summary_has_a_row_per_experiment(demo_run):
    table = pd.read_csv(demo_run / "results/train/default/sweep.tsv", sep="\t").set_index("experiment")
    assert sorted(table.index) == sorted(EXPERIMENTS)
    assert {"lr", "batch_size", "epochs", "heads", "train_loss", "val_loss", "val_r2", "run_id"} <= set(table.columns)
    assert table.loc["phonetic_only", "roles"] == "phonetic"


def test_editing_one_experiment_reruns_only_it(demo_run):
    (demo_run / "lr.yaml").write_text("sweep:\n  experiments:\n    emotion_only: {lr: 0.0002}\n")
    proc = snakemake(demo_run, "-n", configs=("test.yaml", "lr.yaml"))
    assert scheduled(proc) == {"train": 1, "sweep_summary": 1, "evaluate": 1, "sweep_report": 1, "share_model": 1,
                               "register_model": 1, "all": 1}
    assert "results/train/default/emotion_only/model.pt" in proc.stdout
    assert "results/train/default/recipe/model.pt" not in proc.stdout


def test_window_length_retrains_without_rebuilding_the_dataset(demo_run):
    (demo_run / "window.yaml").write_text("train:\n  window: 60\n")
    jobs = scheduled(snakemake(demo_run, "-n", configs=("test.yaml", "window.yaml")))
    per_sweep = {"train": len(EXPERIMENTS), "evaluate": len(EXPERIMENTS), "sweep_summary": 1, "sweep_report": 1,
                 "share_model": len(EXPERIMENTS), "register_model": 1, "all": 1}
    # the test loss has a window of its own (evaluate.loss): the baselines are not refitted
    assert jobs == per_sweep
    (demo_run / "split.yaml").write_text("dataset:\n  seed: 3\n")
    jobs = scheduled(snakemake(demo_run, "-n", configs=("test.yaml", "split.yaml")))
    assert jobs == {"dataset": 1, **per_sweep, "evaluate_baseline": 4}
    (demo_run / "video.yaml").write_text("evaluate:\n  video_size: 256\n")
    jobs = scheduled(snakemake(demo_run, "-n", configs=("test.yaml", "video.yaml")))
    assert jobs == {"evaluate": len(EXPERIMENTS), "evaluate_baseline": 4, "sweep_report": 1,
                    "share_model": len(EXPERIMENTS), "register_model": 1, "all": 1}


def test_unknown_experiment_key_is_a_schema_error_naming_it(demo_run):
    (demo_run / "typo.yaml").write_text("sweep:\n  experiments:\n    baseline: {learning_rate: 0.1}\n")
    proc = snakemake(demo_run, "-n", configs=("test.yaml", "typo.yaml"), check=False)
    assert proc.returncode != 0
    assert "learning_rate" in proc.stdout + proc.stderr


def test_workflow_checkpoint_loads_weights_only_in_a_fresh_process(demo_run):
    code = ("import torch, sys; c = torch.load(sys.argv[1], weights_only=True); "
            "from animote.train import load_checkpoint; m, c = load_checkpoint(sys.argv[1]); "
            "x = torch.randn(1, 50, m.config.input_dim); print(tuple(m(x)['offsets'].shape), c['features']['phonetic']['cache_key'],"
            " c['features']['emotion']['cache_key'], sorted(c['neutral']), c['fps'])")
    proc = subprocess.run([sys.executable, "-c", code, str(demo_run / "results/train/default/recipe/model.pt")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(1,", "50,", "468,", "3)", "whisper/tiny.en", "egemaps/eGeMAPSv02-lld", "['demo']",
                                   "30.0"]


def test_seed_sweep_schedules_its_ten_experiments_on_the_same_dataset(demo_run):
    import shutil

    from helpers import REPO

    shutil.copy(REPO / "config/sweeps/paper.yaml", demo_run / "paper.yaml")
    jobs = scheduled(snakemake(demo_run, "-n", configs=("test.yaml", "paper.yaml")))
    # no dataset job and no baseline: they are shared with the default sweep
    assert jobs == {"sweep_run": 1, "train": 10, "sweep_summary": 1, "evaluate": 10, "sweep_report": 1,
                    "share_model": 10, "register_model": 1, "all": 1}


def test_each_experiment_run_holds_its_test_metrics_and_pictures(demo_run, monkeypatch):
    store = json.loads((demo_run / "results/mlflow/experiment.json").read_text())
    monkeypatch.chdir(demo_run)
    runs = tracking.sweep_runs(store["tracking_uri"], store["experiment_id"])
    children = {r["name"]: r for r in runs if r["kind"] == "experiment"}
    for name in EXPERIMENTS:
        ev = json.loads((demo_run / f"results/evaluate/default/{name}/metrics.json").read_text())
        run = children[name]
        assert ev["run_id"] == run["run_id"]
        assert run["metrics"]["test_r2"] == pytest.approx(ev["summary"]["r2"])
        assert {"test_loss", "test_lve", "test_lip_sync_lag", "test_r2_lips", "test_r2_absolute"} <= set(run["metrics"])
        assert "evaluation" in run["artifacts"]
    parent = next(r for r in runs if r["kind"] == "sweep")
    assert "report" in parent["artifacts"] and "recipe.test_r2" in parent["metrics"]


def test_sweep_report_tables_hold_every_experiment_and_the_baselines(demo_run):
    sweep = pd.read_csv(demo_run / "results/report/default/sweep.tsv", sep="\t").set_index("model")
    baselines = ["baseline: mean offset", "baseline: ridge (phonetic+emotion)", "baseline: ridge (phonetic)",
                 "baseline: ridge (emotion)"]
    assert list(sweep.index) == EXPERIMENTS + baselines
    for col in ("lr", "batch size", "epochs", "heads", "train loss", "validation loss", "test loss",
                "test R² (offsets)", "test R² (absolute, the paper's)", "LVE (‰ of width)", "lip-sync lag (frames)"):
        assert col in sweep.columns
    assert sweep.loc[EXPERIMENTS, ["train loss", "validation loss", "test loss"]].notna().all().all()
    assert abs(sweep.loc["baseline: mean offset", "test R² (offsets)"]) < 0.2  # about 0: the training mean
    assert (sweep["test R² (absolute, the paper's)"] > 0.99).all()  # why the paper's R² misleads
    for name in EXPERIMENTS:  # the table shows what the evaluation stage measured
        ev = json.loads((demo_run / f"results/evaluate/default/{name}/metrics.json").read_text())
        assert sweep.loc[name, "test R² (offsets)"] == pytest.approx(ev["summary"]["r2"], rel=1e-4)
    ablation = pd.read_csv(demo_run / "results/report/default/ablation.tsv", sep="\t").set_index("experiment")
    assert ablation.loc["recipe", "change from the defaults"] == "(defaults)"
    assert "baseline: ridge (phonetic+emotion)" in ablation.index  # ridge beside the networks in every table
    assert ablation.loc["paper", "change from the defaults"] == (
        "batch_size = 16, lr = 0.001, model.bidirectional = false, model.causal = true, optimizer = adam, "
        "patience = 0, weight_decay = 0.0")
    for table in (sweep, ablation):  # every ranking figure carries its interval
        for col in ("test R² (offsets) 95 % CI", "LVE (‰ of width) 95 % CI", "lip-sync r 95 % CI"):
            assert table[col].str.fullmatch(r"-?\d+\.\d+–-?\d+\.\d+").all(), (col, table[col])
    lo, hi = (float(x) for x in sweep.loc["recipe", "test R² (offsets) 95 % CI"].split("–"))
    assert lo <= sweep.loc["recipe", "test R² (offsets)"] <= hi
    features = pd.read_csv(demo_run / "results/report/default/features.tsv", sep="\t").set_index("region")
    assert list(features.index) == ["mouth_corners", "lips", "jaw", "brows", "eyes", "rest", "all"]
    assert {"network: phonetic+emotion", "network: phonetic", "network: emotion",
            "ridge: phonetic+emotion"} <= set(features.columns)
    assert "network: phonetic+emotion 95 % CI" in features.columns
    page = (demo_run / "results/report/default/features.html").read_text()
    assert "Adding emotion features to phonetic ones changes test R²" in page
    sweep_page = (demo_run / "results/report/default/sweep.html").read_text()
    assert "paired 95 % interval over the same test windows" in sweep_page


def test_evaluation_writes_pictures_and_a_playable_video(demo_run):
    folder = demo_run / "results/evaluate/default/recipe"
    for png in ("mesh.png", "error_map.png", "lip_gap.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ev = json.loads((folder / "metrics.json").read_text())
    chunk = ev["chunks"] and next(iter(ev["chunks"]))
    rec, ch = chunk.split("/")
    from animote.media import read_wav

    wav, sr = read_wav(demo_run / f"results/{rec}/chunks/{ch}.wav")
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_name,nb_read_frames,duration", "-of", "json", str(folder / "video/test.mp4")],
                         capture_output=True, text=True, check=True)
    video, audio = json.loads(out.stdout)["streams"]
    assert (video["codec_name"], audio["codec_name"]) == ("h264", "aac")
    assert abs(int(video["nb_read_frames"]) - round(len(wav) / sr * 30)) <= 1
    assert '<video id="mesh-video"' in (folder / "video/index.html").read_text()
