"""Test helpers: real media made with ffmpeg, and workflow runs in a scratch folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BLOCK = 16  # pixels per bit in frame-index videos
BITS = 16


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def index_frame(i: int, width: int = BITS // 2 * BLOCK, height: int = 2 * BLOCK) -> np.ndarray:
    """A frame whose blocks spell the number ``i`` in binary (survives H.264)."""
    img = np.zeros((height, width, 3), np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            r, c = divmod(b, BITS // 2)
            img[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = 255
    return img


def read_index(frame: np.ndarray) -> int:
    value = 0
    for b in range(BITS):
        r, c = divmod(b, BITS // 2)
        block = frame[r * BLOCK + 4:(r + 1) * BLOCK - 4, c * BLOCK + 4:(c + 1) * BLOCK - 4]
        if block.mean() > 127:
            value |= 1 << b
    return value


def make_index_video(path: Path, n_frames: int, fps: int = 30, audio: bool = True, gop: int = 48) -> Path:
    """An H.264 (+ AAC sine) mp4 whose every frame shows its own index."""
    h, w = index_frame(0).shape[:2]
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={n_frames / fps}",
                "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-crf", "10", "-g", str(gop), "-bf", "2", "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for i in range(n_frames):
        proc.stdin.write(index_frame(i).tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return path


def workspace(tmp: Path, overrides: dict | None = None, sheet: str | None = None) -> Path:
    """A scratch working folder with the default config, a test override file and a sheet."""
    (tmp / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "config.yaml", tmp / "config" / "config.yaml")
    (tmp / "config" / "recordings.tsv").write_text(
        sheet if sheet is not None else "id\tpath\tneutral\ndemo\tresults/demo/demo.mp4\t\n")
    (tmp / "test.yaml").write_text(yaml.safe_dump(overrides or {}))
    return tmp


def _command(args: tuple[str, ...], configs: tuple[str, ...]) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--configfile", *configs,
            "--cores", "2", *args]


def start_snakemake(workdir: Path, *args: str, configs: tuple[str, ...] = ("test.yaml",), stdout=None,
                    **popen) -> subprocess.Popen:
    """Start the workflow in ``workdir`` without waiting for it (output to ``stdout``, a file)."""
    return subprocess.Popen(_command(args, configs), cwd=workdir, stdout=stdout or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if stdout else subprocess.DEVNULL, **popen)


def snakemake(workdir: Path, *args: str, check: bool = True, configs: tuple[str, ...] = ("test.yaml",),
              env: dict | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir``; ``timeout`` (seconds) kills it (and fails the test) if it hangs."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(_command(args, configs), cwd=workdir, capture_output=True, text=True, env=full_env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


# A short demo for workflow tests: 45 s, small frames, 10 s chunks so claps fall inside chunks.
SHORT_DEMO = {
    "demo": {"duration_s": 45, "width": 256, "height": 256, "n_claps": 5},
    "chunks": {"length_s": 10, "min_length_s": 4, "export_video": False},
    # A few epochs, one thread per job, so that two training jobs run side by side on 2 cores.
    "train": {"epochs": 2, "threads": 1},
}


def scheduled(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's "Job stats" table."""
    rules, in_table = {}, False
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and parts and parts[0] == "total":
            break
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            rules[parts[0]] = int(parts[1])
    return rules
