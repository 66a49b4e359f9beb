"""Per-image score distributions, normal against defective, one panel per class (lesson 06,
and for figures): how far apart the two groups' image scores lie, which AUROC sums up as one
number.

    score_distributions_figure(scores (n,), labels (n,) 0/1, classes (n,))   -> Figure

Drawn with seaborn (`histplot`, axes-level, on a Figure outside pyplot) when it is installed,
as the package's dependencies have it; the same step histograms with matplotlib alone otherwise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import new_figure

__all__ = ["score_distributions_figure", "GROUPS"]

GROUPS = {0: ("normal", "tab:blue"), 1: ("defective", "tab:red")}


def _seaborn():
    try:
        import seaborn
    except ImportError:
        return None
    return seaborn


def _draw(ax, s: np.ndarray, y: np.ndarray, bins: np.ndarray, sns) -> None:
    """Step histograms (density, each group normalised on its own) of s by label y."""
    if sns is not None:
        names = np.where(y == 1, GROUPS[1][0], GROUPS[0][0])
        present = [GROUPS[k][0] for k in (0, 1) if (y == k).any()]
        sns.histplot(x=s, hue=names, hue_order=present, bins=bins, stat="density", common_norm=False,
                     element="step", fill=True, alpha=0.3, ax=ax,
                     palette={GROUPS[k][0]: GROUPS[k][1] for k in (0, 1)}, legend=True)
        return
    for k, (name, color) in GROUPS.items():
        if (y == k).any():
            ax.hist(s[y == k], bins=bins, density=True, histtype="stepfilled", alpha=0.3, color=color,
                    edgecolor=color, label=name)
    ax.legend(fontsize=7)


def score_distributions_figure(scores, labels, classes: Sequence[str] | None = None,
                               threshold: float | None = None, bins: int = 20, ncols: int = 4,
                               title: str = ""):
    """One panel per class: the histogram (density) of the per-image scores of its normal
    (label 0, blue) and defective (label 1, red) images, each group normalised on its own, on
    bins shared by every panel, with the group sizes and medians in the panel's title.

    scores (n,) image scores; labels (n,) 0/1; classes (n,) class names (None: one panel,
    "all"). threshold: drawn as a dashed line in every panel (e.g. an F1-max or calibrated
    threshold). Returns a matplotlib Figure (no pyplot state; PNG in a notebook)."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    cls = np.asarray(["all"] * len(s) if classes is None else [str(c) for c in classes])
    if not (len(s) == len(y) == len(cls)):
        raise ValueError(f"scores, labels and classes differ in length: {len(s)}, {len(y)}, {len(cls)}")
    names = list(dict.fromkeys(cls))
    edges = np.linspace(float(s.min()), float(s.max()) if s.max() > s.min() else float(s.min()) + 1e-6,
                        bins + 1)
    cols = min(ncols, len(names))
    rows = -(-len(names) // cols)
    fig = new_figure(3.2 * cols + 0.4, 2.6 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    sns = _seaborn()
    for ax, name in zip(axes.ravel(), names):
        sel = cls == name
        _draw(ax, s[sel], y[sel], edges, sns)
        med = {k: f"{np.median(s[sel & (y == k)]):.3g}" if (sel & (y == k)).any() else "-" for k in (0, 1)}
        ax.set_title(f"{name}: {int((sel & (y == 0)).sum())} normal (median {med[0]}), "
                     f"{int((sel & (y == 1)).sum())} defective (median {med[1]})", fontsize=7)
        if threshold is not None:
            ax.axvline(threshold, color="k", linestyle="--", linewidth=0.8)
        ax.set_xlabel("image score", fontsize=7), ax.set_ylabel("density", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    thr = f" (dashed: threshold {threshold:.3g})" if threshold is not None else ""
    fig.suptitle((title or "per-image scores, normal vs defective") + thr, fontsize=9)
    return fig
