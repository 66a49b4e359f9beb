"""The failure gallery (lesson 09): a detector's errors at a threshold, worst first, filtered by
class, defect and kind, with pixel errors and the SAG neighbourhood of the worst patch."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ... import analysis as an
from ..base import ERROR_COLORS, MAP_CMAP, bare_axes, heatmap, new_figure, overlay
from ..graph import patch_boxes
from .base import View


class FailureGallery(View):
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
        fig = self.fig
        fig.clear()
        gs = fig.add_gridspec(2, 5, height_ratios=[1.25, 1])
        top = [fig.add_subplot(gs[0, j]) for j in range(5)]
        tab = self.table()
        sel = an.filter_failures(tab, self.cls, self.defect, self.kind)
        row = self.current()
        self._draw_scores(fig.add_subplot(gs[1, :3]), fig.add_subplot(gs[1, 3:]), tab, sel, row)
        for ax in top:
            bare_axes(ax)
        if row is None:
            top[0].set_title("no image matches these filters", fontsize=9)
        else:
            self._draw_image(top, row, len(sel))
        fig.suptitle(self.label, fontsize=8)
        return fig

    def _draw_scores(self, hist_ax, count_ax, tab, sel, row) -> None:
        """Bottom row: the score distribution with the threshold, and the outcome counts."""
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

    def _draw_image(self, top, row: dict, n_shown: int) -> None:
        """Top row for the shown image: image, ground truth, map, pixel errors, SAG neighbours."""
        from matplotlib.patches import Patch, Rectangle

        i = int(row["index"])
        img, mask, amap = self.images(i), self.masks[i], self.maps[i]
        s = self.samples[i]
        top[0].imshow(img)
        top[0].set_title(f"#{self.rank + 1}/{n_shown} {s.class_name}/{s.defect_type}\n"
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
        if self.features is None or self.grid is None:
            ax.set_title("(no features: no SAG view)", fontsize=8)
            return
        node = an.worst_patch(amap, mask, self.pixel_threshold, self.grid)
        A = an.sag_parts(self.features(i), self.k).A_sym.numpy()
        idx, w = an.neighbours(A, node)
        patch_boxes(ax, idx, w, self.grid, img.shape[0], float(w.max()) if len(w) else 1.0)
        x, y, side = an.patch_box(node, self.grid, img.shape[0])
        ax.add_patch(Rectangle((x, y), side, side, fill=False, lw=2.5, ec="gold"))
        far = float(np.mean(an.grid_distance(self.grid)[node][idx] > 1)) if len(idx) else 0.0
        ax.set_title(f"SAG neighbours of the worst patch {node}\n({far:.0%} far, K={self.k})", fontsize=8)

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
            self._show()
        return self._widget
