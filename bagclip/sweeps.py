"""Sensitivity sweeps (the paper's Figures 5-6) and the ablation (Table 3), on cached features.

Every point is a full protocol run: heads trained on the auxiliary samples with one setting and
one seed, then evaluated zero-shot on each target dataset. The backbone is frozen and its
tokens come from the feature cache, so a sweep costs training time only.

Runs are resumable at two levels: each finished (setting, seed) writes `metrics.json` in its own
folder and is skipped next time; an interrupted one resumes from its training checkpoint.

    sweep(cfg, "k", [5, 10, 15, 20, 30], aux, {"MPDD": mpdd})   -> long DataFrame, Figure 5
    sweep(cfg, "gcn_layers", range(2, 8), aux, targets)          -> Figure 6
    ablate(cfg, aux, targets)                                    -> Table 3 rows
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .config import Config, atomic_write_text
from .metrics import IMAGE_KEYS, METRIC_KEYS, PIXEL_KEYS

KEYS = METRIC_KEYS

# Table 3's rows, plus our own: JFF off (F_SAG alone projected).
ABLATIONS: dict[str, dict] = {
    "without SAFR": {"use_safr": False},
    "without SAG": {"use_sag": False},
    "without JFF": {"use_jff": False},
    "full BAG-CLIP": {},
}
PARAM_LABELS = {"k": "neighbours K", "gcn_layers": "GCN layers P"}


def run_grid(cfg: Config, settings: Mapping[str, dict], aux: Sequence, targets: Mapping[str, Sequence],
             seeds: Sequence[int] = (0,), backbone=None, cache=None, out_dir=None,
             device: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Train + evaluate once per (setting, seed).

    settings: name -> Config changes (heads only: the backbone and its cache are shared).
    targets: dataset name -> samples. Returns a long frame: setting, seed, dataset, KEYS
    (fractions), one row per (setting, seed, dataset).
    """
    from tqdm.auto import tqdm

    from .backbone import load_backbone
    from .cache import FeatureCache
    from .experiments import evaluate_cached
    from .train import train

    if not aux:
        raise ValueError("run_grid: no auxiliary (training) samples")
    if not targets or not all(len(t) for t in targets.values()):
        raise ValueError(f"run_grid: every target dataset needs samples; got "
                         f"{ {k: len(v) for k, v in targets.items()} }")
    backbone_keys = {"backbone", "pretrained", "quick_gelu", "backbone_seed", "image_size", "taps",
                     "detail_attention", "bsa_start"}
    for name, changes in settings.items():
        cfg.replace(**changes)  # fail on a bad setting before any training
        if backbone_keys & set(changes):
            raise ValueError(f"setting {name!r} changes the backbone ({backbone_keys & set(changes)}); "
                             f"run_grid shares one backbone: make a separate run for it")
    backbone = backbone or load_backbone(cfg, device=device)
    cache = cache or FeatureCache(backbone)
    out = Path(out_dir) if out_dir is not None else None
    rows = []
    sizes = {ds: len(samples) for ds, samples in targets.items()}  # recorded with each finished run
    jobs = [(name, seed) for name in settings for seed in seeds]
    for name, seed in tqdm(jobs, desc="runs", unit="run", disable=not progress):
        c = cfg.replace(**{**settings[name], "seed": seed})
        run_dir = out / _slug(name) / f"seed_{seed}" if out is not None else None
        done = run_dir / "metrics.json" if run_dir is not None else None
        saved = json.loads(done.read_text()) if done is not None and done.is_file() else None
        if saved is not None and saved.get("targets") == sizes and saved.get("config") == c.to_dict():
            per_ds = saved["metrics"]
        else:
            resume = run_dir is not None and (run_dir / "state.pt").is_file()
            model = train(c, aux, backbone, run_dir, cache=cache, resume=resume, progress=False).model
            per_ds = {ds: {k: float(v) for k, v in evaluate_cached(model, c, backbone, cache, samples).items()
                           if k in KEYS}
                      for ds, samples in targets.items()}
            if done is not None:  # the marker of a finished run, with what it was run on
                atomic_write_text(done, json.dumps({"config": c.to_dict(), "targets": sizes,
                                                    "metrics": per_ds}, indent=2))
        rows += [{"setting": name, "seed": seed, "dataset": ds, **m} for ds, m in per_ds.items()]
    return pd.DataFrame(rows, columns=["setting", "seed", "dataset", *KEYS])


def sweep(cfg: Config, param: str, values: Sequence, aux: Sequence, targets: Mapping[str, Sequence],
          seeds: Sequence[int] = (0,), **kw) -> pd.DataFrame:
    """One Config field over values (the paper: k in 5..30, gcn_layers in 2..7).

    Returns run_grid's frame with a `value` column (the setting's value) and attrs["param"].
    """
    if param not in Config.__dataclass_fields__:
        raise ValueError(f"unknown Config field {param!r}")
    values = list(values)
    settings = {f"{param}={v}": {param: v} for v in values}
    df = run_grid(cfg, settings, aux, targets, seeds, **kw)
    df.insert(1, "value", df.setting.map({f"{param}={v}": v for v in values}))
    df.attrs["param"] = param
    return df


def ablate(cfg: Config, aux: Sequence, targets: Mapping[str, Sequence], seeds: Sequence[int] = (0,),
           variants: Mapping[str, dict] | None = None, **kw) -> pd.DataFrame:
    """The Table 3 variants (default ABLATIONS) under the same protocol; run_grid's frame."""
    return run_grid(cfg, dict(variants or ABLATIONS), aux, targets, seeds, **kw)


def summarize(df: pd.DataFrame, by: str = "setting") -> pd.DataFrame:
    """Percent mean and sample std over seeds per (by, dataset), plus an "Average" dataset row
    per setting (the unweighted mean over datasets of each seed, then mean/std over seeds,
    as the paper's Average rows). Columns (key, "mean" | "std")."""
    avg = df.groupby([by, "seed"], sort=False)[list(KEYS)].mean().reset_index()
    avg["dataset"] = "Average"
    full = pd.concat([df, avg], ignore_index=True) if df.dataset.nunique() > 1 else df
    g = full.groupby([by, "dataset"], sort=False)[list(KEYS)]
    out = pd.concat({"mean": g.mean() * 100, "std": g.std(ddof=1) * 100}, axis=1)
    return out.swaplevel(axis=1)[[(k, s) for k in KEYS for s in ("mean", "std")]]


def table3(df: pd.DataFrame) -> pd.DataFrame:
    """The ablation in the layout of the paper's Table 3: rows (variant, dataset), columns the
    six metrics it reports, cells "mean ± std" in percent (no std with one seed)."""
    s = summarize(df)
    keys = [k for k in KEYS if k != "pixel_aupro"]
    cells = {k: [f"{m:.1f}" if np.isnan(sd) else f"{m:.1f} ± {sd:.1f}"
                 for m, sd in zip(s[(k, "mean")], s[(k, "std")])] for k in keys}
    out = pd.DataFrame(cells, index=s.index)
    out.index.names = ["variant", "dataset"]
    return out


def plot_sensitivity(df: pd.DataFrame, param: str | None = None, paper_default=None, quoted: bool = True):
    """Figures 5-6; drawn by `bagclip.plots.plot_sensitivity` (kept here for old imports)."""
    from .plots import plot_sensitivity as draw

    return draw(df, param, paper_default, quoted)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "=-_." else "_" for ch in name)


def save_frame(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a results frame to CSV atomically."""
    path = Path(path)
    atomic_write_text(path, df.to_csv(index=False))
    return path
