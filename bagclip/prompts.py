"""Text prompts: WinCLIP-style contextual templates x state words (paper, section 3.1).

Each class gets len(TEMPLATES) * len(states) sentences per state; `Backbone.encode_text`
L2-normalises every sentence embedding, averages per state and renormalises, giving
T = [T_N, T_A] of shape (2, E).
"""
from __future__ import annotations

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

# Contextual templates in the WinCLIP manner ("{}" receives a state sentence).
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a cropped photo of a {}.",
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a blurry photo of the {}.",
    "a good photo of the {}.",
    "a bad photo of a {}.",
    "a low resolution photo of the {}.",
    "a jpeg corrupted photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "there is a {} in the scene.",
    "this is a {} in the scene.",
    "this is one {} in the scene.",
    "an industrial photo of a {}.",
    "a photo of the {} for visual inspection.",
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
