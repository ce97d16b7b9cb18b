"""MLflow logged models and the registry (animote.tracking): a training run's model as a pyfunc
with a signature, its dataset as the run's input, the best experiment registered with the alias
`best`, and `animote animate --model models:/<name>@best`; with every remote unreachable."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ANIMOTE = str(Path(sys.executable).parent / "animote")

# Run in a fresh interpreter whose sockets cannot reach anything but local files: a connection to
# any host raises, so a hub lookup, a requirement inference or a telemetry ping would fail the test.
NO_NETWORK = """
import socket
def _refuse(self, address, *a, **k):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"network access attempted: {address}")
    return _connect(self, address, *a, **k)
_connect = socket.socket.connect
socket.socket.connect = _refuse
socket.create_connection = lambda address, *a, **k: (_ for _ in ()).throw(OSError(f"network access: {address}"))
"""


def _checkpoint(tmp_path: Path) -> Path:
    from animote.dataset import ChunkData, Dataset, SplitParams, write_dataset
    from animote.train import TrainConfig, fit, save_checkpoint

    rng = np.random.default_rng(0)
    chunks = [ChunkData("rec", f"c{i}", {"phonetic": rng.normal(size=(90, 4)).astype(np.float32)},
                        (0.01 * rng.normal(size=(90, 468, 3))).astype(np.float32), np.ones(90, bool),
                        ("train", "validation", "test")[i]) for i in range(3)]
    roles = {"phonetic": {"cache_key": "logmel/x", "spec": {"type": "logmel"}, "dim": 4}}
    write_dataset(tmp_path / "ds.zarr", chunks, {"rec": np.zeros((468, 3), np.float32)}, roles, 30.0,
                  SplitParams(1, 1, 1, 0), "hash0123")
    model = dict(d_model=8, heads=2, layers=1, ff_dim=16, dropout=0.0, positional_encoding=True, layer_norm=True,
                 causal=False, fusion_dim=8, lstm_hidden=8, lstm_layers=1, bidirectional=False)
    cfg = TrainConfig.from_dict(dict(
        roles=["phonetic"], targets=["offsets"], target_weights={"offsets": 1.0, "blendshapes": 1.0, "head_pose": 0.1},
        epochs=1, patience=0, batch_size=2, optimizer="adam", lr=1e-3, warmup_epochs=0, schedule="constant",
        lr_floor=0.05, weight_decay=0.0, lip_weight=0.0, input_noise=0.0, window=30, stride=30, temporal_weight=0.1,
        grad_clip=1.0, seed=0, device="cpu", amp=False, threads=1, model=model))
    ds = Dataset(tmp_path / "ds.zarr")
    save_checkpoint(tmp_path / "model.pt", fit(ds, cfg, progress=False).model, cfg, ds, {"experiment": "tiny"})
    return tmp_path / "model.pt"


def test_log_register_and_load_a_model_with_no_network(tmp_path):
    ckpt = _checkpoint(tmp_path)
    script = NO_NETWORK + textwrap.dedent(f"""
        import json, numpy as np, mlflow
        from pathlib import Path
        from animote import tracking
        from animote.predict import Predictor
        from animote.stages.train import requirements
        uri = "sqlite:///{tmp_path}/mlflow.db"
        tracking.init_store(uri, "animote", "{tmp_path}/artifacts", "{tmp_path}/store.json")
        tracking.start_sweep("{tmp_path}/store.json", "s", "{tmp_path}/parent.json")
        x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
        y = Predictor.load("{ckpt}").predict({{"phonetic": x}}).reshape(40, -1)
        with tracking.ExperimentRun("{tmp_path}/parent.json", "tiny", {{"lr": 0.001}}, {{}}) as run:
            run.log_dataset("{tmp_path}/ds.zarr", "hash0123", "dataset hash0123")
            with run.system_metrics(interval_s=0.2):
                import time; time.sleep(1.0)
            model_id = run.log_model("{ckpt}", x[:10], y[:10], requirements())
        tracking.log_to_run(uri, run.run_id, {{"test_r2": 0.5}}, [], model_id=model_id)
        version = tracking.register_best(uri, "animote-s", model_id, {{"animote.sweep": "s"}})
        client = mlflow.tracking.MlflowClient(uri)
        info = mlflow.models.get_model_info("models:/animote-s@best")
        pyfunc = mlflow.pyfunc.load_model("models:/animote-s@best").predict(x)
        path = tracking.download_model("models:/animote-s@best", uri, "{tmp_path}/dl")
        again = Predictor.load(path).predict({{"phonetic": x}}).reshape(40, -1)
        try:
            tracking.download_model("models:/animote-s@nope", uri, "{tmp_path}/dl2")
            missing = ""
        except LookupError as exc:
            missing = str(exc)
        r = client.get_run(run.run_id)
        print(json.dumps({{"version": version, "signature": info.signature is not None,
            "inputs": info.signature.inputs.to_dict(), "err": float(np.abs(pyfunc - y).max()),
            "again": float(np.abs(again - y).max()), "missing": missing,
            "models": [m.model_id for m in client.search_logged_models([r.info.experiment_id])],
            "linked": [m.key for m in client.get_logged_model(model_id).metrics],
            "datasets": [d.dataset.digest for d in r.inputs.dataset_inputs],
            "system": sorted(k for k in r.data.metrics if k.startswith("system/")),
            "kind": client.get_experiment(r.info.experiment_id).tags.get("mlflow.experimentKind")}}))
        """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["version"] == "1" and out["signature"] and out["inputs"][0]["tensor-spec"]["shape"] == [-1, 4]
    assert out["err"] < 1e-5 and out["again"] == 0.0  # the pyfunc and the downloaded checkpoint: the same offsets
    assert "animote-s@nope" in out["missing"] and "\n" not in out["missing"]
    assert len(out["models"]) == 1 and "test_r2" in out["linked"] and out["datasets"] == ["hash0123"]
    assert "system/cpu_utilization_percentage" in out["system"] and out["kind"] == "custom_model_development"
    bad = subprocess.run([ANIMOTE, "animate", str(ckpt), "--model", "models:/animote-s@nope", "--tracking-uri",
                          f"sqlite:///{tmp_path}/mlflow.db"], capture_output=True, text=True, cwd=tmp_path)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "animote-s@nope" in lines[0], bad.stderr
    gone = subprocess.run([ANIMOTE, "animate", str(ckpt), "--model", "models:/animote-s@best", "--tracking-uri",
                           "sqlite:///nowhere/mlflow.db"], capture_output=True, text=True, cwd=tmp_path)
    assert gone.returncode == 2 and "does not exist" in gone.stderr and len(gone.stderr.strip().splitlines()) == 1
    import socket

    with socket.socket() as s:  # a port nothing listens on: the server is unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = subprocess.run([ANIMOTE, "animate", str(ckpt), "--model", "models:/animote-s@best", "--tracking-uri",
                           f"http://127.0.0.1:{port}"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = down.stderr.strip().splitlines()
    assert down.returncode == 2 and len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], down.stderr[-2000:]


@pytest.mark.slow
def test_the_demo_registers_its_best_experiment_and_animates_it_by_alias(demo_run, tmp_path):
    import mlflow
    import pandas as pd

    from animote.export import read_mesh_sequence
    from animote.tracking import follow_move

    uri = f"sqlite:///{demo_run}/results/mlflow/mlflow.db"
    follow_move(demo_run / "results/mlflow/mlflow.db")  # what animote's own client does first (a copied store)
    reg = json.loads((demo_run / "results/train/default/registered.json").read_text())
    summary = pd.read_csv(demo_run / "results/train/default/sweep.tsv", sep="\t")
    assert reg["experiment"] == summary.loc[summary.val_loss.idxmin(), "experiment"]  # by validation, not test
    mlflow.set_tracking_uri(uri)
    client = mlflow.tracking.MlflowClient(uri)
    mv = client.get_model_version_by_alias(reg["name"], "best")
    assert mv.tags["animote.experiment"] == reg["experiment"] and mv.source == f"models:/{reg['model_id']}"
    exp = client.get_experiment_by_name("animote")
    models = client.search_logged_models([exp.experiment_id])
    assert len(models) == len(summary) and all(mlflow.models.get_model_info(m.model_uri).signature for m in models)
    speech = next((demo_run / "results/demo/chunks").glob("c*.wav"))
    npz = {}
    for name, model in (("alias", f"models:/{reg['name']}@best"),
                        ("file", str(demo_run / f"results/train/default/{reg['experiment']}/model.pt")),
                        ("folder", str(demo_run / f"results/models/default/{reg['experiment']}"))):
        r = subprocess.run([ANIMOTE, "animate", str(speech), "--model", model, "--out", str(tmp_path / f"{name}.mp4"),
                            "--size", "128"], capture_output=True, text=True, cwd=demo_run)
        assert r.returncode == 0, r.stderr
        npz[name] = read_mesh_sequence(tmp_path / f"{name}.npz")["meshes"]
    np.testing.assert_array_equal(npz["alias"], npz["file"])
    np.testing.assert_array_equal(npz["folder"], npz["file"])
    card = (demo_run / f"results/models/default/{reg['experiment']}/README.md").read_text()
    assert "**Licence: Non-commercial" in card and "| baseline: ridge" in card  # eGeMAPS: openSMILE's licence


@pytest.mark.slow
def test_mlflow_ui_opens_on_the_training_runs_and_lists_the_registered_model(demo_run, tmp_path):
    """`mlflow ui` on the demo's store, in headless Chromium, at the address the README gives: the
    experiment opens in the model training view (its runs, not the GenAI overview, where MLflow
    3.17 lands by default whatever the experiment's kind tag), and the Models page lists the
    registered model with its alias. Screenshots are kept in the test's folder (ANIMOTE_SCREENSHOTS
    copies them out)."""
    import os
    import shutil
    import socket
    import time
    import urllib.request

    from browser import Browser

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = demo_run / "results/mlflow/mlflow.db"
    ui = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{db}",
                           "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"))
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        exp_id = json.loads((demo_run / "results/mlflow/experiment.json").read_text())["experiment_id"]
        reg = json.loads((demo_run / "results/train/default/registered.json").read_text())
        with Browser() as b:
            b.goto(f"{base}/#/experiments/{exp_id}?workflowType=machine_learning")
            b.wait_for("document.body.innerText.includes('sweep default')", timeout=90)
            text = b.js("document.body.innerText")
            b.screenshot(tmp_path / "experiment.png")
            assert "Run Name" in text and "Dataset" in text and "matching runs" in text  # the runs table
            assert "No data available" not in text and "Traces\n0" not in text
            b.goto(f"{base}/#/models?workflowType=machine_learning")
            b.wait_for(f"document.body.innerText.includes({reg['name']!r})", timeout=60)
            b.screenshot(tmp_path / "models.png")
            assert "best" in b.js("document.body.innerText")  # the alias beside the version
    finally:
        ui.terminate()
        ui.wait(timeout=20)
    if os.environ.get("ANIMOTE_SCREENSHOTS"):
        for name in ("experiment.png", "models.png"):
            shutil.copy(tmp_path / name, Path(os.environ["ANIMOTE_SCREENSHOTS"]) / name)
