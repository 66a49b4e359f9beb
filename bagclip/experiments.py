"""`reproduce`: the paper's experiments end to end, into figures/ (`bagclip reproduce --quick`).

Quick mode (the default of the CLI's --quick): the synthetic benchmark with the shipped
bagclip-mini backbone (a small CLIP pretrained on the kit's own synthetic world), every step of
the paper's protocol (Section 4.1) on a CPU; its numbers are labelled as what they are.
Full mode: the paper's protocol from $BAGCLIP_DATA with ViT-L-14-336 at 518 px.
The steps, each in its own module:
    data        bagclip.data.protocol_data       auxiliary (training) and target sets
    tokens      bagclip.cache.FeatureCache       the frozen backbone, run once per image
    runs        bagclip.sweeps.run_settings      one run per (Config, seed), resumable, shared
                                                 by every grid that needs it; in-process or
                                                 through submitit (local / SLURM)
    baselines   bagclip.artefacts                WinCLIP-style (training-free) and
                                                 APRIL-GAN-style (heads without SAFR and SAG)
    cost        bagclip.cost.bench_main          Tables 4-5 measured here (kept once measured)
    artefacts   bagclip.artefacts, bagclip.plots figures/: Figures 2-7, Tables 1-5, README.md

Killed anywhere and restarted, it continues: finished runs are read back (their metrics.json
is written last), an interrupted run resumes from its checkpoint, files are written atomically.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from .artefacts import METHODS, APRIL, WINCLIP, OURS, ablation_table, method_tables, write_figures, \
    write_readme, write_table, zero_shot_rows
from .backbone import load_backbone
from .cache import FeatureCache
from .config import Config
from .data import protocol_data
from .files import atomic_write_text
from .report import json_safe, save_frame
from .sweeps import ABLATIONS, run_settings, sweep

LABEL = "synthetic benchmark, {backbone}, NOT the paper's numbers"
MINI_NOTE = " (synthetic pretraining)"  # added after bagclip-mini's name
LABEL_FULL = "the paper's protocol (MVTec AD + VisA -> target sets), measured here"
PARTS = ("protocol", "ablation", "sensitivity", "cost", "figures")
SWEEPS = {"k": [5, 10, 15, 20, 30], "gcn_layers": [2, 3, 4, 5, 6, 7]}  # the paper's grids (4.3.2)
QUICK_SWEEPS = {"k": [5, 10, 15, 20, 30], "gcn_layers": [2, 3, 5, 7]}  # fits 15 min on 2 cores


def reproduce(cfg: Config | None = None, out_dir: str | os.PathLike = "runs/reproduce-quick",
              figures_dir: str | os.PathLike = "figures", seeds: Sequence[int] = (0, 1, 2),
              grid_seeds: Sequence[int] = (0, 1), device: str | None = None, synth_root=None,
              progress: bool = True, parts: Sequence[str] = PARTS, full: bool = False,
              sweeps: Mapping[str, Sequence] | None = None, executor: str = "inprocess",
              slurm: Mapping | None = None, command: str = "bagclip reproduce --quick") -> dict:
    """The paper's experiments: heads trained on the auxiliary classes, evaluated zero-shot on
    the target classes, beside the baselines; artefacts into figures_dir, runs in out_dir.

    parts: "protocol" (Tables 1-2: ours and both baselines, `seeds`), "ablation" (Table 3),
    "sensitivity" (Figures 5-6; `sweeps`, default QUICK_SWEEPS in quick mode, the paper's
    SWEEPS in full mode), "cost" (Tables 4-5, measured once and kept), "figures" (Figures 2-4,
    7, the raw text maps per tap). Grids use grid_seeds. Returns a summary dict.
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    cfg = cfg or (Config() if full else Config.quick())
    label = LABEL_FULL if full else LABEL.format(
        backbone=cfg.backbone + (MINI_NOTE if cfg.backbone == "bagclip-mini" else ""))
    sweeps = dict(sweeps if sweeps is not None else (SWEEPS if full else QUICK_SWEEPS))
    out, figs = Path(out_dir), Path(figures_dir)
    aux, targets = protocol_data(full=full, image_size=cfg.image_size, synth_root=synth_root)
    target = [s for samples in targets.values() for s in samples]
    backbone = load_backbone(cfg, device=device)
    cache = FeatureCache(backbone)
    print(f"[{label}]\ntrain: {len(aux)} images of {len({s.class_name for s in aux})} classes\n"
          f"test:  {len(target)} images of {sorted({s.class_name for s in target})}")
    out.mkdir(parents=True, exist_ok=True)
    figs.mkdir(parents=True, exist_ok=True)
    cfg.save(figs / "config.json")
    kw = dict(backbone=backbone, cache=cache, runs_root=out / "runs", progress=progress,
              executor=executor, slurm=slurm)
    summary: dict = {"label": label, "config": cfg.to_dict()}
    entries: list[dict] = []
    zs = zero_shot_rows(cfg, backbone, cache, targets) if {"protocol", "ablation"} & set(parts) else None
    data_line = ("the synthetic benchmark (auxiliary classes -> target classes)" if not full else
                 f"$BAGCLIP_DATA: {', '.join(targets)}")
    if "protocol" in parts:
        print(f"\nTables 1-2: {list(METHODS)} x seeds {list(seeds)}, and {WINCLIP}")
        df = run_settings(cfg, METHODS, aux, targets, seeds, **kw)
        both = pd.concat([zs, df], ignore_index=True)
        save_frame(both, out / "protocol.csv")
        tables = method_tables(both)
        about = (f"{label}. Mean ± sample std over seeds {list(seeds)} in percent; the training-free "
                 f"scorer has no seed. Same feature cache and metrics for every row.")
        from .paper import paper_table

        for n, stem, level in ((1, "table1_image", "image"), (2, "table2_pixel", "pixel")):
            write_table(figs, stem, f"Table {n}: {level}-level zero-shot results", tables[n],
                        paper_table(n), about, "real data, ViT-L-14-336 at 518 px, the published methods")
            entries += [{"file": f"{stem}.md", "what": f"Table {n} ({level} level): ours and our "
                         f"re-implemented baselines, then the paper's rows (quoted)", "seeds": list(seeds)},
                        {"file": f"{stem}.csv", "what": f"Table {n} as CSV (`source` column)", "seeds": list(seeds)}]
        print(to_text(tables[1]), to_text(tables[2]), sep="\n")
        summary["protocol"] = both.to_dict(orient="records")
    if "ablation" in parts:
        variants = {**ABLATIONS, APRIL: METHODS[APRIL]}
        print(f"\nTable 3: {list(variants)} x seeds {list(grid_seeds)}")
        dfa = pd.concat([run_settings(cfg, variants, aux, targets, grid_seeds, **kw), zs], ignore_index=True)
        save_frame(dfa, out / "ablation.csv")
        from .paper import paper_table

        write_table(figs, "table3_ablation", "Table 3: ablation", ablation_table(dfa),
                    paper_table(3).drop(columns="note"),
                    f"{label}. Mean ± sample std over seeds {list(grid_seeds)} in percent.",
                    "real data, ViT-L-14-336")
        entries += [{"file": "table3_ablation.md", "what": "Table 3 (ablation), our variants and "
                     "baselines; the paper's rows quoted", "seeds": list(grid_seeds)},
                    {"file": "table3_ablation.csv", "what": "Table 3 as CSV", "seeds": list(grid_seeds)}]
        summary["ablation"] = dfa.to_dict(orient="records")
    sweep_frames = {}
    if "sensitivity" in parts:
        for param, values in sweeps.items():
            print(f"\nsensitivity: {param} in {list(values)} x seeds {list(grid_seeds)}")
            d = sweep(cfg, param, values, aux, targets, grid_seeds, **kw)
            n = 5 if param == "k" else 6
            stem = "fig5_sensitivity_k" if param == "k" else "fig6_sensitivity_p"
            save_frame(d, figs / f"{stem}.csv")
            sweep_frames[param] = d
            entries += [{"file": f"{stem}.png", "what": f"Figure {n}: {param} sensitivity, image and "
                         f"pixel panels, mean ± std; the paper's text values as quoted stars",
                         "seeds": list(grid_seeds)},
                        {"file": f"{stem}.csv", "what": f"Figure {n}'s numbers (fractions, per seed)",
                         "seeds": list(grid_seeds)}]
        summary["sensitivity"] = {p: d.to_dict(orient="records") for p, d in sweep_frames.items()}
    if "cost" in parts:
        entries += _cost(cfg, backbone, out, figs)
    if "figures" in parts:
        print("\nfigures 2, 3, 4, 7 and the raw text maps per tap")
        c0 = cfg.replace(seed=seeds[0])
        names = [p.name for p in write_figures(c0, aux, target, targets, backbone, cache, out / "runs",
                                               figs, sweep_frames, label)]
        what = {"fig2_sag.png": "Figure 2: the SAG over one image, a defect patch's neighbourhood",
                "fig3_heatmaps.png": "Figure 3: heat maps, baselines beside BAG-CLIP, same images",
                "fig4_ablation_maps.png": "Figure 4: heat maps with and without SAG and SAFR",
                "fig7_failures.png": "Figure 7: worst false positive / negative per class",
                "fig_tap_text_maps.png": f"{cfg.backbone}'s raw text-similarity map per tap "
                                          f"{list(cfg.taps)} (nothing trained)"}
        entries += [{"file": n, "what": what[n], "seeds": [seeds[0]]} for n in names if n in what]
    atomic_write_text(out / "results.json", json.dumps(json_safe(summary), indent=2))
    context = {"command": command, "label": label, "mode": "paper protocol (--full)" if full else
               "embedded default (quick)", "backbone": cfg.backbone,
               "weights": ("shipped in bagclip/weights" if cfg.pretrained == cfg.backbone else
                           str(cfg.pretrained) if cfg.pretrained else "seeded random weights"),
               "data": data_line, "seeds": list(seeds), "grid_seeds": list(grid_seeds),
               "device": str(backbone.device)}
    entries.append({"file": "config.json", "what": "the Config of every run (seed replaced per run)",
                    "seeds": "-"})
    write_readme(figs, sorted(entries, key=lambda e: e["file"]), context)
    print(f"\nwritten: {figs}/ ({len(entries)} artefacts, README.md); runs in {out}")
    return summary


def to_text(table: pd.DataFrame) -> str:
    from .report import to_markdown

    return to_markdown(table, index=False)


def _cost(cfg: Config, backbone, out: Path, figs: Path) -> list[dict]:
    """Tables 4-5, measured once on this machine (out/cost keeps them: timings are not redone
    on a rerun, so a restarted reproduce ends with the same tables)."""
    from .cost import bench_main
    from .paper import paper_table

    d = out / "cost"
    if (d / "table4_sag_cost.csv").is_file() and (d / "table5_inference.csv").is_file():
        t4, t5 = pd.read_csv(d / "table4_sag_cost.csv"), pd.read_csv(d / "table5_inference.csv")
    else:
        print("\ncost (Tables 4-5), measured here")
        t4, t5 = bench_main(cfg, device=str(backbone.device), out_dir=d, repeats=3)
    hw = str(t4.hardware[0]) if "hardware" in t4 else "this machine"
    ours4 = t4.drop(columns=[c for c in t4.columns if c.startswith("paper_")])
    write_table(figs, "table4_sag_cost", "Table 4: SAG cost", ours4, paper_table(4),
                f"Measured on {hw} for {cfg.backbone} at {cfg.image_size} px (random weights of the "
                f"architecture; cost does not depend on weights).", "an A6000, the paper's sizes")
    measured = t5.source == "measured"
    write_table(figs, "table5_inference", "Table 5: inference cost per image", t5[measured].drop(columns="source"),
                t5[~measured].drop(columns="source"), f"Measured on {hw}.", "an A6000, ViT-L/14@336 at 518 px")
    return [{"file": f"{s}.{e}", "what": w, "seeds": "-"} for s, w in
            (("table4_sag_cost", "Table 4: SAG cost, measured here; the paper's quoted below"),
             ("table5_inference", "Table 5: inference cost, measured here beside the paper's (quoted)"))
            for e in ("md", "csv")]
