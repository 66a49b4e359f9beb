"""bagclip.metrics against independent computations: scikit-learn, a slow MVTec-style AUPRO
written here from the protocol's text, and a hand-worked example."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

import bagclip.metrics as M
from bagclip.aupro_cflow import aupro_cflow200
from bagclip.metrics import (BinnedPixelMetrics, PixelMetricAccumulator, aupro, binary_metrics,
                             compute_metrics)

TOL = 1e-9


def sk_metrics(y, s):
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * p[:-1] * r[:-1] / (p[:-1] + r[:-1])  # the last point (P=1, R=0) left out
    return {"auroc": roc_auc_score(y, s), "ap": average_precision_score(y, s),
            "f1_max": np.nanmax(f1)}


# --- independent slow AUPRO: flood-fill regions, one threshold at a time -----------------
def regions_8(mask):
    """List of pixel-index lists, one per 8-connected region (plain BFS, no scipy)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, bool)
    out = []
    for i in range(h):
        for j in range(w):
            if mask[i, j] and not seen[i, j]:
                stack, reg = [(i, j)], []
                seen[i, j] = True
                while stack:
                    a, b = stack.pop()
                    reg.append((a, b))
                    for da in (-1, 0, 1):
                        for db in (-1, 0, 1):
                            x, y = a + da, b + db
                            if 0 <= x < h and 0 <= y < w and mask[x, y] and not seen[x, y]:
                                seen[x, y] = True
                                stack.append((x, y))
                out.append(reg)
    return out


def slow_aupro(maps, masks, limit):
    maps = maps.astype(np.float32)
    regs = [(n, r) for n, m in enumerate(masks) for r in regions_8(m)]
    normal = ~masks.astype(bool)
    xs, ys = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:  # every distinct score, descending
        xs.append((normal & (maps >= t)).sum() / normal.sum())
        ys.append(np.mean([np.mean([maps[n][p] >= t for p in r]) for n, r in regs]))
    area = 0.0
    for k in range(1, len(xs)):
        x0, x1, y0, y1 = xs[k - 1], xs[k], ys[k - 1], ys[k]
        if x1 > limit:  # interpolate one point at the limit and stop
            yi = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            return (area + 0.5 * (y0 + yi) * (limit - x0)) / limit
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area / limit


def slow_cflow(maps, masks, limit=0.3, steps=200):
    """The peers' loop: thresholds min + k*delta, positive if > threshold, FPR < limit kept,
    FPR min-max rescaled, trapezoid."""
    lo, hi = maps.min(), maps.max()
    regs = [(n, r) for n, m in enumerate(masks) for r in regions_8(m)]
    normal = ~masks.astype(bool)
    fprs, pros = [], []
    for k in range(steps):
        t = lo + (hi - lo) / steps * k
        b = maps > t
        pros.append(np.mean([np.mean([b[n][p] for p in r]) for n, r in regs]))
        fprs.append((b & normal).sum() / normal.sum())
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < limit
    f = fprs[keep]
    f = (f - f.min()) / (f.max() - f.min())
    return float(np.trapezoid(pros[keep][::-1], f[::-1]))


def blob_data(rng, n=4, h=12, w=14, decimals=2):
    masks = np.zeros((n, h, w), bool)
    for m in masks[1:]:  # image 0 stays normal
        for _ in range(rng.integers(1, 4)):
            i, j = rng.integers(0, h - 3), rng.integers(0, w - 3)
            m[i:i + rng.integers(1, 4), j:j + rng.integers(1, 4)] = True
    maps = rng.random((n, h, w)) * 0.7 + 0.4 * masks
    return np.round(maps, decimals).astype(np.float32), masks


# --- scikit-learn agreement -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["float", "rounded", "int_ties", "all_equal", "one_positive"])
def test_binary_and_pixel_match_sklearn(kind):
    rng = np.random.default_rng(1)
    n = 3 * 40 * 50
    y = rng.random(n) < 0.2
    s = rng.random(n) + 0.3 * y
    if kind == "rounded":
        s = np.round(s, 2)
    elif kind == "int_ties":
        s = rng.integers(0, 5, n) + y
    elif kind == "all_equal":
        s = np.full(n, 0.5)
    elif kind == "one_positive":
        y[:] = False
        y[17] = True
    s = s.astype(np.float32)  # pixel maps are compared at float32 resolution
    ref = sk_metrics(y, s)
    got_img = binary_metrics(s, y)
    acc = PixelMetricAccumulator().update(s.reshape(3, 40, 50), y.reshape(3, 40, 50))
    got_pix = acc.compute()
    for k in ("auroc", "ap", "f1_max"):
        assert abs(got_img[k] - ref[k]) < TOL, (k, got_img[k], ref[k])
        assert abs(got_pix[k] - ref[k]) < TOL, (k, got_pix[k], ref[k])
    if kind == "all_equal":
        p = y.mean()
        assert got_pix["auroc"] == 0.5 and abs(got_pix["ap"] - p) < TOL
        assert abs(got_pix["f1_max"] - 2 * p / (1 + p)) < TOL


def test_float64_image_scores_are_not_rounded():
    s = np.array([0.1, 0.1 + 1e-12, 0.3, 0.2])  # distinct in float64, equal in float32
    y = np.array([0, 1, 1, 0])
    assert abs(binary_metrics(s, y)["auroc"] - roc_auc_score(y, s)) < TOL


def test_negative_zero_inf_and_negative_scores():
    s = np.array([-0.0, 0.0, -np.inf, np.inf, -1.5, -2.5, 3.0, 0.0], np.float32)
    y = np.array([1, 0, 0, 1, 1, 0, 0, 1], bool)
    got = PixelMetricAccumulator().update(s.reshape(1, 2, 4), y.reshape(1, 2, 4)).compute()
    ref = sk_metrics(y, np.nan_to_num(s, posinf=1e30, neginf=-1e30))
    for k in ("auroc", "ap", "f1_max"):
        assert abs(got[k] - ref[k]) < TOL
    with pytest.raises(ValueError, match="NaN"):
        PixelMetricAccumulator().update(np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2)))


# --- AUPRO ------------------------------------------------------------------------------
HAND_MAPS = np.array([[[0.9, 0.8, 0.1],
                       [0.7, 0.2, 0.3]],
                      [[0.6, 0.1, 0.5],
                       [0.4, 0.1, 0.2]]], np.float32)
HAND_MASKS = np.array([[[1, 1, 0],
                        [0, 0, 0]],
                       [[1, 0, 1],
                        [0, 0, 1]]], bool)
# Regions (8-connected): R1 = image 0 (0,0),(0,1), |R1| = 2; R2 = image 1 (0,0), |R2| = 1;
# R3 = image 1 (0,2),(1,2), |R3| = 2 (not touching R2). Normal pixels N = 7 with scores
# 0.7 0.4 0.3 0.2 0.1 0.1 0.1. Walking down the distinct scores (FP count, sum of 1/|k|):
#   0.9 R1 (0, 1/2)  0.8 R1 (0, 1)  0.7 n (1, 1)  0.6 R2 (1, 2)  0.5 R3 (1, 5/2)
#   0.4 n (2, 5/2)   0.3 n (3, 5/2) 0.2 n+R3 tied (4, 3)          0.1 n n n (7, 3)
# Points (FPR, PRO = sum/3): (0,0) (0,1/6) (0,1/3) (1/7,1/3) (1/7,2/3) (1/7,5/6) (2/7,5/6)
#   (3/7,5/6) (4/7,1) (1,1).
# Limit 0.3: 1/7*1/3 + 1/7*5/6 + (0.3-2/7)*5/6 = 4/84 + 10/84 + 1/84 = 15/84; /0.3 = 25/42.
# Limit 1:   15/84 - 1/84 + 10/84 (2/7..3/7) + 1/7*(5/6+1)/2 = 11/84 (the merged tie)
#            + 3/7*1 = 36/84  ->  71/84 (unmerged ties would give 70/84 or 72/84).
def test_aupro_hand_worked():
    assert abs(aupro(HAND_MAPS, HAND_MASKS) - 25 / 42) < 1e-12
    assert abs(aupro(HAND_MAPS, HAND_MASKS, fpr_limit=1.0) - 71 / 84) < 1e-12
    assert abs(slow_aupro(HAND_MAPS, HAND_MASKS, 0.3) - 25 / 42) < 1e-12


@pytest.mark.parametrize("seed,limit,decimals", [(0, 0.3, 2), (1, 0.3, 6), (2, 0.05, 1),
                                                 (3, 1.0, 2), (4, 0.3, 3)])
def test_aupro_matches_slow_reference(seed, limit, decimals):
    maps, masks = blob_data(np.random.default_rng(seed), decimals=decimals)
    assert abs(aupro(maps, masks, limit) - slow_aupro(maps, masks, limit)) < TOL


def test_aupro_undefined_is_nan():
    maps = np.random.default_rng(0).random((2, 5, 5))
    assert math.isnan(aupro(maps, np.zeros((2, 5, 5), bool)))
    assert math.isnan(aupro(maps, np.ones((2, 5, 5), bool)))


def test_cflow200_matches_peer_loop_and_differs_from_mvtec():
    maps, masks = blob_data(np.random.default_rng(5), decimals=6)
    got = aupro_cflow200(maps, masks)
    assert abs(got - slow_cflow(maps, masks)) < TOL
    assert abs(got - aupro(maps, masks)) > 1e-3  # not the same protocol


# --- accumulation, classes, NaN policy, inputs ------------------------------------------
def test_batches_equal_one_shot(monkeypatch):
    rng = np.random.default_rng(7)
    maps, masks = blob_data(rng, n=9, decimals=2)
    one = PixelMetricAccumulator(capacity=maps.size).update(maps, masks).compute()
    monkeypatch.setattr(M, "_CHUNK", 61)  # ties straddle chunk borders
    acc = PixelMetricAccumulator()
    for sl in (slice(0, 1), slice(1, 5), slice(5, 9)):
        acc.update(torch.from_numpy(maps[sl]), torch.from_numpy(masks[sl]))
    assert acc.n_pixels == maps.size
    many = acc.compute()
    for k in one:
        assert abs(one[k] - many[k]) < 1e-12, k
    for k, v in sk_metrics(masks.ravel(), maps.ravel()).items():
        assert abs(many[k] - v) < TOL


def test_per_class_unweighted_mean_and_nan_warning():
    rng = np.random.default_rng(3)
    maps, masks = blob_data(rng, n=10, decimals=3)
    labels = masks.reshape(10, -1).any(1).astype(int)
    scores = maps.reshape(10, -1).max(1) + rng.random(10) * 0.1
    names = ["a"] * 6 + ["b"] * 4
    labels[6:] = 0  # class b: only normal images -> image metrics and pixel metrics undefined
    masks[6:] = False
    with pytest.warns(RuntimeWarning) as rec:
        out = compute_metrics(scores, labels, maps, masks, class_names=names)
    text = " ".join(str(w.message) for w in rec)
    assert "'b'" in text and "image_auroc" in text and "pixel_aupro" in text
    b = out["per_class"]["b"]
    assert all(math.isnan(b[k]) for k in M.METRIC_KEYS)  # NaN, never 0
    a = compute_metrics(scores[:6], labels[:6], maps[:6], masks[:6])
    for k in M.METRIC_KEYS:  # the undefined class is left out of the mean
        assert out[k] == pytest.approx(a[k], abs=1e-12) == out["per_class"]["a"][k]


def test_mean_is_unweighted_over_classes():
    rng = np.random.default_rng(4)
    maps, masks = blob_data(rng, n=12, decimals=3)
    masks[8] = False  # each class gets a normal image (image 0 is normal already)
    labels = masks.reshape(12, -1).any(1).astype(int)
    scores = rng.random(12) + labels * 0.3
    names = ["x"] * 8 + ["y"] * 4  # unequal sizes: a pooled or weighted mean would differ
    out = compute_metrics(torch.tensor(scores), torch.tensor(labels), torch.tensor(maps),
                          torch.tensor(masks), class_names=names)
    for k in M.METRIC_KEYS:
        per = [out["per_class"][c][k] for c in ("x", "y")]
        assert out[k] == pytest.approx(np.mean(per), abs=1e-12)
        assert 0.0 <= out[k] <= 1.0
    assert out["image_auroc"] == pytest.approx(
        np.mean([roc_auc_score(labels[:8], scores[:8]), roc_auc_score(labels[8:], scores[8:])]))


def test_pixel_metrics_skipped():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_metrics([0.1, 0.9, 0.4], [0, 1, 0])
    assert out["image_auroc"] == 1.0
    assert all(math.isnan(out[k]) for k in M.PIXEL_KEYS)


def test_binned_mode_exact_on_grid_and_within_bounds():
    rng = np.random.default_rng(9)
    maps, masks = blob_data(rng, n=6, decimals=6)
    grid = np.floor(maps * 10).astype(np.float32)  # integers 0..9: one bin each below
    exact = PixelMetricAccumulator().update(grid, masks).compute()
    binned = BinnedPixelMetrics(bins=10, lo=0, hi=10).update(grid, masks).compute()
    for k in exact:
        assert abs(exact[k] - binned[k]) < 1e-12, k
    exact = PixelMetricAccumulator().update(maps, masks).compute()
    binned = BinnedPixelMetrics(bins=64).update(maps, masks).compute()
    assert 0 < abs(exact["auroc"] - binned["auroc"]) <= binned["auroc_err"]
    assert abs(exact["aupro"] - binned["aupro"]) <= binned["aupro_err"]


def test_curve_metrics_with_multiplicities_equals_the_duplicated_sample():
    """Weights (a bootstrap's multiplicities, zeros included) give what physically repeating
    each element gives; summed histograms with empty bins give the binned accumulator's values,
    AUPRO cut at three limits."""
    from bagclip.metrics import curve_metrics
    rng = np.random.default_rng(5)
    for _ in range(100):
        n = int(rng.integers(4, 30))
        s, y = np.round(rng.random(n), 1), rng.integers(0, 2, n)  # rounding: many ties
        y[:2] = 0, 1
        m = rng.integers(0, 3, n)
        m[:2] = np.maximum(m[:2], 1)
        ref = binary_metrics(np.repeat(s, m), np.repeat(y, m))
        o = np.argsort(-s, kind="stable")
        ends = np.append(np.flatnonzero(s[o][:-1] != s[o][1:]), n - 1)
        got = curve_metrics(np.cumsum(m[o] * y[o])[ends][None], np.cumsum(m[o] * (1 - y[o]))[ends][None])
        for k in ref:
            assert abs(ref[k] - got[k][0]) < 1e-12, k
    maps = rng.random((5, 8, 8))
    masks = np.zeros((5, 8, 8), bool)
    masks[1:, 2:5, 2:5], masks[3, 6:, 6:] = True, True
    maps[masks] += 0.4
    for limit in (0.05, 0.3, 1.0):
        acc = BinnedPixelMetrics(16, 0, 1.5, limit).update(maps, masks)  # bins above 1.4 stay empty
        neg, pos, w, k = acc.counts()
        got = curve_metrics(np.cumsum(pos[::-1]), np.cumsum(neg[::-1]), np.cumsum(w[::-1]), [k], limit)
        exact = PixelMetricAccumulator(limit).update(maps, masks).compute()  # the streaming rule
        for key in ("auroc", "ap", "f1_max", "aupro"):
            assert abs(acc.compute()[key] - got[key][0]) < 1e-12, key
        assert abs(exact["auroc"] - got["auroc"][0]) <= acc.compute()["auroc_err"] + 1e-12
        assert abs(exact["aupro"] - got["aupro"][0]) <= acc.compute()["aupro_err"] + 1e-12
