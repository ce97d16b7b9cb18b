"""A stage's code hash covers every library file its jobs can run: the import closure of its
module, the worker entry points it names, and the package data its modules read."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from animote.stagecode import ROOT, _imported, closure, code_version, stage_module

STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__")


def _rel(paths) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in paths}


def _loaded_by_running(module: str, call: str = "") -> set[str]:
    """The package's files Python has loaded after importing ``module`` (and running ``call``)
    in a fresh interpreter."""
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); {call}\n"
            "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
            "if n.startswith('animote') and getattr(m, '__file__', None))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return _rel(Path(f).resolve() for f in json.loads(out.stdout))


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_a_stage_imports_is_in_its_code(stage):
    """Whatever importing the stage's module loads (its top-level imports, transitively, and the
    packages they sit in) is hashed into the stage's code."""
    hashed = _rel(closure(stage_module(stage)))
    loaded = _loaded_by_running(stage_module(stage))
    assert loaded <= hashed, f"stage {stage}: loaded but not hashed: {sorted(loaded - hashed)}"


def test_imports_inside_functions_and_worker_entry_points_count():
    """Imports inside a function body (how a stage keeps a job's start-up cheap) and modules
    named only by a worker entry-point string are found too; so is the data a module reads."""
    features = _rel(closure("animote.stages.features"))
    # backends loads lazily: importing the stage does not load it, running a job does
    assert "features/backends.py" in features
    assert "workers.py" in features  # the job runs chunks through animote.workers
    # a worker entry point is a string no import statement shows: "animote.stages.mesh:mesh_chunk_task"
    names, _ = _imported(ROOT / "stages" / "mesh.py")
    assert "animote.stages.mesh" in names  # found from the string alone (the module imports nothing of itself)
    assert "render.py" in _rel(closure("animote.stages.preprocess"))  # the clap picture
    assert "render.py" in _rel(closure("animote.stages.train"))  # the loss curves
    assert "data/sentences.tsv" in _rel(closure("animote.stages.demo"))
    assert "data/sentences.tsv" not in _rel(closure("animote.stages.train"))
    # the lazily imported modules of a job are all in the closure: run the clap picture's imports
    assert _loaded_by_running("animote.stages.preprocess", "import animote.render, animote.claps") \
        <= _rel(closure("animote.stages.preprocess"))


def test_an_edit_to_a_drawing_function_changes_the_stages_that_draw(tmp_path):
    """Editing render.py changes the code of the stages that draw with it: preprocess (claps.png),
    mesh (mesh_preview.png), train (loss.png) and evaluate; not of those that do not (their
    outputs stay up to date)."""
    import shutil

    copy = tmp_path / "animote"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import json; from animote.stagecode import code_version; "
            f"print(json.dumps({{s: code_version(s) for s in {STAGES!r}}}))")

    def versions():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
        return json.loads(out.stdout)

    before = versions()
    assert before == {s: code_version(s) for s in STAGES}  # the copy hashes like the package
    (copy / "render.py").write_text((copy / "render.py").read_text() + "\n# an edit\n")
    after = versions()
    changed = {s for s in STAGES if before[s] != after[s]}
    assert changed == {"preprocess", "mesh", "train", "evaluate"}


def test_an_unknown_stage_is_refused():
    with pytest.raises(FileNotFoundError, match="no stage 'nope'"):
        code_version("nope")


def test_no_stage_function_takes_more_than_five_positional_arguments():
    """Past five, a call site reads as a row of values: name them (keyword-only arguments)."""
    import ast

    crowded = []
    for path in sorted((ROOT / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if len(node.args.posonlyargs) + len(node.args.args) > 5:
                    crowded.append(f"{path.name}:{node.name}")
    assert not crowded, crowded
