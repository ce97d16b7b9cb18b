"""Stage entry points: one module per DAG stage, on file paths.

A rule of the workflow runs a function of a stage module, both named by its params
(``params.stage``, ``params.run``: the function is named like the rule), called by
:func:`run_job` with the job's namespaces by name::

    def remove_claps(*, input, output, params, wildcards, threads): ...

``input``, ``output`` and ``params`` are the rule's (attribute access by the names the rule
gives); the function turns its config section into the stage's typed parameters, calls the pure
modules of :mod:`animote` and writes its outputs atomically. Any object with those attributes
will do, so a stage runs the same outside Snakemake (``types.SimpleNamespace``). Nothing else
lives in this package.
"""

from __future__ import annotations

import importlib
from typing import Any

JOB_FIELDS = ("input", "output", "params", "wildcards", "threads")


def stage_function(stage: str, name: str):
    """The entry point ``name`` in ``animote.stages.<stage>``."""
    module = importlib.import_module(f"{__name__}.{stage}")
    fn = getattr(module, name, None)
    if not callable(fn) or name.startswith("_"):
        raise AttributeError(f"the stage module {module.__name__} has no entry point {name}()")
    return fn


def run_job(job: Any) -> Any:
    """Run one job: the function ``job.params.run`` of the stage ``job.params.stage``, its log
    (``job.log``, the first entry) taking the library's logging and any traceback."""
    from ..util import logged

    fn = stage_function(job.params.stage, job.params.run)
    with logged(job.log[0]):
        return fn(**{name: getattr(job, name) for name in JOB_FIELDS})
