"""The data itself: sample grids with their masks, and the synthetic benchmark's gallery.

    python -m bagclip.viz.data figures/synth_gallery.png   # every synthetic category x defect
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from .base import bare_axes, new_figure, overlay

log = logging.getLogger(__name__)


def plot_samples(samples, size: int | None = 224, ncols: int = 4, title: str | None = None):
    """Grid of samples (bagclip.data.Sample), masks overlaid in red. Returns the Figure."""
    from PIL import Image

    from ..data.io import load_mask, read_rgb

    n = len(samples)
    rows = (n + ncols - 1) // ncols
    fig = new_figure(ncols * 1.8, rows * 1.8 + 0.4)
    axes = fig.subplots(rows, ncols, squeeze=False)
    for ax in axes.ravel():
        bare_axes(ax)
    for ax, s in zip(axes.ravel(), samples):
        img = read_rgb(s.image_path)
        if size is not None:
            img = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
        m = np.asarray(load_mask(s.mask_path, img.shape[:2]))
        ax.imshow(overlay(img, m))
        ax.set_title(f"{s.class_name}/{s.defect_type}", fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def synth_gallery(out=None, size: int = 224, seed: int = 0, index: int = 0):
    """Every synthetic category (rows) and defect kind (image, overlay); saved to `out` if given."""
    from ..data.synth import AUX_CLASSES, CATEGORIES, make_image

    width = max(len(k) for k in CATEGORIES.values())
    fig = new_figure(1.6 * (1 + 2 * width), 1.6 * len(CATEGORIES) + 0.4)
    axes = fig.subplots(len(CATEGORIES), 1 + 2 * width, squeeze=False)
    for ax in axes.ravel():
        bare_axes(ax)
    for r, (cat, kinds) in enumerate(CATEGORIES.items()):
        axes[r, 0].imshow(make_image(cat, "good", size, seed, index).image)
        group = "aux" if cat in AUX_CLASSES else "target"
        axes[r, 0].set_ylabel(f"{cat}\n({group})", fontsize=8)
        axes[r, 0].set_title("good" if r == 0 else "", fontsize=8)
        for j, kind in enumerate(kinds):
            im = make_image(cat, kind, size, seed, index)
            a, b = axes[r, 1 + 2 * j], axes[r, 2 + 2 * j]
            a.imshow(im.image)
            b.imshow(overlay(im.image, im.mask))
            a.set_title(kind, fontsize=8)
            b.set_title(f"{kind} mask", fontsize=8)
    fig.suptitle(f"bagclip synthetic benchmark (seed {seed}, {size} px): each row a category "
                 f"(aux: trained on; target: zero-shot test), defects with their exact masks in red",
                 fontsize=10)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    return fig


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "figures/synth_gallery.png"
    synth_gallery(out)
    log.info(f"gallery written to {out}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
