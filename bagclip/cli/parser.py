"""The arguments of every command. Parsing imports no torch: the argument types below are
plain, and the few that need the library import it only when their flag is given."""
from __future__ import annotations

import argparse
import json
import math

from ..artefacts import PARTS


def _threshold(text: str) -> float:
    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not (math.isfinite(t) and 0.0 <= t <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: scores are in [0, 1]; give a threshold such as 0.5")
    return t


def _resolution(text: str):
    from ..evaluate import parse_resolution  # the evaluator's own rule

    try:
        return parse_resolution(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive whole number of pixels or 'native'") from None


def _rate(text: str) -> float:
    try:
        r = float(text)
    except ValueError:
        r = math.nan
    if not 0 < r < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a rate in (0, 1), e.g. 0.05 for 5 %")
    return r


def _positive(text: str) -> int:
    if text.strip().isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")


def _seed(text: str) -> int:
    if text.strip().isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 0")


def _sweeps(text: str) -> dict:
    """--sweeps: a JSON object {setting: [values]} (issue 19: '[1, 2]' was a traceback)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not (isinstance(data, dict) and data and all(isinstance(v, list) and v for v in data.values())):
        raise argparse.ArgumentTypeError(f"{text!r}: give a JSON object of settings and their values, "
                                         f"e.g. '{{\"k\": [5, 15], \"gcn_layers\": [3, 5]}}'")
    return data


def _common(p, data: bool = True):
    """--quick / --config / --set / --seed / --device / --class-name-map (and the data flags)."""
    p.add_argument("--quick", action="store_true", help="embedded CPU default (bagclip-mini, synthetic data)")
    p.add_argument("--config", help="a Config JSON/YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a Config field")
    p.add_argument("--seed", type=_seed)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--class-name-map", help="JSON file: folder name -> prompt name")
    if data:
        p.add_argument("--dataset", action="append", required=True, metavar="NAME=ROOT",
                       help="mvtec visa mpdd btad miad insplad folder meta synth")
        p.add_argument("--split", default="test")
        p.add_argument("--cache-dir", default=None)
    return p


def _executor(p):
    p.add_argument("--executor", choices=["inprocess", "local", "slurm"], default="inprocess",
                   help="where the runs go: here, or one submitit job per run (local processes "
                        "or SLURM); the feature cache is shared on disk, finished runs skipped")
    p.add_argument("--partition", default=None, help="SLURM partition (--executor slurm)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs per job (--executor slurm)")
    p.add_argument("--time", type=int, default=None, help="minutes per job (submitit's timeout_min)")
    return p


def _protocol(p):
    p.add_argument("--train", action="append", metavar="NAME=ROOT", help="auxiliary set (test split)")
    p.add_argument("--target", action="append", metavar="NAME=ROOT", help="zero-shot target set")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--cache-dir", default=None)
    return p


def _add_model_commands(sub, c) -> None:
    """synth, cache, train, eval, predict."""
    p = sub.add_parser("synth", help="write the synthetic benchmark")
    p.add_argument("out")
    p.add_argument("--size", type=_positive, default=224)
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(fn=c.cmd_synth)
    _common(sub.add_parser("cache", help="encode datasets into the feature cache")).set_defaults(fn=c.cmd_cache)
    p = _common(sub.add_parser("train", help="train the heads (aux sets: test splits, the field's convention)"))
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--save-every", type=_positive, default=None, help="also checkpoint every N steps")
    p.set_defaults(fn=c.cmd_train)
    p = _common(sub.add_parser("eval", help="evaluate trained heads"))
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="results")
    p.add_argument("--image-level", action="store_true", help="datasets without masks")
    p.add_argument("--resolution", type=_resolution, default=None, help="an int, or 'native' (default: image_size)")
    p.set_defaults(fn=c.cmd_eval)
    p = _common(sub.add_parser("predict", help="anomaly maps for an image or a folder"), data=False)
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint")
    p.add_argument("--class-name", default="object")
    p.add_argument("--threshold", type=_threshold, help="flag scores >= this (in [0, 1])")
    p.add_argument("--save-maps")
    p.add_argument("--calibration", help="a calibration file or folder (default: beside --checkpoint)")
    p.set_defaults(fn=c.cmd_predict)


def _add_decision_commands(sub, d) -> None:
    """calibrate, adapt (cli/decisions.py)."""
    p = _common(sub.add_parser("calibrate", help="thresholds and map scale from normal images of one class"),
                data=False)
    p.add_argument("images", nargs="+", help="normal images of the class (files or folders)")
    p.add_argument("--class-name", required=True)
    p.add_argument("--checkpoint", help="trained heads (the calibration is written beside them)")
    p.add_argument("--out", help="without --checkpoint: folder for the training-free scorer's calibration")
    p.add_argument("--fpr", type=_rate, default=0.05, help="image false-positive rate (default 0.05)")
    p.add_argument("--pixel-fpr", type=_rate, default=0.01,
                   help="share of normal pixels above the pixel threshold; maps are divided by it (default 0.01)")
    p.set_defaults(fn=d.cmd_calibrate)
    p = _common(sub.add_parser("adapt", help="train heads on normal images of a class with drawn defects"),
                data=False)
    p.add_argument("images", nargs="+", help="normal images of the class (files or folders)")
    p.add_argument("--class-name", required=True)
    p.add_argument("--out", required=True, help="run folder (the same checkpoint files as train)")
    p.add_argument("--init", help="start from these trained heads (a run folder); default: from scratch")
    p.add_argument("--copies", type=_positive, default=2, help="defective copies per normal image (default 2)")
    p.add_argument("--exclude-kinds", nargs="+", default=[], metavar="KIND",
                   help="defect kinds never drawn (e.g. the kinds of the set you will test on)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--save-every", type=_positive, default=None)
    p.add_argument("--cache-dir", default=None)
    p.set_defaults(fn=d.cmd_adapt)


def _add_experiment_commands(sub, c) -> None:
    """reproduce, sweep, ablate, bench."""
    p = _executor(_common(sub.add_parser("reproduce", help="the paper's figures and tables into figures/ "
                                                          "(quick by default; --full: the paper's protocol)"),
                          data=False))
    p.add_argument("--full", action="store_true", help="the paper's protocol ($BAGCLIP_DATA, ViT-L-14-336)")
    p.add_argument("--out", default=None, help="runs folder (default runs/reproduce-quick or -full)")
    p.add_argument("--figures", default=None, help="artefacts folder (default figures, or figures/full)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the main protocol")
    p.add_argument("--grid-seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of ablation and sweeps")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    p.add_argument("--sweeps", type=_sweeps, default=None, metavar="JSON",
                   help='the K/P grids, e.g. \'{"k": [5, 15], "gcn_layers": [3, 5]}\' (default: '
                        'reduced grids in quick mode, the paper\'s in full mode)')
    p.add_argument("--synth-root", default=None, help="quick mode: a tree made by `bagclip synth` "
                                                      "(default: generated once into the cache)")
    p.set_defaults(fn=c.cmd_reproduce)
    p = _executor(_protocol(_common(sub.add_parser("sweep", help="sensitivity of one setting (Figures 5-6)"),
                                    data=False)))
    p.add_argument("--param", default="k", help="a Config field, e.g. k or gcn_layers")
    p.add_argument("--values", type=json.loads, nargs="+", default=[5, 10, 15, 20, 30])
    p.add_argument("--out", default="runs/sweep")
    p.set_defaults(fn=c.cmd_sweep)
    p = _executor(_protocol(_common(sub.add_parser("ablate", help="the ablation variants (Table 3)"), data=False)))
    p.add_argument("--out", default="runs/ablation")
    p.set_defaults(fn=c.cmd_ablate)
    p = _common(sub.add_parser("bench", help="cost tables 4-5 measured on this machine (random weights)"),
                data=False)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--repeats", type=_positive, default=5)
    p.set_defaults(fn=c.cmd_bench)


def _add_pretrain(sub, c) -> None:
    # Settings left out keep PretrainConfig's defaults (the shipped run's); not importing it here
    # keeps torch out of every command's start-up.
    p = sub.add_parser("pretrain-mini", help="pretrain bagclip-mini on the synthetic world (resumable)",
                       argument_default=argparse.SUPPRESS)
    p.add_argument("--out", default="runs/pretrain-mini", help="run folder (checkpoint, history)")
    p.add_argument("--steps", type=int, help="optimisation steps (default 1000)")
    p.add_argument("--batch-pairs", type=int, help="scenes per step, 2 images each (default 24)")
    p.add_argument("--lr", type=float, help="AdamW peak learning rate (default 5e-4)")
    p.add_argument("--warmup", type=int, help="warm-up steps (default 50)")
    p.add_argument("--seed", type=int, help="weights and world seed (default 0)")
    p.add_argument("--w-probe", type=float, help="weight of the linear-probe loss (default 1)")
    p.add_argument("--w-proto", type=float, help="weight of the state-prototype loss (default 0)")
    p.add_argument("--w-mil", type=float, help="weight of the top-patch image-state loss (default 0)")
    p.add_argument("--min-contrast", type=int, help="label only defect pixels changed by more than this "
                   "(uint8 levels; default 0: the raw masks)")
    p.add_argument("--init", help="start from a previous run's checkpoint or weights (a second stage)")
    p.add_argument("--threads", type=int, help="torch threads (default 2)")
    p.add_argument("--workers", type=int, help="processes drawing the world (default 0: in the trainer)")
    p.add_argument("--precision", choices=("float32", "bfloat16"), help="forward and losses (default bfloat16)")
    p.add_argument("--reuse", type=int, help="steps each drawn batch serves, rotated / flipped (default 1)")
    p.add_argument("--w-tie", type=float, help="weight of the class-token-follows-top-patches loss (default 0)")
    p.add_argument("--snapshot-every", type=int, help="also keep float16 weights every N steps (learning curves)")
    p.add_argument("--patch-proj", choices=("proj", "own"), help="projection of the patch losses: the shipped "
                   "proj (v2, tokens born aligned) or one of their own, dropped at export (v3; default proj)")
    p.add_argument("--recipe", help="JSON file of these settings (e.g. bagclip/weights/recipe.json); flags win")
    p.add_argument("--export", default=None, help="also write the weights here (float16 safetensors + .json record)")
    p.set_defaults(fn=c.cmd_pretrain_mini)


def build_parser(description: str = "") -> argparse.ArgumentParser:
    import bagclip.cli.commands as commands  # the submodules by name: the package imports this one
    import bagclip.cli.decisions as decisions

    ap = argparse.ArgumentParser(prog="bagclip", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_model_commands(sub, commands)
    _add_decision_commands(sub, decisions)
    _add_experiment_commands(sub, commands)
    _add_pretrain(sub, commands)
    return ap
