"""Zarr (v3) stores: every per-frame array in results/ is written through here.

A store is written under a temporary name and renamed when complete, so a
killed job never leaves a store that looks finished.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .util import atomic_path


def write_store(path: str | Path, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """Write ``arrays`` (first axis: video frames, chunked along it) and ``attrs`` atomically."""
    with atomic_path(path) as tmp:
        # the attributes with the group: set afterwards, each key rewrites the group's metadata
        group = zarr.open_group(str(tmp), mode="w", attributes=dict(attrs))
        for name, data in arrays.items():
            data = np.asarray(data)
            chunks = (min(max(1, data.shape[0]), 1024),) + data.shape[1:] if data.ndim else ()
            group.create_array(name, data=data, chunks=chunks)


def read_store(path: str | Path, *names: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read arrays (all, or those named) and the attributes of a store."""
    with warnings.catch_warnings():  # Snakemake leaves a timestamp file in directory outputs
        warnings.filterwarnings("ignore", message=".*snakemake_timestamp.*")
        group = zarr.open_group(str(path), mode="r")
        keys = names or tuple(group.array_keys())
        return {k: group[k][...] for k in keys}, dict(group.attrs)


def array_names(path: str | Path) -> list[str]:
    """The names of a store's arrays (to read only those it has)."""
    return list(zarr.open_group(str(path), mode="r").array_keys())


def stores_in(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Zarr stores named by ``paths`` (one path or several): a store stays itself, a folder of stores
    (one per chunk, as the feature stage writes them) becomes its ``*.zarr`` stores in name order."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in map(Path, paths):
        if (p / "zarr.json").exists() or p.suffix == ".zarr":
            out.append(p)
        else:
            out.extend(sorted(p.glob("*.zarr")))
    return out
