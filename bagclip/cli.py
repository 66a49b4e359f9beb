"""Command line: bagclip {synth, cache, train, eval, predict, sweep, ablate, bench, reproduce,
pretrain-mini}.

Every command takes --quick (the embedded CPU default: the shipped bagclip-mini backbone, the
synthetic benchmark) or the paper's settings, plus --config FILE and --set key=value overrides.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

QUICK_BANNER = ("NOTE: quick mode = synthetic benchmark + bagclip-mini (synthetic pretraining, shipped "
                "with the kit). These are NOT the paper's numbers.")


def _config(a):
    from .config import Config

    cfg = Config.load(a.config) if getattr(a, "config", None) else (Config.quick() if a.quick else Config())
    changes = {}
    for kv in getattr(a, "set", None) or []:
        if "=" not in kv:
            raise SystemExit(f"--set expects key=value, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            changes[k] = json.loads(v)
        except json.JSONDecodeError:
            changes[k] = None if v == "None" else v
    if getattr(a, "seed", None) is not None:
        changes["seed"] = a.seed
    if getattr(a, "class_name_map", None):
        changes["class_names"] = {**cfg.class_names, **json.loads(Path(a.class_name_map).read_text())}
    if changes:
        d = cfg.to_dict()
        d.update(changes)
        cfg = Config.from_dict(d)
    return cfg


def _datasets(specs: list[str], split: str, image_level: bool = False):
    """'name=root' specs -> {label: samples}."""
    from .data import load_dataset

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
    bb = load_backbone(cfg, device=a.device)
    samples = [s for ss in _datasets(a.dataset, a.split).values() for s in ss]
    res = train(cfg, samples, bb, a.out, cache=FeatureCache(bb, a.cache_dir), resume=a.resume,
                save_every=a.save_every)
    print(f"trained heads saved to {res.out_dir}/heads.safetensors (final loss {res.history[-1]:.4f})")


def cmd_eval(a) -> None:
    from .evaluate import evaluate
    from .inference import scorer
    from .report import write_results
    from .train import load_heads

    model, cfg, bb = load_heads(a.checkpoint, device=a.device)
    for name, samples in _datasets(a.dataset, a.split, a.image_level).items():
        r = evaluate(scorer(model, bb, cfg), samples, cfg.image_size, dataset_name=name,
                     resolution=a.resolution)
        write_results(r, Path(a.out) / name)
        print(json.dumps({k: v for k, v in r.items() if k != "per_class"}, indent=2, default=float))


def cmd_predict(a) -> None:
    from .inference import predict

    cfg = _config(a) if a.checkpoint is None else None
    preds = predict(a.images, a.checkpoint, class_name=a.class_name, cfg=cfg, device=a.device)
    if a.checkpoint is None:
        print("WARNING: no --checkpoint: untrained heads, scores are meaningless", file=sys.stderr)
    for p in preds:
        flag = "" if a.threshold is None else ("  ANOMALOUS" if p.is_anomalous(a.threshold) else "  normal")
        print(f"{p.path}\tscore={p.image_score:.4f}\tp_img={p.p_img:.4f}\tmax_map={p.anomaly_map.max():.4f}{flag}")
        if a.save_maps:
            import numpy as np
            from PIL import Image

            out = Path(a.save_maps)
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(p.anomaly_map, 0, 1) * 255).astype("uint8")).save(
                out / f"{Path(p.path).stem}_map.png")


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
    if a.quick:
        print(QUICK_BANNER)
    aux, targets = _protocol_data(a, cfg)
    bb = load_backbone(cfg, device=a.device)
    out = Path(a.out)
    kw = dict(seeds=a.seeds, backbone=bb, cache=FeatureCache(bb, a.cache_dir))
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
    if a.quick:
        print(QUICK_BANNER)
    bench_main(cfg, device=a.device or "cpu", out_dir=a.out, repeats=a.repeats)


def cmd_reproduce(a) -> None:
    from .experiments import reproduce

    if not a.quick:
        raise SystemExit("reproduce without --quick needs the real datasets: use `bagclip train` on "
                         "mvtec=...,visa=... and `bagclip eval` on the targets (README, full mode)")
    print(QUICK_BANNER)
    reproduce(_config(a), out_dir=a.out, seeds=a.seeds, device=a.device, parts=a.parts,
              grid_seeds=a.grid_seeds)


def cmd_pretrain_mini(a) -> None:
    from .pretrain import PretrainConfig, export_weights, pretrain, write_record

    cfg = PretrainConfig(steps=a.steps, batch_pairs=a.batch_pairs, lr=a.lr, warmup=a.warmup, seed=a.seed,
                         threads=a.threads, workers=a.workers, w_probe=a.w_probe, w_proto=a.w_proto,
                         init=a.init)
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
        p.add_argument("--seed", type=int)
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
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_synth)

    common(sub.add_parser("cache", help="encode datasets into the feature cache")).set_defaults(fn=cmd_cache)

    p = common(sub.add_parser("train", help="train the heads (aux sets: test splits, the field's convention)"))
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--save-every", type=int, default=None, help="also checkpoint every N steps")
    p.set_defaults(fn=cmd_train)

    p = common(sub.add_parser("eval", help="evaluate trained heads"))
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="results")
    p.add_argument("--image-level", action="store_true", help="datasets without masks")
    p.add_argument("--resolution", default=None, help="an int, or 'native' (default: image_size)")
    p.set_defaults(fn=cmd_eval)

    p = common(sub.add_parser("predict", help="anomaly maps for an image or a folder"), data=False)
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint")
    p.add_argument("--class-name", default="object")
    p.add_argument("--threshold", type=float)
    p.add_argument("--save-maps")
    p.set_defaults(fn=cmd_predict)

    p = common(sub.add_parser("reproduce", help="end-to-end: data, train, evaluate, tables"), data=False)
    p.add_argument("--out", default="runs/reproduce-quick")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the main protocol")
    p.add_argument("--grid-seeds", type=int, nargs="+", default=[0], help="seeds of ablation and sweeps")
    p.add_argument("--parts", nargs="+", default=["protocol", "ablation", "sensitivity", "cost"],
                   choices=["protocol", "ablation", "sensitivity", "cost"])
    p.set_defaults(fn=cmd_reproduce)

    def protocol(p):
        p.add_argument("--train", action="append", metavar="NAME=ROOT", help="auxiliary set (test split)")
        p.add_argument("--target", action="append", metavar="NAME=ROOT", help="zero-shot target set")
        p.add_argument("--seeds", type=int, nargs="+", default=[0])
        p.add_argument("--cache-dir", default=None)
        return p

    p = protocol(common(sub.add_parser("sweep", help="sensitivity of one setting (Figures 5-6)"), data=False))
    p.add_argument("--param", default="k", help="a Config field, e.g. k or gcn_layers")
    p.add_argument("--values", type=json.loads, nargs="+", default=[5, 10, 15, 20, 30])
    p.add_argument("--out", default="runs/sweep")
    p.set_defaults(fn=cmd_sweep)

    p = protocol(common(sub.add_parser("ablate", help="the ablation variants (Table 3)"), data=False))
    p.add_argument("--out", default="runs/ablation")
    p.set_defaults(fn=cmd_ablate)

    p = common(sub.add_parser("bench", help="cost tables 4-5 measured on this machine (random weights)"),
               data=False)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(fn=cmd_bench)

    from .pretrain import PretrainConfig  # defaults: the settings of the shipped weights

    d = PretrainConfig()
    p = sub.add_parser("pretrain-mini", help="pretrain bagclip-mini on the synthetic world (resumable)")
    p.add_argument("--out", default="runs/pretrain-mini", help="run folder (checkpoint, history)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-pairs", type=int, default=d.batch_pairs, help="scenes per step (2 images each)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--w-probe", type=float, default=d.w_probe, help="weight of the linear-probe loss")
    p.add_argument("--w-proto", type=float, default=d.w_proto, help="weight of the state-prototype loss")
    p.add_argument("--init", help="start from a previous run's checkpoint or weights (a second stage)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (1: fastest on 2 shared cores)")
    p.add_argument("--workers", type=int, default=d.workers, help="processes drawing the world")
    p.add_argument("--export", help="also write the weights here (float16 safetensors + .json record)")
    p.set_defaults(fn=cmd_pretrain_mini)

    a = ap.parse_args(argv)
    if getattr(a, "resolution", None) not in (None, "native"):
        a.resolution = int(a.resolution)
    try:
        a.fn(a)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"bagclip {a.cmd}: {err}")


if __name__ == "__main__":
    main()
