"""What every drawing shares: figures outside pyplot, colour maps, image overlays, heat maps
with labelled colour bars, and the one PNG writer.

Figures are plain `matplotlib.figure.Figure` objects (no pyplot state, so nothing is shown twice
and tests render them headless); `figure_array` is how tests compare drawings.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..files import atomic_write_bytes


MAP_CMAP = "jet"


ERROR_COLORS = {"TN": (0.92, 0.92, 0.92), "TP": (0.2, 0.65, 0.2), "FP": (0.85, 0.15, 0.15),
                "FN": (0.15, 0.35, 0.9)}


_FORMATTER = False


def _register_png_formatter() -> None:
    """Show Figures as PNG in IPython whatever the matplotlib backend (our figures live outside
    pyplot, so the inline backend's own hook, run on importing pyplot, may never run)."""
    global _FORMATTER
    if _FORMATTER:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    ip = get_ipython()
    if ip is None:
        return
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    ip.display_formatter.formatters["image/png"].for_type(
        Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight", dpi=90))
    _FORMATTER = True


def new_figure(w: float, h: float, **kw):
    """A Figure outside pyplot (shown by the notebook's display, saved by save_figure)."""
    from matplotlib.figure import Figure

    _register_png_formatter()
    kw.setdefault("layout", "constrained")
    return Figure(figsize=(w, h), **kw)


def show(fig) -> None:
    """Display a Figure in a notebook (no-op outside IPython)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover
        return
    if get_ipython() is not None:
        display(fig)


def figure_array(fig) -> np.ndarray:
    """The rendered figure as an (H, W, 4) uint8 array (tests compare drawings with it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def png_bytes(fig, **kw) -> bytes:
    """The figure as PNG bytes (savefig's keywords, e.g. dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kw)
    return buf.getvalue()


def save_figure(fig, path, **kw) -> Path:
    """PNG at dpi 110, written atomically (an interrupted save leaves no half file)."""
    return atomic_write_bytes(path, png_bytes(fig, **{"dpi": 110, **kw}))


def bare_axes(ax) -> None:
    ax.set_xticks([]), ax.set_yticks([])
    for sp in ax.spines.values():
        sp.set_visible(False)


def overlay(image: np.ndarray, mask: np.ndarray, color=(255, 0, 0), alpha: float = 0.4) -> np.ndarray:
    """(H, W, 3) uint8 image with `mask` (H, W) bool tinted and its outline drawn opaque."""
    out = image.astype(np.float64)
    mask = np.asarray(mask, bool)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float64)
    edge = mask & ~ndi.binary_erosion(mask)
    out[ndi.binary_dilation(edge) & ~mask] = color  # outline just outside: thin defects stay visible
    return out.astype(np.uint8)


def heatmap(ax, a, title: str = "", label: str = "", cmap: str = "viridis", vmin=None, vmax=None,
            xlabel: str | None = None, ylabel: str | None = None, bare: bool = True, extent=None,
            norm=None):
    """imshow with a labelled colour bar; returns the image artist. extent (W, H): stretch a
    coarse grid over an image-sized axis (so pixel masks can be outlined on it). norm: a
    matplotlib Normalize (e.g. LogNorm) in place of vmin/vmax."""
    a = np.asarray(a)
    ext = None if extent is None else (0, extent[0], extent[1], 0)
    lims = {} if norm is not None else {"vmin": vmin, "vmax": vmax}
    im = ax.imshow(a, cmap=cmap, norm=norm, interpolation="nearest", extent=ext, **lims)
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=8)
    if xlabel or ylabel:
        ax.set_xlabel(xlabel or "", fontsize=7), ax.set_ylabel(ylabel or "", fontsize=7)
        ax.tick_params(labelsize=6)
    elif bare:
        bare_axes(ax)
    return im


def contour(ax, mask, color="white") -> None:
    m = np.asarray(mask, bool)
    if m.any():
        ax.contour(m.astype(float), levels=[0.5], colors=[color], linewidths=0.8)
