"""Sweeps and ablation: each point equals an independent train + evaluate, runs resume, and the
summaries equal a hand computation."""
import numpy as np
import pandas as pd
import pytest

import bagclip.train
from bagclip.cache import FeatureCache
from bagclip.viz import plot_sensitivity
from bagclip.sweeps import ABLATIONS, ablate, summarize, sweep, table3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from bagclip.data import load_dataset
    from bagclip.data.synth import AUX_CLASSES, TARGET_CLASSES, generate

    root = generate(tmp_path_factory.mktemp("synth"), seed=1, size=112, n_train=1, n_test_good=2,
                    n_test_bad=2)
    aux = load_dataset("synth", root, "test", classes=AUX_CLASSES[:2])
    t = load_dataset("synth", root, "test", classes=TARGET_CLASSES)
    return aux, {"A": [s for s in t if s.class_name in TARGET_CLASSES[:2]],
                 "B": [s for s in t if s.class_name in TARGET_CLASSES[2:4]]}


@pytest.fixture(scope="module")
def cache(tiny_backbone, tmp_path_factory):
    return FeatureCache(tiny_backbone, tmp_path_factory.mktemp("cache"))


@pytest.fixture()
def cfg(tiny_cfg):
    return tiny_cfg.replace(epochs=1, batch_size=4)


def test_each_point_equals_an_independent_run(cfg, tiny_backbone, cache, data, tmp_path):
    from bagclip.evaluate import evaluate_cached
    from bagclip.train import train

    aux, targets = data
    df = sweep(cfg, "k", [3, 6], aux, targets, seeds=(0, 1), backbone=tiny_backbone, cache=cache,
               out_dir=tmp_path, progress=False)
    assert len(df) == 2 * 2 * 2 and df.attrs["param"] == "k"
    assert sorted(df.value.unique()) == [3, 6]
    model = train(cfg.replace(k=6, seed=1), aux, tiny_backbone, None, cache=cache, progress=False).model
    ref = evaluate_cached(model, cfg.replace(k=6, seed=1), tiny_backbone, cache, targets["B"])
    row = df[(df.value == 6) & (df.seed == 1) & (df.dataset == "B")].iloc[0]
    for k in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert row[k] == pytest.approx(ref[k], abs=1e-12)
    assert not np.array_equal(df[df.value == 3].pixel_auroc.to_numpy(), df[df.value == 6].pixel_auroc.to_numpy())


def test_finished_runs_are_reused_and_stale_ones_recomputed(cfg, tiny_backbone, cache, data, tmp_path,
                                                            monkeypatch):
    aux, targets = data
    kw = dict(backbone=tiny_backbone, cache=cache, out_dir=tmp_path, progress=False)
    first = sweep(cfg, "gcn_layers", [1, 2], aux, targets, **kw)

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(bagclip.train, "train", no_training)
    again = sweep(cfg, "gcn_layers", [1, 2], aux, targets, **kw)
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(AssertionError, match="trained again"):  # other targets: re-evaluated,
        sweep(cfg, "gcn_layers", [1], aux, {"A": targets["A"]}, **kw)  # through train (resume)


def test_ablation_variants_and_bad_settings(cfg, tiny_backbone, cache, data):
    aux, targets = data
    assert {"without SAFR", "without SAG", "full BAG-CLIP"} <= set(ABLATIONS)
    df = ablate(cfg, aux, {"A": targets["A"]}, variants={"full": {}, "no SAG": {"use_sag": False}},
                backbone=tiny_backbone, cache=cache, progress=False)
    assert list(df.setting) == ["full", "no SAG"]
    assert df.iloc[0].pixel_auroc != df.iloc[1].pixel_auroc
    with pytest.raises(ValueError, match="changes the backbone"):
        ablate(cfg, aux, targets, variants={"vv": {"detail_attention": "vv"}}, backbone=tiny_backbone)
    with pytest.raises(ValueError, match="k=1"):
        sweep(cfg, "k", [1], aux, targets, backbone=tiny_backbone)
    with pytest.raises(ValueError, match="unknown Config field"):
        sweep(cfg, "kk", [1], aux, targets, backbone=tiny_backbone)
    with pytest.raises(ValueError, match="needs samples"):
        sweep(cfg, "k", [3], aux, {"A": []}, backbone=tiny_backbone)


def _frame():
    rng = np.random.default_rng(0)
    rows = [{"setting": s, "seed": seed, "dataset": d, **{k: rng.random() for k in
            ("image_auroc", "image_f1_max", "image_ap", "pixel_auroc", "pixel_f1_max", "pixel_ap", "pixel_aupro")}}
            for s in ("x", "y") for seed in (0, 1, 2) for d in ("A", "B")]
    return pd.DataFrame(rows)


def test_summary_and_table3_by_hand():
    df = _frame()
    s = summarize(df)
    x = df[df.setting == "x"]
    a = x[x.dataset == "A"].image_auroc.to_numpy() * 100
    assert s.loc[("x", "A"), ("image_auroc", "mean")] == pytest.approx(a.mean())
    assert s.loc[("x", "A"), ("image_auroc", "std")] == pytest.approx(np.std(a, ddof=1))
    per_seed = [(x[(x.seed == k) & (x.dataset == "A")].pixel_ap.item()
                 + x[(x.seed == k) & (x.dataset == "B")].pixel_ap.item()) / 2 * 100 for k in (0, 1, 2)]
    assert s.loc[("x", "Average"), ("pixel_ap", "mean")] == pytest.approx(np.mean(per_seed))
    assert s.loc[("x", "Average"), ("pixel_ap", "std")] == pytest.approx(np.std(per_seed, ddof=1))
    t = table3(df)
    assert list(t.columns) == ["image_auroc", "image_f1_max", "image_ap", "pixel_auroc", "pixel_f1_max", "pixel_ap"]
    m, sd = a.mean(), np.std(a, ddof=1)
    assert t.loc[("x", "A"), "image_auroc"] == f"{m:.1f} ± {sd:.1f}"
    one = table3(df[df.seed == 0])
    assert "±" not in one.loc[("y", "B"), "pixel_ap"]


def test_plot_has_image_and_pixel_panels_per_dataset():
    df = _frame().rename(columns={"setting": "value"})
    df["value"] = df["value"].map({"x": 5, "y": 15})
    fig = plot_sensitivity(df, "k", paper_default=15)
    assert len(fig.axes) == 4
    assert [len(ax.lines) for ax in fig.axes] == [4, 5, 4, 5]  # 3/4 metrics + the default marker
