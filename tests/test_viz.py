"""bagclip.viz: every widget callback with at least two non-default values changes what is
drawn (and the numbers behind it); figures used by reproduce and the lessons render."""
import base64
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


def _axes_pixels(fig, ax) -> np.ndarray:
    """The rendered RGB pixels inside one axes' box."""
    arr = viz.figure_array(fig)[..., :3].astype(float)
    b = ax.get_window_extent()
    h = arr.shape[0]
    return arr[int(h - b.y1) + 1:int(h - b.y0) - 1, int(b.x0) + 1:int(b.x1) - 1]


def _map_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and any(im.get_array().ndim == 2 for im in ax.get_images())]


def test_coarse_maps_fill_their_panels(scene):
    """Lesson 02's "none vs vv" figure: patch-grid maps (G x G) beside an S x S image, one row
    with a mask outlined and one without. Every panel shows data over most of its box (a map
    drawn in index coordinates under a pixel-sized contour was a speck in a corner)."""
    image, mask, _ = scene
    rng = np.random.default_rng(4)
    rows = [dict(image=image, mask=mask if i == 0 else None, title=f"row {i}",
                 extra=[(rng.random((G, G)), f"tap {t}", "abnormal prob.", "jet") for t in (1, 2, 3)])
            for i in range(2)]
    fig = viz.panel_rows(rows)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_images()]
    assert len(panels) == 5 + 4  # row 0: image, mask, 3 maps; row 1: image, 3 maps
    for ax in panels:
        px = _axes_pixels(fig, ax)
        painted = (np.abs(px - 255).sum(-1) > 30).mean()  # not the white background
        assert painted > 0.3 and _pixel_std(px) > 10, (ax.get_title(), painted, _pixel_std(px))
    for ax in _map_axes(fig):  # the map spans the image's extent, where the contour is drawn
        assert ax.get_xlim() == pytest.approx((0, S)) and sorted(ax.get_ylim()) == pytest.approx([0, S])
    tap = viz.plot_tap_maps(image, mask, rng.random((3, G, G)), (1, 2, 3))
    for ax in _map_axes(tap):
        assert (np.abs(_axes_pixels(tap, ax) - 255).sum(-1) > 30).mean() > 0.3


@pytest.fixture(scope="module")
def dim_maps():
    """Maps that never leave [0, 0.02] (as trained heads' maps on normal images often are)."""
    rng = np.random.default_rng(5)
    maps = 0.02 * rng.random((3, S, S)) ** 2
    images = rng.integers(0, 255, (3, S, S, 3), dtype=np.uint8)
    masks = np.zeros((3, S, S), bool)  # normal images: no outline on the maps
    return images, masks, maps


def _image_pixels(fig, ax) -> np.ndarray:
    """The rendered RGB pixels inside the extent of the axes' map (no white margin around it)."""
    arr = viz.figure_array(fig)[..., :3].astype(float)
    im = next(im for im in ax.get_images() if im.get_array().ndim == 2)
    x0, x1, y0, y1 = im.get_extent()
    (a, b), (c, d) = ax.transData.transform([(x0, y0), (x1, y1)])
    h = arr.shape[0]
    rows, cols = sorted((h - b, h - d)), sorted((a, c))
    return arr[int(rows[0]) + 2:int(rows[1]) - 2, int(cols[0]) + 2:int(cols[1]) - 2]


def _pixel_std(px: np.ndarray) -> float:
    """The largest per-channel std over the pixels (a flat colour gives ~0 whatever the colour)."""
    return float(px.reshape(-1, 3).std(0).max())


def _map_stds(fig) -> list[float]:
    return [_pixel_std(_image_pixels(fig, ax)) for ax in _map_axes(fig)]


def _bar_labels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]


def test_low_range_maps_are_visible_and_their_scale_named(dim_maps):
    """The committed figures' drawings (panel, compare_maps for Figs 3-4, failure_cases for
    Fig 7): by default each map is stretched to its own range, so a map in [0, 0.02] is not
    one flat colour; the colour bar names the scale. On the fixed 0-1 scale it would be."""
    images, masks, maps = dim_maps
    samples = [Sample(f"/x/{i}.png", None, "wood", "good", 0) for i in range(3)]
    drawings = {
        "panel": lambda **kw: viz.panel(images[0], masks[0], maps[0], **kw),
        "compare_maps": lambda **kw: viz.compare_maps(images, masks, {"a": maps, "b": maps[::-1]},
                                                      ["x", "y", "z"], **kw),
        "failure_cases": lambda **kw: viz.failure_cases(samples, [0.1, 0.2, 0.3], maps, masks,
                                                        lambda i: images[i], 0.5, **kw)}
    floor = 20.0  # std of rendered pixels (0-255): a flat colour is ~0
    for name, draw in drawings.items():
        fig = draw()
        stds = _map_stds(fig)
        assert stds and min(stds) > floor, (name, stds)
        assert any("own range" in t for t in _bar_labels(fig)), name
        log = draw(scale="log")
        assert min(_map_stds(log)) > floor and any("log scale" in t for t in _bar_labels(log)), name
        fixed = draw(scale="fixed")
        assert max(_map_stds(fixed)) < 10, (name, _map_stds(fixed))  # nearly flat: the blank maps this replaces
        assert any("fixed [0, 1]" in t for t in _bar_labels(fixed)), name
    with pytest.raises(ValueError, match="scale"):
        viz.map_norm(maps[0], "linear")


def test_score_distributions_figure_per_class():
    rng = np.random.default_rng(6)
    classes = ["wood"] * 30 + ["tile"] * 20 + ["gear"] * 10
    labels = np.array([i % 3 == 0 for i in range(60)], int)
    scores = rng.random(60) * 0.3 + 0.5 * labels
    fig = viz.score_distributions_figure(scores, labels, classes, threshold=0.45, ncols=2)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 3  # one panel per class, the fourth cell hidden
    for ax, cls in zip(shown, ["wood", "tile", "gear"]):
        sel = np.array(classes) == cls
        n_good, n_bad = int((sel & (labels == 0)).sum()), int((sel & (labels == 1)).sum())
        assert ax.get_title().startswith(f"{cls}: {n_good} normal")
        assert f"{n_bad} defective (median {np.median(scores[sel & (labels == 1)]):.3g})" in ax.get_title()
        assert len(ax.patches) + len(ax.collections) >= 2  # a histogram per group (seaborn: filled steps)
        assert any(l.get_xdata()[0] == 0.45 for l in ax.get_lines())  # the threshold line
    assert viz.figure_array(fig).std() > 5
    one = viz.score_distributions_figure(scores, labels)
    assert [ax.get_title().split(":")[0] for ax in one.axes if ax.get_visible()] == ["all"]
    with pytest.raises(ValueError, match="length"):
        viz.score_distributions_figure(scores, labels[:10], classes)


@pytest.fixture()
def ipython_shell(monkeypatch):
    """A plain IPython shell as get_ipython(), with the kit's PNG formatter registered on it."""
    from IPython.core.interactiveshell import InteractiveShell

    from bagclip.viz import base

    monkeypatch.setattr(base, "_FORMATTER", False)
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def test_widgets_hold_their_drawing_as_output_state_from_the_first_view(scene, failures, ipython_shell):
    """The first drawing is in the Output widget's own `outputs` when the widget is built (not
    captured output, which a browser can route past a model it does not hold yet), and a
    control replaces it with the new drawing in one output, never a second one beside it."""
    image, mask, h = scene
    ex = viz.SAGExplorer(image, h, G, k=5, mask=mask, k_values=[3, 5, 10], click_cells=4)
    samples, scores, maps, masks, images, feats = failures
    g = viz.FailureGallery(samples, scores, maps, masks, images, feats, grid=G, k=4)
    for view, move in ((ex, lambda: setattr(ex._node_slider, "value", 3)),
                       (g, lambda: setattr(g._thr, "value", 0.8))):
        view.widget
        (first,) = view._out.outputs
        assert first["output_type"] == "display_data"
        png = first["data"]["image/png"]  # base64 text, as in a display message (bytes: a broken image)
        assert isinstance(png, str) and base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n")
        move()
        (now,) = view._out.outputs
        assert now["data"]["image/png"] != first["data"]["image/png"]
