"""Tables 1-5: each a function of the reproduce `Context` that writes <stem>.md and <stem>.csv
(ours, then the paper's quoted rows in their own section) and returns its README entries.
The paper's own numbers appear only in sections and rows marked "quoted", never mixed with ours.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..files import atomic_write_text
from ..metrics import IMAGE_KEYS, PIXEL_KEYS
from ..report import HEADERS, cells, summarize, to_markdown
from .context import APRIL, METHODS, Context, log


def entry(file: str, what: str, seeds) -> dict:
    """One README row: the file, what it shows, the seeds it averages."""
    return {"file": file, "what": what, "seeds": seeds}


def write_table(out: Path, stem: str, title: str, ours: pd.DataFrame, quoted: pd.DataFrame | None,
                about: str, quoted_about: str = "") -> list[Path]:
    """out/<stem>.md (ours, then the paper's quoted rows in their own section) and
    out/<stem>.csv (both, with a `source` column: "measured here" or "quoted: ...")."""
    md = [f"# {title}\n", f"## Measured here\n\n{about}\n", to_markdown(ours, index=False)]
    frames = [ours.assign(source="measured here")]
    if quoted is not None:
        md += [f"\n## Quoted from the paper (not comparable: {quoted_about})\n",
               to_markdown(quoted, index=False)]
        frames.append(quoted.assign(source=f"quoted: {title.split(':')[0]} of the paper"))
    atomic_write_text(out / f"{stem}.md", "\n".join(md))
    atomic_write_text(out / f"{stem}.csv", pd.concat(frames, ignore_index=True).to_csv(index=False))
    return [out / f"{stem}.md", out / f"{stem}.csv"]


def method_tables(df: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """Tables 1 (image) and 2 (pixel) of our methods: rows (method, dataset), cells mean ± std
    over seeds in percent (one value for the training-free scorer), plus n_seeds."""
    s = summarize(df)
    n = df.groupby(["setting", "dataset"], sort=False).seed.nunique()
    out = {}
    for number, keys in ((1, IMAGE_KEYS), (2, PIXEL_KEYS)):
        t = cells(s, keys, [HEADERS[k.split("_", 1)[1]] for k in keys]).reset_index()
        t.columns = ["method", "dataset", *t.columns[2:]]
        t["seeds"] = [int(n.get((m, d), n[m].max() if m in n.index.get_level_values(0) else 1))
                      for m, d in zip(t.method, t.dataset)]
        out[number] = t
    return out


def _method_table(ctx: Context, n: int) -> list[dict]:
    """Table n (1: image level, 2: pixel level) from the protocol's runs."""
    from ..paper import paper_table

    stem, level = {1: ("table1_image", "image"), 2: ("table2_pixel", "pixel")}[n]
    table = method_tables(ctx.protocol)[n]
    about = (f"{ctx.label}. Mean ± sample std over seeds {list(ctx.seeds)} in percent; the "
             f"training-free scorer has no seed. Same feature cache and metrics for every row.")
    write_table(ctx.figs, stem, f"Table {n}: {level}-level zero-shot results", table, paper_table(n),
                about, "real data, ViT-L-14-336 at 518 px, the published methods")
    log.info(to_markdown(table, index=False))
    return [entry(f"{stem}.md", f"Table {n} ({level} level): ours and our re-implemented baselines, "
                                f"then the paper's rows (quoted)", list(ctx.seeds)),
            entry(f"{stem}.csv", f"Table {n} as CSV (`source` column)", list(ctx.seeds))]


def table1(ctx: Context) -> list[dict]:
    return _method_table(ctx, 1)


def table2(ctx: Context) -> list[dict]:
    return _method_table(ctx, 2)


def table3(ctx: Context) -> list[dict]:
    """Table 3: the ablation variants and both baselines over the grid seeds."""
    from ..paper import paper_table
    from ..report import save_frame
    from ..sweeps import ABLATIONS, table3 as ablation_layout

    variants = {**ABLATIONS, APRIL: METHODS[APRIL]}
    log.info(f"\nTable 3: {list(variants)} x seeds {list(ctx.grid_seeds)}")
    dfa = pd.concat([ctx.run_settings(variants, ctx.grid_seeds), ctx.zero_shot], ignore_index=True)
    save_frame(dfa, ctx.out / "ablation.csv")
    write_table(ctx.figs, "table3_ablation", "Table 3: ablation", ablation_layout(dfa).reset_index(),
                paper_table(3).drop(columns="note"),
                f"{ctx.label}. Mean ± sample std over seeds {list(ctx.grid_seeds)} in percent.",
                "real data, ViT-L-14-336")
    ctx.summary["ablation"] = dfa.to_dict(orient="records")
    return [entry("table3_ablation.md", "Table 3 (ablation), our variants and baselines; the "
                                        "paper's rows quoted", list(ctx.grid_seeds)),
            entry("table3_ablation.csv", "Table 3 as CSV", list(ctx.grid_seeds))]


def _cost_tables(ctx: Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables 4-5, measured once on this machine (out/cost keeps them: timings are not redone
    on a rerun, so a restarted reproduce ends with the same tables)."""
    from ..cost import bench_main

    if "cost" not in ctx.memo:
        d = ctx.out / "cost"
        if (d / "table4_sag_cost.csv").is_file() and (d / "table5_inference.csv").is_file():
            ctx.memo["cost"] = pd.read_csv(d / "table4_sag_cost.csv"), pd.read_csv(d / "table5_inference.csv")
        else:
            log.info("\ncost (Tables 4-5), measured here")
            ctx.memo["cost"] = bench_main(ctx.cfg, device=str(ctx.backbone.device), out_dir=d, repeats=3)
    return ctx.memo["cost"]


def _hardware(t4: pd.DataFrame) -> str:
    return str(t4.hardware[0]) if "hardware" in t4 else "this machine"


def table4(ctx: Context) -> list[dict]:
    """Table 4: one SAG's cost, measured here; the paper's quoted below."""
    from ..paper import paper_table

    t4, _ = _cost_tables(ctx)
    ours = t4.drop(columns=[c for c in t4.columns if c.startswith("paper_")])
    write_table(ctx.figs, "table4_sag_cost", "Table 4: SAG cost", ours, paper_table(4),
                f"Measured on {_hardware(t4)} for {ctx.cfg.backbone} at {ctx.cfg.image_size} px (random "
                f"weights of the architecture; cost does not depend on weights).", "an A6000, the paper's sizes")
    what = "Table 4: SAG cost, measured here; the paper's quoted below"
    return [entry(f"table4_sag_cost.{e}", what, "-") for e in ("md", "csv")]


def table5(ctx: Context) -> list[dict]:
    """Table 5: inference cost per image, measured here beside the paper's (quoted)."""
    t4, t5 = _cost_tables(ctx)
    measured = t5.source == "measured"
    write_table(ctx.figs, "table5_inference", "Table 5: inference cost per image",
                t5[measured].drop(columns="source"), t5[~measured].drop(columns="source"),
                f"Measured on {_hardware(t4)}.", "an A6000, ViT-L/14@336 at 518 px")
    what = "Table 5: inference cost, measured here beside the paper's (quoted)"
    return [entry(f"table5_inference.{e}", what, "-") for e in ("md", "csv")]
