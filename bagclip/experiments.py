"""End-to-end experiments on cached features: train on auxiliary classes, test zero-shot on targets.

`reproduce(cfg)` is the main job of the kit (`bagclip reproduce --quick`): on the synthetic
benchmark with the tiny random backbone it exercises every step of the paper's protocol
(Section 4.1) on a CPU in minutes. Its numbers are labelled as what they are.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .backbone import Backbone, load_backbone
from .cache import FeatureCache
from .config import Config, atomic_write_bytes, atomic_write_text
from .metrics import METRIC_KEYS as KEYS

LABEL = "synthetic benchmark, bagclip-tiny random backbone (pipeline check, NOT the paper's numbers)"


def evaluate_cached(model, cfg: Config, backbone: Backbone, cache: FeatureCache, samples: Sequence,
                    progress: bool = False) -> dict:
    """Metrics of heads on samples, reading backbone tokens from the cache (image_size maps)."""
    from .data import load_mask
    from .inference import predict_cached
    from .metrics import compute_metrics
    from .train import class_texts

    entries = cache.ensure([s.image_path for s in samples], progress=progress)
    names = [s.class_name for s in samples]
    texts = class_texts(backbone, names, cfg)
    maps, scores, _ = predict_cached(model, cfg, cache, entries, names, texts)
    labels = np.array([int(s.label) for s in samples])
    if any(s.label and s.mask_path is None for s in samples):  # image-level set: no pixel metrics
        return compute_metrics(scores.numpy(), labels, class_names=names)
    masks = torch.stack([load_mask(s.mask_path, cfg.image_size) for s in samples])
    return compute_metrics(scores.numpy(), labels, maps.numpy(), masks.numpy(), class_names=names)


PARTS = ("protocol", "ablation", "sensitivity", "cost")
SWEEPS = {"k": [5, 10, 15, 20, 30], "gcn_layers": [2, 3, 4, 5, 6, 7]}  # the paper's grids (4.3.2)


# Full mode: folder names expected under BAGCLIP_DATA (or data_root) for the paper's protocol.
PAPER_AUX = {"mvtec": "mvtec_ad", "visa": "visa"}
PAPER_TARGETS = {"mpdd": "mpdd", "btad": "btad", "miad": "miad", "insplad": "insplad", "folder": "eped"}


def protocol_data(full: bool = False, data_root=None, image_size: int = 224, synth_root=None):
    """(aux samples, {target name: samples}) for notebooks and sweeps.

    Quick: the synthetic auxiliary / target groups at image_size (from synth_root if given,
    else the generated-once tree of `ensure_synth`). Full: the paper's protocol
    from `data_root` (default $BAGCLIP_DATA) holding mvtec_ad/ and visa/ (trained on, test
    splits) and any of mpdd/ btad/ miad/ insplad/ eped/ (evaluated); EPED-like private sets use
    the folder layout. Raises a DataError naming what is missing.
    """
    from .data import DataError, auxiliary_samples, load_dataset
    from .data.synth import AUX_CLASSES, TARGET_CLASSES, ensure_synth

    if not full:
        root = Path(synth_root) if synth_root else ensure_synth(size=image_size)
        return (load_dataset("synth", root, "test", classes=AUX_CLASSES),
                {"synth-target": load_dataset("synth", root, "test", classes=TARGET_CLASSES)})
    raw = str(data_root or os.environ.get("BAGCLIP_DATA", ""))
    base = Path(raw).expanduser()
    if not raw or not base.is_dir():
        raise DataError(f"full mode needs the datasets: set BAGCLIP_DATA to a folder holding "
                        f"{', '.join(PAPER_AUX.values())} and targets among "
                        f"{', '.join(PAPER_TARGETS.values())} (got {raw!r})")
    missing = [d for d in PAPER_AUX.values() if not (base / d).is_dir()]
    if missing:
        raise DataError(f"{base}: auxiliary datasets missing: {missing}")
    aux = auxiliary_samples({k: base / d for k, d in PAPER_AUX.items()})
    targets = {d.upper(): load_dataset(k, base / d, "test", image_level=(k == "insplad"))
               for k, d in PAPER_TARGETS.items() if (base / d).is_dir()}
    if not targets:
        raise DataError(f"{base}: no target dataset found; expected any of {list(PAPER_TARGETS.values())}")
    return aux, targets


def reproduce(cfg: Config | None = None, out_dir: str | os.PathLike = "runs/reproduce-quick",
              seeds: Sequence[int] = (0, 1, 2), device: str | None = None, synth_root=None,
              progress: bool = True, parts: Sequence[str] = PARTS, grid_seeds: Sequence[int] = (0,)) -> dict:
    """The paper's experiments on the synthetic benchmark: train on the auxiliary classes,
    evaluate zero-shot on the target classes.

    parts: "protocol": per seed, heads trained (resumable) in out_dir/seed_<s>, metrics of the
    untrained and trained heads (results.json, tables.md, figure.png); "ablation": Table 3's
    variants (ablation/); "sensitivity": K and P over the paper's grids, Figures 5-6
    (sensitivity/); "cost": Tables 4-5 measured on this machine (cost/). The grids use
    grid_seeds. Finished runs are reused when rerun.
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    cfg = cfg or Config.quick()
    out = Path(out_dir)
    aux, targets = protocol_data(image_size=cfg.image_size, synth_root=synth_root)
    target = targets["synth-target"]
    backbone = load_backbone(cfg, device=device)
    cache = FeatureCache(backbone)
    print(f"[{LABEL}]\ntrain: {len(aux)} images of {sorted({s.class_name for s in aux})}\n"
          f"test:  {len(target)} images of {sorted({s.class_name for s in target})}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"label": LABEL, "config": cfg.to_dict()}
    if "protocol" in parts:
        summary.update(_protocol(cfg, out, seeds, backbone, cache, aux, target, progress))
    grid = dict(backbone=backbone, cache=cache, seeds=grid_seeds, progress=progress)
    if "ablation" in parts:
        print("\nablation (Table 3 variants)")
        df = write_ablation(cfg, aux, targets, out / "ablation", label=LABEL, **grid)
        summary["ablation"] = {"rows": df.to_dict(orient="records")}
    if "sensitivity" in parts:
        summary["sensitivity"] = {}
        for param, values in SWEEPS.items():
            print(f"\nsensitivity: {param} in {values}")
            df = write_sweep(cfg, param, values, aux, targets, out / "sensitivity",
                             runs_dir=out / "sensitivity" / param, label=LABEL, **grid)
            summary["sensitivity"][param] = df.to_dict(orient="records")
        print(f"written: {out}/sensitivity/sensitivity_k.png, {out}/sensitivity/sensitivity_gcn_layers.png")
    if "cost" in parts:
        from .cost import bench_main

        print("\ncost (Tables 4-5), measured here")
        t4, t5 = bench_main(cfg, device=str(backbone.device), out_dir=out / "cost", repeats=3)
        summary["cost"] = {"table4": t4.to_dict(orient="records"), "table5": t5.to_dict(orient="records")}
    return summary


def _protocol(cfg, out, seeds, backbone, cache, aux, target, progress) -> dict:
    from .train import build_heads, train

    runs, models = [], []
    for seed in seeds:
        c = cfg.replace(seed=seed)
        run_dir = out / f"seed_{seed}"
        resume = (run_dir / "state.pt").is_file()
        untrained = evaluate_cached(build_heads(c, backbone).to(backbone.device).eval(), c, backbone, cache, target)
        res = train(c, aux, backbone, run_dir, cache=cache, resume=resume, progress=progress)
        trained = evaluate_cached(res.model, c, backbone, cache, target)
        runs.append({"seed": seed, "untrained": untrained, "trained": trained,
                     "final_loss": res.history[-1] if res.history else None, "history": res.history})
        models.append(res.model)
    summary = {"label": LABEL, "config": cfg.to_dict(), "runs": runs}
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2, default=_jsonable))
    table = results_table(runs)
    atomic_write_text(out / "tables.md", f"# {LABEL}\n\n## Untrained vs trained heads\n\n{table}\n\n"
                      f"{paper_layout({'synth-target': [r['trained'] for r in runs]}, cfg.image_size)}")
    fig = quick_figure(runs, models[0], cfg.replace(seed=seeds[0]), backbone, cache, target)
    save_figure(fig, out / "figure.png")
    print(f"\n{table}\n\nwritten: {out / 'results.json'}, {out / 'tables.md'}, {out / 'figure.png'}")
    return {"runs": runs}


def _flat(table):
    """(variant, dataset) index -> "variant / dataset", for one-level markdown tables."""
    table.index = [f"{v} / {d}" for v, d in table.index]
    table.index.name = "variant / dataset"
    return table


def write_ablation(cfg: Config, aux: Sequence, targets: dict, out, label: str | None = None, **kw):
    """Table 3's variants (run in `out`); writes ablation.csv and table3.md (ours, then the
    paper's for reference), prints ours, returns the long frame of `sweeps.ablate`."""
    from .evaluate import to_markdown
    from .paper import paper_table
    from .sweeps import ablate, save_frame, table3

    out = Path(out)
    df = ablate(cfg, aux, targets, out_dir=out, **kw)
    save_frame(df, out / "ablation.csv")
    ours = to_markdown(_flat(table3(df)))
    paper = _flat(paper_table(3).set_index(["variant", "dataset"]).drop(columns="note"))
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
    """`sweeps.sweep` with its runs in runs_dir (default out); writes out/sweep_<param>.csv and
    out/sensitivity_<param>.png (Figure 5 / 6 form), returns the frame."""
    from .plots import plot_sensitivity
    from .sweeps import save_frame, sweep

    out = Path(out)
    df = sweep(cfg, param, values, aux, targets, out_dir=runs_dir or out, **kw)
    save_frame(df, out / f"sweep_{param}.csv")
    fig = plot_sensitivity(df, param, paper_default=getattr(cfg, param))
    if label:
        fig.suptitle(label, fontsize=8, y=1.02)
    save_figure(fig, out / f"sensitivity_{param}.png", bbox_inches="tight")
    return df


def save_figure(fig, path, **kw) -> Path:
    """PNG at dpi 110, written atomically; see `bagclip.plots.save_figure`."""
    from .plots import save_figure as save

    return save(fig, path, **kw)


def quick_figure(runs: list[dict], model, cfg: Config, backbone: Backbone, cache: FeatureCache,
                 target: Sequence, per_class: int = 1):
    """Loss per step for every seed, then image / ground truth / anomaly map for one anomalous
    test image per target class (the first seed's trained heads); drawn by
    `bagclip.plots.quick_figure_from`. Returns the Figure."""
    from .data import load_image, load_mask
    from .data.io import denormalize
    from .inference import predict_cached
    from .plots import quick_figure_from
    from .train import class_texts

    picks, seen = [], {}
    for s in target:
        if s.label and seen.get(s.class_name, 0) < per_class:
            seen[s.class_name] = seen.get(s.class_name, 0) + 1
            picks.append(s)
    entries = cache.ensure([s.image_path for s in picks], progress=False)
    names = [s.class_name for s in picks]
    maps, scores, _ = predict_cached(model, cfg, cache, entries, names, class_texts(backbone, names, cfg))
    images = [denormalize(load_image(s.image_path, cfg.image_size)) for s in picks]
    masks = [load_mask(s.mask_path, cfg.image_size).numpy() for s in picks]
    return quick_figure_from(runs, picks, images, masks, [m.numpy() for m in maps], scores, LABEL)


def paper_layout(results_by_seed: dict, resolution: int | str) -> str:
    """Markdown: our trained-heads results in the layout of Tables 1 (image) and 2 (pixel),
    mean ± std over seeds, then the paper's BAG-CLIP rows for reference."""
    from .evaluate import HEADERS, format_table1, format_table2, seed_table, to_markdown
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


def results_table(runs: list[dict]) -> str:
    """Markdown: untrained vs trained heads, mean +- std over seeds, in percent."""
    lines = ["| heads | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for which in ("untrained", "trained"):
        cells = []
        for k in KEYS:
            v = np.array([r[which][k] for r in runs], dtype=float) * 100
            cells.append(f"{np.nanmean(v):.1f} ± {np.nanstd(v, ddof=1):.1f}" if len(v) > 1 else f"{v[0]:.1f}")
        lines.append(f"| {which} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
