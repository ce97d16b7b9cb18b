"""The library installs beside a lab's own environment: a fresh virtual environment whose
site-packages see an existing set of packages (this project's pinned torch, numpy, mediapipe ...;
not animote itself), into which pip installs animote's wheel with no package index, so every
declared requirement must be met by what is there and nothing can be replaced; then its
`animote animate` runs a checkpoint from the demo."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO

OWN = ("animote", "__editable__.animote", "__editable___animote")  # this checkout's editable install


def _lab_view(tmp_path: Path) -> Path:
    """The packages of this environment but animote, as a folder of links (the "lab's" site-packages)."""
    site = Path(sysconfig.get_paths()["purelib"])
    view = tmp_path / "lab-site-packages"
    view.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(OWN):
            (view / entry.name).symlink_to(entry)
    return view


@pytest.mark.slow
def test_animote_installs_over_an_existing_torch_and_animates(demo_run, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)], check=True,
                   capture_output=True, text=True)
    wheel = next(wheels.glob("animote-*.whl"))
    env = tmp_path / "env"
    subprocess.run([sys._base_executable, "-m", "venv", str(env)], check=True)
    py = env / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "lab.pth").write_text(f"import site; site.addsitedir({str(_lab_view(tmp_path))!r})\n")
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-index", str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr  # every requirement met by what is there: nothing to fetch
    assert "Uninstalling" not in r.stdout and "Collecting torch" not in r.stdout
    where = subprocess.run([str(py), "-c", "import animote, torch; print(animote.__file__); print(torch.__file__); "
                            "print(animote.__version__)"], capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(env)) and not where[1].startswith(str(env))  # animote here, torch the lab's
    import animote

    assert where[2] == animote.__version__
    meta = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('animote'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert meta == animote.__version__  # the version is written once, in animote/__init__.py
    chunk = next((demo_run / "results/demo/chunks").glob("c*.wav"))
    out = tmp_path / "out" / "a.mp4"
    r = subprocess.run([str(env / "bin" / "animote"), "animate", str(chunk), "--model",
                        str(demo_run / "results/train/default/recipe/model.pt"), "--out", str(out), "--size", "128"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.exists() and out.with_suffix(".npz").exists()
