"""The paper's artefacts, regenerated into figures/ by `bagclip reproduce` (every figure from
`bagclip.plots`, every table as Markdown and CSV, and figures/README.md saying how each was made).

Rows come from runs made by `reproduce` on one feature cache and one set of metrics:
    BAG-CLIP (ours)                       the heads, trained per seed
    APRIL-GAN-style (our re-implementation)  the same heads with SAFR and SAG off: a linear
                                          projection of each tap's patch tokens
    WinCLIP-style (our re-implementation)    `bagclip.zeroshot.ZeroShot`: nothing trained
The paper's own numbers appear only in sections and rows marked "quoted", never mixed with ours.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .files import atomic_write_text
from .metrics import IMAGE_KEYS, METRIC_KEYS, PIXEL_KEYS
from .report import HEADERS, cells, save_figure, summarize, to_markdown

OURS = "BAG-CLIP (ours)"
APRIL = "APRIL-GAN-style linear projection (our re-implementation)"
WINCLIP = "WinCLIP-style zero-shot (our re-implementation, training-free)"
METHODS = {OURS: {}, APRIL: {"use_safr": False, "use_sag": False}}  # trained, per seed
PAPER_VALUES = {"k": 15, "gcn_layers": 5}  # the paper's defaults, marked on Figures 5-6


def zero_shot_rows(cfg, backbone, cache, targets: Mapping[str, Sequence]) -> pd.DataFrame:
    """The training-free scorer on every target set, in run_settings' long form (seed "-")."""
    from .evaluate import evaluate_cached
    from .zeroshot import ZeroShot

    zs = ZeroShot(backbone)
    rows = []
    for ds, samples in targets.items():
        m = evaluate_cached(zs, cfg, backbone, cache, samples)
        rows.append({"setting": WINCLIP, "seed": -1, "dataset": ds, **{k: float(m[k]) for k in METRIC_KEYS}})
    return pd.DataFrame(rows, columns=["setting", "seed", "dataset", *METRIC_KEYS])


def write_table(out: Path, stem: str, title: str, ours: pd.DataFrame, quoted: pd.DataFrame | None,
                about: str, quoted_about: str = "") -> list[Path]:
    """out/<stem>.md (ours, then the paper's quoted rows in their own section) and
    out/<stem>.csv (both, with a `source` column: "measured here" or "quoted: ...")."""
    md = [f"# {title}\n", f"## Measured here\n\n{about}\n", to_markdown(ours, index=False)]
    frames = [ours.assign(source="measured here")]
    if quoted is not None:
        md += [f"\n## Quoted from the paper (not comparable: {quoted_about})\n",
               to_markdown(quoted, index=False)]
        frames.append(quoted.assign(source=f"quoted: {title.split(':')[0]} of the paper"))
    atomic_write_text(out / f"{stem}.md", "\n".join(md))
    atomic_write_text(out / f"{stem}.csv", pd.concat(frames, ignore_index=True).to_csv(index=False))
    return [out / f"{stem}.md", out / f"{stem}.csv"]


def method_tables(df: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """Tables 1 (image) and 2 (pixel) of our methods: rows (method, dataset), cells mean ± std
    over seeds in percent (one value for the training-free scorer), plus n_seeds."""
    s = summarize(df)
    n = df.groupby(["setting", "dataset"], sort=False).seed.nunique()
    out = {}
    for number, keys in ((1, IMAGE_KEYS), (2, PIXEL_KEYS)):
        t = cells(s, keys, [HEADERS[k.split("_", 1)[1]] for k in keys]).reset_index()
        t.columns = ["method", "dataset", *t.columns[2:]]
        t["seeds"] = [int(n.get((m, d), n[m].max() if m in n.index.get_level_values(0) else 1))
                      for m, d in zip(t.method, t.dataset)]
        out[number] = t
    return out


def ablation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Table 3 of our variants: `sweeps.table3` as flat columns (variant, dataset, metrics)."""
    from .sweeps import table3

    return table3(df).reset_index()


# --- maps for the figures ----------------------------------------------------------------------
def trained_model(cfg, aux, targets, backbone, cache, runs_root):
    """The heads of a finished (or resumable) run of cfg in runs_root (see sweeps.run_key)."""
    from .sweeps import run_key
    from .train import train

    run_dir = Path(runs_root) / run_key(cfg, {ds: len(s) for ds, s in targets.items()})
    return train(cfg, aux, backbone, run_dir, cache=cache, resume=(run_dir / "state.pt").is_file(),
                 progress=False).model.eval()


def predict(model, cfg, backbone, cache, samples) -> tuple[np.ndarray, np.ndarray]:
    """(maps (n, S, S), image scores (n,)) of a model on samples, from the feature cache."""
    from .inference import predict_cached
    from .train import class_texts

    entries = cache.ensure([s.image_path for s in samples], progress=False)
    names = [s.class_name for s in samples]
    maps, scores, _ = predict_cached(model, cfg, cache, entries, names, class_texts(backbone, names, cfg))
    return maps.numpy(), scores.numpy()


def pick_examples(samples: Sequence, per_class: int = 1) -> list[int]:
    """Indices of the first `per_class` anomalous samples of each class (fixed order: seeded data)."""
    seen, out = {}, []
    for i, s in enumerate(samples):
        if s.label and s.mask_path is not None and seen.get(s.class_name, 0) < per_class:
            seen[s.class_name] = seen.get(s.class_name, 0) + 1
            out.append(i)
    return out


def write_figures(cfg, aux, target: Sequence, targets, backbone, cache, runs_root, out: Path,
                  sweeps: Mapping[str, pd.DataFrame], label: str) -> list[Path]:
    """Figures 2, 3, 4, 5, 6, 7 and the raw text-similarity maps per tap, into out."""
    import torch

    from . import analysis as an
    from . import plots
    from .data import denormalize, load_image, load_mask
    from .safr import concat_taps, split_taps
    from .train import class_texts
    from .zeroshot import ZeroShot

    S = cfg.image_size
    written = []

    def image(i):
        return denormalize(load_image(target[i].image_path, S))

    def mask(i):
        return load_mask(target[i].mask_path, S).numpy().astype(bool)

    models = {OURS: trained_model(cfg, aux, targets, backbone, cache, runs_root),
              APRIL: trained_model(cfg.replace(**METHODS[APRIL]), aux, targets, backbone, cache, runs_root)}
    for name, change in (("without SAG", {"use_sag": False}), ("without SAFR", {"use_safr": False})):
        models[name] = trained_model(cfg.replace(**change), aux, targets, backbone, cache, runs_root)
    preds = {name: predict(m, cfg, backbone, cache, target) for name, m in models.items()}
    preds[WINCLIP] = predict(ZeroShot(backbone), cfg, backbone, cache, target)
    ex = pick_examples(target)
    images, masks = [image(i) for i in ex], [mask(i) for i in ex]
    titles = [f"{target[i].class_name}/{target[i].defect_type}" for i in ex]

    # Figure 2: the SAG over one image, the defect patch's neighbourhood highlighted
    i0 = ex[0]
    tok = cache.get([target[i0].image_path], progress=False)
    heads = models[OURS]
    with torch.no_grad():
        pt = tok.patches.float().to(backbone.device)
        f = split_taps(heads.safr(concat_taps(pt)), len(cfg.taps)) if heads.safr is not None else pt
    h = f[0, -1].cpu()
    sag = plots.SAGExplorer(image(i0), h, cfg.grid, k=cfg.k, mask=mask(i0),
                            title=f"Figure 2: SAG (K={cfg.k}) over {titles[0]}, last tap {cfg.taps[-1]} "
                                  f"after SAFR (trained heads, seed {cfg.seed}); {label}")
    written.append(save_figure(sag.fig, out / "fig2_sag.png", bbox_inches="tight"))

    # Figure 3: baselines beside BAG-CLIP; Figure 4: with and without SAG and SAFR
    for stem, names, what in (
            ("fig3_heatmaps", [WINCLIP, APRIL, OURS], "Figure 3: baselines (our re-implementations) "
                                                      "beside BAG-CLIP"),
            ("fig4_ablation_maps", [OURS, "without SAG", "without SAFR", APRIL],
             "Figure 4: with and without SAG and SAFR (without both = APRIL-GAN-style)")):
        maps = {_short(n): preds[n][0][ex] for n in names}
        fig = plots.compare_maps(images, masks, maps, titles, f"{what}; seed {cfg.seed}; {label}")
        written.append(save_figure(fig, out / f"{stem}.png", bbox_inches="tight"))

    # Figures 5-6: K and P sensitivity
    for param, df in sweeps.items():
        fig = plots.plot_sensitivity(df, param, paper_default=PAPER_VALUES.get(param))
        seeds = sorted(set(df.seed))
        fig.suptitle(f"Figure {5 if param == 'k' else 6}: mean ± std over seeds {seeds}; dotted: the "
                     f"paper's value; stars: the paper's text (quoted); {label}", fontsize=8)
        stem = "fig5_sensitivity_k" if param == "k" else "fig6_sensitivity_p"
        written.append(save_figure(fig, out / f"{stem}.png", bbox_inches="tight"))

    # Figure 7: failure cases at the F1-max image threshold
    maps, scores = preds[OURS]
    labels = np.array([int(s.label) for s in target])
    thr = an.f1_max_threshold(scores, labels)[0]
    all_masks = [load_mask(s.mask_path, S).numpy().astype(bool) if s.mask_path is not None
                 else np.zeros((S, S), bool) for s in target]
    fig = plots.failure_cases(target, scores, maps, all_masks, image, thr,
                              suptitle=f"Figure 7: worst false positive and false negative per class, "
                                       f"BAG-CLIP (ours, seed {cfg.seed}), F1-max threshold; {label}")
    written.append(save_figure(fig, out / "fig7_failures.png", bbox_inches="tight"))

    # the frozen backbone's raw text-similarity map per tap (no trained module)
    names = [target[i].class_name for i in ex]
    texts = class_texts(backbone, names, cfg)
    rows = []
    for j, i in enumerate(ex):
        t = cache.get([target[i].image_path], progress=False)
        tm = an.tap_text_maps(backbone, t.patches, texts[names[j]], cfg.logit_scale)[0].numpy()
        up = np.kron(tm, np.ones((S // cfg.grid, S // cfg.grid)))  # patch grid -> pixels, nearest
        rows.append(dict(image=images[j], mask=masks[j], title=titles[j],
                         extra=[(up[l], f"tap {b}: raw text map", "abnormal prob.", plots.MAP_CMAP)
                                for l, b in enumerate(cfg.taps)]))
    fig = plots.panel_rows(rows, f"{cfg.backbone}: raw text-similarity map per tap, each on its own "
                                 f"scale (frozen CLIP, nothing trained; grid {cfg.grid}); {label}")
    written.append(save_figure(fig, out / "fig_tap_text_maps.png", bbox_inches="tight"))
    return written


def _short(name: str) -> str:
    return {OURS: "BAG-CLIP (ours)", APRIL: "APRIL-GAN-style\n(our re-impl.)",
            WINCLIP: "WinCLIP-style\n(our re-impl.)"}.get(name, name)


_PARTS = (("table1", "protocol"), ("table2", "protocol"), ("table3", "ablation"), ("fig5", "sensitivity"),
          ("fig6", "sensitivity"), ("table4", "cost"), ("table5", "cost"), ("fig", "figures"))


def write_readme(out: Path, entries: Sequence[dict], context: dict) -> Path:
    """figures/README.md: every artefact with how it was made."""
    lines = [f"# Figures and tables regenerated by `{context['command']}`", "",
             f"{context['label']}", "",
             f"- mode: **{context['mode']}**", f"- backbone: `{context['backbone']}` ({context['weights']})",
             f"- data: {context['data']}", f"- Config: [`config.json`](config.json) (seeds replace `seed`)",
             f"- seeds: main protocol {context['seeds']}; ablation and sweeps {context['grid_seeds']}",
             f"- device: {context['device']}", "",
             "Our rows are measured here; the paper's numbers appear only in sections or rows marked "
             "*quoted*. Baselines are our re-implementations, never the published numbers.", "",
             "| artefact | what | made by | seeds |", "|---|---|---|---|"]
    for e in entries:
        part = next((f" --parts {p}" for pre, p in _PARTS if e["file"].startswith(pre)), "")
        lines.append(f"| [`{e['file']}`]({e['file']}) | {e['what']} | `{context['command']}{part}` | {e['seeds']} |")
    return atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
