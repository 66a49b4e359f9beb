"""One function per command: read the arguments, call the library, print what it made.
The library's errors propagate to `bagclip.cli.main`, which phrases them (cli/errors.py)."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from .options import _config, _out_dir, _trained

QUICK_BANNER = ("NOTE: quick mode = synthetic benchmark + bagclip-mini (synthetic pretraining, shipped "
                "with the kit). These are NOT the paper's numbers.")


def _datasets(specs: list[str], split: str, image_level: bool = False, what: str = "dataset"):
    """'name=root' specs -> {label: samples}; `what` names the flag's list (dataset, train, target)."""
    from ..data import load_dataset
    from ..fingerprint import check_unique_names

    check_unique_names(specs, what)  # issue 19: a second folder=B silently replaced folder=A
    out = {}
    for spec in specs:
        if "=" not in spec:
            raise SystemExit(f"--dataset expects name=root (e.g. mvtec=/data/mvtec_ad), got {spec!r}")
        name, root = spec.split("=", 1)
        out[name] = load_dataset(name, root, split, image_level=image_level)
    return out


def cmd_synth(a) -> None:
    from ..data.synth import generate

    root = generate(a.out, seed=a.seed or 0, size=a.size)
    print(f"synthetic benchmark written to {root}")


def cmd_cache(a) -> None:
    from ..backbone import load_backbone
    from ..cache import FeatureCache

    cfg = _config(a)
    bb = load_backbone(cfg, device=a.device)
    cache = FeatureCache(bb, a.cache_dir)
    for name, samples in _datasets(a.dataset, a.split).items():
        cache.ensure([s.image_path for s in samples])
        print(f"{name}: {len(samples)} images cached in {cache.dir}")


def cmd_train(a) -> None:
    from ..backbone import load_backbone
    from ..cache import FeatureCache
    from ..train import train

    cfg = _config(a)
    _out_dir(a.out, "--out")
    samples = [s for ss in _datasets(a.dataset, a.split).values() for s in ss]  # before the backbone
    bb = load_backbone(cfg, device=a.device)
    res = train(cfg, samples, bb, a.out, cache=FeatureCache(bb, a.cache_dir), resume=a.resume,
                save_every=a.save_every)
    print(f"trained heads saved to {res.out_dir}/heads.safetensors (final loss {res.history[-1]:.4f})")


def cmd_eval(a) -> None:
    from ..evaluate import evaluate
    from ..inference import scorer
    from ..report import write_results
    from .decisions import eval_normal_only

    model, cfg, bb = _trained(a)
    _claim(a.out, legacy=lambda p: any((q / "metrics.json").is_file() for q in p.iterdir() if q.is_dir()))
    for name, samples in _datasets(a.dataset, a.split, a.image_level).items():
        seen: dict = {}
        r = evaluate(scorer(model, bb, cfg), samples, cfg.image_size, dataset_name=name,
                     resolution=a.resolution, on_class=lambda c, s, y: seen.__setitem__(c, (s, y)))
        eval_normal_only(a, cfg, name, r, seen, bb.weights_sha256)  # F1-max beside the normal-only threshold
        write_results(r, Path(a.out) / name)
        print(json.dumps({k: v for k, v in r.items() if k != "per_class"}, indent=2, default=float))


def _map_names(paths: list[str], maps_dir: Path | None = None) -> dict[str, str]:
    """Anomaly-map file names, unique and never a file of the user's in maps_dir (issue 19:
    bagclip.files.unique_names; in a folder bagclip did not make, every file there is taken)."""
    from ..files import is_kit_folder, unique_names
    from .decisions import is_kit_map

    taken: set[str] = set()
    if maps_dir is not None and maps_dir.is_dir():
        here = {q.name for q in maps_dir.iterdir() if not is_kit_map(q)}  # our own maps: rewritten
        inputs = {Path(p).name for p in paths if Path(p).resolve().parent == maps_dir.resolve()}
        taken = inputs if is_kit_folder(maps_dir) else here
    return unique_names(paths, "_map.png", taken)


def cmd_predict(a) -> None:
    from ..inference import predict
    from ..conformal import plural
    from .decisions import map_png, part_images, predict_line, predict_setup, shown

    # heads + their calibration, or the training-free scorer; names the scorer that answers
    model, cfg, bb, cal = predict_setup(a)
    maps_dir = _out_dir(a.save_maps, "--save-maps") if a.save_maps else None
    if maps_dir is not None and not any(maps_dir.iterdir()):  # issue 19: a folder of ours
        from ..files import claim_output

        claim_output(maps_dir, "--save-maps")
    skipped: list = []
    items = part_images(a.images, skipped)  # issue 32: the maps it wrote before are not parts
    preds = predict(items, cfg=cfg, model=model, backbone=bb, class_name=a.class_name,
                    device=a.device, skipped=skipped) if items else []
    names = _map_names([p.path for p in preds], maps_dir) if maps_dir else {}
    for p in preds:
        flag = predict_line(p, a, cal)
        print(f"{shown(p.path)}\tscore={p.image_score:.4f}\tp_img={p.p_img:.4f}\tmax_map={p.anomaly_map.max():.4f}{flag}")
        if maps_dir:
            from ..files import atomic_write_bytes

            atomic_write_bytes(maps_dir / names[p.path], map_png(p, cal))
    for path, why in skipped:
        print(f"skipped {shown(path)}: {shown(why)}", file=sys.stderr)
    if len(skipped) == 1 and not preds:
        raise SystemExit(f"bagclip predict: cannot score {shown(skipped[0][0])}: {shown(skipped[0][1])}; "
                         f"give an image file of a part")
    if skipped:
        names = ", ".join(shown(p) for p, _ in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        n = len(skipped) + len(preds)
        raise SystemExit(f"bagclip predict: {len(skipped)} of {plural(n, 'image')} could "
                         f"not be read or scored ({names}; reasons above); replace or remove them")


def _claim(path, legacy=None) -> Path:
    """--out checked writable and claimed as the kit's before any work (issue 19): a folder of the
    user's files is refused, never written into (`legacy`: outputs of an older kit, recognised)."""
    from ..files import claim_output

    _out_dir(path, "--out")
    return claim_output(path, "--out", legacy=legacy, setting="out")


def _protocol_data(a, cfg):
    """(aux samples, {target name: samples}): --train/--target specs, or the synthetic groups;
    every target set checked disjoint from training (issue 19: by class and by file)."""
    from ..fingerprint import check_zero_shot

    if a.quick and not (a.train or a.target):
        from ..data import protocol_data

        aux, targets = protocol_data(image_size=cfg.image_size)
    elif not (a.train and a.target):
        raise SystemExit("give --train NAME=ROOT (auxiliary sets, e.g. mvtec=... visa=...) and "
                         "--target NAME=ROOT (e.g. mpdd=...), or --quick for the synthetic benchmark")
    else:
        aux = [s for ss in _datasets(a.train, "test", what="train").values() for s in ss]
        targets = _datasets(a.target, "test", what="target")
    check_zero_shot(aux, targets, cfg.class_names)
    return aux, targets


def _run_settings(a, kind: str) -> None:
    from ..backbone import load_backbone
    from ..cache import FeatureCache
    from ..report import summarize
    from ..sweeps import write_ablation, write_sweep

    from ..sweeps import check_grid, check_sweep

    cfg = _config(a)
    # refused before any work: a bad setting or value, a seed or value twice, the seed swept
    # as a setting (issue 19)
    if kind == "sweep":
        check_sweep(cfg, a.param, a.values, a.seeds)
    else:
        check_grid(None, None, a.seeds)
    _claim(a.out, legacy=lambda p: any(p.glob("sweep_*.csv")) or (p / "ablation.csv").is_file()
           or any(p.glob("*/seed_*")))
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
    from ..cost import bench_main

    cfg = _config(a)
    _claim(a.out, legacy=lambda p: (p / "table4_sag_cost.csv").is_file())
    if a.quick:
        print(QUICK_BANNER)
    bench_main(cfg, device=a.device or "cpu", out_dir=a.out, repeats=a.repeats)


def cmd_reproduce(a) -> None:
    from ..experiments import reproduce

    if a.full and a.quick:
        raise SystemExit("reproduce: --quick (the default) or --full, not both")
    a.quick = not a.full
    if a.full and not os.environ.get("BAGCLIP_DATA"):
        raise SystemExit("reproduce --full needs the real datasets: set BAGCLIP_DATA to a folder "
                         "holding mvtec_ad/ and visa/ and the target sets (README, full mode)")
    cfg = _config(a)
    from ..experiments import FULL_OUT, QUICK_OUT

    out = a.out or (FULL_OUT if a.full else QUICK_OUT)
    figures = a.figures or ("figures/full" if a.full else "figures")
    _out_dir(out, "--out"), _out_dir(figures, "--figures")
    from ..files import claim_output  # issue 19: never write over a folder of the user's

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
    from ..pretrain import PretrainConfig, export_weights, pretrain, write_record

    if a.export and Path(a.export).is_dir():  # before training, not after it (and not a temp file's name)
        raise ValueError(f"--export {a.export} is a folder; give the file to write the weights to, e.g. "
                         f"--export {Path(a.export) / 'bagclip-mini.safetensors'}")
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    recipe = {}
    if getattr(a, "recipe", None):  # a JSON of PretrainConfig fields; flags given beside it win
        try:
            recipe = json.loads(Path(a.recipe).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"bagclip pretrain-mini: --recipe {a.recipe}: cannot read it as JSON ({e})")
        unknown = sorted(k for k in recipe if k not in fields and not k.startswith("_"))
        if unknown:
            raise SystemExit(f"bagclip pretrain-mini: --recipe {a.recipe}: unknown settings {', '.join(unknown)}")
        recipe = {k: v for k, v in recipe.items() if k in fields}
    try:
        cfg = PretrainConfig(**{**recipe, **{k: v for k, v in vars(a).items() if k in fields}})
    except (TypeError, ValueError) as e:
        raise SystemExit(f"bagclip pretrain-mini: {e}")
    try:
        pretrain(cfg, a.out)
    except KeyboardInterrupt:
        raise SystemExit(f"\ninterrupted: the last checkpoint in {a.out} is kept; rerun the same "
                         f"command to resume from it")
    if a.export:
        sha = export_weights(a.out, a.export, {"seed": cfg.seed, "steps": cfg.steps})
        rec = write_record(Path(a.export), sha, a.out, "bagclip " + " ".join(sys.argv[1:]))
        print(f"weights {a.export} (sha256 {sha[:16]}...), record {rec}")
