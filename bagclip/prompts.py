"""Text prompts: WinCLIP's contextual templates x the paper's state words (section 3.1).

Each class gets len(TEMPLATES) * len(states) = 22 * 4 sentences per state; `Backbone.encode_text`
L2-normalises every sentence embedding (`Config.normalize_sentences`), averages per state and
renormalises, giving T = [T_N, T_A] of shape (2, E). The states are the paper's four and four,
not WinCLIP's seven and four.
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
