"""A calibrated anomaly map as a picture whose colour bar says what its numbers mean.

Drawing only (no scoring): the map comes normalised by `Calibration.normalise`, so 1.0 is the
class's pixel threshold, and the scale is fixed (0 to `vmax`) for every image of the class:
two maps side by side compare, unlike maps each stretched to its own range.
"""
from __future__ import annotations

import numpy as np

from .base import new_figure, overlay

__all__ = ["calibrated_map_figure", "calibrated_vs_stretched"]


def _calibrated(fig, ax, norm, label: str, vmax: float, fontsize: float) -> None:
    """norm on [0, vmax] with its 1.0 contour, and a colour bar marking 1.0, labelled."""
    im = ax.imshow(norm, cmap="inferno", vmin=0.0, vmax=vmax, interpolation="nearest")
    if (norm > 1.0).any() and (norm <= 1.0).any():
        ax.contour(norm, levels=[1.0], colors="cyan", linewidths=0.8)
    cb = fig.colorbar(im, ax=ax, extend="max", fraction=0.046, pad=0.04)
    cb.ax.axhline(1.0, color="cyan", linewidth=1.0)
    cb.set_label(label, fontsize=fontsize)
    ax.set_axis_off()


def calibrated_map_figure(norm_map, meaning: str, title: str | None = None, vmax: float = 2.0):
    """A matplotlib Figure of norm_map (H, W) on [0, vmax], a contour at 1.0, and a colour bar
    labelled `meaning` (e.g. Calibration.meaning()). No pyplot state is touched."""
    fig = new_figure(4.4, 3.6, dpi=110, layout="tight")
    ax = fig.add_subplot()
    _calibrated(fig, ax, np.asarray(norm_map, np.float32), meaning, vmax, 7)
    if title:
        ax.set_title(title, fontsize=8)
    return fig


def calibrated_vs_stretched(images, masks, maps, cal, titles=None, vmax: float = 2.0):
    """One row per image: the image (defect outlined in red), its raw map stretched to its own
    [min, max] (what most heat maps show), and the same map normalised by `cal` (a
    Calibration) on one fixed [0, vmax] scale with the 1.0 contour. images (n, S, S, 3) uint8,
    masks (n, S, S) bool, maps (n, S, S) raw maps of the calibrated scorer. Each stretched
    panel's colour bar gives its own range; the calibrated column shares `cal.meaning()`.
    Returns a Figure (no pyplot state; shown as PNG in a notebook)."""
    n = len(maps)
    fig = new_figure(9.0, 2.6 * n + 0.5, dpi=90)
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        img, g = np.asarray(images[i]), np.asarray(masks[i], bool)
        raw = np.asarray(maps[i], np.float32)
        a0, a1, a2 = axes[i]
        a0.imshow(overlay(img, g) if g.any() else img)
        a0.set_title(titles[i] if titles is not None else f"image {i}", fontsize=8)
        a0.set_axis_off()
        lo, hi = float(raw.min()), float(raw.max())
        im = a1.imshow(raw, cmap="inferno", vmin=lo, vmax=hi if hi > lo else lo + 1e-12,
                       interpolation="nearest")
        cb = fig.colorbar(im, ax=a1, fraction=0.046, pad=0.04)
        cb.set_label(f"own range [{lo:.3g}, {hi:.3g}]", fontsize=7)
        a1.set_title("stretched to its own range", fontsize=8)
        a1.set_axis_off()
        norm = cal.normalise(raw)
        _calibrated(fig, a2, norm, cal.meaning().replace(" (", "\n(", 1), vmax, 6)
        a2.set_title(f"calibrated, fixed [0, {vmax:g}] (max {float(norm.max()):.3g})", fontsize=8)
    return fig
