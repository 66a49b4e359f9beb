"""Exact anomaly-detection metrics: image and pixel AUROC, AP, F1-max, and the MVTec AD AUPRO.

All pixel metrics share one sort. Each pixel becomes one uint64 key, high 32 bits an
order-preserving code of its float32 score (descending), low 32 bits a global region id
(0 = normal pixel, k > 0 = k-th 8-connected ground-truth region). A single in-place sort of
the keys gives the descending order; one streaming pass over it, in fixed-size chunks, merges
tied scores (a threshold is a distinct score, as in scikit-learn) and accumulates

    AUROC   trapezoid over (FP/N, TP/P) points, exact integer sums
    AP      sum_n (R_n - R_{n-1}) P_n                         (scikit-learn's definition)
    F1-max  max_n 2 TP_n / (TP_n + FP_n + P)   (= max 2PR/(P+R) over the PR curve)
    AUPRO   MVTec AD: FPR = FP/N, PRO = sum of 1/|region| over detected pixels / #regions,
            curve from (0, 0), cut at fpr_limit with one interpolated point, area / fpr_limit

Memory: 8 bytes per pixel held (the keys) plus O(chunk) scratch; see PixelMetricAccumulator.
Pixel scores are compared at float32 resolution (maps are stored as float32).
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable, Iterator

import numpy as np
from scipy import ndimage

__all__ = ["compute_metrics", "aupro", "PixelMetricAccumulator", "BinnedPixelMetrics",
           "binary_metrics", "curve_metrics", "descending_thresholds", "image_histograms", "merge_metrics", "mean_over_classes", "label_regions", "region_weights",
           "IMAGE_KEYS", "PIXEL_KEYS", "METRIC_KEYS"]

IMAGE_KEYS = ("image_auroc", "image_f1_max", "image_ap")
PIXEL_KEYS = ("pixel_auroc", "pixel_f1_max", "pixel_ap", "pixel_aupro")
METRIC_KEYS = IMAGE_KEYS + PIXEL_KEYS
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity, as the MVTec AD reference
_CHUNK = 1 << 18                      # pixels per streaming step: bounds the scratch memory
_NAN4 = {"auroc": math.nan, "ap": math.nan, "f1_max": math.nan, "aupro": math.nan}


def as_numpy(x, dtype=None) -> np.ndarray:
    """Tensor or array-like -> numpy (no copy when already numpy of the right dtype)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def label_regions(gt) -> tuple[np.ndarray, int]:
    """The 8-connected defect regions of one mask (H, W): flat labels (H*W,), 0 for normal
    pixels and k for the k-th region, and the number of regions."""
    lab, k = ndimage.label(np.asarray(gt) != 0, structure=_EIGHT)
    return lab.ravel(), k


def region_weights(lab: np.ndarray) -> np.ndarray:
    """1 / |region| for every region pixel of flat labels, in the order of lab[lab > 0]: each
    region then adds up to 1, whatever its size (the per-region overlap of AUPRO)."""
    return (1.0 / np.bincount(lab)[1:])[lab[lab > 0] - 1]


def _desc_key32(scores: np.ndarray) -> np.ndarray:
    """float32 scores (any shape) -> uint32 codes whose ascending order is descending score.

    Equal scores get equal codes (-0.0 is folded onto +0.0); NaN is rejected.
    """
    s = np.asarray(scores, dtype=np.float32).ravel() + np.float32(0.0)  # -0.0 + 0.0 = +0.0
    if np.isnan(s).any():
        raise ValueError("anomaly scores contain NaN")
    b = s.view(np.uint32)
    # Negative floats: bits already grow as the value falls. Positive: invert, clear sign bit.
    return np.where(b >> np.uint32(31), b, ~b & np.uint32(0x7FFFFFFF))


def _lookahead(chunks: Iterable[tuple]) -> Iterator[tuple]:
    """Yield (*chunk, first key of the next chunk or None) so ties across chunks merge."""
    pending = None
    for c in chunks:
        if len(c[0]) == 0:
            continue
        if pending is not None:
            yield (*pending, c[0][0])
        pending = c
    if pending is not None:
        yield (*pending, None)


def _sweep(chunks: Iterable[tuple], n_pos: int, n_neg: int, n_regions: int,
           fpr_limit: float) -> dict:
    """One pass over (key, y, w, n) chunks in descending score order: the streaming form of
    `curve_metrics`'s rule, for the exact pixel metrics, whose points do not fit in memory at once.

    y: bool per pixel, or positive-pixel counts per element when n (pixels per element, e.g.
    a histogram bin) is given; w: float64 region weights (sums) or None. Equal keys are tied
    scores; only the last point of a run of ties is kept.
    Returns auroc, ap, f1_max, aupro (NaN where undefined).
    """
    tp = fp = 0                 # running totals over all pixels seen
    cw = 0.0                    # running sum of region weights 1/|k|
    last_tp, last_fp, last_w = 0, 0, 0.0   # last kept point; the curves start at (0, 0)
    auc2 = 0                    # 2 * P * N * AUROC, exact in Python ints
    ap, f1 = 0.0, 0.0
    pro_area, pro_open, has_w = 0.0, True, False
    for key, y, w, n, nxt in _lookahead(chunks):
        ends = np.flatnonzero(key[:-1] != key[1:])
        if nxt is None or key[-1] != nxt:
            ends = np.append(ends, key.shape[0] - 1)
        ctp = np.cumsum(y, dtype=np.int64)
        cn = np.arange(1, key.shape[0] + 1) if n is None else np.cumsum(n, dtype=np.int64)
        if w is not None:
            cwc, has_w = np.cumsum(w), True
        if ends.size:
            TP = np.concatenate(([last_tp], ctp[ends] + tp))
            FP = np.concatenate(([last_fp], cn[ends] - ctp[ends] + fp))
            dT, dF = np.diff(TP), np.diff(FP)
            auc2 += int(np.dot(dF, TP[1:] + TP[:-1]))
            ap += float(np.dot(dT, TP[1:] / (TP[1:] + FP[1:])))
            f1 = max(f1, float(np.max(2.0 * TP[1:] / (TP[1:] + FP[1:] + n_pos))))
            if w is not None and pro_open and n_regions and n_neg:
                x = FP / n_neg
                W = np.concatenate(([last_w], cwc[ends] + cw))
                yv = np.minimum(W / n_regions, 1.0)  # clipped like the reference: rounding
                over = np.flatnonzero(x[1:] > fpr_limit)
                stop = over[0] + 1 if over.size else x.size   # first point past the limit
                xs, ys = x[:stop], yv[:stop]
                pro_area += float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))
                if over.size:  # one linearly interpolated point at fpr_limit, then stop
                    x0, x1, y0, y1 = x[stop - 1], x[stop], yv[stop - 1], yv[stop]
                    yi = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
                    pro_area += 0.5 * (yi + y0) * (fpr_limit - x0)
                    pro_open = False
                last_w = float(W[-1])
            last_tp, last_fp = int(TP[-1]), int(FP[-1])
        tp += int(ctp[-1])
        fp += int(cn[-1]) - int(ctp[-1])
        if w is not None:
            cw += float(cwc[-1])
    if n_pos == 0 or n_neg == 0:
        return dict(_NAN4)
    return {"auroc": auc2 / (2 * n_pos * n_neg), "ap": ap / n_pos, "f1_max": f1,
            "aupro": float(pro_area / fpr_limit) if (n_regions and has_w) else math.nan}


def descending_thresholds(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, ends) of 1-D scores (n,): order sorts them descending (stable), ends (T,) are the
    positions in that order of the last element of each run of equal scores. A threshold is a
    distinct score (as in scikit-learn): cumulative counts taken at `ends` are `curve_metrics`'s."""
    order = np.argsort(-scores, kind="stable")
    ss = scores[order]
    return order, np.append(np.flatnonzero(ss[:-1] != ss[1:]), ss.size - 1)


def curve_metrics(TP, FP, W=None, n_regions=None, fpr_limit: float = 0.3) -> dict:
    """AUROC, AP, F1-max and AUPRO of B curves at once, from cumulative counts at T thresholds.

    TP, FP (B, T): true and false positives at each threshold, thresholds in descending score
    order (column t counts every element scoring at least threshold t), so the last column is
    the totals P and N. Counts may be weights (a bootstrap's multiplicities); a threshold whose
    counts repeat the previous one's adds a repeated point, which changes no metric.
    W (B, T): the cumulative region weights (sum of 1/|region| above the threshold) and
    n_regions (B,): AUPRO's inputs; without them aupro is NaN.
    The rule is `_sweep`'s (the streaming form for the exact pixel metrics), point for point:
    curves start at (0, 0); AUROC trapezoid over (FP/N, TP/P); AP = sum (R_t - R_{t-1}) P_t;
    F1-max = max 2 TP / (TP + FP + P); AUPRO cut at fpr_limit with one interpolated point.
    Returns {"auroc", "ap", "f1_max", "aupro"}: (B,) float64, NaN where P or N is 0.
    """
    TP, FP = np.atleast_2d(np.asarray(TP, np.float64)), np.atleast_2d(np.asarray(FP, np.float64))
    B = TP.shape[0]
    n_pos, n_neg = TP[:, -1], FP[:, -1]
    zero = np.zeros((B, 1))
    T0, F0 = np.hstack([zero, TP]), np.hstack([zero, FP])          # (B, T+1): from (0, 0)
    dT, dF = np.diff(T0, axis=1), np.diff(F0, axis=1)
    called = TP + FP
    prec = np.divide(TP, called, out=np.zeros_like(TP), where=called > 0)  # dT = 0 where 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"auroc": np.einsum("bt,bt->b", dF, T0[:, 1:] + T0[:, :-1]) / (2 * n_pos * n_neg),
               "ap": np.einsum("bt,bt->b", dT, prec) / n_pos,
               "f1_max": np.max(2 * TP / (called + n_pos[:, None]), axis=1)}
        out["aupro"] = np.full(B, math.nan)
        if W is not None:
            x = F0 / n_neg[:, None]
            regions = np.atleast_1d(np.asarray(n_regions, np.float64))
            y = np.minimum(np.hstack([zero, np.atleast_2d(np.asarray(W, np.float64))]) / regions[:, None], 1.0)
            inside = x[:, 1:] <= fpr_limit                            # segments before the cut
            area = np.sum(np.where(inside, 0.5 * (y[:, 1:] + y[:, :-1]) * np.diff(x, axis=1), 0.0), axis=1)
            over = ~inside.all(axis=1)
            k = np.argmin(inside, axis=1) + 1                          # first point past the limit
            r, k1 = np.arange(B), np.minimum(k, x.shape[1] - 1)      # k1 = k where a point is past it
            x0, x1, y0, y1 = x[r, k - 1], x[r, k1], y[r, k - 1], y[r, k1]
            yi = y0 + (y1 - y0) * (fpr_limit - x0) / np.where(over, x1 - x0, 1.0)
            area += np.where(over, 0.5 * (yi + y0) * (fpr_limit - x0), 0.0)
            out["aupro"] = np.where(regions > 0, area / fpr_limit, math.nan)
    bad = (n_pos == 0) | (n_neg == 0)
    for key in out:
        out[key] = np.where(bad, math.nan, out[key])
    return out


def binary_metrics(scores, labels) -> dict:
    """AUROC, AP, F1-max of 1-D scores (n,) against 0/1 labels (n,), exact, float64 scores.

    NaN for every metric when only one label is present.
    """
    s = as_numpy(scores, np.float64).ravel()
    y = as_numpy(labels).ravel() != 0
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    order, ends = descending_thresholds(s)
    tp = np.cumsum(y[order], dtype=np.int64)[ends]
    got = curve_metrics(tp, ends + 1 - tp)
    return {k: float(got[k][0]) for k in ("auroc", "ap", "f1_max")}


class PixelMetricAccumulator:
    """Exact pixel AUROC, AP, F1-max and MVTec AUPRO over batches of anomaly maps.

    update(maps (B, H, W) or (H, W), masks same shape, bool or 0/1); sizes may differ between
    calls. compute() -> {"auroc", "ap", "f1_max", "aupro"}.

    Memory bound: 8 bytes per pixel held (one uint64 key), plus O(256 K pixels) of scratch (~30 MiB) during
    update/compute; the keys are sorted in place. Give `capacity` (total pixels) to allocate
    the key buffer once; without it, batches are kept as parts and copied into one buffer at
    compute(), each part freed as soon as it is copied (resident peak stays near 8 B/pixel,
    allocated address space briefly 16 B/pixel).
    """

    def __init__(self, fpr_limit: float = 0.3, capacity: int | None = None):
        if not 0 < fpr_limit <= 1:
            raise ValueError("fpr_limit must be in (0, 1]")
        self.fpr_limit = fpr_limit
        self._buf = np.empty(int(capacity), np.uint64) if capacity else None
        self._parts: list[np.ndarray] = []
        self._n = 0
        self._sizes: list[np.ndarray] = [np.zeros(1, np.int64)]  # region sizes; id 0 = normal
        self._n_regions = 0
        self._n_pos = 0

    @property
    def n_pixels(self) -> int:
        return self._n

    def update(self, maps, masks) -> "PixelMetricAccumulator":
        maps = as_numpy(maps, np.float32)
        masks = as_numpy(masks)
        if maps.ndim == 2:
            maps, masks = maps[None], masks[None]
        if maps.shape != masks.shape or maps.ndim != 3:
            raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be (B, H, W)")
        for amap, gt in zip(maps, masks):
            gt = gt != 0
            keys = self._reserve(amap.size)
            np.left_shift(_desc_key32(amap).astype(np.uint64), np.uint64(32), out=keys)
            lab, k = label_regions(gt)
            if k:
                rid = lab.astype(np.uint64)
                rid[rid > 0] += np.uint64(self._n_regions)
                keys |= rid
                self._sizes.append(np.bincount(lab, minlength=k + 1)[1:])
                self._n_regions += k
                self._n_pos += int(gt.sum())
        return self

    def _reserve(self, size: int) -> np.ndarray:
        """A writable uint64 slot of `size` keys (in the preallocated buffer when it fits)."""
        if self._buf is not None and not self._parts and self._n + size <= self._buf.size:
            out = self._buf[self._n:self._n + size]
        else:
            out = np.empty(size, np.uint64)
            self._parts.append(out)
        self._n += size
        if self._n >= 2 ** 40 or self._n_regions >= 2 ** 32 - 1:
            raise OverflowError("too many pixels or regions for one accumulator")
        return out

    def _keys(self) -> np.ndarray:
        """All keys as one array, moving parts into it one by one (each freed after copy)."""
        held = self._n - sum(p.size for p in self._parts)
        if not self._parts:
            return self._buf[:held] if self._buf is not None else np.empty(0, np.uint64)
        if self._buf is None and len(self._parts) == 1:
            self._buf = self._parts.pop()
            return self._buf
        if self._buf is None or self._buf.size < self._n:
            new = np.empty(self._n, np.uint64)
            if held:
                new[:held] = self._buf[:held]
            self._buf = new
        pos = held
        while self._parts:
            p = self._parts.pop(0)
            self._buf[pos:pos + p.size] = p
            pos += p.size
            del p
        return self._buf[:self._n]

    def compute(self) -> dict:
        keys = self._keys()
        keys.sort()  # in place: ascending key == descending score
        wtab = 1.0 / np.maximum(np.concatenate(self._sizes), 1)
        wtab[0] = 0.0
        lo = np.uint64(0xFFFFFFFF)

        def chunks():
            for i in range(0, keys.size, _CHUNK):
                c = keys[i:i + _CHUNK]
                rid = c & lo
                yield c >> np.uint64(32), rid != 0, wtab[rid], None

        return _sweep(chunks(), self._n_pos, self._n - self._n_pos, self._n_regions,
                      self.fpr_limit)


class BinnedPixelMetrics:
    """Approximate pixel metrics in constant memory: scores histogrammed into `bins` equal bins
    on [lo, hi] (values outside go to the end bins); each bin is one threshold.

    Memory: 3 float64/int64 arrays of `bins` entries (1.5 MiB at 2^16), whatever the data.
    compute() adds exact error bounds, from the histograms, for the two area metrics:
    auroc_err <= sum_b neg_b pos_b / (2 P N) and aupro_err <= sum_b dFPR_b dPRO_b / (2 limit)
    (b over bins below the FPR limit): merging a bin is a tie of its pixels, and the exact
    curve inside a bin stays in the box the merged chord cuts in half. AP and F1-max have no
    such bound; with maps in [0, 1] and 2^16 bins they are typically within 1e-4.
    """

    def __init__(self, bins: int = 1 << 16, lo: float = 0.0, hi: float = 1.0,
                 fpr_limit: float = 0.3):
        self.bins, self.lo, self.hi, self.fpr_limit = int(bins), float(lo), float(hi), fpr_limit
        self._neg = np.zeros(self.bins, np.int64)
        self._pos = np.zeros(self.bins, np.int64)
        self._w = np.zeros(self.bins, np.float64)
        self._n_regions = 0

    def update(self, maps, masks) -> "BinnedPixelMetrics":
        maps, masks = as_numpy(maps, np.float64), as_numpy(masks)
        if np.isnan(maps).any():
            raise ValueError("anomaly scores contain NaN")
        if maps.ndim == 2:
            maps, masks = maps[None], masks[None]
        for amap, gt in zip(maps, masks):
            b = np.clip(((amap.ravel() - self.lo) * (self.bins / (self.hi - self.lo)))
                        .astype(np.int64), 0, self.bins - 1)
            lab, k = label_regions(gt)
            self._neg += np.bincount(b[lab == 0], minlength=self.bins)
            if k:
                self._pos += np.bincount(b[lab > 0], minlength=self.bins)
                self._w += np.bincount(b[lab > 0], weights=region_weights(lab), minlength=self.bins)
                self._n_regions += k
        return self

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The state: normal-pixel and defect-pixel counts per bin, region weights per bin
        (each (bins,)), number of regions. States of disjoint image sets add up."""
        return self._neg.copy(), self._pos.copy(), self._w.copy(), self._n_regions

    @classmethod
    def from_counts(cls, neg, pos, w, n_regions: int, lo: float = 0.0, hi: float = 1.0,
                    fpr_limit: float = 0.3) -> "BinnedPixelMetrics":
        """An accumulator holding a state from `counts()` (or a sum of states, e.g. of a
        bootstrap resample of images: bagclip.compare)."""
        acc = cls(len(neg), lo, hi, fpr_limit)
        acc._neg = np.rint(np.asarray(neg, np.float64)).astype(np.int64)
        acc._pos = np.rint(np.asarray(pos, np.float64)).astype(np.int64)
        acc._w = np.asarray(w, np.float64).copy()
        acc._n_regions = int(n_regions)
        return acc

    def compute(self) -> dict:
        keep = np.flatnonzero(self._neg + self._pos)[::-1]  # non-empty bins, descending
        neg, pos, w = self._neg[keep], self._pos[keep], self._w[keep]
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        got = curve_metrics(np.cumsum(pos), np.cumsum(neg), np.cumsum(w), [self._n_regions], self.fpr_limit)
        out = {k: float(v[0]) for k, v in got.items()}  # aupro NaN without regions
        if n_pos and n_neg:
            out["auroc_err"] = float(np.dot(neg, pos)) / (2.0 * n_pos * n_neg)
            below = np.cumsum(neg) / n_neg <= self.fpr_limit
            below[np.argmin(below) if not below.all() else -1] = True  # the bin crossing it
            dpro = w / max(self._n_regions, 1)
            out["aupro_err"] = float(np.dot(neg[below] / n_neg, dpro[below])) / (2 * self.fpr_limit)
        return out


def image_histograms(maps, masks, bins: int = 1024, lo: float | None = None, hi: float | None = None,
                     fpr_limit: float = 0.3) -> dict:
    """Per-image BinnedPixelMetrics states of maps (n, H, W) against masks (n, H, W): neg, pos
    (n, bins) int64, w (n, bins) float64, regions (n,), over [lo, hi] (default the maps' own
    min and max; a constant map gets [lo, lo + 1]). The states of any multiset of images add
    up to that multiset's metrics (bagclip.compare resamples them)."""
    m = as_numpy(maps, np.float32)
    lo = float(m.min()) if lo is None else float(lo)
    hi = float(m.max()) if hi is None else float(hi)
    hi = hi if hi > lo else lo + 1.0
    n = m.shape[0]
    neg, pos = np.zeros((n, bins), np.int64), np.zeros((n, bins), np.int64)
    w, regions = np.zeros((n, bins)), np.zeros(n, np.int64)
    for i in range(n):
        neg[i], pos[i], w[i], regions[i] = BinnedPixelMetrics(bins, lo, hi, fpr_limit).update(
            m[i], as_numpy(masks[i])).counts()
    return {"neg": neg, "pos": pos, "w": w, "regions": regions, "lo": lo, "hi": hi, "bins": int(bins)}


def aupro(anomaly_maps, masks, fpr_limit: float = 0.3) -> float:
    """MVTec AD AUPRO of maps (n, H, W) against masks (n, H, W), normalised by fpr_limit.

    NaN when there is no anomalous region or no normal pixel.
    """
    maps = as_numpy(anomaly_maps, np.float32)
    acc = PixelMetricAccumulator(fpr_limit, capacity=maps.size)
    return acc.update(maps, masks).compute()["aupro"]


def _warn_nan(metric: str, where: str) -> None:
    warnings.warn(f"{metric} is undefined for {where} (only one label present): reported as NaN",
                  RuntimeWarning, stacklevel=4)


def merge_metrics(image: dict, pixel: dict | None, where: str) -> dict:
    """{auroc, ap, f1_max} of images + {auroc, ap, f1_max, aupro} of pixels (None: skipped)
    -> the seven prefixed keys; warns once per metric that is NaN (undefined) for `where`."""
    out = {k: image[k[len("image_"):]] for k in IMAGE_KEYS}
    out.update({k: math.nan if pixel is None else pixel[k[len("pixel_"):]] for k in PIXEL_KEYS})
    for k in IMAGE_KEYS + (PIXEL_KEYS if pixel is not None else ()):
        if math.isnan(out[k]):
            _warn_nan(k, where)
    return out


def _group_metrics(scores, labels, maps, masks, where: str, fpr_limit: float) -> dict:
    pix = None
    if maps is not None:
        acc = PixelMetricAccumulator(fpr_limit, capacity=int(np.prod(maps.shape)))
        for i in range(0, maps.shape[0], 16):  # batches bound the packing scratch
            acc.update(maps[i:i + 16], masks[i:i + 16])
        pix = acc.compute()
    return merge_metrics(binary_metrics(scores, labels), pix, where)


def mean_over_classes(per_class: dict) -> dict:
    """Unweighted mean over classes of each metric, NaN classes left out (NaN if all are)."""
    out = {}
    for k in METRIC_KEYS:
        v = [d[k] for d in per_class.values() if not math.isnan(d[k])]
        out[k] = float(np.mean(v)) if v else math.nan
    return out


def compute_metrics(image_scores, image_labels, anomaly_maps=None, masks=None,
                    class_names=None, fpr_limit: float = 0.3) -> dict:
    """All seven metrics as fractions in [0, 1].

    image_scores (n,), image_labels (n,) 0/1, anomaly_maps (n, H, W) float, masks (n, H, W)
    bool/0-1 (numpy or torch); maps/masks None -> pixel keys NaN. With class_names (n,), the
    metrics per class go under "per_class" and the top-level values are their unweighted mean
    (classes where a metric is undefined are left out of that metric's mean, with a warning).
    """
    scores = as_numpy(image_scores, np.float64).ravel()
    labels = as_numpy(image_labels).ravel()
    if (anomaly_maps is None) != (masks is None):
        raise ValueError("give both anomaly_maps and masks, or neither")
    if anomaly_maps is not None:
        anomaly_maps, masks = as_numpy(anomaly_maps, np.float32), as_numpy(masks)
        if anomaly_maps.shape != masks.shape or anomaly_maps.shape[0] != scores.size:
            raise ValueError(f"maps {anomaly_maps.shape} / masks {masks.shape} do not match "
                             f"{scores.size} image scores")
    if class_names is None:
        return _group_metrics(scores, labels, anomaly_maps, masks, "the dataset", fpr_limit)
    names = np.asarray([str(c) for c in class_names])
    if names.size != scores.size:
        raise ValueError("class_names needs one entry per image")
    per_class = {}
    for c in dict.fromkeys(names.tolist()):  # first-seen order
        idx = np.flatnonzero(names == c)
        per_class[c] = _group_metrics(
            scores[idx], labels[idx],
            None if anomaly_maps is None else anomaly_maps[idx],
            None if masks is None else masks[idx], f"class {c!r}", fpr_limit)
    out = mean_over_classes(per_class)
    out["per_class"] = per_class
    return out
