"""bagclip.compare: the paired bootstrap against a hand-worked example and an independent numpy
version with the same documented draws; determinism, a real effect, identical settings."""
import numpy as np
import pytest
from scipy.stats import rankdata

from bagclip.compare import EFFECT, NO_EVIDENCE, Results, compare, describe
from bagclip.metrics import BinnedPixelMetrics


def _auroc(s, y):
    """Mann-Whitney: P(score of a positive > score of a negative), ties 1/2 (via mid-ranks)."""
    s, y = np.asarray(s, float), np.asarray(y) != 0
    r = rankdata(s)
    n1, n0 = y.sum(), (~y).sum()
    return (r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def _boot_independent(sa, sb, y, cls, n_boot, seed, level=0.95):
    """The documented procedure written out plainly: strata (class, label) in sorted order,
    then seeds; per-class AUROC averaged; mean over the drawn seeds."""
    rng = np.random.default_rng(seed)
    keys = sorted(set(zip(cls.tolist(), y.tolist())))
    strata = [np.flatnonzero((cls == c) & (y == l)) for c, l in keys]
    draws = [st[rng.integers(0, st.size, size=(n_boot, st.size))] for st in strata]
    S = sa.shape[0]
    seeds = rng.integers(0, S, size=(n_boot, S))
    out = []
    for k in range(n_boot):
        idx = np.concatenate([d[k] for d in draws])

        def value(scores):
            per_seed = []
            for s in seeds[k]:
                per_seed.append(np.mean([_auroc(scores[s, idx[cls[idx] == c]], y[idx[cls[idx] == c]])
                                         for c in dict.fromkeys(cls[idx].tolist())]))
            return np.mean(per_seed)

        out.append(value(sb) - value(sa))
    out = np.array(out)
    return out, np.quantile(out, [(1 - level) / 2, (1 + level) / 2])


def test_hand_worked_point_estimate_and_the_line():
    y = np.array([0, 0, 1, 1])
    a = Results.from_scores([0.1, 0.2, 0.3, 0.4], y)  # perfect: AUROC 1
    b = Results.from_scores([0.1, 0.3, 0.2, 0.4], y)  # pairs (neg, pos): (.1,.2)+ (.1,.4)+ (.3,.2)- (.3,.4)+ -> 3/4
    c = compare(a, b, "image_auroc", n_boot=200, seed=0)
    assert (c.a, c.b, c.diff) == (1.0, 0.75, -0.25)
    assert c.low <= c.diff <= c.high <= 0.0
    line = describe(c, "swapping two scores")
    assert line.startswith("swapping two scores changed image AUROC by -25.0 [")
    assert line.endswith(": an effect (the 95 % interval excludes 0)" if c.high < 0 else ": no evidence here")
    # F1-max chance of p = 1/2 is 2p / (1 + p) = 2/3; AP chance p
    assert compare(a, b, "image_f1_max", n_boot=5).chance == pytest.approx(2 / 3)
    assert compare(a, b, "image_ap", n_boot=5).chance == pytest.approx(0.5)


def test_bootstrap_equals_an_independent_numpy_version_with_the_same_draws():
    rng = np.random.default_rng(1)
    n, S = 30, 3
    y = np.r_[np.zeros(12, int), np.ones(18, int)]
    cls = np.array(["p", "q", "r"] * 10)
    y[cls == "r"] = np.r_[0, 0, 0, np.ones(7, int)]  # every class has both labels
    sa = rng.normal(size=(S, n)) + 0.8 * y
    sb = rng.normal(size=(S, n)) + 1.0 * y
    c = compare(Results.from_scores(sa, y, cls), Results.from_scores(sb, y, cls), "image_auroc",
                n_boot=300, seed=5)
    boot, (lo, hi) = _boot_independent(sa, sb, y, cls, 300, 5)
    np.testing.assert_allclose(c.boot, boot, rtol=0, atol=1e-12)
    assert (c.low, c.high) == pytest.approx((lo, hi), abs=1e-12)
    point = lambda s: np.mean([[_auroc(s[k, cls == q], y[cls == q]) for q in "pqr"] for k in range(S)])  # noqa: E731
    assert c.diff == pytest.approx(point(sb) - point(sa), abs=1e-12)


def test_pixel_bootstrap_equals_independent_pixel_auroc_when_bins_separate_the_values():
    """Maps on a 5-level grid, 8 bins over [0, 1]: every level in its own bin, so the binned
    pixel AUROC is exact and must equal Mann-Whitney over the resampled images' pixels."""
    rng = np.random.default_rng(2)
    n, H = 8, 6
    masks = np.zeros((n, H, H), bool)
    masks[4:, 1:3, 1:4] = True
    y = masks.reshape(n, -1).any(1).astype(int)
    maps_a = rng.integers(0, 5, (1, n, H, H)) / 4.0
    maps_b = np.clip(maps_a + 0.25 * masks, 0, 1)  # B lifts the defect pixels one level
    maps_a[0, 0, 0, 0], maps_a[0, 1, 0, 0] = 0.0, 1.0  # both ends present: [lo, hi] = [0, 1]
    maps_b[0, 0, 0, 0], maps_b[0, 1, 0, 0] = 0.0, 1.0
    a = Results.from_maps(maps_a, masks, bins=8)
    b = Results.from_maps(maps_b, masks, bins=8)
    c = compare(a, b, "pixel_auroc", n_boot=50, seed=3)
    r = np.random.default_rng(3)
    strata = [np.flatnonzero(y == 0), np.flatnonzero(y == 1)]
    draws = [st[r.integers(0, st.size, size=(50, st.size))] for st in strata]
    r.integers(0, 1, size=(50, 1))
    pix = lambda m, idx: _auroc(m[0, idx].ravel(), masks[idx].ravel())  # noqa: E731
    want = [pix(maps_b, np.r_[d0, d1]) - pix(maps_a, np.r_[d0, d1]) for d0, d1 in zip(*draws)]
    np.testing.assert_allclose(c.boot, want, atol=1e-12)
    assert c.diff == pytest.approx(pix(maps_b, np.arange(n)) - pix(maps_a, np.arange(n)), abs=1e-12)
    assert c.binning_error > 0 and c.verdict == EFFECT  # lifting every defect pixel is a real effect


def test_binned_states_add_up_to_the_accumulator_over_all_images():
    rng = np.random.default_rng(4)
    maps, masks = rng.random((3, 10, 10)), np.zeros((3, 10, 10), bool)
    masks[1, 2:5, 2:5] = masks[2, 6:9, 1:3] = True
    parts = [BinnedPixelMetrics(64).update(m, g).counts() for m, g in zip(maps, masks)]
    summed = BinnedPixelMetrics.from_counts(*(sum(p[i] for p in parts) for i in range(4)), lo=0, hi=1)
    direct = BinnedPixelMetrics(64).update(maps, masks)
    assert summed.compute() == direct.compute()


def test_seeded_determinism_identical_settings_and_a_real_effect():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    sa = rng.normal(size=(2, 40)) + 0.5 * y
    a = Results.from_scores(sa, y)
    same = compare(a, Results.from_scores(sa.copy(), y), "image_auroc", n_boot=500, seed=1)
    assert (same.diff, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, NO_EVIDENCE)
    b = Results.from_scores(sa + 3.0 * y, y)  # anomalies pushed far up: AUROC near 1
    c1 = compare(a, b, "image_auroc", n_boot=500, seed=1)
    c2 = compare(a, b, "image_auroc", n_boot=500, seed=1)
    c3 = compare(a, b, "image_auroc", n_boot=500, seed=2)
    assert np.array_equal(c1.boot, c2.boot) and not np.array_equal(c1.boot, c3.boot)
    assert c1.verdict == EFFECT and c1.low > 0
    # a small, noisy difference on few images: the interval straddles 0
    noisy = Results.from_scores(sa + rng.normal(0, 0.05, sa.shape), y)
    assert compare(a, noisy, "image_auroc", n_boot=500).verdict == NO_EVIDENCE


def test_bad_input_is_one_clear_error():
    y = np.array([0, 1, 0, 1])
    a = Results.from_scores(np.arange(4.0), y)
    with pytest.raises(ValueError, match="different images"):
        compare(a, Results.from_scores(np.arange(4.0), [1, 0, 0, 1]), "image_auroc")
    with pytest.raises(ValueError, match="choose one of"):
        compare(a, a, "auroc")
    with pytest.raises(ValueError, match="no maps"):
        compare(a, a, "pixel_auroc")
    with pytest.raises(ValueError, match="only normal"):
        Results.from_scores(np.arange(4.0), y, ["x", "x", "z", "x"])


def _records(seed: int, n_seeds: int = 2):
    """Per-seed records as bagclip.evaluate.evaluate_recorded makes them, two classes, maps."""
    from bagclip.metrics import image_histograms

    rng = np.random.default_rng(seed)
    y = np.array([0, 0, 0, 1, 1, 1] * 2)
    cls = np.array(["a"] * 6 + ["b"] * 6)
    masks = np.zeros((12, 8, 8), bool)
    masks[y == 1, 2:5, 3:6] = True
    out = []
    for _ in range(n_seeds):
        maps = rng.random((12, 8, 8)) + 0.5 * masks
        out.append({"scores": maps.reshape(12, -1).max(1), "labels": y, "classes": cls,
                    **image_histograms(maps, masks, bins=64)})
    return out


def test_records_saved_by_a_run_give_the_same_comparison(tmp_path):
    from bagclip.runs import load_records, save_records

    a, b = _records(0), _records(1)
    save_records(tmp_path / "p.npz", {"ds": a[0]})
    back = load_records(tmp_path / "p.npz")["ds"]
    assert set(back) == set(a[0]) and all(np.array_equal(np.asarray(back[k]), np.asarray(a[0][k])) for k in a[0])
    ra, rb = Results.from_records(a), Results.from_records(b)
    for metric in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        c = compare(ra, rb, metric, n_boot=200)
        fresh = compare(Results.from_records(a), Results.from_records(b), metric, n_boot=200)  # no memo
        assert np.array_equal(c.boot, fresh.boot) and c.low <= c.diff <= c.high  # cached values are the same


def test_estimate_interval_table_and_chance_levels():
    from bagclip.compare import chance_of, estimate, interval_table

    ra, rb = Results.from_records(_records(0)), Results.from_records(_records(1))
    e = estimate(ra, "image_ap", n_boot=200)
    assert e.low <= e.value <= e.high and e.chance == pytest.approx(0.5)
    assert chance_of(ra, "image_f1_max") == pytest.approx(2 * 0.5 / 1.5)
    p = 9 / 64 * 3 / 6  # defect pixels per class: 3 images of 9 pixels among 6 of 64
    assert chance_of(ra, "pixel_ap") == pytest.approx(p) and chance_of(ra, "pixel_aupro") is None
    t = interval_table({"A": ra, "B": rb}, "A", ["image_auroc", "pixel_auroc"], n_boot=200)
    assert list(t.verdict[t.setting == "A"]) == ["reference"] * 2 and t[t.setting == "A"]["diff"].isna().all()
    c = compare(ra, rb, "pixel_auroc", n_boot=200)
    row = t[(t.setting == "B") & (t.metric == "pixel_auroc")].iloc[0]
    assert (row["diff"], row.diff_low, row.diff_high, row.verdict) == (c.diff, c.low, c.high, c.verdict)


def test_quantile_scale_keeps_the_metrics_and_tightens_the_binning():
    """A long-tailed map: min-max bins lump most pixels together; the quantile scale (what a
    run's record uses) keeps every rank and fills the bins evenly."""
    from bagclip.evaluate import quantile_scale
    from bagclip.metrics import PixelMetricAccumulator, image_histograms

    rng = np.random.default_rng(0)
    masks = np.zeros((40, 32, 32), bool)
    masks[20:, 10:16, 10:16] = True
    maps = (rng.exponential(0.01, (40, 32, 32)) + 0.004 * masks).astype(np.float32)
    maps[0, 0, 0] = 0.9
    exact = PixelMetricAccumulator().update(maps, masks).compute()
    errs = []
    for m, lo, hi in ((maps, None, None), (quantile_scale(maps), 0.0, 1.0)):
        h = image_histograms(m, masks, 1024, lo, hi)
        b = BinnedPixelMetrics.from_counts(h["neg"].sum(0), h["pos"].sum(0), h["w"].sum(0),
                                           int(h["regions"].sum()), h["lo"], h["hi"]).compute()
        errs.append(b["auroc_err"])
    assert errs[1] < 1e-3 < errs[0]
    assert abs(b["auroc"] - exact["auroc"]) <= errs[1] and abs(b["aupro"] - exact["aupro"]) < 1e-3
