"""A calibrated anomaly map as a picture whose colour bar says what its numbers mean.

Drawing only (no scoring): the map comes normalised by `Calibration.normalise`, so 1.0 is the
class's pixel threshold, and the scale is fixed (0 to `vmax`) for every image of the class:
two maps side by side compare, unlike maps each stretched to its own range.
"""
from __future__ import annotations

import io

import numpy as np

__all__ = ["calibrated_map_figure", "png_bytes"]


def calibrated_map_figure(norm_map, meaning: str, title: str | None = None, vmax: float = 2.0):
    """A matplotlib Figure of norm_map (H, W) on [0, vmax], a contour at 1.0, and a colour bar
    labelled `meaning` (e.g. Calibration.meaning()). No pyplot state is touched."""
    from matplotlib.figure import Figure

    m = np.asarray(norm_map, np.float32)
    fig = Figure(figsize=(4.4, 3.6), dpi=110)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="inferno", vmin=0.0, vmax=vmax, interpolation="nearest")
    if (m > 1.0).any() and (m <= 1.0).any():
        ax.contour(m, levels=[1.0], colors="cyan", linewidths=0.8)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    cb = fig.colorbar(im, ax=ax, extend="max", fraction=0.046, pad=0.04)
    cb.ax.axhline(1.0, color="cyan", linewidth=1.0)
    cb.set_label(meaning, fontsize=7)
    fig.tight_layout()
    return fig


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
