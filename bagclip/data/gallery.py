"""Image + mask overlay grids with matplotlib.

    python -m bagclip.data.gallery figures/synth_gallery.png   # every synthetic category x defect

`overlay` tints mask pixels and outlines them; `plot_samples` shows any loaded dataset;
`synth_gallery` draws one row per synthetic category: a good image, then for each defect kind
the defective image and its overlay.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .io import load_mask, read_rgb
from .synth import CATEGORIES, make_image


def overlay(image: np.ndarray, mask: np.ndarray, color=(255, 0, 0), alpha: float = 0.4) -> np.ndarray:
    """(H, W, 3) uint8 image with `mask` (H, W) bool tinted and its outline drawn opaque."""
    out = image.astype(np.float64)
    mask = np.asarray(mask, bool)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float64)
    edge = mask & ~ndi.binary_erosion(mask)
    out[ndi.binary_dilation(edge) & ~mask] = color  # outline just outside: thin defects stay visible
    return out.astype(np.uint8)


def _figure(rows: int, cols: int, cell: float = 1.6):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * cell + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
        for sp in ax.spines.values():
            sp.set_visible(False)
    return fig, axes


def plot_samples(samples, size: int | None = 224, ncols: int = 4, title: str | None = None):
    """Grid of samples (bagclip.data.Sample), masks overlaid in red. Returns the Figure."""
    from PIL import Image

    n = len(samples)
    fig, axes = _figure((n + ncols - 1) // ncols, ncols)
    for ax, s in zip(axes.ravel(), samples):
        img = read_rgb(s.image_path)
        if size is not None:
            img = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
        m = np.asarray(load_mask(s.mask_path, img.shape[:2]))
        ax.imshow(overlay(img, m))
        ax.set_title(f"{s.class_name}/{s.defect_type}", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def synth_gallery(out=None, size: int = 224, seed: int = 0, index: int = 0):
    """Every synthetic category (rows) and defect kind (image, overlay); saved to `out` if given."""
    width = max(len(k) for k in CATEGORIES.values())
    fig, axes = _figure(len(CATEGORIES), 1 + 2 * width)
    for r, (cat, kinds) in enumerate(CATEGORIES.items()):
        axes[r, 0].imshow(make_image(cat, "good", size, seed, index).image)
        axes[r, 0].set_ylabel(cat, fontsize=9)
        axes[r, 0].set_title("good" if r == 0 else "", fontsize=8)
        for j, kind in enumerate(kinds):
            im = make_image(cat, kind, size, seed, index)
            a, b = axes[r, 1 + 2 * j], axes[r, 2 + 2 * j]
            a.imshow(im.image)
            b.imshow(overlay(im.image, im.mask))
            a.set_title(kind, fontsize=8)
            b.set_title(f"{kind} mask", fontsize=8)
    fig.suptitle(f"bagclip synthetic benchmark (seed {seed}, {size} px): each row a category, "
                 f"defects with their exact masks in red", fontsize=10)
    fig.tight_layout()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    return fig


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "figures/synth_gallery.png"
    import matplotlib

    matplotlib.use("Agg")  # a script: no window
    synth_gallery(out)
    print(f"gallery written to {out}")


if __name__ == "__main__":
    main()
