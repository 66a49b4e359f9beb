"""Tables 1-5: each a function of the reproduce `Context` that writes <stem>.md and <stem>.csv
(ours, then the paper's quoted rows in their own section) and returns its README entries.
The paper's own numbers appear only in sections and rows marked "quoted", never mixed with ours
(in the CSVs, in their own quoted_* columns). Tables 1-3 compare every row with a reference row
through bagclip.compare (paired bootstrap over images and seeds) and give the chance levels
beside F1-max and AP; their CSVs hold numbers only (percent), the "m ± s" cells are the .md's.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..files import atomic_write_text
from ..compare import EFFECT
from ..metrics import IMAGE_KEYS, METRIC_KEYS, PIXEL_KEYS
from ..report import HEADERS, mean_std_cell, summarize, to_markdown
from .context import APRIL, METHODS, OURS, TRAINING_FREE, Context, log

N_BOOT = 1000  # bootstrap resamples of every comparison in figures/ (docs/metrics.md)
FULL = "full BAG-CLIP"  # Table 3's reference row (bagclip.sweeps.ABLATIONS)


def entry(file: str, what: str, seeds) -> dict:
    """One README row: the file, what it shows, the seeds it averages."""
    return {"file": file, "what": what, "seeds": seeds}


def write_table(out: Path, stem: str, title: str, ours: pd.DataFrame, quoted: pd.DataFrame | None,
                about: str, quoted_about: str = "", csv: pd.DataFrame | None = None, extra: str = "",
                quoted_prefix: str = "") -> list[Path]:
    """out/<stem>.md (ours, `extra` (e.g. the comparisons), then the paper's quoted rows in
    their own section) and out/<stem>.csv: `csv` (default: ours) with `source` "measured here",
    then the quoted rows (`source` "quoted: ..."), their value columns renamed with
    quoted_prefix so that no column holds both (pandas.read_csv reads numbers)."""
    md = [f"# {title}\n", f"## Measured here\n\n{about}\n", to_markdown(ours, index=False)]
    if extra:
        md.append(extra)
    frames = [(ours if csv is None else csv).assign(source="measured here")]
    if quoted is not None:
        md += [f"\n## Quoted from the paper (not comparable: {quoted_about})\n",
               to_markdown(quoted, index=False)]
        q = quoted.rename(columns={c: f"{quoted_prefix}{c}" for c in quoted.columns
                                   if quoted_prefix and pd.api.types.is_numeric_dtype(quoted[c])})
        frames.append(q.assign(source=f"quoted: {title.split(':')[0]} of the paper"))
    atomic_write_text(out / f"{stem}.md", "\n".join(md))
    atomic_write_text(out / f"{stem}.csv", pd.concat(frames, ignore_index=True).to_csv(index=False))
    return [out / f"{stem}.md", out / f"{stem}.csv"]


def numeric_table(df: pd.DataFrame, keys, row: str = "method") -> pd.DataFrame:
    """One row per (setting, dataset) of run_settings' long frame: <key>_mean and <key>_std in
    percent (sample std over seeds; NaN with one seed), seeds; an "Average" dataset row per
    setting when there are several target sets (`report.summarize`)."""
    s = summarize(df)
    n = df.groupby(["setting", "dataset"], sort=False).seed.nunique()
    t = pd.DataFrame(index=s.index)
    for k in keys:
        t[f"{k}_mean"], t[f"{k}_std"] = s[(k, "mean")], s[(k, "std")]
    t["seeds"] = [int(n.get((m, d), n[m].max())) for m, d in t.index]
    t = t.reset_index()
    t.columns = [row, "dataset", *t.columns[2:]]
    return t


def add_comparisons(t: pd.DataFrame, results: dict, reference: str, keys, row: str = "method",
                    n_boot: int = N_BOOT) -> pd.DataFrame:
    """t with, per metric, <key>_chance (F1-max and AP: the chance level of the images) and,
    on every row but the reference's, <key>_diff, <key>_diff_low, <key>_diff_high (percent:
    the row minus the reference, paired bootstrap interval, bagclip.compare) and
    <key>_verdict. Rows without per-image results (the "Average" rows) stay empty."""
    from ..compare import chance_of, compare

    t = t.copy()
    for k in keys:  # the new columns first: NaN / "" where a row has no comparison
        for col in ([f"{k}_chance"] if k.endswith(("f1_max", "_ap")) else []) + [f"{k}_diff", f"{k}_diff_low",
                                                                               f"{k}_diff_high"]:
            t[col] = float("nan")
        t[f"{k}_verdict"] = ""
    for i, (name, ds) in enumerate(zip(t[row], t.dataset)):
        if ds not in results.get(name, {}) or ds not in results[reference]:
            continue
        ref, res = results[reference][ds], results[name][ds]
        for k in keys:
            if k.endswith(("f1_max", "_ap")) and (ch := chance_of(ref, k)) is not None:
                t.loc[i, f"{k}_chance"] = 100 * ch
            if name != reference:
                c = compare(ref, res, k, n_boot=n_boot)
                for col, v in (("diff", c.diff), ("diff_low", c.low), ("diff_high", c.high)):
                    t.loc[i, f"{k}_{col}"] = 100 * v
                t.loc[i, f"{k}_verdict"] = c.verdict
    return t


def _name(k: str) -> str:
    return HEADERS[k.split("_", 1)[1]]


def markdown_frames(t: pd.DataFrame, keys, row: str = "method", level: bool = False) -> tuple:
    """(the main table: "mean ± std" cells, the chance levels beside F1-max and AP; the
    differences: "diff [low, high] verdict" per metric, rows other than the reference)."""
    head = (lambda k: f"{k.split('_', 1)[0]} {_name(k)}") if level else _name
    main = t[[row, "dataset"]].copy()
    for k in keys:
        main[head(k)] = [mean_std_cell(m, sd) for m, sd in zip(t[f"{k}_mean"], t[f"{k}_std"])]
        if f"{k}_chance" in t:
            main[f"{head(k)} chance"] = [f"{v:.1f}" if v == v else "" for v in t[f"{k}_chance"]]
    main["seeds"] = t.seeds
    diff = t[[row, "dataset"]].copy()
    has = pd.Series(False, index=t.index)
    for k in keys:
        if f"{k}_diff" not in t:
            continue
        has |= t[f"{k}_diff"].notna()
        diff[f"Δ {head(k)}"] = [f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}] {'effect' if v == EFFECT else 'no evidence'}"
                                if d == d else "" for d, lo, hi, v in
                                zip(t[f"{k}_diff"], t[f"{k}_diff_low"], t[f"{k}_diff_high"], t[f"{k}_verdict"])]
    return main, diff[has]


def comparisons_text(diff: pd.DataFrame, reference: str, seeds, n_boot: int = N_BOOT) -> str:
    """The differences section of a table: how to read it, then the table."""
    return (f"\n### Each row minus {reference}, with its interval\n\nΔ in percentage points; in brackets "
            f"the 95 % paired bootstrap interval ({n_boot} resamples of the target images, per class "
            f"and label, and of seeds {list(seeds)}; `bagclip.compare`). *effect*: the interval "
            f"excludes 0; *no evidence*: it does not, which is not evidence of no difference. A "
            f"training-free row has one \"seed\": its interval covers images only on its side. "
            f"Chance columns: a detector that ignores the image (F1-max 2p/(1+p), AP p; p the "
            f"defective fraction, of images or of pixels, per class, mean over classes).\n\n"
            + to_markdown(diff, index=False))


def method_tables(df: pd.DataFrame, results: dict | None = None) -> dict[int, tuple]:
    """Tables 1 (image) and 2 (pixel) of our methods: {n: (numeric frame, markdown frame,
    differences frame)}; rows (method, dataset), percent; with `results` ({method: {dataset:
    compare.Results}}) the chance levels and every row against BAG-CLIP (ours)."""
    out = {}
    for number, keys in ((1, IMAGE_KEYS), (2, PIXEL_KEYS)):
        t = numeric_table(df, keys)
        if results is not None:
            t = add_comparisons(t, results, OURS, keys)
        out[number] = (t, *markdown_frames(t, keys))
    return out


def _method_table(ctx: Context, n: int) -> list[dict]:
    """Table n (1: image level, 2: pixel level) from the protocol's runs."""
    from ..paper import paper_table

    stem, level = {1: ("table1_image", "image"), 2: ("table2_pixel", "pixel")}[n]
    protocol = ctx.protocol  # the runs first: results reads their records
    results = ctx.results({**{m: {} for m in TRAINING_FREE}, **METHODS}, ctx.seeds)
    numeric, table, diff = method_tables(protocol, results)[n]
    about = (f"{ctx.label}. Mean ± sample std over seeds {list(ctx.seeds)} in percent; the "
             f"training-free scorer has no seed. Same feature cache and metrics for every row.")
    write_table(ctx.figs, stem, f"Table {n}: {level}-level zero-shot results", table, paper_table(n),
                about, "real data, ViT-L-14-336 at 518 px, the published methods", csv=numeric,
                extra=comparisons_text(diff, OURS, ctx.seeds), quoted_prefix=f"quoted_{level}_")
    log.info(to_markdown(table, index=False))
    return [entry(f"{stem}.md", f"Table {n} ({level} level): ours and our re-implemented baselines with "
                                f"chance levels, each row against ours (paired bootstrap), then the "
                                f"paper's rows (quoted)", list(ctx.seeds)),
            entry(f"{stem}.csv", f"Table {n} as numbers: <metric>_mean/_std/_chance/_diff/_diff_low/"
                                 f"_diff_high/_verdict (percent), `source` column", list(ctx.seeds))]


def table1(ctx: Context) -> list[dict]:
    return _method_table(ctx, 1)


def table2(ctx: Context) -> list[dict]:
    return _method_table(ctx, 2)


TABLE3_KEYS = [k for k in METRIC_KEYS if k != "pixel_aupro"]  # the paper's Table 3 columns


def table3(ctx: Context) -> list[dict]:
    """Table 3: the ablation variants and both baselines over the grid seeds, each against the
    full model."""
    from ..paper import paper_table
    from ..report import save_frame
    from ..sweeps import ABLATIONS

    variants = {**ABLATIONS, APRIL: METHODS[APRIL]}
    log.info(f"\nTable 3: {list(variants)} x seeds {list(ctx.grid_seeds)}")
    dfa = pd.concat([ctx.run_settings(variants, ctx.grid_seeds), ctx.zero_shot], ignore_index=True)
    save_frame(dfa, ctx.out / "ablation.csv")
    results = ctx.results({**variants, **{m: {} for m in TRAINING_FREE}}, ctx.grid_seeds)
    t = add_comparisons(numeric_table(dfa, TABLE3_KEYS, "variant"), results, FULL, TABLE3_KEYS, "variant")
    main, diff = markdown_frames(t, TABLE3_KEYS, "variant", level=True)
    write_table(ctx.figs, "table3_ablation", "Table 3: ablation", main, paper_table(3).drop(columns="note"),
                f"{ctx.label}. Mean ± sample std over seeds {list(ctx.grid_seeds)} in percent.",
                "real data, ViT-L-14-336", csv=t, extra=comparisons_text(diff, FULL, ctx.grid_seeds),
                quoted_prefix="quoted_")
    ctx.summary["ablation"] = dfa.to_dict(orient="records")
    return [entry("table3_ablation.md", "Table 3 (ablation), our variants and baselines, each against the "
                                        "full model (paired bootstrap); the paper's rows quoted",
                  list(ctx.grid_seeds)),
            entry("table3_ablation.csv", "Table 3 as numbers (columns as Tables 1-2)", list(ctx.grid_seeds))]


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
