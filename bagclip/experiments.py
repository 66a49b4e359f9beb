"""`reproduce`: the paper's experiments end to end, into figures/ (`bagclip reproduce --quick`).

Quick mode (the default of the CLI's --quick): the synthetic benchmark with the shipped
bagclip-mini backbone (a small CLIP pretrained on the kit's own synthetic world), every step of
the paper's protocol (Section 4.1) on a CPU; its numbers are labelled as what they are.
Full mode: the paper's protocol from $BAGCLIP_DATA with ViT-L-14-336 at 518 px.
The steps, each in its own module:
    data        bagclip.data.protocol_data       auxiliary (training) and target sets
    tokens      bagclip.cache.FeatureCache       the frozen backbone, run once per image
    runs        bagclip.runs.run_settings        one run per (Config, seed), resumable, shared
                                                 by every grid that needs it; in-process or
                                                 through submitit (local / SLURM); each keeps
                                                 its per-image record (predictions.npz)
    compare     bagclip.compare                  every table row and figure point against a
                                                 reference, paired bootstrap interval
    baselines   bagclip.artefacts.context        WinCLIP-style (training-free) and
                                                 APRIL-GAN-style (heads without SAFR and SAG)
    cost        bagclip.cost.bench_main          Tables 4-5 measured here (kept once measured)
    artefacts   bagclip.artefacts (registry)     figures/: Figures 2-7, Tables 1-5, README.md

Killed anywhere and restarted, it continues: finished runs are read back (their metrics.json
is written last), an interrupted run resumes from its checkpoint, files are written atomically.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

from .artefacts import PARTS, artefacts, make_artefacts
from .artefacts.context import Context
from .artefacts.readme import write_readme
from .config import MINI_BACKBONE, Config
from .files import atomic_write_text
from .report import json_safe

log = logging.getLogger(__name__)

LABEL = "synthetic benchmark, {backbone}, NOT the paper's numbers"
MINI_NOTE = " (synthetic pretraining)"  # added after bagclip-mini's name
LABEL_FULL = "the paper's protocol (MVTec AD + VisA -> target sets), measured here"
SWEEPS = {"k": [5, 10, 15, 20, 30], "gcn_layers": [2, 3, 4, 5, 6, 7]}  # the paper's grids (4.3.2)
# Quick mode's grids. With 3 grid seeds, reproduce --quick makes 39 trainings (protocol 2 x 3,
# ablation 4 new variants x 3, K 4 new values x 3, P 3 new x 3), then LESSON_RUNS' 4, each
# evaluated on the 400 target images (the README gives the measured times).
QUICK_SWEEPS = {"k": [5, 10, 15, 20, 30], "gcn_layers": [2, 3, 5, 7]}
# The one-seed runs the instructor's key (notebooks/solutions) compares with the shared heads,
# made by the default `reproduce --quick` too (4 trainings, about a minute) so that
# `pytest notebooks/` after it reads them (bagclip.course) instead of training them in a kernel.
# A setting missing here is trained by the notebook that asks for it: slower, never different.
LESSON_RUNS = {"no pixel loss": {"loss_lambda": 0.0},  # solution 05, exercise 1
               "shared SAG": {"share_sag": True},  # solution 07, exercise 2
               "P=10": {"gcn_layers": 10},  # solution 08, exercise 2
               "learnt metric": {"metric_proj": True}}  # solution 08, exercise 3


def sensitivity_grids(sweeps: Mapping[str, Sequence] | None, full: bool) -> dict:
    """The grids of Figures 5-6: `sweeps` over the mode's default (SWEEPS, QUICK_SWEEPS), so a
    table giving only k keeps the default gcn_layers grid (said in the log). A setting no
    figure sweeps is refused (it would be ignored): ListError naming the ones that are."""
    from .errors import ListError

    default = SWEEPS if full else QUICK_SWEEPS
    if sweeps is None:
        return dict(default)
    unknown = [k for k in sweeps if k not in default]
    if unknown:
        raise ListError(f"the sweeps table names {', '.join(map(repr, unknown))}, which no sensitivity "
                        f"figure sweeps: Figure 5 sweeps k and Figure 6 gcn_layers; give either or both "
                        f"(one left out keeps its default grid)", setting="sweeps")
    for k in default:
        if k not in sweeps:
            log.info(f"sensitivity: {k} keeps its default grid {default[k]} (the sweeps table gives "
                     f"{', '.join(sweeps)} only)")
    return {k: list(sweeps.get(k, v)) for k, v in default.items()}


def _context(cfg: Config, out_dir, figures_dir, seeds, grid_seeds, device, synth_root, full: bool,
             sweeps, run_kw: dict) -> Context:
    """The data, the backbone and its cache, and the folders: what every artefact shares."""
    from .backbone import load_backbone
    from .cache import FeatureCache
    from .data import protocol_data
    from .fingerprint import check_zero_shot

    label = LABEL_FULL if full else LABEL.format(
        backbone=cfg.backbone + (MINI_NOTE if cfg.backbone == MINI_BACKBONE else ""))
    aux, targets = protocol_data(full=full, image_size=cfg.image_size, synth_root=synth_root)
    check_zero_shot(aux, targets, cfg.class_names)  # issue 19: a --synth-root of any tree
    backbone = load_backbone(cfg, device=device)
    ctx = Context(cfg, aux, targets, backbone, FeatureCache(backbone), Path(out_dir), Path(figures_dir),
                  label, list(seeds), list(grid_seeds),
                  sensitivity_grids(sweeps, full), run_kw,
                  summary={"label": label, "config": cfg.to_dict()})
    log.info(f"[{label}]\ntrain: {len(aux)} images of {len({s.class_name for s in aux})} classes\n"
             f"test:  {len(ctx.target)} images of {sorted({s.class_name for s in ctx.target})}")
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.figs.mkdir(parents=True, exist_ok=True)
    cfg.save(ctx.figs / "config.json")
    return ctx


def _readme_context(ctx: Context, command: str, full: bool) -> dict:
    cfg = ctx.cfg
    return {"command": command, "label": ctx.label,
            "mode": "paper protocol (--full)" if full else "embedded default (quick)",
            "backbone": cfg.backbone,
            "weights": ("shipped in bagclip/weights" if cfg.pretrained == cfg.backbone else
                        str(cfg.pretrained) if cfg.pretrained else "seeded random weights"),
            "data": ("the synthetic benchmark (auxiliary classes -> target classes)" if not full else
                     f"$BAGCLIP_DATA: {', '.join(ctx.targets)}"),
            "seeds": list(ctx.seeds), "grid_seeds": list(ctx.grid_seeds), "device": str(ctx.backbone.device),
            "machine": machine(str(ctx.backbone.device))}


def machine(device: str = "cpu") -> str:
    """What made the files: the device (CPU model or GPU), threads, and the versions of torch,
    open_clip and numpy (figures/README.md; docs/metrics.md says what another machine gets)."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy

    from .cost import hardware

    try:
        oc = version("open_clip_torch")
    except PackageNotFoundError:
        oc = "not installed"
    return f"{hardware(device)}; open_clip {oc}; numpy {numpy.__version__}"


QUICK_OUT = "runs/reproduce-quick"  # reproduce's default runs folder (the CLI, bagclip.course)
FULL_OUT = "runs/reproduce-full"


def reproduce(cfg: Config | None = None, out_dir: str | os.PathLike = QUICK_OUT,
              figures_dir: str | os.PathLike = "figures", seeds: Sequence[int] = (0, 1, 2),
              grid_seeds: Sequence[int] = (0, 1, 2), device: str | None = None, synth_root=None,
              progress: bool = True, parts: Sequence[str] = PARTS, full: bool = False,
              sweeps: Mapping[str, Sequence] | None = None, executor: str = "inprocess",
              slurm: Mapping | None = None, command: str = "bagclip reproduce --quick",
              lesson_runs: bool | None = None) -> dict:
    """The paper's experiments: heads trained on the auxiliary classes, evaluated zero-shot on
    the target classes, beside the baselines; artefacts into figures_dir, runs in out_dir.

    parts: "protocol" (Tables 1-2: ours and both baselines, `seeds`), "ablation" (Table 3),
    "sensitivity" (Figures 5-6; `sweeps`, default QUICK_SWEEPS in quick mode, the paper's
    SWEEPS in full mode), "cost" (Tables 4-5, measured once and kept), "figures" (Figures 2-4,
    7, the raw text maps per tap). Grids use grid_seeds. The artefacts of each part are
    bagclip.artefacts' registry. lesson_runs: also make LESSON_RUNS at cfg.seed (default: when
    this is the lessons' own setting: quick mode, its preset Config, the built-in data, every
    part). Returns a summary dict.
    """
    from .fingerprint import check_unique_values
    from .sweeps import check_grid

    artefacts(parts)  # refuses unknown parts before any work
    check_grid(None, None, seeds)  # issue 19: a seed twice, refused before any work
    check_unique_values(list(grid_seeds), "grid seeds", setting="grid_seeds")
    sweeps = sensitivity_grids(sweeps, full)  # issue 32: a table without k was a KeyError
    for param, values in sweeps.items():
        check_grid(param, values, grid_seeds)
    cfg = cfg or (Config() if full else Config.quick())
    ctx = _context(cfg, out_dir, figures_dir, seeds, grid_seeds, device, synth_root, full, sweeps,
                   dict(progress=progress, executor=executor, slurm=slurm))
    entries = make_artefacts(ctx, parts)
    if lesson_runs is None:  # the lessons' own setting only: theirs are the keys the runs get
        lesson_runs = not full and synth_root is None and cfg == Config.quick() and set(parts) == set(PARTS)
    if lesson_runs:
        log.info(f"\nthe exercises' runs (notebooks/solutions read them): {list(LESSON_RUNS)}, seed {cfg.seed}")
        ctx.run_settings(LESSON_RUNS, [cfg.seed])
    atomic_write_text(ctx.out / "results.json", json.dumps(json_safe(ctx.summary), indent=2))
    entries.append({"file": "config.json", "what": "the Config of every run (seed replaced per run)",
                    "seeds": "-", "part": None})
    write_readme(ctx.figs, entries, _readme_context(ctx, command, full))
    log.info(f"\nwritten: {ctx.figs}/ ({len(entries)} artefacts, README.md); runs in {ctx.out}")
    return ctx.summary

