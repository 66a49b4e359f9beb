"""Image + mask overlay grids: moved to `bagclip.plots` (one home for every figure).

Kept so that `python -m bagclip.data.gallery OUT.png` and old imports keep working.
"""
from __future__ import annotations

from ..plots import main, overlay, plot_samples, synth_gallery

__all__ = ["overlay", "plot_samples", "synth_gallery", "main"]

if __name__ == "__main__":
    main()
