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

import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from .config import Config
from .evaluate import evaluate_cached
from .files import atomic_write_text
from .metrics import METRIC_KEYS
from .report import (PARAM_LABELS, cells, flat_index, save_figure, save_frame,  # noqa: F401 (re-exported)
                     summarize, to_markdown)

# Table 3's rows, plus our own: JFF off (F_SAG alone projected), and the global adapter off
# (the paper trains no module on the global branch; docs/decisions.md).
ABLATIONS: dict[str, dict] = {
    "without SAFR": {"use_safr": False},
    "without SAG": {"use_sag": False},
    "without JFF": {"use_jff": False},
    "without global adapter": {"global_adapter": False},
    "full BAG-CLIP": {},
}


EXECUTORS = ("inprocess", "local", "slurm")


def run_key(cfg: Config, sizes: Mapping[str, int]) -> str:
    """A run's identity: its Config and what it is evaluated on (16 hex digits). Two settings
    with the same Config (the ablation's full model and the K=10 point) share one run."""
    text = json.dumps({"config": cfg.to_dict(), "targets": dict(sizes)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_run(run_dir, cfg: Config, sizes: Mapping[str, int]) -> dict | None:
    """The per-dataset metrics of a finished run in run_dir made with cfg on targets of these
    sizes, or None (not run, interrupted, or made with something else)."""
    done = Path(run_dir) / "metrics.json"
    if not done.is_file():
        return None
    saved = json.loads(done.read_text())
    if saved.get("targets") == dict(sizes) and saved.get("config") == cfg.to_dict():
        return saved["metrics"]
    return None


def run_one(cfg: Config, aux: Sequence, targets: Mapping[str, Sequence], run_dir, backbone, cache) -> dict:
    """One run: heads trained with cfg (resumed from run_dir's checkpoint when there is one),
    evaluated on every target set; run_dir/metrics.json (written last, atomically) marks it
    finished and a finished run is read back, not redone. Returns {dataset: metrics}."""
    from .train import train

    sizes = {ds: len(samples) for ds, samples in targets.items()}
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and (saved := finished_run(run_dir, cfg, sizes)) is not None:
        return saved
    resume = run_dir is not None and (run_dir / "state.pt").is_file()
    model = train(cfg, aux, backbone, run_dir, cache=cache, resume=resume, progress=False).model
    per_ds = {ds: {k: float(v) for k, v in evaluate_cached(model, cfg, backbone, cache, samples).items()
                   if k in METRIC_KEYS}
              for ds, samples in targets.items()}
    if run_dir is not None:  # the marker of a finished run, with what it was run on
        atomic_write_text(run_dir / "metrics.json", json.dumps({"config": cfg.to_dict(), "targets": sizes,
                                                                "metrics": per_ds}, indent=2))
    return per_ds


def _job(cfg_dict: dict, aux: Sequence, targets: Mapping[str, Sequence], run_dir: str, cache_root: str,
         device: str | None) -> dict:
    """One run as a submitit job: its own backbone, the feature cache shared on disk."""
    from .backbone import load_backbone
    from .cache import FeatureCache

    cfg = Config.from_dict(cfg_dict)
    backbone = load_backbone(cfg, device=device)
    return run_one(cfg, aux, targets, run_dir, backbone, FeatureCache(backbone, cache_root))


def spread_devices(device: str | None, n_jobs: int, n_gpus: int) -> list[str | None]:
    """One device per job: a plain "cuda" over n_gpus > 1 visible GPUs becomes cuda:0, cuda:1, ...
    round-robin (`submit_runs` starts them in waves of one per GPU); anything else is kept for
    every job."""
    if device == "cuda" and n_gpus > 1:
        return [f"cuda:{i % n_gpus}" for i in range(n_jobs)]
    return [device] * n_jobs


def submit_runs(jobs: Sequence[tuple[Config, Path]], aux: Sequence, targets: Mapping[str, Sequence],
                cache_root, folder, executor: str = "local", device: str | None = None,
                slurm: Mapping | None = None) -> None:
    """Run (cfg, run_dir) pairs through submitit, one job per run.

    "local": submitit's local executor, one process per job as SLURM would, one job per visible
    GPU at a time (one at a time without a GPU). "slurm": sbatch with slurm's options, e.g.
    {"slurm_partition": "gpu", "gpus_per_node": 1, "timeout_min": 240}. Waits for all; a failed
    job raises with its log's path. Results are read from the run folders afterwards."""
    try:
        import submitit
    except ImportError:  # an extra: pip install 'bagclip[cluster]'
        raise ValueError(f"--executor {executor} needs submitit: pip install submitit") from None
    ex = submitit.AutoExecutor(folder=str(folder), cluster="local" if executor == "local" else "slurm")
    opts = {"timeout_min": 60, **(slurm or {})}
    if executor == "local":
        opts = {k: v for k, v in opts.items() if not k.startswith("slurm_")}
    ex.update_parameters(**opts)
    n_gpus = torch.cuda.device_count() if executor == "local" else 0  # a SLURM job sees its own GPUs
    placed = list(zip(jobs, spread_devices(device, len(jobs), n_gpus)))
    # SLURM queues everything at once; the local executor starts whatever it is given, so it
    # gets waves of one job per GPU (one job on a CPU-only machine: each uses every core)
    wave = max(1, n_gpus) if executor == "local" else len(jobs)
    for start in range(0, len(jobs), wave):
        with ex.batch():
            handles = [ex.submit(_job, c.to_dict(), list(aux), dict(targets), str(d), str(cache_root), dev)
                       for (c, d), dev in placed[start:start + wave]]
        for h in handles:
            h.result()


def run_settings(cfg: Config, settings: Mapping[str, dict], aux: Sequence, targets: Mapping[str, Sequence],
                 seeds: Sequence[int] = (0,), backbone=None, cache=None, out_dir=None,
                 device: str | None = None, progress: bool = True, runs_root=None,
                 executor: str = "inprocess", slurm: Mapping | None = None) -> pd.DataFrame:
    """Train + evaluate once per (setting, seed).

    settings: name -> Config changes (heads only: the backbone and its cache are shared, so a
    change to a `Config.backbone_fields()` field is refused). targets: dataset name -> samples.
    Runs live in out_dir/<setting>/seed_<s>, or, with runs_root, in runs_root/<run_key> (shared
    by every grid that makes the same run). executor: "inprocess" (here, one after the other),
    "local" or "slurm" (submitit, one job per unfinished run; see `submit_runs`).
    Returns a long frame: setting, seed, dataset, METRIC_KEYS (fractions), one row per
    (setting, seed, dataset).
    """
    from tqdm.auto import tqdm

    from .backbone import load_backbone
    from .cache import FeatureCache

    if not aux:
        raise ValueError("run_settings: no auxiliary (training) samples")
    if not targets or not all(len(t) for t in targets.values()):
        raise ValueError(f"run_settings: every target dataset needs samples; got "
                         f"{ {k: len(v) for k, v in targets.items()} }")
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}; choose one of {EXECUTORS}")
    for name, changes in settings.items():
        cfg.replace(**changes)  # fail on a bad setting before any training
        changed = sorted(set(Config.backbone_fields()) & set(changes))
        if changed:
            raise ValueError(f"setting {name!r} changes the backbone ({changed}); the settings share "
                             f"one backbone and feature cache: make a separate run for it")
    out = Path(out_dir) if out_dir is not None else None
    root = Path(runs_root) if runs_root is not None else None
    if executor != "inprocess" and out is None and root is None:
        raise ValueError(f"executor {executor!r} needs out_dir or runs_root: results come back as files")
    backbone = backbone or load_backbone(cfg, device=device)
    cache = cache or FeatureCache(backbone)
    sizes = {ds: len(samples) for ds, samples in targets.items()}  # recorded with each finished run
    jobs = []
    for name in settings:
        for seed in seeds:
            c = cfg.replace(**{**settings[name], "seed": seed})
            run_dir = (root / run_key(c, sizes) if root is not None
                       else out / _slug(name) / f"seed_{seed}" if out is not None else None)
            jobs.append((name, seed, c, run_dir))
    if executor != "inprocess":
        pending = {str(d): (c, d) for _, _, c, d in jobs if finished_run(d, c, sizes) is None}
        if pending:
            cache.ensure([s.image_path for s in [*aux, *[s for t in targets.values() for s in t]]],
                         progress=progress)  # encoded once, here; the jobs only read
            submit_runs(list(pending.values()), aux, targets, cache.root, (root or out) / "submitit",
                        executor, device=device or str(backbone.device), slurm=slurm)
    rows = []
    for name, seed, c, run_dir in tqdm(jobs, desc="runs", unit="run", disable=not progress):
        per_ds = run_one(c, aux, targets, run_dir, backbone, cache)
        rows += [{"setting": name, "seed": seed, "dataset": ds, **m} for ds, m in per_ds.items()]
    return pd.DataFrame(rows, columns=["setting", "seed", "dataset", *METRIC_KEYS])


def sweep(cfg: Config, param: str, values: Sequence, aux: Sequence, targets: Mapping[str, Sequence],
          seeds: Sequence[int] = (0,), **kw) -> pd.DataFrame:
    """One Config field over values (the paper: k in 5..30, gcn_layers in 2..7).

    Returns run_settings' frame with a `value` column (the setting's value) and attrs["param"].
    """
    if param not in Config.__dataclass_fields__:
        raise ValueError(f"unknown Config field {param!r}")
    values = list(values)
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


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "=-_." else "_" for ch in name)


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
    from .plots import ablation_figure

    save_figure(ablation_figure(df, f"{label or 'ours'}; hatched: the paper's Table 3 (quoted)"),
                out / "ablation.png")
    print(ours)
    return df


def write_sweep(cfg: Config, param: str, values: Sequence, aux: Sequence, targets: dict, out,
                runs_dir=None, label: str | None = None, **kw):
    """`sweep` with its runs in runs_dir (default out); writes out/sweep_<param>.csv and
    out/sensitivity_<param>.png (Figure 5 / 6 form), returns the frame."""
    from .plots import plot_sensitivity

    out = Path(out)
    df = sweep(cfg, param, values, aux, targets, out_dir=runs_dir or out, **kw)
    save_frame(df, out / f"sweep_{param}.csv")
    fig = plot_sensitivity(df, param, paper_default=getattr(cfg, param))
    if label:
        fig.suptitle(label, fontsize=8, y=1.02)
    save_figure(fig, out / f"sensitivity_{param}.png", bbox_inches="tight")
    return df
