"""The recording sheet: one row per recording (id, path, optional neutral image)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
COLUMNS = ["id", "path", "neutral"]


def load_sheet(path: str | Path) -> pd.DataFrame:
    """Read and check the sheet. Ids must be unique and safe in paths (letters, digits, ``_.-``:
    no spaces or slashes). Returns a frame indexed by id with columns path and neutral."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"recording sheet not found: {path}")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in ("id", "path") if c not in df.columns]
    if missing:
        raise ValueError(f"recording sheet {path}: missing column(s) {', '.join(missing)} "
                         f"(expected tab-separated columns: {', '.join(COLUMNS)})")
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        raise ValueError(f"recording sheet {path}: unknown column(s) {', '.join(extra)}")
    if "neutral" not in df.columns:
        df["neutral"] = ""
    df = df.apply(lambda col: col.str.strip())
    if df.empty:
        raise ValueError(f"recording sheet {path} lists no recordings")
    for i, row in df.iterrows():
        line = i + 2
        if not ID_PATTERN.match(row["id"]):
            raise ValueError(f"recording sheet {path}, line {line}: id {row['id']!r} is not allowed "
                             "(use letters, digits, '_', '.', '-'; no spaces or slashes)")
        if not row["path"]:
            raise ValueError(f"recording sheet {path}, line {line}: recording '{row['id']}' has no path")
    dup = df["id"][df["id"].duplicated()].unique()
    if len(dup):
        raise ValueError(f"recording sheet {path}: duplicate id(s) {', '.join(dup)}")
    return df.set_index("id", drop=False)[["id", "path", "neutral"]]
