"""One way to compare two settings: the difference B - A of a metric with a paired bootstrap
interval over images and seeds, and a verdict.

    a = Results.from_scores(scores_a, labels, class_names)        # scores (S, n): S seeds, n images
    b = Results.from_scores(scores_b, labels, class_names)
    c = compare(a, b, "image_auroc", seed=0)                     # Comparison
    describe(c, "removing SAG")
    # 'removing SAG changed image AUROC by -0.4 [-1.9, 1.1]: no evidence here'

    a = Results.from_maps(maps_a, masks, labels, class_names)     # maps (S, n, H, W) for pixel metrics

What a setting's metric is: the tables' number. Per seed, the metric of each class (an
unweighted mean over classes when `class_names` is given), then the mean over seeds.

The bootstrap (percentile, `n_boot` resamples, seeded). Resample b draws, with
`rng = np.random.default_rng(seed)` and in exactly this order:
  1. for each stratum (class, label) in sorted order, `rng.integers(0, n_k, size=(n_boot, n_k))`:
     n_k images of that stratum with replacement, so every resample keeps each class's count of
     normal and anomalous images (both labels present: the metric is always defined);
  2. `rng.integers(0, S, size=(n_boot, S))`: S seeds with replacement.
Both settings get the same images and the same seed indices (paired: the difference's noise
from "which images, which seed" cancels as far as the settings agree). The setting's metric on
resample b is the mean over the drawn seeds of the metric on the drawn images (a duplicated
image counts twice, a tie with itself). The interval is the (alpha/2, 1 - alpha/2) quantiles
(numpy's default "linear" rule) of the n_boot differences; verdict "an effect" when it excludes
0, else "no evidence either way". With one seed only images are resampled (and the interval
says nothing about seed-to-seed noise).

Metrics are the package's: image ones by `metrics.binary_metrics` on the resampled scores
(exact); pixel ones by `metrics.BinnedPixelMetrics` on per-image histograms summed with the
resample's multiplicities (one (bins,) histogram of normal pixels, of defect pixels and of
AUPRO region weights per image and seed: a resample costs a matrix product, not a re-sort of
every pixel). Binning is a tie of the pixels of a bin; `Comparison.binning_error` is the
largest AUROC error bound of the full-sample histograms (see BinnedPixelMetrics).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .metrics import IMAGE_KEYS, PIXEL_KEYS, BinnedPixelMetrics, as_numpy, binary_metrics

__all__ = ["Results", "Comparison", "compare", "describe", "chance_levels", "METRIC_NAMES",
           "EFFECT", "NO_EVIDENCE"]

log = logging.getLogger(__name__)

EFFECT, NO_EVIDENCE = "an effect", "no evidence either way"
METRIC_NAMES = {"image_auroc": "image AUROC", "image_ap": "image AP", "image_f1_max": "image F1-max",
                "pixel_auroc": "pixel AUROC", "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max",
                "pixel_aupro": "AUPRO"}


def chance_levels(labels) -> dict:
    """Chance levels of the image metrics for these labels (n,): AUROC 0.5, AP p, F1-max
    2p / (1 + p). The rule lives in `bagclip.analysis.chance_levels` (lesson 06); this is it."""
    from .analysis import chance_levels as rule

    return rule(labels)


@dataclass
class Results:
    """One setting's per-seed, per-image results.

    labels (n,) 0/1 and classes (n,) str are the images' (the same for every seed).
    Image metrics: scores (S, n) float64.
    Pixel metrics: per-image histograms neg, pos, w (S, n, bins) over [lo[s], hi[s]] per seed,
    and regions (n,) (8-connected defect regions per mask). Either part may be None.
    """

    labels: np.ndarray
    classes: np.ndarray
    scores: np.ndarray | None = None
    neg: np.ndarray | None = None
    pos: np.ndarray | None = None
    w: np.ndarray | None = None
    regions: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    bins: int = 0
    fpr_limit: float = 0.3

    @property
    def n_seeds(self) -> int:
        return (self.scores if self.scores is not None else self.neg).shape[0]

    @staticmethod
    def _meta(labels, class_names, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (as_numpy(labels).ravel() != 0).astype(np.int64)
        if y.size != n:
            raise ValueError(f"{y.size} labels for {n} images")
        c = np.asarray(["all"] * n if class_names is None else [str(x) for x in class_names])
        if c.size != n:
            raise ValueError(f"{c.size} class names for {n} images")
        for cls in np.unique(c):
            k = y[c == cls]
            if k.min() == k.max():
                raise ValueError(f"class {cls!r} has only {'anomalous' if k[0] else 'normal'} images: "
                                 f"a detection metric needs both")
        return y, c

    @classmethod
    def from_scores(cls, scores, labels, class_names: Sequence[str] | None = None) -> "Results":
        """scores (S, n) or (n,) (one seed), labels (n,), class_names (n,) or None."""
        s = as_numpy(scores, np.float64)
        s = s[None] if s.ndim == 1 else s
        if s.ndim != 2 or not np.isfinite(s).all():
            raise ValueError(f"scores must be finite, (seeds, images); got shape {s.shape}")
        y, c = cls._meta(labels, class_names, s.shape[1])
        return cls(y, c, scores=s)

    @classmethod
    def from_maps(cls, maps, masks, labels=None, class_names: Sequence[str] | None = None,
                  scores=None, bins: int = 1024, fpr_limit: float = 0.3) -> "Results":
        """maps (S, n, H, W) or (n, H, W), masks (n, H, W) bool/0-1; labels (n,) default: the
        mask has a defect pixel; scores (S, n) optional (adds the image metrics).

        Each seed's maps are histogrammed into `bins` bins over that seed's own [min, max]
        (metrics are rank-based within a setting, so each keeps its full resolution).
        Memory: 3 * S * n * bins float64 (e.g. 28 MiB for S=3, n=400, bins=1024).
        """
        m = as_numpy(maps, np.float32)
        m = m[None] if m.ndim == 3 else m
        g = as_numpy(masks) != 0
        if m.ndim != 4 or m.shape[1:] != g.shape:
            raise ValueError(f"maps {m.shape} must be (seeds, n, H, W) with masks (n, H, W) {g.shape}")
        y = g.reshape(g.shape[0], -1).any(1) if labels is None else labels
        S, n = m.shape[:2]
        neg, pos, w = (np.zeros((S, n, bins)) for _ in range(3))
        regions = np.zeros(n, np.int64)
        lo, hi = m.reshape(S, -1).min(1).astype(np.float64), m.reshape(S, -1).max(1).astype(np.float64)
        hi = np.where(hi > lo, hi, lo + 1.0)  # a constant map: one bin holds everything
        for s in range(S):
            for i in range(n):
                acc = BinnedPixelMetrics(bins, lo[s], hi[s], fpr_limit).update(m[s, i], g[i])
                neg[s, i], pos[s, i], w[s, i], regions[i] = acc.counts()
        out = cls(*cls._meta(y, class_names, n), neg=neg, pos=pos, w=w, regions=regions, lo=lo, hi=hi,
                  bins=bins, fpr_limit=fpr_limit)
        if scores is not None:
            out.scores = cls.from_scores(scores, out.labels, out.classes).scores
        return out


@dataclass
class Comparison:
    metric: str
    a: float  # setting A's metric (mean over seeds of the mean over classes), a fraction
    b: float
    diff: float  # b - a
    low: float  # percentile interval of the difference
    high: float
    verdict: str  # EFFECT or NO_EVIDENCE
    level: float = 0.95
    n_boot: int = 2000
    seed: int = 0
    n_images: int = 0
    n_seeds: int = 0
    binning_error: float = 0.0  # pixel metrics: the binned AUROC's error bound (0 for image metrics)
    chance: float | None = None  # the image metric's chance level (AP, F1-max; AUROC 0.5)
    boot: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # (n_boot,) differences


def _strata(res: Results) -> list[np.ndarray]:
    """Image indices of each (class, label) stratum, in sorted (class, label) order."""
    keys = sorted(set(zip(res.classes.tolist(), res.labels.tolist())))
    return [np.flatnonzero((res.classes == c) & (res.labels == y)) for c, y in keys]


def _per_seed(res: Results, metric: str, idx: np.ndarray) -> np.ndarray:
    """(S,) metric of each seed on the images idx (duplicates allowed), mean over classes."""
    cls = res.classes[idx]
    out = np.zeros(res.n_seeds)
    names = list(dict.fromkeys(cls.tolist()))
    key = metric.split("_", 1)[1]
    for s in range(res.n_seeds):
        vals = []
        for c in names:
            j = idx[cls == c]
            if metric in IMAGE_KEYS:
                vals.append(binary_metrics(res.scores[s, j], res.labels[j])[key])
            else:
                acc = BinnedPixelMetrics.from_counts(
                    res.neg[s, j].sum(0), res.pos[s, j].sum(0), res.w[s, j].sum(0),
                    int(res.regions[j].sum()), lo=res.lo[s], hi=res.hi[s], fpr_limit=res.fpr_limit)
                vals.append(acc.compute()[key])
        out[s] = np.mean(vals)
    return out


def _check(a: Results, b: Results, metric: str) -> None:
    if metric not in METRIC_NAMES:
        raise ValueError(f"metric {metric!r}: choose one of {', '.join(METRIC_NAMES)}")
    if not (np.array_equal(a.labels, b.labels) and np.array_equal(a.classes, b.classes)):
        raise ValueError("the two settings were evaluated on different images (labels or classes "
                         "differ): a paired comparison needs the same images in the same order")
    for name, r in (("A", a), ("B", b)):
        if metric in IMAGE_KEYS and r.scores is None:
            raise ValueError(f"setting {name} has no image scores: build it with Results.from_scores")
        if metric in PIXEL_KEYS and r.neg is None:
            raise ValueError(f"setting {name} has no maps: build it with Results.from_maps")
        if metric == "pixel_aupro" and not r.regions.sum():
            raise ValueError(f"setting {name}: AUPRO needs masks with defect regions")


def compare(a: Results, b: Results, metric: str, n_boot: int = 2000, level: float = 0.95,
            seed: int = 0) -> Comparison:
    """B - A of `metric` (a METRIC_NAMES key) with its paired percentile bootstrap interval."""
    _check(a, b, metric)
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError("level must be in (0, 1) and n_boot >= 1")
    all_idx = np.arange(a.labels.size)
    va, vb = _per_seed(a, metric, all_idx).mean(), _per_seed(b, metric, all_idx).mean()
    rng = np.random.default_rng(seed)
    draws = [st[rng.integers(0, st.size, size=(n_boot, st.size))] for st in _strata(a)]
    paired = a.n_seeds == b.n_seeds
    sa = rng.integers(0, a.n_seeds, size=(n_boot, a.n_seeds))
    # unequal seed counts cannot be paired: B's seeds are then drawn on their own, after A's
    sb = sa if paired else rng.integers(0, b.n_seeds, size=(n_boot, b.n_seeds))
    if not paired:
        log.info("compare: %d vs %d seeds, seeds resampled independently", a.n_seeds, b.n_seeds)
    boot = np.empty(n_boot)
    for k in range(n_boot):
        idx = np.concatenate([d[k] for d in draws])
        boot[k] = _per_seed(b, metric, idx)[sb[k]].mean() - _per_seed(a, metric, idx)[sa[k]].mean()
    alpha = 1 - level
    low, high = (float(x) for x in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
    err = 0.0
    if metric in PIXEL_KEYS:  # the binned metric's own error bound, full sample, worst seed
        for r in (a, b):
            for s in range(r.n_seeds):
                e = BinnedPixelMetrics.from_counts(r.neg[s].sum(0), r.pos[s].sum(0), r.w[s].sum(0),
                                                   int(r.regions.sum()), r.lo[s], r.hi[s]).compute()
                err = max(err, e.get("auroc_err", 0.0))
    chance = None
    if metric in IMAGE_KEYS:
        key = metric.split("_", 1)[1]
        chance = float(np.mean([chance_levels(a.labels[a.classes == c])[key]
                                for c in dict.fromkeys(a.classes.tolist())]))
    verdict = EFFECT if (low > 0 or high < 0) else NO_EVIDENCE
    return Comparison(metric, float(va), float(vb), float(vb - va), low, high, verdict, level, n_boot,
                      seed, int(a.labels.size), int(max(a.n_seeds, b.n_seeds)), err, chance, boot)


def describe(c: Comparison, what: str, scale: float = 100.0, digits: int = 1) -> str:
    """One line from the measured values, e.g. "removing SAG changed pixel AUROC by -0.4
    [-1.9, 1.1]: no evidence here" (values x scale: percentage points by default)."""
    f = lambda x: f"{x * scale:.{digits}f}"  # noqa: E731
    tail = f"an effect (the {c.level * 100:g} % interval excludes 0)" if c.verdict == EFFECT else "no evidence here"
    return f"{what} changed {METRIC_NAMES[c.metric]} by {f(c.diff)} [{f(c.low)}, {f(c.high)}]: {tail}"
