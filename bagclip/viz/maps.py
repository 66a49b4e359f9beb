"""Images, masks and anomaly maps side by side: one panel row, several rows, the taps'
raw text maps (lesson 01), and the paper's Figures 3, 4 (`compare_maps`) and 7 (`failure_cases`).

    panel(image (S, S, 3) uint8, mask (S, S) bool, amap (S, S) or (g, g))   -> Figure

Maps are drawn on a scale where they are visible, and every colour bar says which (`SCALES`):
"own" (default) stretches each map to its own [min, max], "log" puts it on a log axis from its
largest value down (at most `LOG_DECADES` decades), "fixed" keeps [vmin, vmax] (0-1: where a
map that never leaves [0, 0.02] is one flat colour). A coarse map (a g x g patch grid) is
stretched over the image's extent, so the defect's outline lands on it and not in a corner.
Calibrated maps (viz.decisions) keep their calibrated scale: there 1.0 means the threshold.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .base import MAP_CMAP, bare_axes, contour, heatmap, new_figure, overlay

SCALES = ("own", "log", "fixed")
LOG_DECADES = 3


def map_norm(a, scale: str = "own", vmin: float = 0.0, vmax: float = 1.0):
    """(matplotlib Normalize, what the colour bar should add) for map `a` on `scale`."""
    from matplotlib.colors import LogNorm, Normalize

    a = np.asarray(a, np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if scale == "fixed":
        return Normalize(vmin, vmax), f"fixed [{vmin:g}, {vmax:g}]"
    if scale == "own":
        return Normalize(lo, hi if hi > lo else lo + 1e-12), f"own range [{lo:.3g}, {hi:.3g}]"
    if scale == "log":
        top = hi if hi > 0 else 1.0
        floor = max(float(a[a > 0].min()) if (a > 0).any() else top, top * 10.0 ** -LOG_DECADES)
        return (LogNorm(floor, top if top > floor else floor * 10),
                f"log scale [{floor:.3g}, {top:.3g}]")
    raise ValueError(f"scale={scale!r}; choose one of {SCALES}")


def map_heatmap(ax, a, title: str, label: str, cmap: str = MAP_CMAP, scale: str = "own",
                vmin: float = 0.0, vmax: float = 1.0, size: tuple[int, int] | None = None, mask=None):
    """`heatmap` of one map on `scale` (colour bar "label, <scale and range>"), stretched over
    size (W, H) when the map is coarser than that, with the mask outlined. Returns the image."""
    a = np.asarray(a)
    norm, what = map_norm(a, scale, vmin, vmax)
    extent = size if size is not None and a.shape[:2] != (size[1], size[0]) else None
    im = heatmap(ax, a, title, f"{label}, {what}" if label else what, cmap, extent=extent, norm=norm)
    if mask is not None:
        contour(ax, mask)
    return im


def panel(image, mask=None, amap=None, title: str = "", map_title: str = "anomaly map",
          scale: str = "own", vmin: float = 0.0, vmax: float = 1.0, extra: Sequence[tuple] = (), axes=None):
    """One row: image | ground truth | anomaly map (colour bar, mask outlined) | extra panels.

    extra: (array, title, colour-bar label, cmap) tuples drawn after the map, on the same
    scale. scale: one of SCALES ("own" default; vmin/vmax apply to "fixed" only); every colour
    bar names it. Maps coarser than the image cover the image's extent. Returns the Figure.
    """
    n = 1 + (mask is not None) + (amap is not None) + len(extra)
    if axes is None:
        fig = new_figure(2.6 * n + 0.6, 2.7)
        axes = fig.subplots(1, n, squeeze=False)[0]
    fig = axes[0].figure
    img = np.asarray(image)
    size = (img.shape[1], img.shape[0])
    axes[0].imshow(img), bare_axes(axes[0]), axes[0].set_title(title, fontsize=8)
    j = 1
    if mask is not None:
        axes[j].imshow(overlay(img, np.asarray(mask, bool))), bare_axes(axes[j])
        axes[j].set_title("ground truth (red)", fontsize=8)
        j += 1
    maps = ([(amap, map_title, "abnormal probability", MAP_CMAP)] if amap is not None else []) + list(extra)
    for arr, t, lab, cmap in maps:
        map_heatmap(axes[j], arr, t, lab, cmap, scale, vmin, vmax, size, mask)
        j += 1
    return fig


def panel_rows(rows: Sequence[dict], suptitle: str = "", scale: str = "own"):
    """Several `panel` rows in one figure; each row a dict of panel's arguments (`scale` for
    the rows that name none)."""
    def width(r):
        return 1 + (r.get("mask") is not None) + (r.get("amap") is not None) + len(r.get("extra", ()))
    n = max(width(r) for r in rows)
    fig = new_figure(2.6 * n + 0.6, 2.5 * len(rows) + 0.3)
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, ax_row in zip(rows, axes):
        panel(axes=ax_row, **{"scale": scale, **r})
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


def plot_tap_maps(image, mask, maps, taps: Sequence[int], title: str = "", label: str = "abnormal prob.",
                  scale: str = "own"):
    """Image, mask, then one map per tap (maps: (L, g, g) or (L, H, W)), each on `scale`
    (SCALES; "fixed" is [0, 1]), stretched over the image with the mask outlined."""
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
        map_heatmap(ax, m, t, lab, cmap, scale, size=(w, h), mask=mask)
    return fig


def compare_maps(images, masks, maps: dict, titles: Sequence[str], suptitle: str = "", scale: str = "own"):
    """Figures 3 and 4: one row per image (image, ground truth, then one anomaly map per
    method with the defect outlined). maps: method -> (n, S, S). scale (SCALES): "own"
    (default) each map on its own range, named on its colour bar; "fixed" one 0-1 scale for
    every map, where the methods compare by colour but low-range maps are one flat colour."""
    rows = []
    for i, (img, m) in enumerate(zip(images, masks)):
        extra = [(np.asarray(v[i]), name, "abnormal probability", MAP_CMAP) for name, v in maps.items()]
        rows.append(dict(image=img, mask=m, title=titles[i], extra=extra))
    return panel_rows(rows, suptitle, scale)


def failure_cases(samples, scores, maps, masks, images: Callable[[int], np.ndarray], threshold: float,
                  per_class: int = 1, suptitle: str = "", scale: str = "own"):
    """Figure 7: per class, the worst false positives (normal images scored highest) and the
    worst false negatives (anomalous images scored lowest) at the image threshold: image,
    ground truth, anomaly map (on `scale`, see SCALES). Classes without an error at this threshold show their
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
    return panel_rows(rows, suptitle, scale)
