"""Sensitivity sweeps (the paper's Figures 5-6) and the ablation (Table 3), on cached features.

Every point is a full protocol run: heads trained on the auxiliary samples with one setting and
one seed, then evaluated zero-shot on each target dataset. The backbone is frozen and its
tokens come from the feature cache, so a sweep costs training time only.

Runs are resumable at two levels: each finished (setting, seed) writes `metrics.json` in its own
folder and is skipped next time; an interrupted one resumes from its training checkpoint.

    sweep(cfg, "k", [5, 10, 15, 20, 30], aux, {"MPDD": mpdd})   -> long DataFrame, Figure 5
    sweep(cfg, "gcn_layers", range(2, 8), aux, targets)          -> Figure 6
    ablate(cfg, aux, targets)                                    -> Table 3 rows
    write_sweep / write_ablation                                 the same, plus their files
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from .config import Config
from .files import atomic_write_text
from .metrics import METRIC_KEYS
from .report import cells, flat_index, save_frame, summarize, to_markdown
from .runs import run_settings

log = logging.getLogger(__name__)

# Table 3's rows, plus our own: JFF off (F_SAG alone projected), and the global adapter off
# (the paper trains no module on the global branch; docs/decisions.md).
ABLATIONS: dict[str, dict] = {
    "without SAFR": {"use_safr": False},
    "without SAG": {"use_sag": False},
    "without JFF": {"use_jff": False},
    "without global adapter": {"global_adapter": False},
    "full BAG-CLIP": {},
}


def check_grid(param: str | None, values: Sequence | None, seeds: Sequence[int]) -> None:
    """ListError, before any run, for a seed or swept value given twice, or the seed swept as a
    setting (every run's seed comes from `seeds`: each value would give the same runs)."""
    from .errors import ListError
    from .fingerprint import check_unique_values

    check_unique_values(list(seeds), "seeds")
    if param is None:
        return
    if param == "seed":
        raise ListError("the seed cannot be swept as a setting: every run's seed comes from the seeds "
                        "list, so each value would repeat the same runs; give the seeds to run as the "
                        "seeds list instead", setting="seeds")
    check_unique_values(list(values or []), f"the values of {param}", setting="values")


def check_sweep(cfg: Config, param: str, values: Sequence, seeds: Sequence[int] = (0,)) -> None:
    """Refuse a sweep before any data is read or run trained: an unknown field, a value twice,
    the seed as a setting (`check_grid`), a value the Config refuses."""
    if param not in Config.__dataclass_fields__:
        raise ValueError(f"unknown Config field {param!r}")
    check_grid(param, list(values), seeds)
    for v in values:
        cfg.replace(**{param: v})


def sweep(cfg: Config, param: str, values: Sequence, aux: Sequence, targets: Mapping[str, Sequence],
          seeds: Sequence[int] = (0,), **kw) -> pd.DataFrame:
    """One Config field over values (the paper: k in 5..30, gcn_layers in 2..7); the seeds are
    `seeds` (the seed itself is not a setting to sweep: `check_grid`).

    Returns run_settings' frame with a `value` column (the setting's value) and attrs["param"].
    """
    values = list(values)
    check_sweep(cfg, param, values, seeds)
    settings = {f"{param}={v}": {param: v} for v in values}
    df = run_settings(cfg, settings, aux, targets, seeds, **kw)
    df.insert(1, "value", df.setting.map({f"{param}={v}": v for v in values}))
    df.attrs["param"] = param
    return df


def ablate(cfg: Config, aux: Sequence, targets: Mapping[str, Sequence], seeds: Sequence[int] = (0,),
           variants: Mapping[str, dict] | None = None, **kw) -> pd.DataFrame:
    """The Table 3 variants (default ABLATIONS) under the same protocol; run_settings' frame."""
    return run_settings(cfg, dict(variants or ABLATIONS), aux, targets, seeds, **kw)


def table3(df: pd.DataFrame) -> pd.DataFrame:
    """The ablation in the layout of the paper's Table 3: rows (variant, dataset), columns the
    six metrics it reports, cells "mean ± std" in percent (no std with one seed)."""
    out = cells(summarize(df), [k for k in METRIC_KEYS if k != "pixel_aupro"])
    out.index.names = ["variant", "dataset"]
    return out


def grid_results(cfg: Config, settings: Mapping[str, dict], aux: Sequence, targets: Mapping[str, Sequence],
                 seeds: Sequence[int], backbone, cache, out_dir=None, runs_root=None, reuse=()) -> dict:
    """{setting: {dataset: compare.Results}} of a grid's finished runs (run_settings first, with
    the same out_dir / runs_root): what `compare` and `interval_table` take."""
    from .compare import Results
    from .runs import plan_runs, run_records

    jobs = plan_runs(cfg, settings, aux, targets, seeds, out_dir, runs_root, reuse)
    recs = run_records(jobs, aux, targets, backbone, cache)
    return {name: {ds: Results.from_records(r) for ds, r in recs[name].items()} for name in settings}


def intervals(results: Mapping[str, dict], reference: str, metrics: Sequence[str] = METRIC_KEYS,
              n_boot: int = 1000, x: Mapping[str, object] | None = None) -> pd.DataFrame:
    """`compare.interval_table` per target dataset of grid_results' dict, with a "dataset"
    column and, given x ({setting: swept value}), an "x" column (the form plot_sensitivity and
    ablation_figure draw)."""
    from .compare import interval_table

    frames = []
    for ds in next(iter(results.values())):
        t = interval_table({n: r[ds] for n, r in results.items()}, reference, metrics, n_boot)
        frames.append(t.assign(dataset=ds, **({"x": t.setting.map(dict(x))} if x is not None else {})))
    return pd.concat(frames, ignore_index=True)


# --- with files ---------------------------------------------------------------------------------
def write_ablation(cfg: Config, aux: Sequence, targets: dict, out, label: str | None = None, **kw):
    """`ablate` with its runs in `out`; writes ablation.csv and table3.md (ours, then the
    paper's for reference), prints ours, returns the frame."""
    from .paper import paper_table

    out = Path(out)
    df = ablate(cfg, aux, targets, out_dir=out, **kw)
    save_frame(df, out / "ablation.csv")
    ours = to_markdown(flat_index(table3(df)))
    paper = flat_index(paper_table(3).set_index(["variant", "dataset"]).drop(columns="note"))
    text = (f"# Ablation{': ' + label if label else ''}\n\n{ours}\n"
            f"## For reference: the paper's Table 3 (real data, ViT-L-14-336; not comparable)\n\n"
            f"{to_markdown(paper)}")
    atomic_write_text(out / "table3.md", text)
    from .viz import ablation_figure, save_figure

    res = grid_results(cfg, dict(kw.get("variants") or ABLATIONS), aux, targets, kw.get("seeds", (0,)),
                       kw.get("backbone"), kw.get("cache"), out_dir=out) if kw.get("backbone") else None
    iv = intervals(res, "full BAG-CLIP") if res and "full BAG-CLIP" in res else None
    if iv is not None:
        save_frame(iv, out / "ablation_intervals.csv")
    save_figure(ablation_figure(df, f"{label or 'ours'}; hatched: the paper's Table 3 (quoted)",
                                intervals=None if iv is None else iv[iv.dataset == iv.dataset.iloc[0]]),
                out / "ablation.png")
    log.info(ours)
    return df


def write_sweep(cfg: Config, param: str, values: Sequence, aux: Sequence, targets: dict, out,
                runs_dir=None, label: str | None = None, **kw):
    """`sweep` with its runs in runs_dir (default out); writes out/sweep_<param>.csv and
    out/sensitivity_<param>.png (Figure 5 / 6 form), returns the frame."""
    from .viz import plot_sensitivity, save_figure

    out = Path(out)
    df = sweep(cfg, param, values, aux, targets, out_dir=runs_dir or out, **kw)
    save_frame(df, out / f"sweep_{param}.csv")
    fig = plot_sensitivity(df, param, paper_default=getattr(cfg, param))
    if label:
        fig.suptitle(label, fontsize=8, y=1.02)
    save_figure(fig, out / f"sensitivity_{param}.png", bbox_inches="tight")
    return df
