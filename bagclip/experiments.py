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
from .config import Config, atomic_write_text

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
    masks = torch.stack([load_mask(s.mask_path, cfg.image_size) for s in samples])
    labels = np.array([int(s.label) for s in samples])
    return compute_metrics(scores.numpy(), labels, maps.numpy(), masks.numpy(), class_names=names)


def reproduce(cfg: Config | None = None, out_dir: str | os.PathLike = "runs/reproduce-quick",
              seeds: Sequence[int] = (0,), device: str | None = None, synth_root=None,
              progress: bool = True) -> dict:
    """Train on the synthetic auxiliary classes, evaluate zero-shot on the target classes.

    Per seed: heads trained (resumable) in out_dir/seed_<s>, metrics of the untrained and the
    trained heads on the targets. Writes results.json and tables.md in out_dir.
    """
    from .data import load_dataset
    from .data.synth import AUX_CLASSES, TARGET_CLASSES, ensure_synth
    from .train import build_heads, train

    cfg = cfg or Config.quick()
    out = Path(out_dir)
    root = Path(synth_root) if synth_root else ensure_synth(seed=0, size=cfg.image_size)
    aux = load_dataset("synth", root, "test", classes=AUX_CLASSES)
    target = load_dataset("synth", root, "test", classes=TARGET_CLASSES)
    backbone = load_backbone(cfg, device=device)
    cache = FeatureCache(backbone)
    print(f"[{LABEL}]\ntrain: {len(aux)} images of {sorted({s.class_name for s in aux})}\n"
          f"test:  {len(target)} images of {sorted({s.class_name for s in target})}")
    runs = []
    for seed in seeds:
        c = cfg.replace(seed=seed)
        run_dir = out / f"seed_{seed}"
        resume = (run_dir / "state.pt").is_file()
        untrained = evaluate_cached(build_heads(c, backbone).to(backbone.device).eval(), c, backbone, cache, target)
        res = train(c, aux, backbone, run_dir, cache=cache, resume=resume, progress=progress)
        trained = evaluate_cached(res.model, c, backbone, cache, target)
        runs.append({"seed": seed, "untrained": untrained, "trained": trained,
                     "final_loss": res.history[-1] if res.history else None})
    summary = {"label": LABEL, "config": cfg.to_dict(), "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2, default=_jsonable))
    table = results_table(runs)
    atomic_write_text(out / "tables.md", f"# {LABEL}\n\n{table}\n")
    print(f"\n{table}\n\nwritten: {out / 'results.json'}, {out / 'tables.md'}")
    return summary


KEYS = ("image_auroc", "image_f1_max", "image_ap", "pixel_auroc", "pixel_f1_max", "pixel_ap", "pixel_aupro")


def results_table(runs: list[dict]) -> str:
    """Markdown: untrained vs trained heads, mean +- std over seeds, in percent."""
    lines = ["| heads | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for which in ("untrained", "trained"):
        cells = []
        for k in KEYS:
            v = np.array([r[which][k] for r in runs], dtype=float) * 100
            cells.append(f"{np.nanmean(v):.1f} ± {np.nanstd(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}")
        lines.append(f"| {which} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
