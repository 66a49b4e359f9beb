"""bagclip.calibrate: the order-statistic rule against numpy and by hand, its FPR on fresh
normals (a simple distribution, then the kit's synthetic images through a real scorer), the
refusal of too few images, and the file's checks."""
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from scipy.stats import betabinom

from bagclip import calibrate as C


def test_hand_made_scores():
    s = np.arange(1.0, 21.0)  # n = 20, scores 1..20
    # fpr 10 %: k = ceil(0.9 * 21) = ceil(18.9) = 19 -> t = 19
    assert C.threshold_at_fpr(s[::-1], 0.10) == 19.0
    # fpr 5 %: k = ceil(0.95 * 21) = ceil(19.95) = 20 -> the largest
    assert C.threshold_at_fpr(s, 0.05) == 20.0
    # n = 19 at 5 %: k = ceil(0.95 * 20) = 19 exactly (floating point gives 19.000000000000004)
    assert C.threshold_at_fpr(s[:19], 0.05) == 19.0
    with pytest.raises(C.CalibrationError, match="needs at least 19"):
        C.threshold_at_fpr(s[:18], 0.05)


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.1, 0.2, 0.25, 0.3, 1 / 3, 0.5])
def test_rule_matches_numpy_and_exact_arithmetic(fpr):
    rng = np.random.default_rng(0)
    f = Fraction(fpr).limit_denominator(1000)  # exact: no floating-point ceil surprises
    for n in (C.min_images(fpr), C.min_images(fpr) + 40, 3 * C.min_images(fpr) + 17):
        s = np.round(rng.normal(size=n), 1)  # rounded: ties present
        k = math.ceil((1 - f) * (n + 1))
        # numpy's inverse of the empirical CDF at k/n is the k-th smallest value
        assert C.threshold_at_fpr(s, fpr) == np.quantile(s, k / n, method="inverted_cdf")
        assert C.threshold_at_fpr(s, fpr) == np.sort(s)[k - 1]
    # min_images: the smallest n with ceil((1 - fpr)(n + 1)) <= n
    n = 1
    while math.ceil((1 - f) * (n + 1)) > n:
        n += 1
    assert C.min_images(fpr) == n


def test_tail_p_value_agrees_with_the_threshold():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=59), 1)
    cal = C.Calibration("x", 0.05, 0.01, C.threshold_at_fpr(s, 0.05), 1.0, sorted(s.tolist()), [], {})
    for x in np.r_[np.round(rng.normal(size=500) * 1.5, 1), s]:
        assert (cal.tail(x) <= 0.05) == cal.is_anomalous(x)


def test_fpr_on_fresh_normals_is_the_chosen_rate_in_expectation():
    """Many calibration sets of n = 39 N(0, 1) scores at 5 %, 50 fresh normals each: the share
    above threshold is (n + 1 - k) / (n + 1) = 2/40 in expectation; each set's false-positive
    count is beta-binomial (m, n + 1 - k, k), whose spread sets the tolerance."""
    rng = np.random.default_rng(2)
    R, n, m, fpr = 4000, 39, 50, 0.05
    k = math.ceil((1 - fpr) * (n + 1) - 1e-9)
    cal = rng.normal(size=(R, n))
    fresh = rng.normal(size=(R, m))
    t = np.array([C.threshold_at_fpr(c, fpr) for c in cal])
    fp = (fresh > t[:, None]).sum(1)
    dist = betabinom(m, n + 1 - k, k)
    assert abs(fp.mean() - dist.mean()) < 4 * math.sqrt(dist.var() / R)
    assert dist.mean() / m == pytest.approx(fpr)
    # the naive rule (numpy's default quantile at 1 - fpr) shows the check has teeth
    naive = np.quantile(cal, 1 - fpr, axis=1)
    assert (fresh > naive[:, None]).sum(1).mean() > dist.mean() + 10 * math.sqrt(dist.var() / R)


def _normals(folder, n, start, size=112):
    from bagclip.data.synth import make_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.fromarray(make_image("brushed_metal", "good", size, seed=0, index=i, split="calib").image) \
            .save(folder / f"{i:04d}.png")
    return folder


def test_threshold_from_synthetic_normals_holds_on_fresh_ones(tiny_cfg, tiny_backbone, tmp_path):
    """The training-free scorer on a random backbone: scores mean nothing here, but normal
    images of one class are exchangeable, so the rule must hold all the same."""
    from bagclip.inference import predict
    from bagclip.zeroshot import ZeroShot

    n, m = 59, 120
    cal = C.calibrate(_normals(tmp_path / "cal", n, 0), "brushed_metal", fpr=0.05, cfg=tiny_cfg,
                      backbone=tiny_backbone)
    assert cal.n_images == n and cal.order == 57 and cal.image_threshold == cal.scores[56]
    preds = predict(_normals(tmp_path / "fresh", m, 10_000), class_name="brushed_metal", cfg=tiny_cfg,
                    backbone=tiny_backbone, model=ZeroShot(tiny_backbone))
    fp = sum(cal.is_anomalous(p.image_score) for p in preds)
    lo, hi = betabinom(m, n + 1 - 57, 57).interval(0.999)
    assert lo <= fp <= hi, fp
    # predict scores a calibration image as calibrate did, within the unpadded path's bound
    # (both skip the padding, in batches of other sizes: docs/decisions.md)
    again = predict(tmp_path / "cal" / "0000.png", class_name="brushed_metal", cfg=tiny_cfg,
                    backbone=tiny_backbone, model=ZeroShot(tiny_backbone))[0].image_score
    assert any(abs(again - s) <= 1e-4 for s in cal.scores)
    # 1.0 on the normalised map = the pixel threshold: ~1 % of normal pixels lie above it
    frac = np.mean([np.mean(cal.normalise(p.anomaly_map) > 1.0) for p in preds])
    assert 0.002 < frac < 0.05, frac
    # the file round-trips and checks where it came from
    path = C.save_calibration(cal, C.calibration_path(tmp_path, "brushed_metal"))
    ident = C.scorer_identity(tiny_cfg)
    assert C.load_calibration(path, scorer=ident, class_name="brushed_metal") == cal
    with pytest.raises(C.CalibrationError, match="another scorer.*smoothing_sigma"):
        C.load_calibration(path, scorer=C.scorer_identity(tiny_cfg.replace(smoothing_sigma=0.0)))
    with pytest.raises(C.CalibrationError, match="not 'screw'"):
        C.load_calibration(path, class_name="screw")
    data = json.loads(path.read_text())
    data["image_threshold"] *= 0.9
    path.write_text(json.dumps(data))
    with pytest.raises(C.CalibrationError, match="inconsistent"):
        C.load_calibration(path)
    assert len({h["sha256"] for h in cal.images}) == n


def test_three_images_at_one_percent_refused_with_one_line(tmp_path, monkeypatch):
    folder = _normals(tmp_path / "three", 3, 0)
    monkeypatch.setattr(C, "_scorer_parts", lambda *a: pytest.fail("scored before refusing"))
    with pytest.raises(C.CalibrationError) as err:
        C.calibrate(folder, "brushed_metal", fpr=0.01)
    msg = str(err.value)
    assert "\n" not in msg and "3 normal images cannot give FPR 0.01" in msg
    assert "at least 99" in msg and "fpr >= 0.25" in msg


def test_operating_point_by_hand():
    s, y = [0.1, 0.5, 0.6, 0.9], [0, 0, 1, 1]
    assert C.operating_point(s, y, 0.3) == {"threshold": 0.3, "precision": 2 / 3, "recall": 1.0,
                                            "fpr": 0.5, "n_anomalous": 2, "n_normal": 2}
    op = C.operating_point(s, y, 0.6)  # strict: 0.6 itself is not above the threshold
    assert (op["precision"], op["recall"], op["fpr"]) == (1.0, 0.5, 0.0)
    assert math.isnan(C.operating_point(s, y, 0.95)["precision"])  # nothing called anomalous


def test_calibrated_map_figure_says_what_one_means():
    from bagclip.viz import calibrated_map_figure, png_bytes

    cal = C.Calibration("screw", 0.05, 0.01, 0.5, 0.25, [0.1] * 19, [], {})
    m = cal.normalise(np.linspace(0, 0.5, 64, dtype=np.float32).reshape(8, 8))
    assert m.max() == pytest.approx(2.0)  # 0.5 / 0.25
    fig = calibrated_map_figure(m, cal.meaning())
    bar = fig.axes[1]
    assert bar.get_ylabel() == "1.0 = top 1 % of normal pixels (screw, 19 normal images)"
    assert png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_binomial_interval_is_clopper_pearson():
    from scipy.stats import binomtest

    for k, n in [(0, 40), (1, 40), (7, 40), (20, 40), (40, 40), (3, 7), (0, 1)]:
        ci = binomtest(k, n).proportion_ci(0.95, method="exact")
        assert C.binomial_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    # the closed forms at the ends: P(0 of n | p) = (1 - p)^n = alpha/2 at the upper end
    assert C.binomial_interval(0, 40)[1] == pytest.approx(1 - 0.025 ** (1 / 40))
    assert C.binomial_interval(40, 40)[0] == pytest.approx(0.025 ** (1 / 40))
    for bad in [(5, 4), (-1, 4), (0, 0)]:
        with pytest.raises(ValueError):
            C.binomial_interval(*bad)


def test_observed_fpr_counts_strictly_above_and_carries_its_interval():
    out = C.observed_fpr([0.1, 0.5, 0.5, 0.9], 0.5)  # 0.5 itself is not above: one of four
    assert (out["false_positives"], out["n_normal"], out["fpr"]) == (1, 4, 0.25)
    assert (out["low"], out["high"]) == C.binomial_interval(1, 4)


def test_calibration_spread_by_hand():
    """n = 20 at 5 %: k = 20, the threshold is the highest of 20 scores, its rate Beta(1, 20)
    (CDF 1 - (1 - x)^20), the count among 40 fresh normals BetaBinomial(40, 1, 20)."""
    from scipy.stats import betabinom

    s = C.calibration_spread(20, 0.05, m=40, observed=7)
    assert s["k"] == 20 and s["expected"] == pytest.approx(1 / 21)
    assert s["rate_low"] == pytest.approx(1 - 0.975 ** (1 / 20))
    assert s["rate_high"] == pytest.approx(1 - 0.025 ** (1 / 20))
    d = betabinom(40, 1, 20)
    assert (s["count_low"], s["count_high"]) == tuple(int(x) for x in d.interval(0.95)) == (0, 8)
    assert s["p_at_least"] == pytest.approx(sum(d.pmf(j) for j in range(7, 41)))
    assert "count_low" not in C.calibration_spread(39, 0.05)
    with pytest.raises(C.CalibrationError, match="needs at least 19"):
        C.calibration_spread(10, 0.05)


def test_calibrated_vs_stretched_puts_each_raw_map_on_its_own_range_and_the_rest_on_one():
    from bagclip.viz import calibrated_vs_stretched, png_bytes

    cal = C.Calibration("screw", 0.05, 0.01, 0.5, 0.25, [0.1] * 19, [], {})
    rng = np.random.default_rng(0)
    maps = np.stack([rng.random((16, 16), dtype=np.float32) * s for s in (0.1, 0.6)])
    images = np.zeros((2, 16, 16, 3), np.uint8)
    masks = np.zeros((2, 16, 16), bool)
    masks[1, 4:8, 4:8] = True
    fig = calibrated_vs_stretched(images, masks, maps, cal, ["normal", "defect"], vmax=2.0)
    shown = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(shown) == 6  # 2 rows x (image, stretched, calibrated)
    for i in range(2):
        stretched, calibrated = shown[3 * i + 1], shown[3 * i + 2]
        assert stretched.get_clim() == pytest.approx((maps[i].min(), maps[i].max()))
        assert calibrated.get_clim() == (0.0, 2.0)
        assert np.allclose(calibrated.get_array(), maps[i] / 0.25)
    labels = [ax.get_ylabel().replace("\n", " ") for ax in fig.axes]
    assert labels.count(cal.meaning()) == 2
    assert sum(lab.startswith("own range [") for lab in labels) == 2
    assert png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_rates_hand_worked():
    # Fisher's tea-tasting-style table [[1, 9], [11, 3]]: the two-sided p is the sum of the
    # hypergeometric probabilities (margins 10/14, 12/12) no larger than the observed one,
    # 0.002759 (the textbook value); worked here from binomial coefficients, not scipy.
    from math import comb
    rows, col, n = (10, 14), 12, 24
    prob = {a: comb(rows[0], a) * comb(rows[1], col - a) / comb(n, col) for a in range(0, 11)}
    p_hand = sum(q for q in prob.values() if q <= prob[1] * (1 + 1e-9))
    r = C.compare_rates(1, 10, 11, 14)
    assert r["p"] == pytest.approx(p_hand, rel=1e-9) and r["p"] == pytest.approx(0.002759, abs=1e-6)
    assert r["differ"] and r["rate_a"] == 0.1 and r["rate_b"] == pytest.approx(11 / 14)
    assert r["ci_b"] == C.binomial_interval(11, 14)
    # equal counts: p = 1, no difference; k = 0 gives the closed-form upper limit
    same = C.compare_rates(0, 10, 0, 10)
    assert same["p"] == pytest.approx(1.0) and not same["differ"]
    assert same["ci_a"][1] == pytest.approx(1 - 0.025 ** (1 / 10))
