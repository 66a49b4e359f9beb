"""Numbers against numbers: SAFR gates (lesson 02), loss curves (live, lesson 05), ROC / PR
(lesson 06), tables as figures, the ablation as bars (Table 3), the K / P sensitivity curves
(Figures 5-6) and the cost breakdown (lesson 10).

Our numbers are drawn plain; the paper's, where shown, are hatched or starred and labelled quoted.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import new_figure


def plot_gates(gates: dict, taps: Sequence[int], width: int):
    """SAFR gates per channel, one line per named gate vector (C,), tap boundaries marked, and
    the mean gate per tap as bars."""
    fig = new_figure(11, 2.8)
    a, b = fig.subplots(1, 2, width_ratios=[3, 1])
    L = len(taps)
    for name, g in gates.items():
        g = np.asarray(g)
        a.plot(g, lw=0.6, label=name)
    for l in range(1, L):
        a.axvline(l * width, color="k", lw=0.5)
    a.set_xlabel("channel of x_concat (tap boundaries marked)"), a.set_ylabel("gate")
    a.legend(fontsize=7)
    x = np.arange(L)
    bw = 0.8 / max(len(gates), 1)
    for i, (name, g) in enumerate(gates.items()):
        g = np.asarray(g).reshape(L, width).mean(1)
        b.bar(x + i * bw, g, bw, label=name)
    b.set_xticks(x + 0.4 - bw / 2, [f"block {t}" for t in taps], fontsize=7)
    b.set_ylabel("mean gate"), b.set_title("per tap", fontsize=8)
    return fig


def plot_loss(history, parts: dict | None = None, title: str = "", ax=None):
    """Loss per step (and named parts per step, if given)."""
    if ax is None:
        fig = new_figure(7, 2.8)
        ax = fig.subplots()
    ax.plot(history, lw=1, label="total")
    for name, vals in (parts or {}).items():
        ax.plot(vals, lw=0.8, label=name, alpha=0.8)
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    return ax.figure


class LiveLoss:
    """A loss curve that redraws while training runs: pass `.update` as train's on_step."""

    def __init__(self, every: int = 5, title: str = ""):
        self.every, self.title = every, title
        self.history: list[float] = []
        self.parts: dict[str, list[float]] = {}
        self.fig = new_figure(7, 2.8)
        self._handle = None

    def update(self, step: int, parts: dict) -> None:
        self.history.append(parts["total"])
        for k in ("cls", "seg"):
            self.parts.setdefault(k, []).append(parts[k])
        if step % self.every == 0:
            self.render()

    def render(self) -> None:
        self.fig.clear()
        plot_loss(self.history, self.parts, f"{self.title} step {len(self.history)}", self.fig.subplots())
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover
            return
        if get_ipython() is None:
            return
        if self._handle is None:
            self._handle = display(self.fig, display_id=True)
        elif self._handle is not None:
            self._handle.update(self.fig)


def plot_metric_example(scores, labels, threshold: float | None = None):
    """ROC and precision-recall curves of a small example, with chance level, and the scores
    themselves coloured by label with the F1-max threshold."""
    s = np.asarray(scores, float)
    y = np.asarray(labels) != 0
    order = np.argsort(-s, kind="stable")
    tp = np.r_[0, np.cumsum(y[order])]
    fp = np.r_[0, np.cumsum(~y[order])]
    P, N = y.sum(), (~y).sum()
    fig = new_figure(12, 3.2)
    a, b, c = fig.subplots(1, 3)
    a.plot(fp / N, tp / P, "o-", ms=3), a.plot([0, 1], [0, 1], "k:", label="chance (AUROC 0.5)")
    a.set_xlabel("FPR"), a.set_ylabel("TPR"), a.set_title("ROC", fontsize=9), a.legend(fontsize=7)
    prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    b.plot(tp[1:] / P, prec[1:], "o-", ms=3)
    b.axhline(P / (P + N), color="k", ls=":", label=f"chance (AP = {P / (P + N):.2f})")
    b.set_xlabel("recall"), b.set_ylabel("precision"), b.set_title("precision-recall", fontsize=9)
    b.legend(fontsize=7)
    c.scatter(s[~y], np.zeros((~y).sum()), c="tab:blue", label="normal")
    c.scatter(s[y], np.ones(y.sum()), c="tab:red", label="anomalous")
    if threshold is not None:
        c.axvline(threshold, color="k", ls="--", label=f"F1-max threshold {threshold:.2f}")
    c.set_yticks([0, 1], ["normal", "anomalous"]), c.set_xlabel("score"), c.legend(fontsize=7)
    c.set_title("scores", fontsize=9)
    return fig


def table_figure(df, title: str = "", fmt: str = "{:.1f}", col_width: float = 1.1):
    """A DataFrame drawn as a table (index as the first column)."""
    cells = [[str(i)] + [fmt.format(v) if isinstance(v, (float, np.floating)) else str(v) for v in row]
             for i, row in zip(df.index, df.itertuples(index=False))]
    cols = [str(df.index.name or "")] + [str(c) for c in df.columns]
    fig = new_figure(col_width * len(cols) + 1.5, 0.3 * (len(cells) + 1) + 0.6)
    ax = fig.subplots()
    ax.axis("off")
    t = ax.table(cellText=cells, colLabels=cols, loc="center", cellLoc="center")
    t.auto_set_font_size(False), t.set_fontsize(7)
    ax.set_title(title, fontsize=8)
    return fig


def plot_ablation(ours, paper, keys: Sequence[str], label: str = "", errors=None, marks=None):
    """Bars per variant: ours (Average over our target sets) beside the paper's Table 3
    Average row, which is drawn hatched and labelled as quoted. ours/paper: frames indexed by
    variant with the metric keys in percent; errors: {key: (2, n_variants) below/above} error
    bars of ours; marks: {key: [text per variant]} written above our bars (e.g. the
    difference from the full model)."""
    fig = new_figure(3.0 * len(keys), 3.4)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    variants = list(ours.index)
    x = np.arange(len(variants))
    for ax, k in zip(axes, keys):
        vals = [ours.loc[v, k] for v in variants]
        ax.bar(x - 0.2, vals, 0.4, label="ours (measured)",
               yerr=None if errors is None else errors[k], capsize=2, error_kw=dict(lw=0.8))
        for xi, txt in zip(x, (marks or {}).get(k, [])):
            ax.annotate(txt, (xi - 0.2, 0), xytext=(0, 2), textcoords="offset points", rotation=90,
                        fontsize=5, ha="center", va="bottom", color="white")
        pv = [paper.loc[v, k] if v in paper.index else np.nan for v in variants]
        ax.bar(x + 0.2, pv, 0.4, color="none", edgecolor="k", hatch="//", label="paper (quoted, Table 3)")
        ax.set_xticks(x, variants, rotation=30, fontsize=6, ha="right")
        ax.set_title(k, fontsize=8), ax.set_ylabel("%", fontsize=7)
    axes[0].legend(fontsize=6)
    if label:
        fig.suptitle(label, fontsize=8)
    return fig


def _interval_bars(intervals, keys, variants):
    """(errors, marks) of plot_ablation from an interval_table frame (fractions)."""
    from ..compare import EFFECT

    errors, marks = {}, {}
    for k in keys:
        iv = intervals[intervals.metric == k].set_index("setting").reindex(variants)
        errors[k] = np.clip(np.vstack([100 * (iv.value - iv.low), 100 * (iv.high - iv.value)]), 0, None)
        marks[k] = ["ref." if v == "reference" else f"{100 * d:+.1f}{'*' if v == EFFECT else ''}"
                    for d, v in zip(iv["diff"], iv.verdict)]
    return errors, marks


def ablation_figure(df, label: str = "", intervals=None):
    """Table 3 as bars: `sweeps.ablate`'s long frame (our variants, mean over seeds of the
    Average over target sets, or the one target set) beside the paper's Average rows (quoted).
    intervals: `compare.interval_table`'s frame on that target set: error bars (each
    variant's 95 % interval over images and seeds) and, in each bar, its difference from the
    reference in points, starred when the paired interval excludes 0."""
    from ..paper import paper_table
    from ..report import summarize

    s = summarize(df)
    keys = ["image_auroc", "image_f1_max", "pixel_auroc", "pixel_f1_max"]
    ds = "Average" if "Average" in s.index.get_level_values(1) else s.index.get_level_values(1)[0]
    ours = s.xs(ds, level=1)[[(k, "mean") for k in keys]]
    ours.columns = keys
    paper = paper_table(3).query("dataset == 'Average'").set_index("variant")[keys]
    errors, marks = _interval_bars(intervals, keys, list(ours.index)) if intervals is not None else (None, None)
    if intervals is not None:
        label = (label or f"ours: {ds}") + ("\nerror bars: 95 % bootstrap interval (images, seeds); in "
                                            "the bars: difference from the reference, * = the paired "
                                            "interval excludes 0")
    return plot_ablation(ours, paper, keys, label or f"ours: {ds} of our target sets", errors, marks)


def _curve(ax, mean, std, k, iv):
    """One metric's curve: mean +- std band, or (iv: interval_table rows of k, with "x") the
    values with their intervals, the reference square, points that differ from it filled."""
    from ..compare import EFFECT

    if iv is None:
        line, = ax.plot(mean.index, mean[k], marker="o", label=f"{k.split('_', 1)[1]} (ours)")
        ax.fill_between(mean.index, mean[k] - std[k], mean[k] + std[k], alpha=0.15)
        return line.get_color()
    iv = iv.sort_values("x")
    y = 100 * iv.value.to_numpy()
    yerr = np.clip([y - 100 * iv.low.to_numpy(), 100 * iv.high.to_numpy() - y], 0, None)  # a percentile
    bars = ax.errorbar(iv.x, y, yerr=yerr, marker="", capsize=2, lw=1,  # interval may sit beside its value
                       label=f"{k.split('_', 1)[1]} (ours)")
    color = bars[0].get_color()
    for x, v, verdict in zip(iv.x, y, iv.verdict):
        ax.plot([x], [v], marker="s" if verdict == "reference" else "o", ms=5, color=color,
                markerfacecolor=color if verdict in (EFFECT, "reference") else "white")
    return color


def plot_sensitivity(df, param: str | None = None, paper_default=None, quoted: bool = True, intervals=None):
    """Figures 5-6: per target dataset, image-level and pixel-level metrics (percent) against
    the swept value, and the values the paper's text quotes for its own curves (Section 4.3.2)
    drawn as stars labelled "quoted". Without intervals: mean over seeds with a +-std band.
    intervals (`compare.interval_table` rows with "dataset" and "x", the swept value): each
    point's 95 % bootstrap interval over images and seeds as error bars, the reference value
    square, the points whose paired difference from it excludes 0 filled, the others hollow.
    Returns the Figure."""
    from ..metrics import IMAGE_KEYS, METRIC_KEYS, PIXEL_KEYS
    from ..paper import QUOTED_SENSITIVITY
    from ..report import PARAM_LABELS

    param = param or df.attrs.get("param", "value")
    datasets = list(dict.fromkeys(df.dataset))
    fig = new_figure(10, 3.3 * len(datasets))
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    quotes = QUOTED_SENSITIVITY.get(param, []) if quoted else []
    for row, ds in zip(axes, datasets):
        g = df[df.dataset == ds].groupby("value")[list(METRIC_KEYS)]
        mean, std = g.mean() * 100, g.std(ddof=1).fillna(0) * 100
        for ax, keys, level in ((row[0], IMAGE_KEYS, "image"), (row[1], PIXEL_KEYS, "pixel")):
            colors = {}
            for k in keys:
                iv = None if intervals is None else intervals[(intervals.dataset == ds) & (intervals.metric == k)]
                colors[k] = _curve(ax, mean, std, k, iv)
            for q in quotes:
                if q["metric"] in keys:
                    ax.scatter([q["value"]], [q["percent"]], marker="*", s=140, color=colors[q["metric"]],
                               edgecolors="k", zorder=5,
                               label=f"paper {q['dataset']} {q['metric'].split('_', 1)[1]} (quoted)")
            if paper_default is not None:
                ax.axvline(paper_default, color="grey", ls=":", lw=1)
            ax.set_xticks(sorted({*mean.index, *[q["value"] for q in quotes]}))
            ax.set_xlabel(PARAM_LABELS.get(param, param)), ax.set_ylabel("%")
            ax.set_title(f"{ds}: {level}-level", fontsize=10)
            ax.legend(fontsize=6)
    return fig


def plot_cost_breakdown(t4, t5_row, n_taps: int):
    """Where the time goes: one image through the model (Table 5 row) and one SAG (Table 4)."""
    fig = new_figure(11, 2.8)
    a, b = fig.subplots(1, 2)
    stages = {"backbone encode": t5_row.backbone_ms, "heads": t5_row.heads_ms,
              "smoothing + score": t5_row.smoothing_ms}
    a.barh(list(stages), list(stages.values()), color=["gray", "tab:blue", "tab:green"])
    a.set_xlabel("ms per image")
    a.set_title(f"inference: {t5_row.inference_ms:.1f} ms ({t5_row.fps:.1f} fps)", fontsize=9)
    parts = t4.set_index("component").time_ms.drop("total")
    b.barh(parts.index, parts.values, color=["tab:orange", "tab:purple"])
    b.set_xlabel("ms"), b.set_title(f"one SAG (the heads run {n_taps}, one per tap)", fontsize=9)
    return fig


def plot_scaling(scaling):
    """Graph construction's GFLOPs, peak memory and time against N, log-log, with an N^2 guide."""
    fig = new_figure(13, 3)
    axes = fig.subplots(1, 3)
    for ax, col in zip(axes, ["gflops", "peak_mem_mb", "time_ms"]):
        ax.loglog(scaling.n, scaling[col], "o-", label="measured")
        ax.loglog(scaling.n, scaling[col].iloc[-1] * (scaling.n / scaling.n.iloc[-1]) ** 2, "k--", label="~ N^2")
        ax.set_xlabel("N patches"), ax.set_title(col, fontsize=9), ax.legend(fontsize=7)
    return fig


def learning_curve_figure(df):
    """bagclip-mini's zero-shot image and pixel AUROC (percent, 95 % bootstrap band) against
    pretraining steps, one line per test set. `df`: rows (step, set, image, image_lo, image_hi,
    pixel, pixel_lo, pixel_hi), as benchmarks/mini.py --curve writes them."""
    fig = new_figure(10, 3.6)
    axes = fig.subplots(1, 2, sharex=True)
    for ax, metric in zip(axes, ("image", "pixel")):
        for name, g in df.sort_values("step").groupby("set", sort=False):
            ax.plot(g["step"], g[metric], marker="o", ms=3, label=name)
            ax.fill_between(g["step"], g[f"{metric}_lo"], g[f"{metric}_hi"], alpha=0.2)
        ax.set(xlabel="pretraining step", ylabel=f"{metric} AUROC (%)", title=f"training-free {metric} AUROC")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("bagclip-mini learning curve (ours, synthetic pretraining; NOT the paper's numbers)", fontsize=9)
    return fig


def gap_curve_figure(df):
    """A pretraining run's snapshots as benchmarks/variants.py --curve measures them: left, the
    AUROCs (training-free image, raw-token pixel, BAG-CLIP heads' pixel); right, the gap that
    matters, heads minus raw-token pixel AUROC, each with its 95 % interval, one line style per
    test set. `df`: long-form rows (step, set, quantity, value, lo, hi) in percent."""
    fig = new_figure(11, 3.8)
    axes = fig.subplots(1, 2, sharex=True)
    styles = ["-", "--", ":", "-."]
    for (s, g), ls in zip(df.groupby("set", sort=False), styles):
        for q, h in g.sort_values("step").groupby("quantity", sort=False):
            ax = axes[1] if q.startswith("gap") else axes[0]
            line, = ax.plot(h["step"], h["value"], ls, marker="o", ms=3, label=f"{q} ({s})")
            ax.fill_between(h["step"], h["lo"], h["hi"], alpha=0.15, color=line.get_color())
    axes[0].set(xlabel="pretraining step", ylabel="AUROC (%)", title="AUROC on the held-out sets")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set(xlabel="pretraining step", ylabel="points", title="heads minus raw tokens, pixel AUROC")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("bagclip-mini pretraining snapshots (ours, synthetic pretraining; NOT the paper's numbers)",
                 fontsize=9)
    return fig
