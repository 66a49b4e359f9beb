"""Class names in prompts: dataset folder names -> words CLIP knows.

`prompt_name("pcb1") == "printed circuit board"`: dataset folder names are mapped to words CLIP
knows; anything not in the table gets underscores and hyphens turned into spaces.
"""
from __future__ import annotations

from typing import Mapping

PROMPT_NAMES: dict[str, str] = {
    # MVTec AD (other folder names are plain words already)
    "metal_nut": "metal nut",
    # VisA
    **{f"pcb{i}": "printed circuit board" for i in range(1, 5)},
    "macaroni1": "macaroni", "macaroni2": "macaroni",
    "pipe_fryum": "pipe fryum", "chewinggum": "chewing gum",
    # MPDD
    "bracket_black": "black bracket", "bracket_brown": "brown bracket",
    "bracket_white": "white bracket", "metal_plate": "metal plate",
    # BTAD: the archive only numbers its products. Our reading of the images, in line with
    # Bayes-PFL's names (metal1, wood, metal2); override with Config.class_names if you disagree.
    "01": "metal plate", "02": "wooden board", "03": "metal part",
    # MIAD (7 outdoor categories)
    "catenary_dropper": "catenary dropper", "electrical_insulator": "electrical insulator",
    "metal_welding": "metal welding", "nut_and_bolt": "nut and bolt",
    "photovoltaic_module": "photovoltaic module", "wind_turbine": "wind turbine",
    "witness_mark": "witness mark",
    # InsPLAD-fault (power-line components; hyphenated folder names)
    "glass-insulator": "glass insulator", "lightning-rod-suspension": "lightning rod suspension",
    "polymer-insulator-upper-shackle": "polymer insulator shackle", "vari-grip": "cable grip",
    "yoke-suspension": "yoke suspension",
    # synthetic benchmark
    "brushed_metal": "brushed metal", "circuit_board": "circuit board",
}


def prompt_name(class_name: str, overrides: Mapping[str, str] | None = None) -> str:
    """Folder class name -> the object name used in text prompts.

    Order: `overrides` (e.g. Config.class_names), then PROMPT_NAMES, then the folder name with
    `_` and `-` turned into spaces.
    """
    if overrides and class_name in overrides:
        return overrides[class_name]
    if class_name in PROMPT_NAMES:
        return PROMPT_NAMES[class_name]
    return " ".join(class_name.replace("_", " ").replace("-", " ").split())
