"""Results as files and tables: metrics.json / .csv, the paper's table layouts.

Formatting only: nothing here trains or evaluates. One rule per cell kind:
    to_markdown(frame)           a GitHub Markdown table (no tabulate dependency)
    mean_std_cell(mean, std)     "76.4 ± 0.2"; "76.4" with one seed; "n/a" when undefined
    seed_table(results_by_seed)  mean and sample std over seeds, percent
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .files import atomic_write_text
from .metrics import IMAGE_KEYS, METRIC_KEYS, PIXEL_KEYS

PARAM_LABELS = {"k": "neighbours K", "gcn_layers": "GCN layers P"}  # the swept fields, as axis labels
HEADERS = {"auroc": "AUROC", "f1_max": "F1-Max", "ap": "AP", "aupro": "AUPRO"}


# --- cells and tables -------------------------------------------------------------------------
def mean_std_cell(mean: float, std: float) -> str:
    """Percent cell: "m ± s"; "m" when std is NaN (one seed); "n/a" when the mean is NaN."""
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def _plain(v) -> str:
    return str(v)


def number(v) -> str:
    """A measured number: 4 significant digits, large values whole, NaN empty."""
    if isinstance(v, float):
        return "" if math.isnan(v) else (f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}")
    return str(v)


def to_markdown(df: pd.DataFrame, index: bool = True, drop: Sequence[str] = (),
                fmt: Callable[[object], str] = _plain) -> str:
    """A GitHub Markdown table: the index as the first column (unless index=False), numeric
    columns right-aligned, cells through fmt; a line naming the evaluation resolution when
    df.attrs has one."""
    df = df.drop(columns=list(drop))
    head = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    align = (["---"] if index else []) + ["---:" if pd.api.types.is_numeric_dtype(df[c]) else "---"
                                          for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for i, row in zip(df.index, df.itertuples(index=False)):
        lines.append("| " + " | ".join(([str(i)] if index else []) + [fmt(v) for v in row]) + " |")
    res = df.attrs.get("resolution")
    if res:
        lines.append(f"\nEvaluated at resolution {res}; metrics in percent, mean ± std over seeds.")
    return "\n".join(lines) + "\n"


def seed_table(results_by_seed: dict) -> pd.DataFrame:
    """{row: [metric dict per seed]} -> percent table, index the rows (named "dataset"),
    columns (metric key, "mean" | "std"), std the sample std (ddof=1; NaN with one seed; NaN
    seeds left out), plus "n_seeds". Resolutions found are kept in .attrs["resolution"]."""
    rows, resolutions = {}, set()
    for ds, runs in results_by_seed.items():
        runs = list(runs)
        row = {("n_seeds", ""): len(runs)}
        for k in METRIC_KEYS:
            v = np.array([r.get(k, math.nan) for r in runs], dtype=float) * 100.0
            ok = v[~np.isnan(v)]
            row[(k, "mean")] = ok.mean() if ok.size else math.nan
            row[(k, "std")] = ok.std(ddof=1) if ok.size > 1 else math.nan
        resolutions.update(str(r["resolution"]) for r in runs if r.get("resolution") is not None)
        rows[ds] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    df.index.name = "dataset"
    df.attrs["resolution"] = ", ".join(sorted(resolutions))
    return df


def cells(table: pd.DataFrame, keys: Sequence[str], names: Sequence[str] | None = None) -> pd.DataFrame:
    """mean_std_cell of each (key, mean/std) pair of a seed_table / summarize frame; columns
    named `names` (default: the keys)."""
    out = pd.DataFrame({name: [mean_std_cell(m, s) for m, s in zip(table[(k, "mean")], table[(k, "std")])]
                        for k, name in zip(keys, names or keys)}, index=table.index)
    out.attrs = dict(table.attrs)
    return out


def _format(table: pd.DataFrame, keys: tuple, fmt: str):
    out = cells(table, keys, [HEADERS[k.split("_", 1)[1]] for k in keys])
    if fmt == "frame":
        return out
    if fmt == "csv":
        return out.to_csv()
    if fmt == "markdown":
        return to_markdown(out)
    raise ValueError("fmt must be 'frame', 'markdown' or 'csv'")


def format_table1(table: pd.DataFrame, fmt: str = "frame"):
    """Image level (AUROC, F1-Max, AP) in percent, "mean ± std", as the paper's Table 1."""
    return _format(table, IMAGE_KEYS, fmt)


def format_table2(table: pd.DataFrame, fmt: str = "frame"):
    """Pixel level (AUROC, F1-Max, AP, AUPRO) in percent, "mean ± std", as Table 2."""
    return _format(table, PIXEL_KEYS, fmt)


def paper_layout(results_by_seed: dict, resolution: int | str) -> str:
    """Markdown: trained-heads results in the layout of Tables 1 (image) and 2 (pixel), mean ±
    std over seeds, then the paper's BAG-CLIP rows for reference."""
    from .paper import paper_table

    t = seed_table({ds: [{**m, "resolution": resolution} for m in runs] for ds, runs in results_by_seed.items()})
    parts = []
    for n, fmt in ((1, format_table1), (2, format_table2)):
        level = "image" if n == 1 else "pixel"
        ref = paper_table(n).query("method == 'BAG-CLIP'").drop(columns=["method", "note"]).set_index("dataset")
        ref.columns = [HEADERS[c] for c in ref.columns]
        parts.append(f"## Table {n} layout ({level} level), ours\n\n{fmt(t, 'markdown')}\n"
                     f"For reference, the paper's BAG-CLIP (real data, ViT-L-14-336, 518 px):\n\n"
                     f"{to_markdown(ref)}")
    return "\n".join(parts)


def summarize(df: pd.DataFrame, by: str = "setting") -> pd.DataFrame:
    """Percent mean and sample std over seeds per (by, dataset), plus an "Average" dataset row
    per setting (the unweighted mean over datasets of each seed, then mean/std over seeds,
    as the paper's Average rows). Columns (key, "mean" | "std")."""
    avg = df.groupby([by, "seed"], sort=False)[list(METRIC_KEYS)].mean().reset_index()
    avg["dataset"] = "Average"
    full = pd.concat([df, avg], ignore_index=True) if df.dataset.nunique() > 1 else df
    g = full.groupby([by, "dataset"], sort=False)[list(METRIC_KEYS)]
    out = pd.concat({"mean": g.mean() * 100, "std": g.std(ddof=1) * 100}, axis=1)
    return out.swaplevel(axis=1)[[(k, s) for k in METRIC_KEYS for s in ("mean", "std")]]


def flat_index(table: pd.DataFrame) -> pd.DataFrame:
    """(variant, dataset) index -> "variant / dataset", for one-level markdown tables."""
    table.index = [f"{v} / {d}" for v, d in table.index]
    table.index.name = "variant / dataset"
    return table


# --- files ------------------------------------------------------------------------------------
def json_safe(x):
    """NaN -> null (strict JSON), numpy scalars and arrays -> Python; anything else as str."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def results_frame(result: dict) -> pd.DataFrame:
    """One row per class plus a final "mean" row; metric columns as fractions."""
    rows = [{"class": c, **{k: d[k] for k in METRIC_KEYS}} for c, d in result["per_class"].items()]
    rows.append({"class": "mean", **{k: result[k] for k in METRIC_KEYS}})
    df = pd.DataFrame(rows)
    df.insert(0, "resolution", str(result.get("resolution")))
    df.insert(0, "dataset", result.get("dataset"))
    return df


def write_results(result: dict, out_dir) -> None:
    """out_dir/metrics.json (everything, NaN as null) and out_dir/metrics.csv (per class + mean)."""
    out = Path(out_dir)
    atomic_write_text(out / "metrics.json", json.dumps(json_safe(result), indent=2) + "\n")
    atomic_write_text(out / "metrics.csv", results_frame(result).to_csv(index=False))


def save_frame(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a results frame to CSV atomically."""
    return atomic_write_text(path, df.to_csv(index=False))
