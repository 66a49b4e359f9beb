"""Command line: bagclip {synth, cache, train, eval, predict, sweep, ablate, bench, reproduce,
pretrain-mini}.

Every command takes --quick (the embedded CPU default: the shipped bagclip-mini backbone, the
synthetic benchmark) or the paper's settings, plus --config FILE (its settings over the preset)
and --set key=value overrides, all checked by Config in one place. With --checkpoint, eval and
predict use the settings the heads were trained with; only the evaluation settings may change.

Bad input ends with one line on stderr naming the file or setting and what to do (exit 1;
argparse's own errors exit 2; Ctrl-C exits 130 and says how to resume), never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
from pathlib import Path

QUICK_BANNER = ("NOTE: quick mode = synthetic benchmark + bagclip-mini (synthetic pretraining, shipped "
                "with the kit). These are NOT the paper's numbers.")


PARTS = ("protocol", "ablation", "sensitivity", "cost", "figures")  # bagclip.experiments.PARTS (no torch here)


def _config(a):
    """The Config of a command: --quick's preset or the paper's, --config FILE over it, then
    --set / --seed / --class-name-map; every value checked by Config."""
    from .config import Config

    cfg = Config.quick() if getattr(a, "quick", False) else Config()
    if getattr(a, "config", None):
        cfg = Config.load(a.config, base=cfg)
    return cfg.with_overrides(getattr(a, "set", None) or [], **_extra_changes(a, cfg))


def _extra_changes(a, cfg) -> dict:
    changes = {}
    if getattr(a, "seed", None) is not None:
        changes["seed"] = a.seed
    if getattr(a, "class_name_map", None):
        changes["class_names"] = {**cfg.class_names, **_name_map(a.class_name_map)}
    return changes


def _name_map(path) -> dict:
    p = Path(path)
    what = 'a JSON file {"folder name": "prompt name", ...}'
    if not p.is_file():
        raise FileNotFoundError(f"--class-name-map {p}: file not found; give {what}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"--class-name-map {p}: not valid JSON ({err}); give {what}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"--class-name-map {p}: expected {what}, got {type(data).__name__}")
    return data


def _trained(a):
    """(model, cfg, backbone) from --checkpoint, with the evaluation settings of --set /
    --class-name-map applied; --quick, --config and training settings are refused."""
    from .train import load_heads

    given = [f for f, v in (("--quick", a.quick), ("--config", a.config)) if v]
    if given:
        raise ValueError(f"{' and '.join(given)} cannot be used with --checkpoint: the heads carry the "
                         f"settings they were trained with. Drop {' and '.join(given)}; evaluation "
                         f"settings change with --set smoothing_sigma=... / image_score=... and "
                         f"--class-name-map")
    model, trained, bb = load_heads(a.checkpoint, device=a.device)
    cfg = trained.with_overrides(a.set or [], **_extra_changes(a, trained))
    return model, trained.check_eval_changes(cfg), bb


def _out_dir(path, flag: str) -> Path:
    """`path` as a folder that exists and takes files, checked before any work, or ValueError."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p} is a file; give a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as err:
        raise ValueError(f"{flag} {p} is not a writable folder ({err.strerror or err}); choose "
                         f"another folder") from None
    return p


def _threshold(text: str) -> float:
    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not (math.isfinite(t) and 0.0 <= t <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: scores are in [0, 1]; give a threshold such as 0.5")
    return t


def _resolution(text: str):
    if text == "native":
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: give a positive whole number of pixels or 'native'")


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


def _datasets(specs: list[str], split: str, image_level: bool = False):
    """'name=root' specs -> {label: samples}."""
    from .data import load_dataset
    from .fingerprint import check_unique_names

    check_unique_names(specs)  # issue 19: a second folder=B silently replaced folder=A
    out = {}
    for spec in specs:
        if "=" not in spec:
            raise SystemExit(f"--dataset expects name=root (e.g. mvtec=/data/mvtec_ad), got {spec!r}")
        name, root = spec.split("=", 1)
        out[name] = load_dataset(name, root, split, image_level=image_level)
    return out


def cmd_synth(a) -> None:
    from .data.synth import generate

    root = generate(a.out, seed=a.seed or 0, size=a.size)
    print(f"synthetic benchmark written to {root}")


def cmd_cache(a) -> None:
    from .backbone import load_backbone
    from .cache import FeatureCache

    cfg = _config(a)
    bb = load_backbone(cfg, device=a.device)
    cache = FeatureCache(bb, a.cache_dir)
    for name, samples in _datasets(a.dataset, a.split).items():
        cache.ensure([s.image_path for s in samples])
        print(f"{name}: {len(samples)} images cached in {cache.dir}")


def cmd_train(a) -> None:
    from .backbone import load_backbone
    from .cache import FeatureCache
    from .train import train

    cfg = _config(a)
    _out_dir(a.out, "--out")
    bb = load_backbone(cfg, device=a.device)
    samples = [s for ss in _datasets(a.dataset, a.split).values() for s in ss]
    res = train(cfg, samples, bb, a.out, cache=FeatureCache(bb, a.cache_dir), resume=a.resume,
                save_every=a.save_every)
    print(f"trained heads saved to {res.out_dir}/heads.safetensors (final loss {res.history[-1]:.4f})")


def cmd_eval(a) -> None:
    from .evaluate import evaluate
    from .inference import scorer
    from .report import write_results

    model, cfg, bb = _trained(a)
    _out_dir(a.out, "--out")
    for name, samples in _datasets(a.dataset, a.split, a.image_level).items():
        r = evaluate(scorer(model, bb, cfg), samples, cfg.image_size, dataset_name=name,
                     resolution=a.resolution)
        write_results(r, Path(a.out) / name)
        print(json.dumps({k: v for k, v in r.items() if k != "per_class"}, indent=2, default=float))


def _map_names(paths: list[str], maps_dir: Path | None = None) -> dict[str, str]:
    """Anomaly-map file names, unique and never a file of the user's in maps_dir (issue 19:
    bagclip.files.unique_names; in a folder bagclip did not make, every file there is taken)."""
    from .files import is_kit_folder, unique_names

    taken: set[str] = set()
    if maps_dir is not None and maps_dir.is_dir():
        here = {q.name for q in maps_dir.iterdir()}
        inputs = {Path(p).name for p in paths if Path(p).resolve().parent == maps_dir.resolve()}
        taken = inputs if is_kit_folder(maps_dir) else here
    return unique_names(paths, "_map.png", taken)


def cmd_predict(a) -> None:
    from .inference import predict

    if a.checkpoint is not None:
        model, cfg, bb = _trained(a)
    else:
        model, cfg, bb = None, _config(a), None
    maps_dir = _out_dir(a.save_maps, "--save-maps") if a.save_maps else None
    if maps_dir is not None and not any(maps_dir.iterdir()):  # issue 19: a folder of ours
        from .files import claim_output

        claim_output(maps_dir, "--save-maps")
    skipped: list = []
    preds = predict(a.images, cfg=cfg, model=model, backbone=bb, class_name=a.class_name,
                    device=a.device, skipped=skipped)
    if a.checkpoint is None:
        print("WARNING: no --checkpoint: untrained heads, scores are meaningless", file=sys.stderr)
    names = _map_names([p.path for p in preds], maps_dir) if maps_dir else {}
    for p in preds:
        flag = "" if a.threshold is None else ("  ANOMALOUS" if p.is_anomalous(a.threshold) else "  normal")
        print(f"{p.path}\tscore={p.image_score:.4f}\tp_img={p.p_img:.4f}\tmax_map={p.anomaly_map.max():.4f}{flag}")
        if maps_dir:
            import io

            import numpy as np
            from PIL import Image

            from .files import atomic_write_bytes

            buf = io.BytesIO()
            Image.fromarray((np.clip(p.anomaly_map, 0, 1) * 255).astype("uint8")).save(buf, format="PNG")
            atomic_write_bytes(maps_dir / names[p.path], buf.getvalue())
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if len(skipped) == 1 and not preds:
        raise SystemExit(f"bagclip predict: cannot read {skipped[0][0]}: {skipped[0][1]}; give an image file")
    if skipped:
        names = ", ".join(p for p, _ in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        raise SystemExit(f"bagclip predict: {len(skipped)} of {len(skipped) + len(preds)} image(s) could "
                         f"not be read ({names}; reasons above); replace or remove them")


def _protocol_data(a, cfg):
    """(aux samples, {target name: samples}): --train/--target specs, or the synthetic groups."""
    if a.quick and not (a.train or a.target):
        from .data import protocol_data

        return protocol_data(image_size=cfg.image_size)
    if not (a.train and a.target):
        raise SystemExit("give --train NAME=ROOT (auxiliary sets, e.g. mvtec=... visa=...) and "
                         "--target NAME=ROOT (e.g. mpdd=...), or --quick for the synthetic benchmark")
    aux = [s for ss in _datasets(a.train, "test").values() for s in ss]
    return aux, _datasets(a.target, "test")


def _run_settings(a, kind: str) -> None:
    from .backbone import load_backbone
    from .cache import FeatureCache
    from .sweeps import summarize, write_ablation, write_sweep

    cfg = _config(a)
    _out_dir(a.out, "--out")
    if a.quick:
        print(QUICK_BANNER)
    aux, targets = _protocol_data(a, cfg)
    bb = load_backbone(cfg, device=a.device)
    out = Path(a.out)
    slurm = {k: v for k, v in (("slurm_partition", a.partition), ("gpus_per_node", a.gpus),
                               ("timeout_min", a.time)) if v is not None}
    kw = dict(seeds=a.seeds, backbone=bb, cache=FeatureCache(bb, a.cache_dir), executor=a.executor, slurm=slurm)
    if kind == "sweep":
        df = write_sweep(cfg, a.param, a.values, aux, targets, out, **kw)
        print(summarize(df).round(1).to_string())
        print(f"written: {out}/sweep_{a.param}.csv, {out}/sensitivity_{a.param}.png")
    else:
        write_ablation(cfg, aux, targets, out, **kw)
        print(f"written: {out}/ablation.csv, {out}/table3.md")


def cmd_sweep(a) -> None:
    _run_settings(a, "sweep")


def cmd_ablate(a) -> None:
    _run_settings(a, "ablate")


def cmd_bench(a) -> None:
    from .cost import bench_main

    cfg = _config(a)
    _out_dir(a.out, "--out")
    if a.quick:
        print(QUICK_BANNER)
    bench_main(cfg, device=a.device or "cpu", out_dir=a.out, repeats=a.repeats)


def cmd_reproduce(a) -> None:
    from .experiments import reproduce

    if a.full and a.quick:
        raise SystemExit("reproduce: --quick (the default) or --full, not both")
    a.quick = not a.full
    if a.full and not os.environ.get("BAGCLIP_DATA"):
        raise SystemExit("reproduce --full needs the real datasets: set BAGCLIP_DATA to a folder "
                         "holding mvtec_ad/ and visa/ and the target sets (README, full mode)")
    cfg = _config(a)
    out = a.out or ("runs/reproduce-full" if a.full else "runs/reproduce-quick")
    figures = a.figures or ("figures/full" if a.full else "figures")
    _out_dir(out, "--out"), _out_dir(figures, "--figures")
    from .files import claim_output  # issue 19: never write over a folder of the user's

    claim_output(figures, "--figures", legacy=lambda p: (p / "README.md").is_file() and (
        p / "README.md").read_text(errors="replace").startswith("# Figures and tables regenerated by"))
    claim_output(out, "--out", legacy=lambda p: (p / "runs").is_dir())
    if a.quick:
        print(QUICK_BANNER)
    slurm = {k: v for k, v in (("slurm_partition", a.partition), ("gpus_per_node", a.gpus),
                               ("timeout_min", a.time)) if v is not None}
    cmd = "bagclip reproduce " + ("--full" if a.full else "--quick")
    reproduce(cfg, out_dir=out, figures_dir=figures, seeds=a.seeds,
              device=a.device, parts=a.parts, grid_seeds=a.grid_seeds, full=a.full,
              executor=a.executor, slurm=slurm, command=cmd, sweeps=a.sweeps, synth_root=a.synth_root)


def cmd_pretrain_mini(a) -> None:
    from .pretrain import PretrainConfig, export_weights, pretrain, write_record

    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    cfg = PretrainConfig(**{k: v for k, v in vars(a).items() if k in fields})
    try:
        pretrain(cfg, a.out)
    except KeyboardInterrupt:
        raise SystemExit(f"\ninterrupted: the last checkpoint in {a.out} is kept; rerun the same "
                         f"command to resume from it")
    if a.export:
        sha = export_weights(a.out, a.export, {"seed": cfg.seed, "steps": cfg.steps})
        rec = write_record(Path(a.export), sha, a.out, "bagclip " + " ".join(sys.argv[1:]))
        print(f"weights {a.export} (sha256 {sha[:16]}...), record {rec}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bagclip", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, data=True):
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

    p = sub.add_parser("synth", help="write the synthetic benchmark")
    p.add_argument("out")
    p.add_argument("--size", type=_positive, default=224)
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(fn=cmd_synth)

    common(sub.add_parser("cache", help="encode datasets into the feature cache")).set_defaults(fn=cmd_cache)

    p = common(sub.add_parser("train", help="train the heads (aux sets: test splits, the field's convention)"))
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--save-every", type=_positive, default=None, help="also checkpoint every N steps")
    p.set_defaults(fn=cmd_train)

    p = common(sub.add_parser("eval", help="evaluate trained heads"))
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="results")
    p.add_argument("--image-level", action="store_true", help="datasets without masks")
    p.add_argument("--resolution", type=_resolution, default=None, help="an int, or 'native' (default: image_size)")
    p.set_defaults(fn=cmd_eval)

    p = common(sub.add_parser("predict", help="anomaly maps for an image or a folder"), data=False)
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint")
    p.add_argument("--class-name", default="object")
    p.add_argument("--threshold", type=_threshold, help="flag scores >= this (in [0, 1])")
    p.add_argument("--save-maps")
    p.set_defaults(fn=cmd_predict)

    def executor(p):
        p.add_argument("--executor", choices=["inprocess", "local", "slurm"], default="inprocess",
                       help="where the runs go: here, or one submitit job per run (local processes "
                            "or SLURM); the feature cache is shared on disk, finished runs skipped")
        p.add_argument("--partition", default=None, help="SLURM partition (--executor slurm)")
        p.add_argument("--gpus", type=int, default=None, help="GPUs per job (--executor slurm)")
        p.add_argument("--time", type=int, default=None, help="minutes per job (submitit's timeout_min)")
        return p

    p = executor(common(sub.add_parser("reproduce", help="the paper's figures and tables into figures/ "
                                                 "(quick by default; --full: the paper's protocol)"),
                        data=False))
    p.add_argument("--full", action="store_true", help="the paper's protocol ($BAGCLIP_DATA, ViT-L-14-336)")
    p.add_argument("--out", default=None, help="runs folder (default runs/reproduce-quick or -full)")
    p.add_argument("--figures", default=None, help="artefacts folder (default figures, or figures/full)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the main protocol")
    p.add_argument("--grid-seeds", type=int, nargs="+", default=[0, 1], help="seeds of ablation and sweeps")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    p.add_argument("--sweeps", type=_sweeps, default=None, metavar="JSON",
                   help='the K/P grids, e.g. \'{"k": [5, 15], "gcn_layers": [3, 5]}\' (default: '
                        'reduced grids in quick mode, the paper\'s in full mode)')
    p.add_argument("--synth-root", default=None, help="quick mode: a tree made by `bagclip synth` "
                                                      "(default: generated once into the cache)")
    p.set_defaults(fn=cmd_reproduce)

    def protocol(p):
        p.add_argument("--train", action="append", metavar="NAME=ROOT", help="auxiliary set (test split)")
        p.add_argument("--target", action="append", metavar="NAME=ROOT", help="zero-shot target set")
        p.add_argument("--seeds", type=int, nargs="+", default=[0])
        p.add_argument("--cache-dir", default=None)
        return p

    p = executor(protocol(common(sub.add_parser("sweep", help="sensitivity of one setting (Figures 5-6)"), data=False)))
    p.add_argument("--param", default="k", help="a Config field, e.g. k or gcn_layers")
    p.add_argument("--values", type=json.loads, nargs="+", default=[5, 10, 15, 20, 30])
    p.add_argument("--out", default="runs/sweep")
    p.set_defaults(fn=cmd_sweep)

    p = executor(protocol(common(sub.add_parser("ablate", help="the ablation variants (Table 3)"),
                                 data=False)))
    p.add_argument("--out", default="runs/ablation")
    p.set_defaults(fn=cmd_ablate)

    p = common(sub.add_parser("bench", help="cost tables 4-5 measured on this machine (random weights)"),
               data=False)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--repeats", type=_positive, default=5)
    p.set_defaults(fn=cmd_bench)

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
    p.add_argument("--threads", type=int, help="torch threads (default 1: fastest on 2 shared cores)")
    p.add_argument("--workers", type=int, help="processes drawing the world (default 1)")
    p.add_argument("--export", default=None, help="also write the weights here (float16 safetensors + .json record)")
    p.set_defaults(fn=cmd_pretrain_mini)

    a = ap.parse_args(argv)
    try:
        from .backbone import check_device

        check_device(a.device if hasattr(a, "device") else None)
        a.fn(a)
    except KeyboardInterrupt:
        print(_interrupted(a, argv), file=sys.stderr)
        raise SystemExit(130) from None
    except (FileNotFoundError, ValueError, FloatingPointError) as err:  # DataError, ConfigError:
        # ValueErrors; FloatingPointError: pretraining's non-finite loss (issue 19)
        raise SystemExit(f"bagclip {a.cmd}: {_phrase(err)}") from None
    except OSError as err:  # a full disk, a read-only folder...
        what = f"{err.strerror}: {err.filename}" if err.filename and err.strerror else str(err)
        advice = _RESUME.get(a.cmd, "Free space or fix the path or permissions, then rerun")
        if a.cmd == "train" and not Path(a.out, "state.pt").is_file():  # issue 19: nothing to resume
            advice = "Free space or fix the permissions, then rerun the same command"
        raise SystemExit(f"bagclip {a.cmd}: {what}. {advice}") from None


# --- issue 19 (port to cli/errors.py): library errors name the setting they advise
# (`err.setting`); the CLI names the flag that sets it.
_FLAGS = {"image_level": "eval --image-level", "resolution": "eval --resolution",
          "pretrained": "--set pretrained=FILE", "out": "--out"}


def _phrase(err: BaseException) -> str:
    text = " ".join(str(err).split())  # one line, whatever the library wrote
    flag = _FLAGS.get(getattr(err, "setting", None) or "")
    return f"{text} (bagclip {flag})" if flag else text
# --- end issue 19


_RESUME = {
    "train": "Free space or fix the permissions, then add --resume to the same command: the last "
             "complete checkpoint is kept",
    "reproduce": "Free space or fix the permissions, then rerun the same command: finished runs "
                 "are reused and training resumes from its last checkpoint",
}


def _interrupted(a, argv) -> str:
    sys.stderr.flush()
    if a.cmd == "train":
        cmd = " ".join(argv if argv is not None else sys.argv[1:])
        hint = "" if a.resume else " --resume"
        return (f"\nbagclip train: interrupted. The last complete checkpoint in {a.out} is kept; "
                f"continue with: bagclip {cmd}{hint}")
    if a.cmd in ("reproduce", "sweep", "ablate"):
        return (f"\nbagclip {a.cmd}: interrupted. Rerun the same command to continue: finished "
                f"runs are reused and training resumes from its last checkpoint")
    return f"\nbagclip {a.cmd}: interrupted (no file is left half-written); rerun the command"


if __name__ == "__main__":
    main()
