"""`reproduce`: the paper's experiments end to end, on cached features (`bagclip reproduce --quick`).

On the synthetic benchmark with the shipped bagclip-mini backbone (a small CLIP pretrained on
the kit's own synthetic world) it runs every step of the paper's protocol (Section 4.1) on a
CPU in minutes; its numbers are labelled as what they are.
The steps, each in its own module:
    data        bagclip.data.protocol_data       auxiliary (training) and target sets
    tokens      bagclip.cache.FeatureCache       the frozen backbone, run once per image
    heads       bagclip.train.train              per seed, resumable
    metrics     bagclip.evaluate.evaluate_cached untrained vs trained heads on the targets
    grids       bagclip.sweeps                   the ablation (Table 3) and K / P (Figures 5-6)
    cost        bagclip.cost.bench_main          Tables 4-5 measured here
    report      bagclip.report                   results.json, tables.md, figure.png
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from .backbone import load_backbone
from .cache import FeatureCache
from .config import Config
from .data import protocol_data
from .evaluate import evaluate_cached
from .files import atomic_write_text
from .report import json_safe, paper_layout, quick_figure, results_table, save_figure
from .sweeps import write_ablation, write_sweep

LABEL = "synthetic benchmark, bagclip-mini (synthetic pretraining), NOT the paper's numbers"
PARTS = ("protocol", "ablation", "sensitivity", "cost")
SWEEPS = {"k": [5, 10, 15, 20, 30], "gcn_layers": [2, 3, 4, 5, 6, 7]}  # the paper's grids (4.3.2)


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
    shared = dict(backbone=backbone, cache=cache, seeds=grid_seeds, progress=progress)
    if "ablation" in parts:
        print("\nablation (Table 3 variants)")
        df = write_ablation(cfg, aux, targets, out / "ablation", label=LABEL, **shared)
        summary["ablation"] = {"rows": df.to_dict(orient="records")}
    if "sensitivity" in parts:
        summary["sensitivity"] = {}
        for param, values in SWEEPS.items():
            print(f"\nsensitivity: {param} in {values}")
            df = write_sweep(cfg, param, values, aux, targets, out / "sensitivity",
                             runs_dir=out / "sensitivity" / param, label=LABEL, **shared)
            summary["sensitivity"][param] = df.to_dict(orient="records")
        print(f"written: {out}/sensitivity/sensitivity_k.png, {out}/sensitivity/sensitivity_gcn_layers.png")
    if "cost" in parts:
        from .cost import bench_main

        print("\ncost (Tables 4-5), measured here")
        t4, t5 = bench_main(cfg, device=str(backbone.device), out_dir=out / "cost", repeats=3)
        summary["cost"] = {"table4": t4.to_dict(orient="records"), "table5": t5.to_dict(orient="records")}
    return summary


def _protocol(cfg, out, seeds, backbone, cache, aux, target, progress) -> dict:
    """Per seed: untrained heads, training, trained heads, on the target set; then the files."""
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
    atomic_write_text(out / "results.json", json.dumps(json_safe(summary), indent=2))
    table = results_table(runs)
    atomic_write_text(out / "tables.md", f"# {LABEL}\n\n## Untrained vs trained heads\n\n{table}\n\n"
                      f"{paper_layout({'synth-target': [r['trained'] for r in runs]}, cfg.image_size)}")
    fig = quick_figure(runs, models[0], cfg.replace(seed=seeds[0]), backbone, cache, target, title=LABEL)
    save_figure(fig, out / "figure.png")
    print(f"\n{table}\n\nwritten: {out / 'results.json'}, {out / 'tables.md'}, {out / 'figure.png'}")
    return {"runs": runs}
