"""Worker processes that each start once and then take task after task.

A stage whose tasks cost seconds of start-up each (imports, model loading) runs them in a few
long-lived workers instead: ``run_tasks("package.module:function", tasks, workers)`` starts
``workers`` fresh Python processes (``python -m animote.workers``; nothing of the calling process
is copied or re-run, so it is safe from a Snakemake script, a notebook, or a process that has
already loaded the same models), hands each one task at a time, and returns every task's result.
A task is a dict of keyword arguments and its result a dict, both JSON. Workers log to stderr and
to the calling process's log file, if it has one.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class TaskFailed(RuntimeError):
    """A task raised (its message is the error's) or its worker died. ``done``: the results of the
    tasks that finished, by index."""

    def __init__(self, index: int, message: str, done: dict[int, dict] | None = None):
        self.index = index
        self.done = done or {}
        super().__init__(message)


def _log_file() -> str | None:
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            return h.baseFilename
    return None


def run_tasks(function: str, tasks: Iterable[dict[str, Any]], workers: int) -> list[dict]:
    """Run ``function`` (``"module:name"``) on each task in ``workers`` processes; results in task
    order. On the first failure no new task starts; the running ones finish, then
    :class:`TaskFailed` is raised for the failed task, with the finished tasks' results."""
    tasks = list(tasks)
    results: dict[int, dict] = {}
    todo: queue.Queue = queue.Queue()
    for i in range(len(tasks)):
        todo.put(i)
    failed: list[TaskFailed] = []
    stop = threading.Event()
    lock = threading.Lock()
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])  # the workers import this same animote
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "animote.workers", function, _log_file() or ""]

    def serve() -> None:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    break
                proc.stdin.write(json.dumps(tasks[i]) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                reply = json.loads(line) if line else {"error": f"its worker process died (exit status {proc.wait()}: "
                                                                "killed, or out of memory?)"}
                with lock:
                    if "error" in reply:
                        failed.append(TaskFailed(i, reply["error"]))
                        stop.set()
                    else:
                        results[i] = reply["result"]
        except BrokenPipeError:
            with lock:
                failed.append(TaskFailed(i, f"its worker process died (exit status {proc.wait()})"))
                stop.set()
        finally:
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            proc.wait()

    threads = [threading.Thread(target=serve, daemon=True) for _ in range(max(1, min(workers, len(tasks))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        first = min(failed, key=lambda f: f.index)
        first.done = results
        raise first
    return [results[i] for i in range(len(tasks))]


def _resolve(function: str):
    module, name = function.split(":")
    return getattr(importlib.import_module(module), name)


def run_chunks(function: str, tasks: list[dict[str, Any]], workers: int, recording: str, what: str,
               kept: str = "", passthrough: tuple[type[BaseException], ...] = ()) -> list[dict]:
    """A recording's chunk tasks (each with its ``chunk_id``), ``function`` on each: in this process
    when there is one worker (the same entry point, no start-up), else in ``workers`` worker
    processes (:func:`run_tasks`). Results in task order. The first failure raises
    :class:`animote.RecordingError` naming the recording and the chunk (after the chunks already
    running finish), saying how many of ``what`` were done and, with ``kept``, where they are
    kept. In this process, an error of
    a ``passthrough`` type (one that is not about a chunk: a model missing) is raised as it is."""
    from . import RecordingError

    try:
        if workers > 1 and len(tasks) > 1:
            return run_tasks(function, tasks, workers)
        func, done = _resolve(function), {}
        for i, task in enumerate(tasks):
            try:
                done[i] = func(**task)
            except passthrough:
                raise
            except Exception as exc:
                raise TaskFailed(i, str(exc), done) from exc
        return [done[i] for i in range(len(tasks))]
    except TaskFailed as exc:
        chunk = tasks[exc.index]["chunk_id"]
        message = str(exc).removeprefix(f"recording '{recording}': ").removeprefix(f"recording '{recording}' ")
        message = message.removeprefix(f"chunk {chunk}: ")
        where = f", kept in {kept} for the next run" if kept else ""
        raise RecordingError(recording, f"chunk {chunk}: {message} ({len(exc.done)} of {len(tasks)} {what} "
                                        f"done{where})") from None


def _worker(function: str, log_path: str) -> None:
    """A worker's loop: a task per line on stdin, its result (or error) per line on stdout."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the replies
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="a"))
    logging.basicConfig(level=logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = function.split(":")[0]
    func = _resolve(function)
    for line in sys.stdin:
        try:
            reply = {"result": func(**json.loads(line))}
        except Exception as exc:  # noqa: BLE001 - reported to the caller, which names the task
            logging.getLogger(module).error("task failed:\n%s", traceback.format_exc())
            reply = {"error": str(exc) or type(exc).__name__}
        proto.write(json.dumps(reply, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n")
        proto.flush()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
