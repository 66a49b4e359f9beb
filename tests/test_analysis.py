"""bagclip.analysis against independent computations (loops, brute force, scikit-learn)."""
import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from bagclip import analysis as an
from bagclip.data.io import Sample
from bagclip.sag import build_graph


def test_patch_fraction_equals_a_loop_over_patches():
    rng = np.random.default_rng(0)
    mask = rng.random((48, 48)) > 0.7
    got = an.patch_fraction(mask, 6)
    want = [mask[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].mean() for r in range(6) for c in range(6)]
    assert np.allclose(got, want)
    assert an.patch_fraction(np.zeros((10, 10)), 5).sum() == 0


def test_grid_distance_and_locality_by_hand():
    G = 4
    d = an.grid_distance(G)
    assert d[0, 5] == 1 and d[0, 15] == 3 and d[5, 10] == 1 and (np.diag(d) == 0).all()
    A = np.zeros((16, 16))
    A[0, [1, 5, 15]] = A[[1, 5, 15], 0] = 1.0  # node 0: two adjacent, one far
    loc = an.locality(A, G)
    assert loc[0] == pytest.approx(2 / 3)
    assert loc[15] == 0.0 and loc[1] == 1.0 and math.isnan(loc[2])
    # baseline: adjacent share among all other patches, by brute force
    want = np.mean([sum(1 for j in range(16) if j != i and d[i, j] <= 1) / 15 for i in range(16)])
    assert an.spatial_baseline(G) == pytest.approx(want)


def test_neighbours_and_degrees_follow_the_matrix():
    A = torch.tensor([[0, .5, 0, .2], [.5, 0, .1, 0], [0, .1, 0, 0], [.2, 0, 0, 0]])
    idx, w = an.neighbours(A, 0)
    assert list(idx) == [1, 3] and np.allclose(w, [.5, .2])
    assert list(an.degrees(A)) == [2, 2, 1, 1]


def test_mean_pairwise_cosine_equals_a_double_loop():
    f = torch.randn(9, 5, generator=torch.Generator().manual_seed(1))
    z = [v / v.norm() for v in f.double()]
    want = np.mean([float(z[i] @ z[j]) for i in range(9) for j in range(9) if i != j])
    assert an.mean_pairwise_cosine(f) == pytest.approx(want, abs=1e-12)
    assert an.mean_pairwise_cosine(torch.ones(4, 3)) == pytest.approx(1.0)


def test_dirichlet_energy_equals_the_edge_sum():
    h = torch.randn(30, 6, generator=torch.Generator().manual_seed(2))
    parts = build_graph(h, 4, return_parts=True)
    A_star = (parts.A_sym + torch.eye(30)).double()
    d = A_star.sum(1)
    f = torch.randn(30, 3, generator=torch.Generator().manual_seed(3)).double()
    edge = 0.0
    for i in range(30):
        for j in range(30):
            edge += 0.5 * float(A_star[i, j]) * float(((f[i] / d[i].sqrt() - f[j] / d[j].sqrt()) ** 2).sum())
    assert an.dirichlet_energy(f, parts.A_norm, normalise=False) == pytest.approx(edge, rel=1e-6)
    assert an.dirichlet_energy(f, parts.A_norm) == pytest.approx(edge / float((f * f).sum()), rel=1e-6)
    # a degree-scaled constant signal is perfectly smooth
    assert an.dirichlet_energy(d.sqrt()[:, None].repeat(1, 2), parts.A_norm) == pytest.approx(0, abs=1e-6)


def test_oversmoothing_runs_the_real_gcn_and_smooths():
    from bagclip.sag import SAG

    h = torch.randn(49, 16, generator=torch.Generator().manual_seed(4))
    df = an.oversmoothing(h, 5, 16, depths=[1, 3, 8], seeds=[0])
    torch.manual_seed(0)
    ref = SAG(16, 16, 5, 3)(h)
    row = df[(df.p == 3)].iloc[0]
    assert row.mean_cos == pytest.approx(an.mean_pairwise_cosine(ref), abs=1e-9)
    assert list(df.p) == [0, 1, 3, 8]
    assert df.set_index("p").dirichlet[8] < df.set_index("p").dirichlet[0]


def test_f1_max_threshold_equals_brute_force_with_sklearn():
    rng = np.random.default_rng(5)
    for _ in range(20):
        s = np.round(rng.random(25), 1)  # ties on purpose
        y = rng.random(25) > 0.6
        if not y.any():
            continue
        thr, f1 = an.f1_max_threshold(s, y)
        best = max(f1_score(y, s >= t) for t in np.unique(s))
        assert f1 == pytest.approx(best, abs=1e-12)
        assert f1_score(y, s >= thr) == pytest.approx(best, abs=1e-12)
    assert math.isnan(an.f1_max_threshold([0.1, 0.2], [0, 0])[0])


def _samples(labels, classes=None, defects=None):
    return [Sample(f"/x/{i}.png", None, (classes or ["a"] * len(labels))[i],
                   (defects or ["good" if l == 0 else "crack" for l in labels])[i], l)
            for i, l in enumerate(labels)]


def test_outcomes_and_failure_table_by_hand():
    scores = np.array([0.9, 0.2, 0.7, 0.45, 0.6])
    labels = [1, 1, 0, 0, 1]
    assert list(an.outcomes(scores, labels, 0.5)) == ["TP", "FN", "FP", "TN", "TP"]
    tab = an.failure_table(_samples(labels), scores, 0.5)
    assert list(tab["index"]) == [1, 2, 3, 4, 0]  # FN by .3, FP by .2, then correct by margin
    assert tab.error.iloc[0] == pytest.approx(0.3) and tab.error.iloc[-1] == pytest.approx(-0.4)
    t2 = an.failure_table(_samples(labels), scores, 0.8)
    assert dict(t2.outcome.value_counts()) == {"FN": 2, "TN": 2, "TP": 1}


def test_filter_failures():
    labels = [1, 1, 0, 0]
    s = _samples(labels, ["a", "b", "a", "b"], ["crack", "hole", "good", "good"])
    tab = an.failure_table(s, [0.1, 0.9, 0.8, 0.2], 0.5)  # FN, TP, FP, TN
    assert set(an.filter_failures(tab)["index"]) == {0, 2}
    assert list(an.filter_failures(tab, cls="a", kind="FN")["index"]) == [0]
    assert list(an.filter_failures(tab, defect="hole", kind="all")["index"]) == [1]
    assert list(an.filter_failures(tab, kind="TN")["index"]) == [3]
    with pytest.raises(ValueError):
        an.filter_failures(tab, kind="bad")


def test_pixel_outcomes_and_worst_patch():
    amap = np.zeros((8, 8))
    mask = np.zeros((8, 8), bool)
    mask[0:2, 0:2] = True           # defect in patch 0 (grid 4, 2 px patches), found
    amap[0:2, 0:2] = 0.9
    amap[6:8, 6:8] = 0.8            # false alarm in patch 15
    amap[6, 0] = 0.7                # one wrong pixel in patch 12
    codes = an.pixel_outcomes(amap, mask, 0.5)
    assert (codes[0:2, 0:2] == 1).all() and (codes[6:8, 6:8] == 2).all() and codes[3, 3] == 0
    assert an.worst_patch(amap, mask, 0.5, 4) == 15
    mask[4, 4] = True               # a missed pixel does not outweigh four false ones
    assert an.pixel_outcomes(amap, mask, 0.5)[4, 4] == 3
    assert an.worst_patch(amap, mask, 0.5, 4) == 15


def test_chance_levels_match_random_detectors():
    from bagclip.metrics import binary_metrics

    labels = np.array([1] * 600 + [0] * 1400)  # AP's chance level p holds for large n
    c = an.chance_levels(labels)
    rng = np.random.default_rng(6)
    sims = [binary_metrics(rng.random(2000), labels) for _ in range(60)]
    assert np.mean([m["auroc"] for m in sims]) == pytest.approx(c["auroc"], abs=0.01)
    assert np.mean([m["ap"] for m in sims]) == pytest.approx(c["ap"], abs=0.03)
    assert c["f1_max"] == pytest.approx(f1_score(labels, np.ones(2000)))


def test_separation_by_hand():
    f = np.array([[0.0, 0], [0, 2], [4, 0], [4, 2]])
    # means (0,1) and (4,1): distance 4; every row is 1 from its mean
    assert an.separation(f, [0, 0, 1, 1]) == pytest.approx(4.0)
    assert math.isnan(an.separation(f, [1, 1, 1, 1]))


def test_tap_text_maps_equal_the_formula(tiny_backbone):
    bb = tiny_backbone
    g = bb.grid
    patches = torch.randn(2, len(bb.taps), g * g, bb.width, generator=torch.Generator().manual_seed(7))
    text = torch.nn.functional.normalize(torch.randn(2, bb.embed_dim), dim=-1)
    maps = an.tap_text_maps(bb, patches, text, 100.0)
    assert maps.shape == (2, len(bb.taps), g, g)
    for b, l, i in itertools.product(range(2), range(len(bb.taps)), (0, g * g - 1, 17)):
        with torch.no_grad():
            z = bb.visual.ln_post(patches[b, l, i]) @ bb.visual.proj
        z = z / z.norm()
        p = torch.softmax(100 * (text @ z), 0)[1]
        assert float(maps[b, l].flatten()[i]) == pytest.approx(float(p), abs=1e-5)
