"""Run any scorer over a dataset, write per-class and mean metrics, render the paper's tables.

The scorer contract: fn(images (B, 3, S, S) float tensor, class_name: str)
    -> (anomaly_maps (B, S, S) tensor/ndarray, image_scores (B,)).
Batches never mix classes. Pixel metrics accumulate per class in bounded memory (8 bytes per
evaluated pixel of the largest class, see bagclip.metrics.PixelMetricAccumulator).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .metrics import (IMAGE_KEYS, METRIC_KEYS, PIXEL_KEYS, PixelMetricAccumulator,
                      binary_metrics, mean_over_classes, merge_metrics)

__all__ = ["evaluate", "write_results", "seed_table", "format_table1", "format_table2",
           "to_markdown"]

Scorer = Callable[[torch.Tensor, str], tuple]
HEADERS = {"auroc": "AUROC", "f1_max": "F1-Max", "ap": "AP", "aupro": "AUPRO"}


def _resolution(resolution, image_size: int):
    """None -> image_size; int or digit string -> int; "native" -> "native"."""
    if resolution is None:
        return int(image_size)
    if isinstance(resolution, str) and resolution != "native":
        if not resolution.isdigit():
            raise ValueError(f"resolution must be an int or 'native', got {resolution!r}")
        resolution = int(resolution)
    if resolution != "native" and int(resolution) <= 0:
        raise ValueError("resolution must be positive")
    return resolution if resolution == "native" else int(resolution)


def _native_mask(sample) -> np.ndarray:
    """Ground truth at its file's size (H, W), binarised with > 0; all-zero for normal images."""
    from PIL import Image

    if sample.mask_path:
        with Image.open(sample.mask_path) as im:
            return np.asarray(im.convert("L")) > 0
    with Image.open(sample.image_path) as im:  # PIL gives (W, H): flip for (H, W)
        w, h = im.size
    return np.zeros((h, w), bool)


def _as_maps(maps, b: int) -> torch.Tensor:
    maps = torch.as_tensor(maps).detach().float().cpu()
    if maps.ndim == 4 and maps.shape[1] == 1:  # (B, 1, S, S): drop the channel, not the batch
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] != b:
        raise ValueError(f"scorer returned maps of shape {tuple(maps.shape)}, expected ({b}, S, S)")
    return maps


def evaluate(fn: Scorer, samples: Sequence, image_size: int, batch_size: int = 8,
             resolution=None, out_dir=None, dataset_name: str | None = None,
             pixel: bool | None = None, fpr_limit: float = 0.3, progress: bool = True) -> dict:
    """Evaluate `fn` on `samples` (bagclip.data.Sample) and return the metrics dict.

    resolution: None (= image_size), an int S' (maps bilinearly resized to S' x S', masks loaded
    at S'), or "native" (maps resized to each mask's file size). pixel: None -> pixel metrics
    only when some sample has a mask (image-level-only datasets give NaN pixel metrics).
    Returns compute_metrics' keys (unweighted means over classes) plus dataset, resolution,
    n_images, per_class; writes metrics.json / metrics.csv to out_dir when given.
    """
    from .data import load_image, load_mask

    res = _resolution(resolution, image_size)
    if pixel is None:
        pixel = any(getattr(s, "mask_path", None) for s in samples)
    groups: dict[str, list] = {}
    for s in samples:  # first-seen class order
        groups.setdefault(str(s.class_name), []).append(s)
    per_class = {}
    bar = tqdm(total=len(samples), desc=f"eval {dataset_name or ''}".strip(), disable=not progress)
    for cls, group in groups.items():
        cap = len(group) * res * res if (pixel and res != "native") else None
        acc = PixelMetricAccumulator(fpr_limit, capacity=cap) if pixel else None
        scores, labels = [], []
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            images = torch.stack([load_image(s.image_path, image_size) for s in batch])
            with torch.no_grad():
                maps, sc = fn(images, cls)
            sc = np.asarray(torch.as_tensor(sc).detach().double().cpu()).ravel()
            if sc.size != len(batch):
                raise ValueError(f"scorer returned {sc.size} image scores for {len(batch)} images")
            scores.append(sc)
            labels += [int(s.label) for s in batch]
            if acc is not None:
                maps = _as_maps(maps, len(batch))
                for s, m in zip(batch, maps):
                    gt = (_native_mask(s) if res == "native"
                          else np.asarray(torch.as_tensor(load_mask(s.mask_path, res))))
                    if tuple(m.shape) != gt.shape:
                        m = F.interpolate(m[None, None], size=gt.shape, mode="bilinear",
                                          align_corners=False)[0, 0]
                    acc.update(m.numpy(), gt)
            bar.update(len(batch))
        pix = acc.compute() if acc is not None else None
        per_class[cls] = merge_metrics(binary_metrics(np.concatenate(scores), labels), pix,
                                       f"class {cls!r}")
        del acc  # free this class's keys before the next class
    bar.close()
    result = {"dataset": dataset_name, "resolution": res, "n_images": len(samples),
              **mean_over_classes(per_class), "per_class": per_class}
    if out_dir is not None:
        write_results(result, out_dir)
    return result


# --- files --------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and os.replace: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_safe(x):
    """NaN -> null (strict JSON), numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


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
    _atomic_write(out / "metrics.json", json.dumps(_json_safe(result), indent=2) + "\n")
    _atomic_write(out / "metrics.csv", results_frame(result).to_csv(index=False))


# --- the paper's tables -------------------------------------------------------------------
def seed_table(results_by_seed: dict) -> pd.DataFrame:
    """{dataset: [metric dict per seed]} -> percent table, index dataset, columns
    (metric key, "mean" | "std"), std the sample std (ddof=1; NaN with one seed), plus
    "n_seeds". Resolutions found are kept in .attrs["resolution"]."""
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


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def _format(table: pd.DataFrame, keys: tuple, fmt: str):
    cells = pd.DataFrame({HEADERS[k.split("_", 1)[1]]: [_cell(m, s) for m, s in
                                                       zip(table[(k, "mean")], table[(k, "std")])]
                          for k in keys}, index=table.index)
    cells.attrs = dict(table.attrs)
    if fmt == "frame":
        return cells
    if fmt == "csv":
        return cells.to_csv()
    if fmt == "markdown":
        return to_markdown(cells)
    raise ValueError("fmt must be 'frame', 'markdown' or 'csv'")


def format_table1(table: pd.DataFrame, fmt: str = "frame"):
    """Image level (AUROC, F1-Max, AP) in percent, "mean ± std", as the paper's Table 1."""
    return _format(table, IMAGE_KEYS, fmt)


def format_table2(table: pd.DataFrame, fmt: str = "frame"):
    """Pixel level (AUROC, F1-Max, AP, AUPRO) in percent, "mean ± std", as Table 2."""
    return _format(table, PIXEL_KEYS, fmt)


def to_markdown(cells: pd.DataFrame) -> str:
    """A GitHub Markdown table (no tabulate dependency), with the evaluation resolution."""
    head = [cells.index.name or ""] + [str(c) for c in cells.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(cells.columns)) + "|"]
    lines += ["| " + " | ".join([str(i)] + [str(v) for v in row]) + " |"
              for i, row in zip(cells.index, cells.itertuples(index=False))]
    res = cells.attrs.get("resolution")
    if res:
        lines.append(f"\nEvaluated at resolution {res}; metrics in percent, mean ± std over seeds.")
    return "\n".join(lines) + "\n"
