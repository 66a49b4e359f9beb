"""Every figure and widget of the kit: the lessons and `bagclip reproduce` draw with these, so
what a notebook shows and what a command writes never disagree.

Figures are plain `matplotlib.figure.Figure` objects (no pyplot state, so nothing is shown
twice and tests can render them headless). Widgets (`SAGExplorer`, `FailureGallery`) keep
their controls in `.widget` and expose every callback as a method (`set_node`, `set_k`,
`click`, `set_threshold`, `set_filter`, `set_rank`) so tests call them directly and compare
`figure_array(widget.fig)` before and after.

    python -m bagclip.plots figures/synth_gallery.png   # every synthetic category x defect
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from . import analysis as an
from .report import save_figure  # noqa: F401 (figures are saved from here too; one writer)

MAP_CMAP = "jet"
ERROR_COLORS = {"TN": (0.92, 0.92, 0.92), "TP": (0.2, 0.65, 0.2), "FP": (0.85, 0.15, 0.15),
                "FN": (0.15, 0.35, 0.9)}


# --- basics ---------------------------------------------------------------------------------
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


def _bare(ax) -> None:
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
            xlabel: str | None = None, ylabel: str | None = None, bare: bool = True, extent=None):
    """imshow with a labelled colour bar; returns the image artist. extent (W, H): stretch a
    coarse grid over an image-sized axis (so pixel masks can be outlined on it)."""
    a = np.asarray(a)
    ext = None if extent is None else (0, extent[0], extent[1], 0)
    im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", extent=ext)
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=8)
    if xlabel or ylabel:
        ax.set_xlabel(xlabel or "", fontsize=7), ax.set_ylabel(ylabel or "", fontsize=7)
        ax.tick_params(labelsize=6)
    elif bare:
        _bare(ax)
    return im


def _contour(ax, mask, color="white") -> None:
    m = np.asarray(mask, bool)
    if m.any():
        ax.contour(m.astype(float), levels=[0.5], colors=[color], linewidths=0.8)


# --- images, masks, maps --------------------------------------------------------------------
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
    axes[0].imshow(img), _bare(axes[0]), axes[0].set_title(title, fontsize=8)
    j = 1
    if mask is not None:
        axes[j].imshow(overlay(img, np.asarray(mask, bool))), _bare(axes[j])
        axes[j].set_title("ground truth (red)", fontsize=8)
        j += 1
    if amap is not None:
        scale = "" if vmin is not None else " (own scale)"
        heatmap(axes[j], amap, map_title + scale, "abnormal probability", MAP_CMAP, vmin, vmax)
        if mask is not None:
            _contour(axes[j], mask)
        j += 1
    for arr, t, lab, cmap in extra:
        heatmap(axes[j], arr, t, lab, cmap)
        if mask is not None:
            _contour(axes[j], mask)
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


def plot_samples(samples, size: int | None = 224, ncols: int = 4, title: str | None = None):
    """Grid of samples (bagclip.data.Sample), masks overlaid in red. Returns the Figure."""
    from PIL import Image

    from .data.io import load_mask, read_rgb

    n = len(samples)
    rows = (n + ncols - 1) // ncols
    fig = new_figure(ncols * 1.8, rows * 1.8 + 0.4)
    axes = fig.subplots(rows, ncols, squeeze=False)
    for ax in axes.ravel():
        _bare(ax)
    for ax, s in zip(axes.ravel(), samples):
        img = read_rgb(s.image_path)
        if size is not None:
            img = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
        m = np.asarray(load_mask(s.mask_path, img.shape[:2]))
        ax.imshow(overlay(img, m))
        ax.set_title(f"{s.class_name}/{s.defect_type}", fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def synth_gallery(out=None, size: int = 224, seed: int = 0, index: int = 0):
    """Every synthetic category (rows) and defect kind (image, overlay); saved to `out` if given."""
    from .data.synth import AUX_CLASSES, CATEGORIES, make_image

    width = max(len(k) for k in CATEGORIES.values())
    fig = new_figure(1.6 * (1 + 2 * width), 1.6 * len(CATEGORIES) + 0.4)
    axes = fig.subplots(len(CATEGORIES), 1 + 2 * width, squeeze=False)
    for ax in axes.ravel():
        _bare(ax)
    for r, (cat, kinds) in enumerate(CATEGORIES.items()):
        axes[r, 0].imshow(make_image(cat, "good", size, seed, index).image)
        group = "aux" if cat in AUX_CLASSES else "target"
        axes[r, 0].set_ylabel(f"{cat}\n({group})", fontsize=8)
        axes[r, 0].set_title("good" if r == 0 else "", fontsize=8)
        for j, kind in enumerate(kinds):
            im = make_image(cat, kind, size, seed, index)
            a, b = axes[r, 1 + 2 * j], axes[r, 2 + 2 * j]
            a.imshow(im.image)
            b.imshow(overlay(im.image, im.mask))
            a.set_title(kind, fontsize=8)
            b.set_title(f"{kind} mask", fontsize=8)
    fig.suptitle(f"bagclip synthetic benchmark (seed {seed}, {size} px): each row a category "
                 f"(aux: trained on; target: zero-shot test), defects with their exact masks in red",
                 fontsize=10)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    return fig


# --- lesson 01: backbone --------------------------------------------------------------------
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
    axes[0].imshow(img), _bare(axes[0]), axes[0].set_title(title, fontsize=8)
    axes[1].imshow(overlay(img, np.asarray(mask, bool))), _bare(axes[1])
    axes[1].set_title("ground truth (red)", fontsize=8)
    h, w = img.shape[:2]
    for ax, (m, t, lab, cmap) in zip(axes[2:], extra):
        heatmap(ax, m, t, lab, cmap, 0, 1, extent=(w, h))
        _contour(ax, mask)
    return fig


# --- lesson 02: SAFR gates ------------------------------------------------------------------
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


# --- lesson 03: the graph -------------------------------------------------------------------
def plot_hand_graph(points, parts, names: Sequence[str] | None = None):
    """A hand-sized graph: 2-D node features with their edges (width ~ A_sym), and the matrices
    d2, S, A_adj, A_norm with their values written in the cells."""
    pts = np.asarray(points, float)
    n = len(pts)
    names = list(names) if names is not None else [str(i) for i in range(n)]
    fig = new_figure(15, 3.4)
    axes = fig.subplots(1, 5)
    ax = axes[0]
    A = np.asarray(parts.A_sym)
    wmax = A.max() if A.max() > 0 else 1
    for i in range(n):
        for j in range(i + 1, n):
            if A[i, j] > 0:
                ax.plot(*pts[[i, j]].T, color="tab:blue", lw=0.5 + 3 * A[i, j] / wmax, alpha=0.8)
    ax.scatter(*pts.T, s=120, color="tab:orange", zorder=3)
    for i, nm in enumerate(names):
        ax.annotate(nm, pts[i], ha="center", va="center", fontsize=8, zorder=4)
    ax.set_title("features h_i (2-D) and edges of A_sym", fontsize=8)
    ax.set_aspect("equal"), ax.set_xlabel("feature 1", fontsize=7), ax.set_ylabel("feature 2", fontsize=7)
    for ax, (m, t, lab) in zip(axes[1:], ((parts.d2, "d2_ij", "squared distance"),
                                          (parts.S, "S_ij", "affinity"),
                                          (parts.A_adj, "A_adj = relu(S - tau_i)", "weight"),
                                          (parts.A_norm, "A_norm", "weight"))):
        m = np.asarray(m)
        heatmap(ax, m, t, lab, "magma_r", xlabel="node j", ylabel="node i")
        ax.set_xticks(range(n), names, fontsize=6), ax.set_yticks(range(n), names, fontsize=6)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5,
                        color="white" if m[i, j] > 0.6 * m.max() else "black")
    return fig


def plot_graph_steps(parts, grid: int, k: int, image=None, mask=None):
    """Every construction step of one image's graph, each with a labelled colour bar: d2, S,
    A_adj, A_norm (N x N, node index on both axes) and sigma, tau, degree as images over the
    patch grid."""
    fig = new_figure(16, 7.4)
    axes = fig.subplots(2, 4)
    for ax, (m, t, lab, cmap) in zip(axes[0], (
            (parts.d2, "1. d2_ij = ||h_i - h_j||^2", "squared distance", "magma"),
            (parts.S, "3. S_ij = exp(-d2 / sigma_i sigma_j)", "affinity S", "magma"),
            (parts.A_adj, f"4. A_adj = relu(S - tau_i), K={k}", "edge weight", "magma"),
            (parts.A_norm, "5. A_norm = D^-1/2 (A_sym + I) D^-1/2", "normalised weight", "magma"))):
        heatmap(ax, np.asarray(m), t, lab, cmap, xlabel="node j", ylabel="node i")
    img_ax = axes[1, 0]
    if image is not None:
        img_ax.imshow(image if mask is None else overlay(np.asarray(image), np.asarray(mask, bool)))
        img_ax.set_title("image (defect in red)", fontsize=8)
    _bare(img_ax)
    G = grid
    heatmap(axes[1, 1], np.asarray(parts.sigma).reshape(G, G), "2. sigma_i (K-th neighbour distance)",
            "sigma", "viridis")
    heatmap(axes[1, 2], np.asarray(parts.tau).reshape(G, G), "4. tau_i (K-th largest affinity)",
            "tau", "viridis")
    heatmap(axes[1, 3], an.degrees(parts.A_sym).reshape(G, G), "5. degree in A_sym (edges)",
            "edges", "cividis")
    if mask is not None:
        for ax in axes[1, 1:]:
            _contour(ax, np.asarray(an.patch_fraction(mask, G) > 0).reshape(G, G), "red")
    return fig


def draw_patch_graph(ax, A_sym, grid: int, node: int | None = None, highlight=None,
                     two_hop: bool = True, title: str = ""):
    """The graph over the patch grid without a hairball: every node a dot at its patch; only the
    edges of `node` (width and colour by weight, solid when spatially adjacent, dashed when far)
    and, faint, its neighbours' edges (two hops). highlight: (N,) bool, e.g. defect patches."""
    A = np.asarray(A_sym)
    G = grid
    r, c = np.divmod(np.arange(G * G), G)
    colors = np.where(np.asarray(highlight, bool), "tab:red", "0.75") if highlight is not None else "0.75"
    ax.scatter(c, r, s=6, c=colors, zorder=2)
    if node is not None:
        idx, w = an.neighbours(A, node)
        if two_hop:
            for j in idx:
                jj, _ = an.neighbours(A, j)
                for m in jj:
                    ax.plot([c[j], c[m]], [r[j], r[m]], color="0.6", lw=0.3, alpha=0.5, zorder=1)
        wmax = w.max() if len(w) else 1.0
        dist = an.grid_distance(G)[node]
        import matplotlib

        cmap = matplotlib.colormaps["viridis"]
        for j, wj in zip(idx, w):
            ax.plot([c[node], c[j]], [r[node], r[j]], color=cmap(wj / wmax), lw=0.8 + 2.5 * wj / wmax,
                    ls="-" if dist[j] <= 1 else "--", zorder=3)
        ax.scatter(c[idx], r[idx], s=24, c=[cmap(x / wmax) for x in w], edgecolors="k", linewidths=0.4, zorder=4)
        ax.scatter([c[node]], [r[node]], s=80, marker="*", c="gold", edgecolors="k", zorder=5)
    ax.set_xlim(-0.5, G - 0.5), ax.set_ylim(G - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    _bare(ax)


def _patch_boxes(ax, nodes, weights, grid: int, size: int, wmax: float) -> None:
    import matplotlib
    from matplotlib.patches import Rectangle

    cmap = matplotlib.colormaps["viridis"]
    for j, wj in zip(nodes, weights):
        x, y, s = an.patch_box(j, grid, size)
        ax.add_patch(Rectangle((x, y), s, s, fill=False, lw=1.6, ec=cmap(wj / wmax)))


class _View:
    """A widget's drawing: `draw()` rebuilds self.fig; `redraw()` also refreshes the widget's
    output area when the widget has been built."""
    _widget = None

    def redraw(self) -> None:
        self.draw()
        if self._widget is not None:
            with self._out:
                self._out.clear_output(wait=True)
                show(self.fig)


class SAGExplorer(_View):
    """Explore one image's Self-Attention Graph: pick a patch (slider or click on the patch
    grid) and K; see the patch's feature-space neighbours on the image and in the graph, their
    edge weights, the degree histogram, and the share of neighbours that are spatially
    adjacent vs far (the paper's non-local claim, measured for this node and this image).

    image (S, S, 3) uint8; h (N, D) one tap's patch features; mask (S, S) optional.
    Callbacks: set_node(i), set_k(k), click(row, col); state in .node, .k; figure in .fig.
    """

    def __init__(self, image, h, grid: int, k: int = 10, mask=None, node: int | None = None,
                 k_values: Sequence[int] = (3, 5, 10, 15, 20, 30), radius: int = 1,
                 click_cells: int = 24, title: str = ""):
        self.image = np.asarray(image)
        self.h = h
        self.grid = grid
        self.n = grid * grid
        self.radius = radius
        self.title = title
        self.mask = None if mask is None else np.asarray(mask, bool)
        self.defect = an.patch_fraction(self.mask, grid) > 0 if self.mask is not None else None
        self.k_values = sorted({int(v) for v in (*k_values, k) if 2 <= int(v) < self.n})
        self.k = int(k)
        if node is None:
            node = int(np.argmax(an.patch_fraction(self.mask, grid))) if self.mask is not None and self.mask.any() else self.n // 2
        self.node = int(node)
        self._graphs: dict[int, object] = {}
        self.fig = new_figure(14, 7.8)
        self.click_cells = min(grid, click_cells)
        self._widget = None
        self.draw()

    # graph per K, computed once
    def parts(self, k: int | None = None):
        k = self.k if k is None else int(k)
        if k not in self._graphs:
            self._graphs[k] = an.sag_parts(self.h, k)
        return self._graphs[k]

    def stats(self) -> dict:
        """What the view shows for the current node and K, as numbers."""
        A = self.parts().A_sym.numpy()
        idx, w = an.neighbours(A, self.node)
        loc = an.locality(A, self.grid, self.radius)
        return {"node": self.node, "k": self.k, "neighbours": idx, "weights": w,
                "adjacent_share": float(loc[self.node]), "image_adjacent_share": float(np.nanmean(loc)),
                "baseline_adjacent_share": an.spatial_baseline(self.grid, self.radius)}

    # callbacks -----------------------------------------------------------------------------
    def set_node(self, node: int) -> None:
        node = int(node)
        if not 0 <= node < self.n:
            raise ValueError(f"node {node} outside 0..{self.n - 1}")
        self.node = node
        if self._widget is not None and self._node_slider.value != node:
            self._node_slider.value = node  # its observer redraws
            return
        self.redraw()

    def set_k(self, k: int) -> None:
        k = int(k)
        if not 2 <= k < self.n:
            raise ValueError(f"K={k} must be in 2..{self.n - 1}")
        self.k = k
        if self._widget is not None and self._k_slider.value != k:
            if k not in self._k_slider.options:
                self._k_slider.options = sorted({*self._k_slider.options, k})
            self._k_slider.value = k
            return
        self.redraw()

    def click(self, row: int, col: int) -> None:
        """A click on cell (row, col) of the clickable patch grid (click_cells per side)."""
        scale = self.grid / self.click_cells
        r = min(self.grid - 1, int((row + 0.5) * scale))
        c = min(self.grid - 1, int((col + 0.5) * scale))
        self.set_node(r * self.grid + c)

    # drawing -------------------------------------------------------------------------------
    def draw(self):
        fig = self.fig
        fig.clear()
        axes = fig.subplots(2, 3)
        st = self.stats()
        parts = self.parts()
        A = parts.A_sym.numpy()
        idx, w = st["neighbours"], st["weights"]
        wmax = float(w.max()) if len(w) else 1.0
        size = self.image.shape[0]
        dist = an.grid_distance(self.grid)[self.node]
        # 1. the image, the node and its neighbours as outlined patches (no tint of the image)
        ax = axes[0, 0]
        ax.imshow(self.image)
        if self.mask is not None:
            _contour(ax, self.mask, "red")
        _patch_boxes(ax, idx, w, self.grid, size, wmax)
        from matplotlib.patches import Rectangle

        x, y, s = an.patch_box(self.node, self.grid, size)
        ax.add_patch(Rectangle((x, y), s, s, fill=False, lw=2.5, ec="gold"))
        _bare(ax)
        ax.set_title(f"patch {self.node} (gold) and its {len(idx)} neighbours, K={self.k}", fontsize=8)
        # 2. the graph over the patch grid
        draw_patch_graph(axes[0, 1], A, self.grid, self.node, self.defect,
                         title="graph: its edges (solid adjacent, dashed far), 2-hop faint; red = defect")
        # 3. edge weights
        ax = axes[0, 2]
        colors = ["tab:green" if dist[j] <= self.radius else "tab:purple" for j in idx]
        ax.bar(range(len(w)), w, color=colors)
        ax.set_xticks(range(len(w)), [str(j) for j in idx], rotation=90, fontsize=5)
        ax.set_xlabel("neighbour (patch index)", fontsize=7), ax.set_ylabel("A_sym weight", fontsize=7)
        ax.set_title("edge weights (green adjacent, purple far)", fontsize=8)
        # 4. degree histogram
        ax = axes[1, 0]
        deg = an.degrees(A)
        ax.hist(deg, bins=np.arange(deg.min(), deg.max() + 2) - 0.5, color="0.6")
        ax.axvline(deg[self.node], color="gold", lw=2, label=f"this patch: {deg[self.node]}")
        ax.axvline(self.k - 1, color="k", ls=":", lw=1, label=f"K-1 = {self.k - 1} out-edges")
        ax.set_xlabel("edges per node (A_sym)", fontsize=7), ax.set_ylabel("nodes", fontsize=7)
        ax.legend(fontsize=6), ax.set_title("degree histogram", fontsize=8)
        # 5. adjacent vs far
        ax = axes[1, 1]
        vals = [st["adjacent_share"], st["image_adjacent_share"], st["baseline_adjacent_share"]]
        names = ["this patch", "image mean", "position-blind"]
        ax.bar(names, vals, color=["gold", "tab:green", "0.7"], label="adjacent")
        ax.bar(names, [1 - v for v in vals], bottom=vals, color=["tab:purple"] * 3, alpha=0.6, label="far")
        for i, v in enumerate(vals):
            ax.text(i, v / 2, f"{v:.0%}", ha="center", fontsize=7)
        ax.set_ylim(0, 1), ax.set_ylabel("share of neighbours", fontsize=7)
        ax.set_title(f"adjacent (<= {self.radius} patch) vs far", fontsize=8)
        ax.legend(fontsize=6, loc="upper right"), ax.tick_params(labelsize=7)
        # 6. locality over the image
        loc = an.locality(A, self.grid, self.radius).reshape(self.grid, self.grid)
        heatmap(axes[1, 2], loc, "adjacent share per patch (this K)", "share adjacent", "viridis", 0, 1)
        r, c = divmod(self.node, self.grid)
        axes[1, 2].scatter([c], [r], marker="*", s=80, c="gold", edgecolors="k")
        fig.suptitle(self.title or f"SAG explorer: K={self.k}, patch {self.node}", fontsize=9)
        return fig

    # the widget ----------------------------------------------------------------------------
    @property
    def widget(self):
        """The controls and the view (ipywidgets VBox); built on first use."""
        if self._widget is None:
            import ipywidgets as W

            self._node_slider = W.IntSlider(value=self.node, min=0, max=self.n - 1, description="patch",
                                            continuous_update=False)
            self._k_slider = W.SelectionSlider(options=self.k_values, value=self.k, description="K",
                                               continuous_update=False)
            self._node_slider.observe(lambda ch: self._on_node(ch["new"]), names="value")
            self._k_slider.observe(lambda ch: self._on_k(ch["new"]), names="value")
            cells = self.click_cells
            frac = (an.patch_fraction(self.mask, cells) if self.mask is not None else np.zeros(cells * cells))
            buttons = []
            for i in range(cells * cells):
                b = W.Button(layout=W.Layout(width="14px", height="14px", padding="0", margin="0"),
                             tooltip=f"cell {divmod(i, cells)}")
                b.style.button_color = "#e57373" if frac[i] > 0 else "#cfd8dc"
                b.add_class(f"bag-cell-{i}")
                b.on_click(lambda _b, i=i: self.click(*divmod(i, cells)))
                buttons.append(b)
            self._grid = W.GridBox(buttons, layout=W.Layout(
                grid_template_columns=f"repeat({cells}, 14px)", grid_gap="1px"))
            self._out = W.Output()
            help_ = W.HTML("<b>click a cell</b> to pick that patch (red: defect)")
            self._widget = W.HBox([W.VBox([self._node_slider, self._k_slider, help_, self._grid]), self._out])
            self._widget.add_class("bag-sag-explorer")
            with self._out:
                show(self.fig)
        return self._widget

    def _on_node(self, v):
        self.node = int(v)
        self.redraw()

    def _on_k(self, v):
        self.k = int(v)
        self.redraw()


def plot_nonlocal(df, title: str = ""):
    """Adjacent vs far neighbour shares per image (a class), with the position-blind baseline."""
    fig = new_figure(7, 2.8)
    ax = fig.subplots()
    x = np.arange(len(df))
    ax.bar(x, df["adjacent"], color="tab:green", label="adjacent")
    ax.bar(x, df["far"], bottom=df["adjacent"], color="tab:purple", alpha=0.6, label="far")
    ax.axhline(float(df["position_blind_adjacent"].iloc[0]), color="k", ls=":", lw=1,
               label="adjacent share of position-blind edges")
    ax.set_xticks(x, [str(v) for v in df["image"]], rotation=60, fontsize=6)
    ax.set_ylabel("share of SAG neighbours"), ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper right"), ax.set_title(title, fontsize=9)
    return fig


# --- lesson 04: propagation -----------------------------------------------------------------
def plot_oversmoothing(df, paper_p: int = 5, title: str = ""):
    """Mean pairwise cosine and normalised Dirichlet energy of F_SAG against GCN depth P
    (mean over seeds, min-max band); P = 0 is F_pre."""
    fig = new_figure(10, 3)
    axes = fig.subplots(1, 2)
    g = df.groupby("p")
    for ax, col, lab in ((axes[0], "mean_cos", "mean pairwise cosine (1 = all alike)"),
                         (axes[1], "dirichlet", "Dirichlet energy / ||F||^2 (0 = smooth)")):
        m, lo, hi = g[col].mean(), g[col].min(), g[col].max()
        ax.plot(m.index, m.values, "o-")
        ax.fill_between(m.index, lo.values, hi.values, alpha=0.2)
        ax.axvline(paper_p, color="grey", ls=":", lw=1, label=f"paper's P = {paper_p}")
        ax.set_xlabel("GCN layers P (0 = F_pre)"), ax.set_ylabel(lab, fontsize=8)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_scatter_2d(groups: dict, labels, title: str = ""):
    """2-D PCA scatter of several feature sets (name -> (N, C)), coloured by patch label."""
    fig = new_figure(4 * len(groups), 3.4)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    lab = np.asarray(labels, bool)
    for ax, (name, f) in zip(axes, groups.items()):
        f = np.asarray(f, np.float64)
        f = f - f.mean(0)
        u, s, vt = np.linalg.svd(f, full_matrices=False)
        z = f @ vt[:2].T
        ax.scatter(*z[~lab].T, s=5, c="0.6", label="normal patch")
        ax.scatter(*z[lab].T, s=12, c="tab:red", label="defect patch")
        ax.set_title(name, fontsize=8), _bare(ax)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# --- lesson 05: training --------------------------------------------------------------------
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


# --- lesson 06: metrics ---------------------------------------------------------------------
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


# --- lessons 07-08: ablation and sensitivity --------------------------------------------------
def plot_ablation(ours, paper, keys: Sequence[str], label: str = ""):
    """Bars per variant: ours (Average over our target sets) beside the paper's Table 3
    Average row, which is drawn hatched and labelled as quoted. ours/paper: frames indexed by
    variant with the metric keys in percent."""
    fig = new_figure(3.0 * len(keys), 3.2)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    variants = list(ours.index)
    x = np.arange(len(variants))
    for ax, k in zip(axes, keys):
        ax.bar(x - 0.2, [ours.loc[v, k] for v in variants], 0.4, label="ours (measured)")
        pv = [paper.loc[v, k] if v in paper.index else np.nan for v in variants]
        ax.bar(x + 0.2, pv, 0.4, color="none", edgecolor="k", hatch="//", label="paper (quoted, Table 3)")
        ax.set_xticks(x, variants, rotation=30, fontsize=6, ha="right")
        ax.set_title(k, fontsize=8), ax.set_ylabel("%", fontsize=7)
    axes[0].legend(fontsize=6)
    if label:
        fig.suptitle(label, fontsize=8)
    return fig


def ablation_figure(df, label: str = ""):
    """Table 3 as bars: `sweeps.ablate`'s long frame (our variants, mean over seeds of the
    Average over target sets, or the one target set) beside the paper's Average rows (quoted)."""
    from .paper import paper_table
    from .report import summarize

    s = summarize(df)
    keys = ["image_auroc", "image_f1_max", "pixel_auroc", "pixel_f1_max"]
    ds = "Average" if "Average" in s.index.get_level_values(1) else s.index.get_level_values(1)[0]
    ours = s.xs(ds, level=1)[[(k, "mean") for k in keys]]
    ours.columns = keys
    paper = paper_table(3).query("dataset == 'Average'").set_index("variant")[keys]
    return plot_ablation(ours, paper, keys, label or f"ours: {ds} of our target sets")


def plot_sensitivity(df, param: str | None = None, paper_default=None, quoted: bool = True):
    """Figures 5-6: per target dataset, image-level and pixel-level metrics (percent) against
    the swept value, mean over seeds with a +-std band, and the values the paper's text quotes
    for its own curves (Section 4.3.2) drawn as stars labelled "quoted". Returns the Figure."""
    from .metrics import IMAGE_KEYS, METRIC_KEYS, PIXEL_KEYS
    from .paper import QUOTED_SENSITIVITY
    from .report import PARAM_LABELS

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
                line, = ax.plot(mean.index, mean[k], marker="o", label=f"{k.split('_', 1)[1]} (ours)")
                colors[k] = line.get_color()
                ax.fill_between(mean.index, mean[k] - std[k], mean[k] + std[k], alpha=0.15)
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


def quick_figure(runs: list[dict], model, cfg, backbone, cache, target: Sequence, per_class: int = 1,
                 title: str = ""):
    """Loss per step for every seed, then image / ground truth / anomaly map for one anomalous
    test image per target class (`model`: the first seed's trained heads); drawn by
    `quick_figure_from`. Returns the Figure."""
    from .data import load_image, load_mask
    from .data.io import denormalize
    from .inference import predict_cached
    from .train import class_texts

    picks, seen = [], {}
    for s in target:
        if s.label and seen.get(s.class_name, 0) < per_class:
            seen[s.class_name] = seen.get(s.class_name, 0) + 1
            picks.append(s)
    entries = cache.ensure([s.image_path for s in picks], progress=False)
    names = [s.class_name for s in picks]
    maps, scores, _ = predict_cached(model, cfg, cache, entries, names, class_texts(backbone, names, cfg))
    images = [denormalize(load_image(s.image_path, cfg.image_size)) for s in picks]
    masks = [load_mask(s.mask_path, cfg.image_size).numpy() for s in picks]
    return quick_figure_from(runs, picks, images, masks, [m.numpy() for m in maps], scores, title)


def quick_figure_from(runs: list[dict], picks, images, masks, maps, scores, label: str):
    """The reproduce figure: loss per step for every seed, then image / ground truth / anomaly
    map (own scale) for one anomalous test image per target class."""
    n = max(len(picks), 1)
    fig = new_figure(2.2 * n + 0.8, 2.0 * 3 + 2.4)
    grid = fig.add_gridspec(4, n, height_ratios=[1.2, 1, 1, 1])
    ax = fig.add_subplot(grid[0, :])
    for r in runs:
        ax.plot(r["history"], label=f"seed {r['seed']}", lw=1)
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.legend(fontsize=7)
    ax.set_title(label, fontsize=8)
    for j, s in enumerate(picks):
        axes = [fig.add_subplot(grid[i + 1, j]) for i in range(3)]
        panel(images[j], masks[j], maps[j], f"{s.class_name}/{s.defect_type}",
              map_title=f"score {float(scores[j]):.2f}", vmin=None, vmax=None, axes=axes)
    return fig


# --- lesson 10: costs ------------------------------------------------------------------------
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


# --- lesson 09: failure gallery ---------------------------------------------------------------
class FailureGallery(_View):
    """Failures of a detector at a threshold, worst first, with filters.

    samples: the evaluated samples; scores (n,) image scores; maps (n, S, S); masks (n, S, S);
    images: callable i -> (S, S, 3) uint8; features: optional callable i -> (N, D) one tap's
    patch features (for the SAG neighbourhood of the worst region); grid, k: the graph's.
    threshold: image threshold (default F1-max); pixel_threshold: map threshold for the pixel
    errors (default F1-max over all pixels).
    Callbacks: set_threshold(t), set_filter(cls=, defect=, kind=), set_rank(r).
    """

    def __init__(self, samples, scores, maps, masks, images: Callable[[int], np.ndarray],
                 features: Callable[[int], object] | None = None, grid: int | None = None, k: int = 10,
                 threshold: float | None = None, pixel_threshold: float | None = None, label: str = ""):
        self.samples = list(samples)
        self.scores = np.asarray(scores, np.float64)
        self.maps = np.asarray(maps, np.float32)
        self.masks = np.asarray(masks, bool)
        self.images, self.features, self.grid, self.k, self.label = images, features, grid, k, label
        labels = np.array([int(s.label) for s in self.samples])
        self.default_threshold = an.f1_max_threshold(self.scores, labels)[0]
        self.threshold = float(self.default_threshold if threshold is None else threshold)
        if pixel_threshold is None:
            step = max(1, self.maps.size // 2_000_000)  # a strided subsample bounds the sort
            pixel_threshold = an.f1_max_threshold(self.maps.ravel()[::step], self.masks.ravel()[::step])[0]
        self.pixel_threshold = float(pixel_threshold)
        self.cls, self.defect, self.kind, self.rank = "all", "all", "errors", 0
        self.fig = new_figure(15, 6.4)
        self._widget = None
        self.draw()

    def table(self):
        """The failure table at the current threshold (all samples, worst first)."""
        return an.failure_table(self.samples, self.scores, self.threshold)

    def selection(self):
        """Rows shown under the current filters, worst first."""
        return an.filter_failures(self.table(), self.cls, self.defect, self.kind)

    # callbacks
    def set_threshold(self, t: float) -> None:
        self.threshold = float(t)
        self.rank = 0
        self._sync()

    def set_filter(self, cls: str | None = None, defect: str | None = None, kind: str | None = None) -> None:
        if cls is not None:
            self.cls = cls
        if defect is not None:
            self.defect = defect
        if kind is not None:
            self.kind = kind
        self.rank = 0
        self._sync()

    def set_rank(self, rank: int) -> None:
        self.rank = int(rank)
        self._sync()

    def current(self) -> dict | None:
        """The shown row as a dict (None when the filters leave nothing)."""
        sel = self.selection()
        if not len(sel):
            return None
        return sel.iloc[min(self.rank, len(sel) - 1)].to_dict()

    def draw(self):
        from matplotlib.patches import Patch, Rectangle

        fig = self.fig
        fig.clear()
        gs = fig.add_gridspec(2, 5, height_ratios=[1.25, 1])
        top = [fig.add_subplot(gs[0, j]) for j in range(5)]
        hist_ax = fig.add_subplot(gs[1, :3])
        count_ax = fig.add_subplot(gs[1, 3:])
        tab = self.table()
        sel = an.filter_failures(tab, self.cls, self.defect, self.kind)
        row = self.current()
        # score distribution with the threshold
        labels = tab["label"].to_numpy()
        bins = np.linspace(min(self.scores.min(), self.threshold), max(self.scores.max(), self.threshold), 30)
        hist_ax.hist(self.scores[[int(i) for i in tab["index"][labels == 0]]], bins, alpha=0.6, label="normal")
        hist_ax.hist(self.scores[[int(i) for i in tab["index"][labels == 1]]], bins, alpha=0.6, label="anomalous")
        hist_ax.axvline(self.threshold, color="k", ls="--",
                        label=f"threshold {self.threshold:.3f}" + (" (F1-max)" if math.isclose(
                            self.threshold, self.default_threshold) else ""))
        if row is not None:
            hist_ax.axvline(row["score"], color="gold", lw=2, label="shown image")
        hist_ax.set_xlabel("image score"), hist_ax.set_ylabel("images"), hist_ax.legend(fontsize=7)
        hist_ax.set_title("all evaluated images", fontsize=8)
        counts = tab["outcome"].value_counts()
        kinds = ["TP", "FN", "FP", "TN"]
        count_ax.bar(kinds, [int(counts.get(k, 0)) for k in kinds], color=[ERROR_COLORS[k] for k in kinds],
                     edgecolor="k")
        count_ax.set_title(f"outcomes at this threshold; filter: class={self.cls}, defect={self.defect}, "
                           f"kind={self.kind} -> {len(sel)} images", fontsize=7)
        for ax in top:
            _bare(ax)
        if row is None:
            top[0].set_title("no image matches these filters", fontsize=9)
            fig.suptitle(self.label, fontsize=8)
            return fig
        i = int(row["index"])
        img, mask, amap = self.images(i), self.masks[i], self.maps[i]
        s = self.samples[i]
        top[0].imshow(img)
        top[0].set_title(f"#{self.rank + 1}/{len(sel)} {s.class_name}/{s.defect_type}\n"
                         f"{row['outcome']}: score {row['score']:.3f} vs {self.threshold:.3f}", fontsize=8)
        top[1].imshow(overlay(img, mask)), top[1].set_title("ground truth (red)", fontsize=8)
        heatmap(top[2], amap, "anomaly map", "abnormal probability", MAP_CMAP, 0, 1)
        if amap.max() >= self.pixel_threshold:
            top[2].contour(amap >= self.pixel_threshold, levels=[0.5], colors=["white"], linewidths=0.7)
        codes = an.pixel_outcomes(amap, mask, self.pixel_threshold)
        rgb = np.zeros((*codes.shape, 3))
        for name, code in an.PIXEL_CODES.items():
            rgb[codes == code] = ERROR_COLORS[name]
        top[3].imshow(rgb)
        top[3].set_title(f"pixel errors at {self.pixel_threshold:.2f}", fontsize=8)
        top[3].legend(handles=[Patch(color=ERROR_COLORS[n], label=n) for n in ("TP", "FP", "FN")],
                      fontsize=6, loc="lower right")
        ax = top[4]
        ax.imshow(img)
        if self.features is not None and self.grid is not None:
            node = an.worst_patch(amap, mask, self.pixel_threshold, self.grid)
            A = an.sag_parts(self.features(i), self.k).A_sym.numpy()
            idx, w = an.neighbours(A, node)
            _patch_boxes(ax, idx, w, self.grid, img.shape[0], float(w.max()) if len(w) else 1.0)
            x, y, side = an.patch_box(node, self.grid, img.shape[0])
            ax.add_patch(Rectangle((x, y), side, side, fill=False, lw=2.5, ec="gold"))
            far = float(np.mean(an.grid_distance(self.grid)[node][idx] > 1)) if len(idx) else 0.0
            ax.set_title(f"SAG neighbours of the worst patch {node}\n({far:.0%} far, K={self.k})", fontsize=8)
        else:
            ax.set_title("(no features: no SAG view)", fontsize=8)
        fig.suptitle(self.label, fontsize=8)
        return fig

    def _sync(self) -> None:
        if self._widget is not None:
            self._updating = True
            try:
                self._thr.value = self.threshold
                self._cls.value, self._def.value, self._kind.value = self.cls, self.defect, self.kind
                n = len(self.selection())
                self._rank.max = max(n - 1, 0)
                self._rank.value = min(self.rank, max(n - 1, 0))
            finally:
                self._updating = False
        self.redraw()

    @property
    def widget(self):
        if self._widget is None:
            import ipywidgets as W

            self._updating = False
            lo, hi = float(self.scores.min()), float(self.scores.max())
            self._thr = W.FloatSlider(value=self.threshold, min=lo, max=hi, step=(hi - lo) / 200 or 0.01,
                                      description="threshold", readout_format=".3f", continuous_update=False)
            classes = ["all", *sorted({s.class_name for s in self.samples})]
            defects = ["all", *sorted({s.defect_type for s in self.samples})]
            self._cls = W.Dropdown(options=classes, value=self.cls, description="class")
            self._def = W.Dropdown(options=defects, value=self.defect, description="defect")
            self._kind = W.Dropdown(options=["errors", "FP", "FN", "TP", "TN", "all"], value=self.kind,
                                    description="kind")
            self._rank = W.IntSlider(value=0, min=0, max=max(len(self.selection()) - 1, 0), description="rank",
                                     continuous_update=False)
            self._reset = W.Button(description="F1-max threshold")
            self._out = W.Output()

            def guard(fn):
                return lambda ch: None if self._updating else fn(ch["new"])
            self._thr.observe(guard(self.set_threshold), names="value")
            self._cls.observe(guard(lambda v: self.set_filter(cls=v)), names="value")
            self._def.observe(guard(lambda v: self.set_filter(defect=v)), names="value")
            self._kind.observe(guard(lambda v: self.set_filter(kind=v)), names="value")
            self._rank.observe(guard(self.set_rank), names="value")
            self._reset.on_click(lambda _b: self.set_threshold(self.default_threshold))
            self._widget = W.VBox([W.HBox([self._thr, self._reset]), W.HBox([self._cls, self._def, self._kind]),
                                   self._rank, self._out])
            with self._out:
                show(self.fig)
        return self._widget


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "figures/synth_gallery.png"
    synth_gallery(out)
    print(f"gallery written to {out}")


if __name__ == "__main__":
    main()


# --- the paper's figures (bagclip reproduce -> figures/) ---------------------------------------
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
