"""What a stage's code is: the library files its jobs can run, found from the imports.

A rule's ``code`` parameter is the hash of its stage's files, so editing one reruns that stage's
jobs (and what depends on them), and ``snakemake --summary`` marks their outputs "params changed".
The files are not listed by hand: they are the import closure of the stage's module inside
``animote`` (every ``import``, top-level or inside a function, followed transitively, with the
packages each module sits in), the modules named by worker entry points (``"animote.x.y:task"``
strings, which no import statement shows), and the package data files a module names.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent  # the animote package
PACKAGE = ROOT.name
ENTRY_POINT = re.compile(rf"({PACKAGE}(?:\.\w+)+):\w+")  # "animote.stages.mesh:mesh_chunk_task"
DATA = ROOT / "data"


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` (dotted, inside the package), or None when it is not one."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    path = ROOT.joinpath(*parts[1:])
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _strings(tree: ast.AST) -> set[str]:
    """The string constants of a module, docstrings and other bare strings left out."""
    bare = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in bare}


def _imported(path: Path) -> tuple[set[str], set[str]]:
    """Modules (dotted names) that ``path`` imports anywhere in its body or names as a worker entry
    point, and its string constants."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    strings = _strings(tree)
    names = {m.group(1) for s in strings if (m := ENTRY_POINT.fullmatch(s))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import render`
    return names, strings


def _with_packages(name: str) -> list[str]:
    """``a.b.c`` and the packages importing it runs: ``a``, ``a.b``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(*modules: str) -> list[Path]:
    """The package's source files that importing ``modules`` can run, and the data files they name."""
    seen: set[Path] = set()
    strings: set[str] = set()
    todo = [m for name in modules for m in _with_packages(name)]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        names, found = _imported(path)
        strings |= found
        todo.extend(m for name in names for m in _with_packages(name))
    named = {Path(s).name for s in strings if "/" in s or "." in s}  # "data/sentences.tsv"
    data = {f for f in DATA.iterdir() if f.is_file() and f.name in named} if DATA.is_dir() else set()
    return sorted(seen | data)


def stage_module(stage: str) -> str:
    """The module a stage's jobs call into: ``animote.stages.<stage>``."""
    name = f"{PACKAGE}.stages.{stage}"
    if module_file(name) is None:
        raise FileNotFoundError(f"no stage '{stage}': {ROOT / 'stages' / (stage + '.py')} does not exist")
    return name


@functools.cache  # several rules share a stage: its sources are read once per workflow parse
def code_version(stage: str) -> str:
    """A short hash of the files of ``stage``'s import closure (paths and contents)."""
    digest = hashlib.sha256()
    for path in closure(stage_module(stage)):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
