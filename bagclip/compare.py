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

Metrics are the package's rule (`metrics.curve_metrics`, which `binary_metrics` and
`BinnedPixelMetrics` use), computed for all resamples at once from the images' multiplicities:
image ones exactly, on each class's scores sorted once per seed; pixel ones on per-image
histograms summed with the multiplicities (one (bins,) histogram of normal pixels, of defect
pixels and of AUPRO region weights per image and seed: a resample costs a matrix product, not
a re-sort of every pixel). Binning is a tie of the pixels of a bin; `Comparison.binning_error` is the
largest AUROC error bound of the full-sample histograms (see BinnedPixelMetrics).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .metrics import IMAGE_KEYS, PIXEL_KEYS, BinnedPixelMetrics, as_numpy, curve_metrics, descending_thresholds

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Results", "Comparison", "Estimate", "compare", "estimate", "compare_table", "describe",
           "interval_table", "chance_levels", "chance_of", "METRIC_NAMES", "EFFECT", "NO_EVIDENCE"]

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
    memo: dict = field(default_factory=dict, repr=False, compare=False)  # bootstrap values, see _values

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
    def from_records(cls, records: Sequence[dict]) -> "Results":
        """One setting from its runs' records, one per seed (`bagclip.evaluate.evaluate_recorded`,
        kept by `bagclip.runs` in each run's predictions.npz): the same images in the same order
        in every record; pixel histograms when every record has them."""
        recs = list(records)
        if not recs:
            raise ValueError("from_records: no records")
        first = recs[0]
        for r in recs[1:]:
            if not (np.array_equal(r["labels"], first["labels"]) and np.array_equal(r["classes"], first["classes"])):
                raise ValueError("from_records: the records were evaluated on different images")
        out = cls.from_scores(np.stack([np.asarray(r["scores"], np.float64) for r in recs]),
                              first["labels"], first["classes"])
        if all("neg" in r for r in recs):
            out.neg, out.pos, out.w = (np.stack([np.asarray(r[k], np.float64) for r in recs]) for k in ("neg", "pos", "w"))
            out.regions = np.asarray(first["regions"], np.int64)
            out.lo, out.hi = (np.array([float(r[k]) for r in recs]) for k in ("lo", "hi"))
            out.bins = int(out.neg.shape[-1])
        return out

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


def _family(metric: str) -> tuple[str, ...]:
    """The metrics one computation gives together: the image ones, or the pixel ones."""
    return IMAGE_KEYS if metric in IMAGE_KEYS else PIXEL_KEYS


def _family_values(res: Results, metric: str, M: np.ndarray) -> dict[str, np.ndarray]:
    """{metric of metric's family: (B, S)}: each seed's metrics, mean over classes, on B
    multisets of the images given by their multiplicities M (B, n) (a row of ones: the sample
    itself). All B at once (`metrics.curve_metrics`): one sort of a class's scores per seed,
    and for pixels one product of multiplicities with the per-image histograms."""
    fam = _family(metric)
    B, S = M.shape[0], res.n_seeds
    out = {m: np.zeros((B, S)) for m in fam}
    groups = [np.flatnonzero(res.classes == c) for c in dict.fromkeys(res.classes.tolist())]
    for s in range(S):
        for j in groups:
            Mc = M[:, j]                                                       # (B, n_c)
            if metric in IMAGE_KEYS:
                order, ends = descending_thresholds(res.scores[s, j])          # ties merged
                y = res.labels[j][order]
                got = curve_metrics(np.cumsum(Mc[:, order] * y, axis=1)[:, ends],
                                    np.cumsum(Mc[:, order] * (1 - y), axis=1)[:, ends])
            else:  # histograms summed with the multiplicities, thresholds = bins, descending
                used = np.flatnonzero((res.neg[s, j] + res.pos[s, j]).any(0))[::-1]  # empty bins add nothing
                neg, pos, w = (np.cumsum(Mc @ h[s, j][:, used], axis=1) for h in (res.neg, res.pos, res.w))
                got = curve_metrics(pos, neg, w, Mc @ res.regions[j], res.fpr_limit)
            for m in fam:
                out[m][:, s] += got[m.split("_", 1)[1]] / len(groups)
    return out


def _per_seed(res: Results, metric: str, idx: np.ndarray) -> np.ndarray:
    """(S,) metric of each seed on the images idx (duplicates allowed), mean over classes."""
    M = np.bincount(idx, minlength=res.labels.size)[None].astype(np.float64)
    return _family_values(res, metric, M)[metric][0]


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


def _draws(res: Results, n_boot: int, seed: int) -> tuple[np.random.Generator, list[np.ndarray]]:
    """The generator and step 1's image draws ((n_boot, n_k) per stratum), in the documented
    order; the seed draws come next from the same generator."""
    rng = np.random.default_rng(seed)
    return rng, [st[rng.integers(0, st.size, size=(n_boot, st.size))] for st in _strata(res)]


def _values(res: Results, metric: str, draws: list[np.ndarray], n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, S): each seed's metric on each resample of images. The same draws for every
    setting on these images, so each setting's matrices are computed once per (metric family,
    n_boot, seed) and kept on the Results (a table comparing six rows with one reference
    resamples the reference once; AUROC, AP and F1-max come from one computation)."""
    if (metric, n_boot, seed) not in res.memo:
        idx = np.concatenate(draws, axis=1)                                    # (n_boot, n)
        n = res.labels.size
        M = np.bincount((idx + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n)
        vals = _family_values(res, metric, M.reshape(n_boot, n).astype(np.float64))
        for m in _family(metric):
            if m != "pixel_aupro" or res.regions is not None and res.regions.sum():
                res.memo[(m, n_boot, seed)] = vals[m]
    return res.memo[(metric, n_boot, seed)]


def _binning_error(results: Sequence[Results], metric: str) -> float:
    """Pixel metrics: the binned AUROC's error bound, full sample, worst seed (0 otherwise)."""
    err = 0.0
    if metric in PIXEL_KEYS:
        for r in results:
            for s in range(r.n_seeds):
                e = BinnedPixelMetrics.from_counts(r.neg[s].sum(0), r.pos[s].sum(0), r.w[s].sum(0),
                                                   int(r.regions.sum()), r.lo[s], r.hi[s]).compute()
                err = max(err, e.get("auroc_err", 0.0))
    return err


def chance_of(res: Results, metric: str) -> float | None:
    """The chance level of a metric on these images, mean over classes: image metrics from
    the labels (`chance_levels`); pixel AP and F1-max from the defect-pixel fraction p (p and
    2p / (1 + p)), pixel AUROC 0.5; AUPRO None (no such closed form)."""
    key = metric.split("_", 1)[1]
    names = list(dict.fromkeys(res.classes.tolist()))
    if metric in IMAGE_KEYS:
        return float(np.mean([chance_levels(res.labels[res.classes == c])[key] for c in names]))
    if metric == "pixel_aupro" or res.neg is None:
        return None
    vals = []
    for c in names:
        pos, neg = res.pos[0, res.classes == c].sum(), res.neg[0, res.classes == c].sum()
        p = float(pos / (pos + neg))
        vals.append({"auroc": 0.5, "ap": p, "f1_max": 2 * p / (1 + p)}[key])
    return float(np.mean(vals))


def compare(a: Results, b: Results, metric: str, n_boot: int = 2000, level: float = 0.95,
            seed: int = 0) -> Comparison:
    """B - A of `metric` (a METRIC_NAMES key) with its paired percentile bootstrap interval."""
    _check(a, b, metric)
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError("level must be in (0, 1) and n_boot >= 1")
    all_idx = np.arange(a.labels.size)
    va, vb = _per_seed(a, metric, all_idx).mean(), _per_seed(b, metric, all_idx).mean()
    rng, draws = _draws(a, n_boot, seed)
    paired = a.n_seeds == b.n_seeds
    sa = rng.integers(0, a.n_seeds, size=(n_boot, a.n_seeds))
    # unequal seed counts cannot be paired: B's seeds are then drawn on their own, after A's
    sb = sa if paired else rng.integers(0, b.n_seeds, size=(n_boot, b.n_seeds))
    if not paired:
        log.info("compare: %d vs %d seeds, seeds resampled independently", a.n_seeds, b.n_seeds)
    Va, Vb = _values(a, metric, draws, n_boot, seed), _values(b, metric, draws, n_boot, seed)
    k = np.arange(n_boot)[:, None]
    boot = Vb[k, sb].mean(1) - Va[k, sa].mean(1)
    alpha = 1 - level
    low, high = (float(x) for x in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
    chance = chance_of(a, metric) if metric in IMAGE_KEYS else None
    verdict = EFFECT if (low > 0 or high < 0) else NO_EVIDENCE
    return Comparison(metric, float(va), float(vb), float(vb - va), low, high, verdict, level, n_boot,
                      seed, int(a.labels.size), int(max(a.n_seeds, b.n_seeds)),
                      _binning_error((a, b), metric), chance, boot)


@dataclass
class Estimate:
    """One setting's metric with its percentile bootstrap interval (the same draws as
    `compare`: images per stratum, then seeds), and the metric's chance level."""
    metric: str
    value: float
    low: float
    high: float
    level: float = 0.95
    chance: float | None = None


def estimate(res: Results, metric: str, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Estimate:
    """A setting's metric (the tables' number) with its interval over images and seeds. For a
    curve's points or a bar's error bar; whether two settings differ is `compare`'s question
    (two overlapping intervals are no test: the paired difference is)."""
    _check(res, res, metric)
    value = float(_per_seed(res, metric, np.arange(res.labels.size)).mean())
    rng, draws = _draws(res, n_boot, seed)
    sa = rng.integers(0, res.n_seeds, size=(n_boot, res.n_seeds))
    boot = _values(res, metric, draws, n_boot, seed)[np.arange(n_boot)[:, None], sa].mean(1)
    alpha = 1 - level
    low, high = (float(x) for x in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
    return Estimate(metric, value, low, high, level, chance_of(res, metric))


def compare_table(reference: Results, settings: dict, metrics: Sequence[str], n_boot: int = 1000,
                  level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Every setting against the reference, every metric: one row per (setting, metric) with
    a (the reference), b, diff, low, high (fractions), verdict, chance, n_seeds. Settings whose
    images differ from the reference's are refused (`compare`)."""
    import pandas as pd

    rows = []
    for name, res in settings.items():
        for m in metrics:
            c = compare(reference, res, m, n_boot=n_boot, level=level, seed=seed)
            rows.append({"setting": name, "metric": m, "a": c.a, "b": c.b, "diff": c.diff, "low": c.low,
                         "high": c.high, "verdict": c.verdict, "chance": chance_of(reference, m),
                         "n_seeds": res.n_seeds, "binning_error": c.binning_error})
    return pd.DataFrame(rows)


def interval_table(settings: dict, reference: str, metrics: Sequence[str], n_boot: int = 1000,
                   level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """A curve's or a bar chart's numbers: one row per (setting, metric) with the setting's
    value and its own interval (`estimate`: the error bar), and its difference from the
    reference setting with the paired interval and verdict (`compare`; empty on the reference's
    own rows), and the chance level. settings: {name: Results}, all on the same images."""
    import pandas as pd

    ref, rows = settings[reference], []
    for name, res in settings.items():
        for m in metrics:
            e = estimate(res, m, n_boot, level, seed)
            row = {"setting": name, "metric": m, "value": e.value, "low": e.low, "high": e.high,
                   "chance": e.chance, "diff": math.nan, "diff_low": math.nan, "diff_high": math.nan,
                   "verdict": "reference" if name == reference else "", "n_seeds": res.n_seeds}
            if name != reference:
                c = compare(ref, res, m, n_boot, level, seed)
                row.update(diff=c.diff, diff_low=c.low, diff_high=c.high, verdict=c.verdict)
            rows.append(row)
    return pd.DataFrame(rows)


def describe(c: Comparison, what: str, scale: float = 100.0, digits: int = 1) -> str:
    """One line from the measured values, e.g. "removing SAG changed pixel AUROC by -0.4
    [-1.9, 1.1]: no evidence here" (values x scale: percentage points by default)."""
    f = lambda x: f"{x * scale:.{digits}f}"  # noqa: E731
    tail = f"an effect (the {c.level * 100:g} % interval excludes 0)" if c.verdict == EFFECT else "no evidence here"
    return f"{what} changed {METRIC_NAMES[c.metric]} by {f(c.diff)} [{f(c.low)}, {f(c.high)}]: {tail}"
