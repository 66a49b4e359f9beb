"""Text prompts: WinCLIP's contextual templates x the paper's state words (section 3.1).

Each class gets len(TEMPLATES) * len(states) = 22 * 4 sentences per state; `Backbone.encode_text`
L2-normalises every sentence embedding (`Config.normalize_sentences`), averages per state and
renormalises, giving T = [T_N, T_A] of shape (2, E). The states are the paper's four and four,
not WinCLIP's seven and four.

Class names in prompts: `prompt_name("pcb1") == "printed circuit board"`: dataset folder names
are mapped to words CLIP knows; anything not in the table gets underscores and hyphens turned
into spaces. `class_texts` puts it together: folder class names -> text features (2, E), the
zero-shot classifier (as open_clip keeps its own in the library).
"""
from __future__ import annotations

from typing import Mapping, Sequence

# The paper's four normal and four abnormal state descriptions ("{}" is the class name).
NORMAL_STATES: tuple[str, ...] = (
    "flawless {}",
    "{} without defect",
    "unblemished {}",
    "perfect {}",
)
ABNORMAL_STATES: tuple[str, ...] = (
    "damaged {}",
    "{} with defect",
    "{} with flaw",
    "broken {}",
)

# WinCLIP's 22 contextual templates ("{}" receives a state sentence), which the paper says it
# follows. anomalib's copy lists "a jpeg corrupted photo of the {}." twice and lacks "a cropped
# photo of a {}."; this is the list of distinct templates (docs/decisions.md).
TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)


def prompt_sentences(class_name: str,
                     templates: tuple[str, ...] = TEMPLATES,
                     normal: tuple[str, ...] = NORMAL_STATES,
                     abnormal: tuple[str, ...] = ABNORMAL_STATES) -> tuple[list[str], list[str]]:
    """All sentences for one class: (normal sentences, abnormal sentences)."""
    def expand(states: tuple[str, ...]) -> list[str]:
        return [t.format(s.format(class_name)) for s in states for t in templates]

    return expand(normal), expand(abnormal)


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


def class_texts(backbone, class_names: Sequence[str], cfg) -> dict:
    """Folder class name -> text features (2, E) [normal, abnormal], through the prompt-name map
    cfg.class_names; `backbone.encode_text` does the prompt ensemble (bagclip.backbone)."""
    names = sorted(set(class_names))
    feats = backbone.encode_text([prompt_name(c, cfg.class_names) for c in names],
                                 normalize_sentences=cfg.normalize_sentences)
    return {c: feats[i] for i, c in enumerate(names)}
