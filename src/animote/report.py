"""The sweep's tables (paper Figs 4.3 and 4.4, and the features question of its 5.2), built from
the evaluation results as DataFrames, and written as TSV and as small HTML pages."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .train import flatten

TEST_COLUMNS = ("loss", "r2", "r2_absolute", "lve", "fdd", "lip_sync_lag", "lip_sync_corr")
HEADERS = {
    "loss": "test loss", "r2": "test R² (offsets)", "r2_absolute": "test R² (absolute, the paper's)",
    "lve": "LVE (‰ of width)", "fdd": "FDD (10⁻⁶ width²)", "lip_sync_lag": "lip-sync lag (frames)",
    "lip_sync_corr": "lip-sync r",
}
# Mesh units are fractions of the image width: tables show LVE in thousandths of it, FDD in millionths².
SCALE = {"lve": 1e3, "fdd": 1e6}


CI_COLUMNS = ("r2", "lve", "lip_sync_corr")  # the figures that rank models carry their interval
CI = "95 % CI"


def ci_text(ci, scale: float = 1.0, digits: int = 3) -> str:
    """An interval as a table cell, "0.781–0.839" ("" when there is none)."""
    if not ci or not all(np.isfinite(ci)):
        return ""
    return f"{ci[0] * scale:.{digits}f}–{ci[1] * scale:.{digits}f}"


def _test_cells(test: Mapping[str, float], ci: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
    """The test columns, each ranking figure followed by its 95 % bootstrap interval."""
    out: dict[str, Any] = {}
    for k in TEST_COLUMNS:
        out[HEADERS[k]] = test.get(k, np.nan) * SCALE.get(k, 1)
        if k in CI_COLUMNS:
            out[f"{HEADERS[k]} {CI}"] = ci_text((ci or {}).get(k), SCALE.get(k, 1), 2 if k == "lve" else 3)
    return out


def config_changes(cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """What an experiment sets differently from the ``train:`` defaults (flattened keys)."""
    a, b = flatten(cfg), flatten(defaults)
    return {k: v for k, v in a.items() if b.get(k) != v}


def _fmt_change(changes: Mapping[str, Any]) -> str:
    if not changes:
        return "(defaults)"
    return ", ".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(changes.items()))


def sweep_table(experiments: Mapping[str, dict], baselines: Mapping[str, dict]) -> pd.DataFrame:
    """One row per experiment (the paper's Fig 4.3 columns: learning rate, batch size, epochs,
    heads, train / validation / test loss, R²; then the honest metrics), then one per baseline.

    ``experiments``: name -> {"config", "train" (best-epoch row), "test" (summary), optionally "ci"
    (metric -> [lo, hi])}; ``baselines``: label -> {"test" (summary), optionally "ci"}."""
    rows = []
    for name, e in experiments.items():
        c, t = e["config"], e["train"]
        rows.append({"model": name, "lr": c["lr"], "batch size": c["batch_size"], "epochs": c["epochs"],
                     "heads": c["model"]["heads"], "features": "+".join(c["roles"]),
                     "train loss": t.get("train_loss"), "validation loss": t.get("val_loss"),
                     **_test_cells(e["test"], e.get("ci"))})
    for label, b in baselines.items():
        rows.append({"model": label, "features": "+".join(b.get("roles", [])) if "ridge" in label else "",
                     **_test_cells(b["test"], b.get("ci"))})
    return pd.DataFrame(rows)


def ablation_table(experiments: Mapping[str, dict], defaults: Mapping[str, Any],
                   baselines: Mapping[str, dict] | None = None) -> pd.DataFrame:
    """Fig 4.4: each experiment's change from the defaults, its test loss and R², and the R²
    difference from the experiment that changes nothing (when the sweep has one); the ridge
    baselines as rows at the end, for scale."""
    changes = {n: config_changes(e["config"], defaults) for n, e in experiments.items()}
    ref = next((n for n, c in changes.items() if not c), None)
    rows = []
    def row(name, change, e):
        cells = _test_cells(e["test"], e.get("ci"))
        r2 = e["test"].get("r2")
        return {"experiment": name, "change from the defaults": change, "test loss": e["test"].get("loss"),
                HEADERS["r2"]: r2, f"{HEADERS['r2']} {CI}": cells[f"{HEADERS['r2']} {CI}"],
                "ΔR² vs defaults": (r2 - experiments[ref]["test"]["r2"]) if ref else np.nan,
                **{c: cells[c] for k in ("lve", "lip_sync_corr") for c in (HEADERS[k], f"{HEADERS[k]} {CI}")}}

    rows = [row(name, _fmt_change(changes[name]), e) for name, e in experiments.items()]
    rows += [row(label, "no network: linear in the features", b) for label, b in (baselines or {}).items()
             if "ridge" in label]
    return pd.DataFrame(rows)


def features_table(experiments: Mapping[str, dict], baselines: Mapping[str, dict],
                   defaults: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    """R² (offsets) per face region for the experiments that differ from the defaults only in
    their feature roles (and the defaults themselves), with the ridge baselines on the same role
    sets. Returns the table and a sentence answering: where do emotion features help?"""
    cols: dict[str, dict[str, Any]] = {}
    by_roles: dict[str, dict[str, float]] = {}
    experiments_ci: dict[str, dict] = {}
    for name, e in experiments.items():
        ch = config_changes(e["config"], defaults)
        if set(ch) <= {"roles"}:
            roles = "+".join(e["config"]["roles"])
            cols[f"network: {roles}"] = {r: v["r2"] for r, v in e["regions"].items()}
            by_roles[roles] = cols[f"network: {roles}"]
            if "region_ci" in e:
                experiments_ci[roles] = e["region_ci"]
                cols[f"network: {roles} {CI}"] = {r: ci_text(ci) for r, ci in e["region_ci"].items()}
    for label, b in baselines.items():
        if "ridge" in label:
            cols[f"ridge: {'+'.join(b['roles'])}"] = {r: v["r2"] for r, v in b["regions"].items()}
            if "region_ci" in b:
                cols[f"ridge: {'+'.join(b['roles'])} {CI}"] = {r: ci_text(ci) for r, ci in b["region_ci"].items()}
    table = pd.DataFrame(cols)
    table.index.name = "region"
    both = next((k for k in by_roles if "phonetic" in k and "emotion" in k), None)
    if both is None or "phonetic" not in by_roles:
        answer = ("The sweep has no pair of experiments that differ only in adding emotion features to "
                  "phonetic ones, so it cannot say where emotion features help.")
        return table.reset_index(), answer
    diff = {r: by_roles[both][r] - by_roles["phonetic"][r] for r in by_roles[both]}
    helped = [f"{r} ({d:+.3f})" for r, d in diff.items() if r != "all" and d > 0.01]
    hurt = [f"{r} ({d:+.3f})" for r, d in diff.items() if r != "all" and d < -0.01]
    ci = {k: experiments_ci.get(k, {}).get("all") for k in (both, "phonetic")}
    noise = ""
    if all(ci.values()):
        from .intervals import overlap

        noise = (" The two 95 % intervals over the whole face overlap: that difference is inside the noise."
                 if overlap(ci[both], ci["phonetic"]) else " The two 95 % intervals over the whole face do not overlap.")
    answer = (f"Adding emotion features to phonetic ones changes test R² (offsets) by {diff.get('all', np.nan):+.3f} "
              f"over the whole face.{noise} " + (f"It helps in: {', '.join(helped)}. " if helped else
                                                 "It helps in no region by more than 0.01. ")
              + (f"It hurts in: {', '.join(hurt)}." if hurt else ""))
    return table.reset_index(), answer.strip()


_CSS = """body{font-family:sans-serif;margin:1em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}tr.baseline td{color:#555;font-style:italic}
p{max-width:60em}"""


def html_page(title: str, df: pd.DataFrame, paragraphs: Sequence[str] = (), table_id: str = "table",
              baseline_rows: Sequence[int] = (), digits: Mapping[str, str] | None = None) -> str:
    """A small self-contained page: a title, some paragraphs (plain text), the table."""
    digits = digits or {}

    def fmt(col, v):
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return ""
            return format(v, digits.get(col, ".4g"))
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for i, row in enumerate(df.itertuples(index=False)):
        cls = ' class="baseline"' if i in baseline_rows else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{fmt(c, v)}</td>" for c, v in zip(df.columns, row)) + "</tr>")
    paras = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body><h2>{html.escape(title)}</h2>{paras}"
            f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f"</body></html>\n")


def markdown_table(df: pd.DataFrame, digits: Mapping[str, str] | None = None) -> str:
    """The same table as Markdown (for notes and the README)."""
    digits = digits or {}

    def fmt(col, v):
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else format(v, digits.get(col, ".4g"))
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(c, v) for c, v in zip(df.columns, row)) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
