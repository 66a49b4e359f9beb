"""bagclip.viz: every widget callback with at least two non-default values changes what is
drawn (and the numbers behind it); figures used by reproduce and the lessons render."""
import numpy as np
import pandas as pd
import pytest
import torch

from bagclip import analysis as an, viz
from bagclip.data.io import Sample

G = 8
S = 64


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (S, S, 3), dtype=np.uint8)
    mask = np.zeros((S, S), bool)
    mask[8:24, 40:56] = True
    h = torch.randn(G * G, 12, generator=torch.Generator().manual_seed(0))
    h[an.patch_fraction(mask, G) > 0] += 3.0  # defect patches alike in feature space
    return image, mask, h


def changed(before, after) -> bool:
    return before.shape != after.shape or bool((before != after).any())


def test_sag_explorer_node_k_and_click_each_change_the_view(scene):
    image, mask, h = scene
    ex = viz.SAGExplorer(image, h, G, k=5, mask=mask, k_values=[3, 5, 10, 20])
    default = ex.stats()
    assert an.patch_fraction(mask, G)[default["node"]] > 0  # starts on the defect
    last = viz.figure_array(ex.fig)
    seen = {default["node"]}
    for node in (0, 37):  # two other patches
        ex.set_node(node)
        st, now = ex.stats(), viz.figure_array(ex.fig)
        assert st["node"] == node and changed(last, now)
        assert list(st["neighbours"]) == list(an.neighbours(an.sag_parts(h, 5).A_sym, node)[0])
        seen.add(node)
        last = now
    n_edges = []
    for k in (3, 20):  # two other K
        ex.set_k(k)
        st, now = ex.stats(), viz.figure_array(ex.fig)
        assert st["k"] == k and changed(last, now)
        n_edges.append(an.degrees(ex.parts().A_sym).mean())
        last = now
    assert n_edges[1] > n_edges[0]  # a larger K gives a denser graph
    for (r, c), node in (((0, 7), 7), ((7, 0), 56)):  # clicks on two cells
        ex.click(r, c)
        now = viz.figure_array(ex.fig)
        assert ex.node == node and changed(last, now)
        last = now
    with pytest.raises(ValueError):
        ex.set_node(G * G)


def test_sag_explorer_widget_controls_drive_the_same_callbacks(scene):
    image, mask, h = scene
    ex = viz.SAGExplorer(image, h, G, k=5, mask=mask, k_values=[3, 5, 10], click_cells=4)
    w = ex.widget
    assert w is ex.widget  # built once
    last = viz.figure_array(ex.fig)
    for v in (3, 50):
        ex._node_slider.value = v
        now = viz.figure_array(ex.fig)
        assert ex.node == v and changed(last, now)
        last = now
    for k in (3, 10):
        ex._k_slider.value = k
        now = viz.figure_array(ex.fig)
        assert ex.k == k and changed(last, now)
        last = now
    buttons = ex._grid.children
    assert len(buttons) == 16  # a 4 x 4 click grid over the 8 x 8 patches
    for i, node in ((0, 9), (15, 63)):
        buttons[i].click()
        assert ex.node == node and ex._node_slider.value == node
        now = viz.figure_array(ex.fig)
        assert changed(last, now)
        last = now


@pytest.fixture(scope="module")
def failures():
    rng = np.random.default_rng(1)
    n = 16
    classes = ["wood", "tile"] * 8
    labels = [1 if i % 3 else 0 for i in range(n)]
    defects = ["good" if l == 0 else ("crack" if i % 2 else "subtle") for i, l in enumerate(labels)]
    samples = [Sample(f"/x/{i}.png", None, c, d, l) for i, (c, d, l) in enumerate(zip(classes, defects, labels))]
    scores = np.clip(0.5 * np.array(labels) + 0.6 * rng.random(n), 0, 1)
    masks = np.zeros((n, S, S), bool)
    maps = 0.3 * rng.random((n, S, S))
    for i, l in enumerate(labels):
        if l:
            masks[i, 10 + i:30 + i, 10:30] = True
            maps[i][masks[i]] += 0.5 * (i % 2)  # "subtle" defects stay dim
    images = rng.integers(0, 255, (n, S, S, 3), dtype=np.uint8)
    feats = torch.randn(n, G * G, 6, generator=torch.Generator().manual_seed(2))
    return samples, scores, maps, masks, (lambda i: images[i]), (lambda i: feats[i])


def test_failure_gallery_defaults_to_f1_max(failures):
    samples, scores, maps, masks, images, feats = failures
    g = viz.FailureGallery(samples, scores, maps, masks, images, feats, grid=G, k=4)
    thr, _ = an.f1_max_threshold(scores, [s.label for s in samples])
    assert g.threshold == thr
    assert set(g.selection().outcome) <= {"FP", "FN"}
    # normal images are not all "false alarms", anomalous ones not all "missed"
    tab = g.table()
    assert (tab.outcome == "TN").any() and (tab.outcome == "TP").any()


def test_failure_gallery_threshold_moves_labels_and_drawing(failures):
    samples, scores, maps, masks, images, feats = failures
    g = viz.FailureGallery(samples, scores, maps, masks, images, feats, grid=G, k=4)
    last, counts = viz.figure_array(g.fig), g.table().outcome.value_counts().to_dict()
    for t in (0.2, 0.95):  # two non-default thresholds
        g.set_threshold(t)
        now, c = viz.figure_array(g.fig), g.table().outcome.value_counts().to_dict()
        assert g.threshold == t and changed(last, now) and c != counts
        assert ((g.table().outcome == "FP") == ((g.table().score >= t) & (g.table().label == 0))).all()
        last, counts = now, c
    assert g.table().query("outcome == 'FP'").empty  # at 0.95 nothing normal is flagged
    assert (viz.FailureGallery(samples, scores, maps, masks, images, feats, grid=G, k=4, threshold=0.2)
            .table().query("outcome == 'FN'").empty)


def test_failure_gallery_filters_and_rank(failures):
    samples, scores, maps, masks, images, feats = failures
    g = viz.FailureGallery(samples, scores, maps, masks, images, feats, grid=G, k=4, threshold=0.7)
    last = viz.figure_array(g.fig)
    for arg, column, values in (("kind", "outcome", ("FN", "TP")), ("cls", "class", ("wood", "tile")),
                                ("defect", "defect", ("crack", "subtle"))):
        for v in values:
            g.set_filter(**{arg: v})
            sel = g.selection()
            assert len(sel) and (sel[column] == v).all() and g.current()[column] == v
            now = viz.figure_array(g.fig)
            assert changed(last, now)
            last = now
        g.set_filter(**{arg: "all"})
    errors = list(g.selection().error)
    assert errors == sorted(errors, reverse=True)  # worst first
    for r in (1, 5):
        g.set_rank(r)
        assert g.current()["index"] == g.selection().iloc[r]["index"]
        now = viz.figure_array(g.fig)
        assert changed(last, now)
        last = now
    g.set_filter(cls="wood", defect="good", kind="FN")  # nothing matches: says so
    assert g.current() is None
    viz.figure_array(g.fig)


def test_failure_gallery_widget_controls(failures):
    samples, scores, maps, masks, images, feats = failures
    g = viz.FailureGallery(samples, scores, maps, masks, images, feats, grid=G, k=4)
    g.widget
    last = viz.figure_array(g.fig)
    for t in (0.3, 0.8):
        g._thr.value = t
        assert g.threshold == pytest.approx(t) and changed(last, viz.figure_array(g.fig))
        last = viz.figure_array(g.fig)
    for kind in ("TN", "FP"):
        g._kind.value = kind
        assert g.kind == kind
        assert g._rank.max == max(len(g.selection()) - 1, 0)
    g._cls.value = "tile"
    assert g.cls == "tile" and (g.selection()["class"] == "tile").all()
    g._def.value = "good"
    assert g.defect == "good"
    g._reset.click()
    assert g.threshold == g.default_threshold and g._thr.value == pytest.approx(g.default_threshold)


def test_live_loss_collects_and_redraws():
    live = viz.LiveLoss(every=2)
    for step in range(1, 6):
        live.update(step, {"total": 1.0 / step, "cls": 0.1, "seg": 0.9 / step})
    first = viz.figure_array(live.fig)
    live.update(6, {"total": 5.0, "cls": 0.1, "seg": 4.9})
    assert live.history[-1] == 5.0 and changed(first, viz.figure_array(live.fig))


def test_sensitivity_figure_marks_the_quoted_values():
    rows = [{"setting": f"k={k}", "value": k, "seed": 0, "dataset": "synth", "image_auroc": 0.6, "image_f1_max": 0.7,
             "image_ap": 0.6, "pixel_auroc": 0.8, "pixel_f1_max": 0.2, "pixel_ap": 0.1, "pixel_aupro": 0.5}
            for k in (5, 15, 30)]
    fig = viz.plot_sensitivity(pd.DataFrame(rows), "k", paper_default=15)
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("quoted" in t for t in labels)
    off = viz.plot_sensitivity(pd.DataFrame(rows), "k", quoted=False)
    assert not any("quoted" in t.get_text() for ax in off.axes if ax.get_legend() for t in ax.get_legend().get_texts())


def test_ablation_figure_puts_ours_beside_the_quoted_table():
    from bagclip.sweeps import ABLATIONS

    rows = [{"setting": v, "seed": 0, "dataset": d, **{k: 0.5 for k in
             ("image_auroc", "image_f1_max", "image_ap", "pixel_auroc", "pixel_f1_max", "pixel_ap", "pixel_aupro")}}
            for v in ABLATIONS for d in ("A", "B")]
    fig = viz.ablation_figure(pd.DataFrame(rows))
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "paper (quoted, Table 3)" in texts
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert 50.0 in heights and 84.3 in heights  # ours (0.5 -> 50 %) and the paper's full model, quoted


def test_panel_and_graph_figures_render(scene):
    image, mask, h = scene
    amap = np.random.default_rng(3).random((S, S))
    fig = viz.panel(image, mask, amap, "t")
    assert len(fig.axes) == 4  # image, mask, map + its colour bar
    parts = an.sag_parts(h, 5)
    steps = viz.plot_graph_steps(parts, G, 5, image, mask)
    titles = [ax.get_title() for ax in steps.axes]
    assert any("sigma" in t for t in titles) and any("tau" in t for t in titles)
    labels = [ax.get_ylabel() for ax in steps.axes]
    assert "node i" in labels and "sigma" in labels and "tau" in labels  # every matrix and image has a labelled bar
    assert viz.figure_array(steps).shape[2] == 4


def test_synth_gallery_writes_its_file(tmp_path):
    out = tmp_path / "g.png"
    viz.synth_gallery(out, size=64)
    assert out.stat().st_size > 1000
