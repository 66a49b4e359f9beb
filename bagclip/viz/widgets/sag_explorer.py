"""The SAG explorer (lesson 03, Figure 2): one image's Self-Attention Graph, a patch and its
feature-space neighbours, K on a slider, the non-local claim measured for that patch."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import analysis as an
from ..base import bare_axes, contour, heatmap, new_figure
from ..graph import draw_patch_graph, patch_boxes
from .base import View


class SAGExplorer(View):
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
            contour(ax, self.mask, "red")
        patch_boxes(ax, idx, w, self.grid, size, wmax)
        from matplotlib.patches import Rectangle

        x, y, s = an.patch_box(self.node, self.grid, size)
        ax.add_patch(Rectangle((x, y), s, s, fill=False, lw=2.5, ec="gold"))
        bare_axes(ax)
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
            self._show()
        return self._widget

    def _on_node(self, v):
        self.node = int(v)
        self.redraw()

    def _on_k(self, v):
        self.k = int(v)
        self.redraw()
