"""The paper's reported tables (Wu, Zhang & Li, Electronics 2026, 15(8), 1659), as shipped CSVs.

These are the authors' numbers, for side-by-side comparison with what a user measures; nothing
in the kit computes them. Percentages, as printed in the paper.
    paper_table(1)  image-level comparison (method, dataset, auroc, f1_max, ap)
    paper_table(2)  pixel-level comparison (+ aupro)
    paper_table(3)  ablation (variant, dataset, image_* and pixel_* columns)
    paper_table(4)  SAG cost (component, params_m, gflops, peak_vram_mb, time_ms)
    paper_table(5)  inference cost per method: total_params_m is the frozen backbone part of
                    the paper's "frozen + trainable" column, trainable_params_m the rest; ms, fps
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

_FILES = {1: "table1_image_level.csv", 2: "table2_pixel_level.csv", 3: "table3_ablation.csv",
          4: "table4_sag_cost.csv", 5: "table5_inference.csv"}


def paper_table(number: int) -> pd.DataFrame:
    """The paper's Table `number` (1-5) as a DataFrame (empty notes as empty strings)."""
    if number not in _FILES:
        raise ValueError(f"the paper has Tables 1-5; got {number!r}")
    with resources.files("bagclip").joinpath("paper_tables", _FILES[number]).open() as f:
        return pd.read_csv(f, keep_default_na=False, na_values=[""]).fillna({"note": ""})


# Values the paper's text quotes for its sensitivity curves (Section 4.3.2). Figures 5-6 are
# images without printed data; these are the only numbers the text gives for them (percent, at
# the optimum it reports). Figures that show them label them "quoted".
QUOTED_SENSITIVITY: dict[str, list[dict]] = {
    "k": [
        {"dataset": "EPED", "value": 15, "metric": "image_auroc", "percent": 76.4},
        {"dataset": "EPED", "value": 15, "metric": "image_f1_max", "percent": 77.6},
    ],
    "gcn_layers": [
        {"dataset": "EPED", "value": 5, "metric": "pixel_auroc", "percent": 97.9},
    ],
}
