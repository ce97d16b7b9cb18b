"""Runs that are not a clean start: results moved elsewhere, library code edited, a run killed in
the middle, a broken recording beside a good one. Each works on a copy of the finished short demo."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, scheduled, snakemake, start_snakemake

from animote.chunks import load_chunks
from animote.store import read_store

pytestmark = pytest.mark.slow

TEXT = {".tsv", ".json", ".csv", ".yaml", ".txt", ".html"}


def _copy(run: Path, dst: Path, metadata: bool = True) -> Path:
    """A copy of a finished run; without Snakemake's metadata it is a results/ folder carried to
    another machine (config and results only)."""
    shutil.copytree(run, dst, symlinks=True, ignore=None if metadata else shutil.ignore_patterns(".snakemake"))
    return dst


def test_library_code_edit_is_listed_and_reruns_only_its_stage(demo_run, tmp_path):
    """The stage's library modules are hashed into its jobs' params: after an edit to the mesh
    stage's code, ``snakemake --summary`` marks exactly the mesh stage's outputs "params changed",
    and a run remakes them and what depends on them. (The edit is to the stage's own module:
    ``mesh.py`` is also imported by training and evaluation, which draw with its triangles.)
    (``--list-changes params`` in Snakemake 9.27 lists every
    output that has params recorded, changed or not.)"""
    shutil.copytree(REPO / "src/animote", tmp_path / "src/animote", ignore=shutil.ignore_patterns("__pycache__"))
    mesh_py = tmp_path / "src/animote/stages/mesh.py"
    mesh_py.write_text(mesh_py.read_text() + "\n# an edit\n")
    env = {"PYTHONPATH": str(tmp_path / "src")}  # the workflow imports the edited copy
    assert "params changed" not in snakemake(demo_run, "--summary").stdout
    rows = [line.split("\t") for line in snakemake(demo_run, "--summary", env=env).stdout.splitlines()]
    header = rows[0]
    changed = {r[0] for r in rows[1:] if len(r) == len(header) and r[header.index("status")] == "params changed"}
    expected = {"results/demo/mesh", "results/demo/aligned", "results/demo/neutral.zarr", "results/demo/mesh_summary.tsv", "results/demo/mesh_preview.png"}
    assert changed == expected
    after = scheduled(snakemake(demo_run, "-n", env=env))
    assert set(after) == {"face_mesh", "align_mesh", "dataset", "train", "sweep_summary", "evaluate",
                          "evaluate_baseline", "sweep_report", "share_model", "register_model", "all"}
    assert after["face_mesh"] == 1  # one job per recording


def _start(wd: Path, *targets: str) -> subprocess.Popen:
    return start_snakemake(wd, *targets, start_new_session=True)  # its own process group, to kill it whole


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 120) -> None:
    """SIGKILL the whole run (snakemake and its jobs: no clean-up runs) once ``ready()``."""
    end = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < end, f"no {what} within {timeout} s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_moved_results_resume_after_kills_to_the_same_results(demo_run, tmp_path):
    """A finished run carried elsewhere (config and results only) is up to date there; killed
    outright (SIGKILL) in the middle of the landmark stage and of a training job, it resumes to
    the results of the uninterrupted run, and nothing half-written is taken as finished."""
    wd = _copy(demo_run, tmp_path / "elsewhere" / "run", metadata=False)
    original = demo_run.with_name(demo_run.name + "-hidden")
    os.rename(demo_run, original)  # the old folder is gone: nothing may read it
    try:
        _moved_results_then_kills(wd, original, demo_run)
    finally:
        os.rename(original, demo_run)


def _moved_results_then_kills(wd: Path, original: Path, old_path: Path) -> None:
    for path in (wd / "results").rglob("*"):
        if path.is_symlink():
            assert not os.path.isabs(os.readlink(path)), path
        elif path.suffix in TEXT and path.is_file() and not {"logs", "benchmarks"} & set(path.parts):
            assert str(old_path) not in path.read_text(errors="replace"), path
    for chunk in load_chunks(wd / "results/demo/chunks"):
        assert Path(chunk.video).resolve().is_relative_to(wd) and Path(chunk.video).exists()
    assert scheduled(snakemake(wd, "-n")) == {}

    # the landmark stage (one job for the recording's chunks), killed once it has finished a chunk:
    # the rerun keeps that chunk and tracks the others
    target, partial = "results/demo/mesh", wd / "results/demo/mesh.partial"
    mesh_log = wd / "results/logs/face_mesh/demo.log"
    shutil.rmtree(wd / target)
    mesh_log.unlink()
    proc = _start(wd, target)
    _kill_when(proc, lambda: partial.exists() and any(p.suffix == ".zarr" and not p.name.startswith(".")
                                                      for p in partial.iterdir()), "a tracked chunk")
    assert not (wd / target).exists()  # nothing under the final name until every chunk is done
    snakemake(wd, "--unlock")  # Snakemake's lock outlives a SIGKILL; the README says to unlock

    # the training stage: one experiment, killed once its training loop has started
    exp = "results/train/default/recipe"
    for name in ("model.pt", "run.json", "history.tsv", "loss.png"):
        (wd / f"{exp}/{name}").unlink()
    log = wd / "results/logs/train/default/recipe.log"
    log.unlink()
    proc = _start(wd, f"{exp}/model.pt")
    _kill_when(proc, lambda: log.exists() and "training on" in log.read_text(errors="replace"), "training")
    assert not (wd / f"{exp}/model.pt").exists() and not (wd / f"{exp}/run.json").exists()
    snakemake(wd, "--unlock")

    snakemake(wd, target, f"{exp}/model.pt")
    assert "chunks kept from an interrupted run" in mesh_log.read_text()
    assert not partial.exists()
    for c in load_chunks(wd / "results/demo/chunks"):
        again, attrs = read_store(wd / f"{target}/{c.chunk}.zarr")
        first, _ = read_store(original / f"{target}/{c.chunk}.zarr")
        assert attrs["n_frames"] == len(first["landmarks"])
        np.testing.assert_allclose(again["landmarks"], first["landmarks"], atol=1e-5)
        np.testing.assert_array_equal(again["face_found"], first["face_found"])
    resumed = json.loads((wd / f"{exp}/run.json").read_text())
    uninterrupted = json.loads((original / f"{exp}/run.json").read_text())
    assert resumed["best"]["epoch"] == uninterrupted["best"]["epoch"]
    assert resumed["best"]["val_loss"] == pytest.approx(uninterrupted["best"]["val_loss"], rel=1e-4)
    assert [p for p in (wd / "results").rglob(".tmp-*")] == []  # the killed jobs' temporaries are gone
    # the moved MLflow store: the new training run's artifacts, and the old runs', point inside it
    con = sqlite3.connect(wd / "results/mlflow/mlflow.db")
    uris = [u for (u,) in con.execute("SELECT artifact_uri FROM runs")]
    assert len(uris) > 1 and all(u.startswith((wd / "results/mlflow/artifacts").as_uri()) for u in uris), uris
    assert resumed["run_id"] in {u.split("/")[-2] for u in uris}


def test_keep_going_finishes_the_good_recording_and_names_the_broken_one(demo_run, tmp_path):
    wd = _copy(demo_run, tmp_path / "run")
    broken = wd / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 200)
    with open(wd / "config/recordings.tsv", "a") as sheet:
        sheet.write("broken_take\tbroken.mp4\t\n")
    redo = ["results/demo/mesh", "results/demo/aligned", "results/demo/mesh_summary.tsv",
            "results/demo/features.tsv"]
    for path in redo:
        shutil.rmtree(wd / path) if (wd / path).is_dir() else (wd / path).unlink()
    proc = snakemake(wd, "--keep-going", check=False)
    assert proc.returncode != 0
    for path in redo:  # the good recording's work goes on without the broken one
        assert (wd / path).exists(), path
    tail = proc.stderr.strip().splitlines()[-8:]
    text = "\n".join(tail)
    assert "recording 'broken_take'" in text and "read results/logs/probe/broken_take.log" in text, text
    assert "recording 'broken_take'" in (wd / "results/logs/probe/broken_take.log").read_text()
