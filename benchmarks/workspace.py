"""Scratch workflow folders for the benchmarks: the default config, a demo sheet, an override."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OVERRIDE = "bench.yaml"


def set_recording(wd: Path, video: str) -> None:
    """Make the sheet's one recording (id ``demo``) the video at ``video``."""
    _sheet(wd, video)


def _sheet(wd: Path, video: str) -> None:
    (wd / "config" / "recordings.tsv").write_text(f"id\tpath\tneutral\ndemo\t{video}\t\n")


def make(wd: Path, overrides: dict) -> Path:
    """A workflow folder at ``wd`` running the demo, with ``overrides`` merged over the default config."""
    (wd / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", wd / "config" / "config.yaml")
    _sheet(wd, "results/demo/demo.mp4")
    (wd / OVERRIDE).write_text(yaml.safe_dump(overrides))
    return wd


def snakemake(wd: Path, *targets: str, cores: int = 2) -> None:
    subprocess.run([str(Path(sys.executable).parent / "snakemake"), *targets, "-s", str(REPO / "workflow" / "Snakefile"),
                    "--configfile", OVERRIDE, "--cores", str(cores), "--quiet", "all"], cwd=wd, check=True)


def join_demo(wd: Path, repeat: int) -> None:
    """Make the sheet's recording the synthesised demo joined end to end ``repeat`` times (stream
    copy): a long input without a long synthesis."""
    (wd / "list.txt").write_text("file 'results/demo/demo.mp4'\n" * repeat)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "concat", "-safe", "0", "-i", "list.txt",
                    "-c", "copy", "long.mp4"], cwd=wd, check=True)
    _sheet(wd, "long.mp4")
