"""Figures 2-7 and the raw text maps per tap: each a function of the reproduce `Context` that
draws with `bagclip.viz`, writes its files and returns its README entries."""
from __future__ import annotations

import numpy as np

from .context import APRIL, OURS, PAPER_VALUES, TRAINING_FREE, WINCLIP, Context, log
from .tables import entry

FIG_KW = dict(bbox_inches="tight")
SHORT = {OURS: "BAG-CLIP (ours)", APRIL: "APRIL-GAN-style\n(our re-impl.)", WINCLIP: "WinCLIP-style\n(our re-impl.)"}


def pick_examples(samples, per_class: int = 1) -> list[int]:
    """Indices of the first `per_class` anomalous samples with a mask of each class (fixed
    order: seeded data). The one picker of the figures' example images."""
    seen, out = {}, []
    for i, s in enumerate(samples):
        if s.label and s.mask_path is not None and seen.get(s.class_name, 0) < per_class:
            seen[s.class_name] = seen.get(s.class_name, 0) + 1
            out.append(i)
    return out


def _image(ctx: Context, i: int) -> np.ndarray:
    from ..data import denormalize, load_image

    return denormalize(load_image(ctx.target[i].image_path, ctx.cfg.image_size))


def _mask(ctx: Context, i: int) -> np.ndarray:
    from ..data import load_mask

    return load_mask(ctx.target[i].mask_path, ctx.cfg.image_size).numpy().astype(bool)


def _title(ctx: Context, i: int) -> str:
    return f"{ctx.target[i].class_name}/{ctx.target[i].defect_type}"


def _save(ctx: Context, fig, stem: str, what: str, seeds) -> list[dict]:
    from ..viz import save_figure

    save_figure(fig, ctx.figs / f"{stem}.png", **FIG_KW)
    return [entry(f"{stem}.png", what, seeds)]


def fig2_sag(ctx: Context) -> list[dict]:
    """Figure 2: the SAG over one image (last tap, after SAFR), a defect patch's neighbourhood."""
    import torch

    from ..safr import concat_taps, split_taps
    from ..viz import SAGExplorer

    cfg, i0 = ctx.cfg, pick_examples(ctx.target)[0]
    log.info("\nfigures 2, 3, 4, 7 and the raw text maps per tap")
    tok = ctx.cache.get([ctx.target[i0].image_path], progress=False)
    heads = ctx.models[OURS]
    with torch.no_grad():
        pt = tok.patches.float().to(ctx.backbone.device)
        f = split_taps(heads.safr(concat_taps(pt)), len(cfg.taps)) if heads.safr is not None else pt
    sag = SAGExplorer(_image(ctx, i0), f[0, -1].cpu(), cfg.grid, k=cfg.k, mask=_mask(ctx, i0),
                      title=f"Figure 2: SAG (K={cfg.k}) over {_title(ctx, i0)}, last tap {cfg.taps[-1]} "
                            f"after SAFR (trained heads, seed {ctx.seeds[0]}); {ctx.label}")
    return _save(ctx, sag.fig, "fig2_sag", "Figure 2: the SAG over one image, a defect patch's "
                                           "neighbourhood", [ctx.seeds[0]])


def _compare(ctx: Context, stem: str, names: list[str], title: str, what: str) -> list[dict]:
    from ..viz import compare_maps

    ex = pick_examples(ctx.target)
    maps = {SHORT.get(n, n): ctx.predictions[n][0][ex] for n in names}
    fig = compare_maps([_image(ctx, i) for i in ex], [_mask(ctx, i) for i in ex], maps,
                       [_title(ctx, i) for i in ex], f"{title}; seed {ctx.seeds[0]}; {ctx.label}")
    return _save(ctx, fig, stem, what, [ctx.seeds[0]])


def fig3_heatmaps(ctx: Context) -> list[dict]:
    """Figure 3: baselines beside BAG-CLIP on the same images, each map on its own range (its
    colour bar gives it: `viz.compare_maps`)."""
    return _compare(ctx, "fig3_heatmaps", [*TRAINING_FREE, APRIL, OURS],
                    "Figure 3: baselines (our re-implementations) beside BAG-CLIP",
                    "Figure 3: heat maps, baselines beside BAG-CLIP, same images")


def fig4_ablation_maps(ctx: Context) -> list[dict]:
    """Figure 4: with and without SAG and SAFR."""
    return _compare(ctx, "fig4_ablation_maps", [OURS, "without SAG", "without SAFR", APRIL],
                    "Figure 4: with and without SAG and SAFR (without both = APRIL-GAN-style)",
                    "Figure 4: heat maps with and without SAG and SAFR")


def sweep_intervals(ctx: Context, param: str) -> tuple:
    """(reference value, `sweeps.intervals` frame with "dataset" and "x") of a sweep: each
    point's interval and its paired difference from the Config's own value (the first value
    when the sweep leaves it out), over the grid seeds."""
    from ..sweeps import intervals
    from .tables import N_BOOT

    values = list(ctx.sweeps[param])
    ref = getattr(ctx.cfg, param) if getattr(ctx.cfg, param) in values else values[0]
    names = {f"{param}={v}": v for v in values}
    results = ctx.results({n: {param: v} for n, v in names.items()}, ctx.grid_seeds)
    return ref, intervals(results, f"{param}={ref}", n_boot=N_BOOT, x=names)


def _sensitivity(ctx: Context, param: str, n: int, stem: str) -> list[dict]:
    from ..report import save_frame
    from ..viz import plot_sensitivity

    d = ctx.sweep(param)
    save_frame(d, ctx.figs / f"{stem}.csv")
    ref, iv = sweep_intervals(ctx, param)
    save_frame(iv.rename(columns={"x": "param_value"}), ctx.figs / f"{stem}_intervals.csv")
    fig = plot_sensitivity(d, param, paper_default=PAPER_VALUES.get(param), intervals=iv)
    fig.suptitle(f"Figure {n}: mean over seeds {sorted(set(d.seed))} with 95 % bootstrap intervals (images, "
                 f"seeds); square: {param}={ref} (our Config), filled: the paired difference from it excludes 0, "
                 f"hollow: no evidence; dotted: the paper's value; stars: the paper's text (quoted); "
                 f"{ctx.label}", fontsize=7, wrap=True)
    seeds = list(ctx.grid_seeds)
    return [*_save(ctx, fig, stem, f"Figure {n}: {param} sensitivity, image and pixel panels, 95 % "
                                   f"intervals, differences from {param}={ref} marked; the paper's text "
                                   f"values as quoted stars", seeds),
            entry(f"{stem}.csv", f"Figure {n}'s numbers (fractions, per seed)", seeds),
            entry(f"{stem}_intervals.csv", f"Figure {n}'s intervals (fractions): value, low, high per point; "
                                           f"diff, diff_low, diff_high, verdict against {param}={ref}; chance",
                  seeds)]


def fig5_sensitivity_k(ctx: Context) -> list[dict]:
    """Figure 5: K (neighbours) sensitivity."""
    return _sensitivity(ctx, "k", 5, "fig5_sensitivity_k")


def fig6_sensitivity_p(ctx: Context) -> list[dict]:
    """Figure 6: P (GCN layers) sensitivity."""
    return _sensitivity(ctx, "gcn_layers", 6, "fig6_sensitivity_p")


def fig7_failures(ctx: Context) -> list[dict]:
    """Figure 7: the worst false positive and false negative per class at the F1-max threshold."""
    from .. import analysis as an
    from ..data import load_mask
    from ..viz import failure_cases

    S, target = ctx.cfg.image_size, ctx.target
    maps, scores = ctx.predictions[OURS]
    thr = an.f1_max_threshold(scores, np.array([int(s.label) for s in target]))[0]
    masks = [load_mask(s.mask_path, S).numpy().astype(bool) if s.mask_path is not None
             else np.zeros((S, S), bool) for s in target]
    fig = failure_cases(target, scores, maps, masks, lambda i: _image(ctx, i), thr,
                        suptitle=f"Figure 7: worst false positive and false negative per class, "
                                 f"BAG-CLIP (ours, seed {ctx.seeds[0]}), F1-max threshold; {ctx.label}")
    return _save(ctx, fig, "fig7_failures", "Figure 7: worst false positive / negative per class",
                 [ctx.seeds[0]])


def fig_tap_text_maps(ctx: Context) -> list[dict]:
    """The frozen backbone's raw text-similarity map per tap (no trained module)."""
    from .. import analysis as an
    from ..prompts import class_texts
    from ..viz import MAP_CMAP, panel_rows

    cfg, ex = ctx.cfg, pick_examples(ctx.target)
    texts = class_texts(ctx.backbone, [ctx.target[i].class_name for i in ex], cfg)
    up = cfg.image_size // cfg.grid
    rows = []
    for i in ex:
        t = ctx.cache.get([ctx.target[i].image_path], progress=False)
        tm = an.tap_text_maps(ctx.backbone, t.patches, texts[ctx.target[i].class_name], cfg.logit_scale)[0].numpy()
        tm = np.kron(tm, np.ones((up, up)))  # patch grid -> pixels, nearest
        rows.append(dict(image=_image(ctx, i), mask=_mask(ctx, i), title=_title(ctx, i),
                         extra=[(tm[l], f"tap {b}: raw text map", "abnormal prob.", MAP_CMAP)
                                for l, b in enumerate(cfg.taps)]))
    fig = panel_rows(rows, f"{cfg.backbone}: raw text-similarity map per tap, each on its own scale "
                           f"(frozen CLIP, nothing trained; grid {cfg.grid}); {ctx.label}")
    return _save(ctx, fig, "fig_tap_text_maps", f"{cfg.backbone}'s raw text-similarity map per tap "
                                                f"{list(cfg.taps)} (nothing trained)", [ctx.seeds[0]])


def fig_synth_gallery(ctx: Context) -> list[dict]:
    """Every synthetic category and defect kind with its exact mask (the quick benchmark's
    look; drawn the same in full mode, where it is not the data)."""
    from ..viz import synth_gallery

    synth_gallery(ctx.figs / "synth_gallery.png", size=min(ctx.cfg.image_size, 224))
    return [entry("synth_gallery.png", "the synthetic benchmark: every category (aux / target) and "
                                       "defect kind with its mask", "-")]
