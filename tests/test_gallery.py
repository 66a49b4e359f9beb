"""Gallery helpers: mask overlays and sample grids."""
from __future__ import annotations

import numpy as np
import pytest

from bagclip.data import load_dataset
from bagclip.data.synth import generate


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "small", size=64, n_train=1, n_test_good=1,
                    n_test_bad=4, categories=["capsule"])


def test_overlay_and_plot_samples(quick_root):
    import matplotlib

    matplotlib.use("Agg")
    from bagclip.viz import overlay, plot_samples

    img = np.zeros((10, 10, 3), np.uint8)
    m = np.zeros((10, 10), bool)
    m[4:6, 4:6] = True
    out = overlay(img, m)
    assert out.shape == img.shape and (out[m][:, 0] > 0).all() and out[0, 0].sum() == 0
    samples = [s for s in load_dataset("synth", quick_root, "test", classes="capsule")][:4]
    fig = plot_samples(samples, size=64, ncols=2)
    assert len(fig.axes) == 4
