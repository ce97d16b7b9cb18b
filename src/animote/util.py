"""Small helpers shared by every stage: logging set-up and atomic outputs."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path


def setup_logging(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Send the library's logging to ``log_path`` (and stderr), replacing earlier handlers."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level)


def remove_path(path: Path) -> None:
    """Remove a file, link or folder (a store)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write to; rename it to ``final`` on success.

    Works for files and directories (Zarr stores, chunk folders). On any error
    the temporary is removed, so a killed or failed job never leaves something
    at ``final`` that looks finished. The suffix keeps the extension, so tools
    that look at it (ffmpeg, soundfile) still see the right format.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{'[0-9a-f]' * 8}-{glob.escape(final.name)}"):
        remove_path(stale)  # left by a job killed outright (SIGKILL, power cut): one job writes ``final`` at a time
    tmp = final.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{final.name}")
    try:
        yield tmp
        if not tmp.exists() and not tmp.is_symlink():
            raise FileNotFoundError(f"nothing was written to {tmp} for {final}")
        if final.exists() or final.is_symlink():
            remove_path(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.exists() or tmp.is_symlink():
            remove_path(tmp)
        raise


@contextlib.contextmanager
def logged(log_path: str | os.PathLike | None) -> Iterator[logging.Logger]:
    """Set up logging to ``log_path`` and record any exception there before it propagates."""
    setup_logging(log_path)
    logger = logging.getLogger("animote")
    try:
        yield logger
    except BaseException:
        logger.exception("failed")
        raise


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this package), or None."""
    import subprocess

    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
