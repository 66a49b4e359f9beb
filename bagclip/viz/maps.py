"""Images, masks and anomaly maps side by side: one panel row, several rows, the taps'
raw text maps (lesson 01), and the paper's Figures 3, 4 (`compare_maps`) and 7 (`failure_cases`).

    panel(image (S, S, 3) uint8, mask (S, S) bool, amap (S, S) in [0, 1])   -> Figure
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .base import MAP_CMAP, bare_axes, contour, heatmap, new_figure, overlay


def panel(image, mask=None, amap=None, title: str = "", map_title: str = "anomaly map",
          vmin: float | None = 0.0, vmax: float | None = 1.0, extra: Sequence[tuple] = (), axes=None):
    """One row: image | ground truth | anomaly map (colour bar, mask outlined) | extra panels.

    extra: (array, title, colour-bar label, cmap) tuples drawn after the map. vmin/vmax None:
    the map on its own scale (the title says so). Returns the Figure.
    """
    n = 1 + (mask is not None) + (amap is not None) + len(extra)
    if axes is None:
        fig = new_figure(2.6 * n + 0.6, 2.7)
        axes = fig.subplots(1, n, squeeze=False)[0]
    fig = axes[0].figure
    img = np.asarray(image)
    axes[0].imshow(img), bare_axes(axes[0]), axes[0].set_title(title, fontsize=8)
    j = 1
    if mask is not None:
        axes[j].imshow(overlay(img, np.asarray(mask, bool))), bare_axes(axes[j])
        axes[j].set_title("ground truth (red)", fontsize=8)
        j += 1
    if amap is not None:
        scale = "" if vmin is not None else " (own scale)"
        heatmap(axes[j], amap, map_title + scale, "abnormal probability", MAP_CMAP, vmin, vmax)
        if mask is not None:
            contour(axes[j], mask)
        j += 1
    for arr, t, lab, cmap in extra:
        heatmap(axes[j], arr, t, lab, cmap)
        if mask is not None:
            contour(axes[j], mask)
        j += 1
    return fig


def panel_rows(rows: Sequence[dict], suptitle: str = ""):
    """Several `panel` rows in one figure; each row a dict of panel's arguments."""
    def width(r):
        return 1 + (r.get("mask") is not None) + (r.get("amap") is not None) + len(r.get("extra", ()))
    n = max(width(r) for r in rows)
    fig = new_figure(2.6 * n + 0.6, 2.5 * len(rows) + 0.3)
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, ax_row in zip(rows, axes):
        panel(axes=ax_row, **r)
        for ax in ax_row[width(r):]:
            ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return fig


def plot_pos_embed(before, after, channels: Sequence[int] = (0, 1, 2, 3), label: str = ""):
    """Position-embedding channels on the patch grid before (native) and after interpolation.
    before/after: (g*g, W) and (G*G, W) patch rows."""
    before, after = np.asarray(before), np.asarray(after)
    g, G = int(round(math.sqrt(len(before)))), int(round(math.sqrt(len(after))))
    fig = new_figure(2.3 * len(channels), 4.6)
    axes = fig.subplots(2, len(channels), squeeze=False)
    for j, c in enumerate(channels):
        for i, (pos, n, what) in enumerate(((before, g, "native"), (after, G, "interpolated"))):
            heatmap(axes[i, j], pos[:, c].reshape(n, n), f"ch {c}, {what} {n}x{n}", "value", "coolwarm")
    if label:
        fig.suptitle(label, fontsize=9)
    return fig


def plot_tap_maps(image, mask, maps, taps: Sequence[int], title: str = "", label: str = "abnormal prob."):
    """Image, mask, then one map per tap on a shared [0, 1] scale (maps: (L, g, g) or (L, H, W))."""
    maps = np.asarray(maps)
    extra = [(m, f"tap: block {t}", label, MAP_CMAP) for m, t in zip(maps, taps)]
    fig = new_figure(2.6 * (2 + len(extra)) + 0.6, 2.7)
    axes = fig.subplots(1, 2 + len(extra), squeeze=False)[0]
    img = np.asarray(image)
    axes[0].imshow(img), bare_axes(axes[0]), axes[0].set_title(title, fontsize=8)
    axes[1].imshow(overlay(img, np.asarray(mask, bool))), bare_axes(axes[1])
    axes[1].set_title("ground truth (red)", fontsize=8)
    h, w = img.shape[:2]
    for ax, (m, t, lab, cmap) in zip(axes[2:], extra):
        heatmap(ax, m, t, lab, cmap, 0, 1, extent=(w, h))
        contour(ax, mask)
    return fig


def compare_maps(images, masks, maps: dict, titles: Sequence[str], suptitle: str = ""):
    """Figures 3 and 4: one row per image (image, ground truth, then one anomaly map per
    method, all on the same 0-1 scale with the defect outlined). maps: method -> (n, S, S)."""
    rows = []
    for i, (img, m) in enumerate(zip(images, masks)):
        extra = [(np.asarray(v[i]), name, "abnormal probability", MAP_CMAP) for name, v in maps.items()]
        rows.append(dict(image=img, mask=m, title=titles[i], extra=extra))
    fig = panel_rows(rows, suptitle)
    for ax in fig.axes:  # one scale for every map: the methods compare by colour
        for im in ax.get_images():
            if im.get_array().ndim == 2:
                im.set_clim(0, 1)
    return fig


def failure_cases(samples, scores, maps, masks, images: Callable[[int], np.ndarray], threshold: float,
                  per_class: int = 1, suptitle: str = ""):
    """Figure 7: per class, the worst false positives (normal images scored highest) and the
    worst false negatives (anomalous images scored lowest) at the image threshold: image,
    ground truth, anomaly map (0-1). Classes without an error at this threshold show their
    hardest case of each kind anyway, labelled as correct."""
    scores = np.asarray(scores, float)
    rows = []
    for cls in dict.fromkeys(s.class_name for s in samples):
        idx = [i for i, s in enumerate(samples) if s.class_name == cls]
        normal = sorted((i for i in idx if not samples[i].label), key=lambda i: -scores[i])
        bad = sorted((i for i in idx if samples[i].label), key=lambda i: scores[i])
        for kind, pick, wrong in (("FP", normal, lambda i: scores[i] >= threshold),
                                  ("FN", bad, lambda i: scores[i] < threshold)):
            for i in pick[:per_class]:
                s = samples[i]
                what = kind if wrong(i) else f"hardest {'normal' if kind == 'FP' else 'defect'}, correct"
                rows.append(dict(image=images(i), mask=masks[i], amap=maps[i],
                                 title=f"{cls}/{s.defect_type}: {what}\nscore {scores[i]:.2f} "
                                       f"(threshold {threshold:.2f})"))
    return panel_rows(rows, suptitle)
