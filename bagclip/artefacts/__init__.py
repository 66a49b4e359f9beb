"""The paper's artefacts, regenerated into figures/ by `bagclip reproduce`: ONE registry.

Each artefact is a function of the reproduce `Context` that writes its files and returns their
README entries; `ARTEFACTS` lists each once, with the part of reproduce (`--parts`) it belongs
to. `reproduce` iterates the registry; figures/README.md is generated from what the functions
returned, so a file written is a file listed. Adding a figure: write its function (figures.py,
or tables.py for a table) and add one line here.

    tables.py    Tables 1-5 (.md and .csv: ours, then the paper's quoted rows)
    figures.py   Figures 2-7 and the raw text maps per tap (PNG, drawn with bagclip.viz)
    context.py   what they share: data, backbone, cache, runs, results computed once
    readme.py    figures/README.md
"""
from __future__ import annotations

from typing import Callable, NamedTuple

PARTS = ("protocol", "ablation", "sensitivity", "cost", "figures")  # reproduce's --parts, in order


class Artefact(NamedTuple):
    name: str
    part: str  # one of PARTS: `reproduce --parts <part>` makes it
    make: Callable  # make(ctx) -> [README entries {"file", "what", "seeds"}]


def _registry() -> tuple[Artefact, ...]:
    from . import figures as f
    from . import tables as t

    return (
        Artefact("table1", "protocol", t.table1), Artefact("table2", "protocol", t.table2),
        Artefact("table3", "ablation", t.table3),
        Artefact("fig5", "sensitivity", f.fig5_sensitivity_k), Artefact("fig6", "sensitivity", f.fig6_sensitivity_p),
        Artefact("table4", "cost", t.table4), Artefact("table5", "cost", t.table5),
        Artefact("fig2", "figures", f.fig2_sag), Artefact("fig3", "figures", f.fig3_heatmaps),
        Artefact("fig4", "figures", f.fig4_ablation_maps), Artefact("fig7", "figures", f.fig7_failures),
        Artefact("fig_tap_text_maps", "figures", f.fig_tap_text_maps),
        Artefact("synth_gallery", "figures", f.fig_synth_gallery),
    )


def artefacts(parts=PARTS) -> list[Artefact]:
    """The registry's artefacts of these parts, in registry order (a part's runs before the
    figures that reuse them)."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    return [a for a in _registry() if a.part in parts]


def make_artefacts(ctx, parts=PARTS) -> list[dict]:
    """Every artefact of these parts into ctx.figs; their README entries, each with its part."""
    return [{**e, "part": a.part} for a in artefacts(parts) for e in a.make(ctx)]
