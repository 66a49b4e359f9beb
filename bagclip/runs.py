"""Runs: one training + zero-shot evaluation per (Config, seed), named by a key, resumable,
shared by every grid that needs the same run. The lessons (`course.trained_heads`), reproduce
(`experiments`, `artefacts`) and the sweeps all go through here.

    run_key(cfg, aux, targets)        a run's name: 16 hex digits of what makes it
    train_or_resume(cfg, aux, ...)    the heads of a run folder: trained, resumed or read back
    run_one(cfg, aux, targets, ...)   heads + metrics per target set; metrics.json marks it done
    run_settings(cfg, settings, ...)  a grid of runs (setting x seed) as a long DataFrame,
                                      here or through submitit (`submit_runs`, local or SLURM)

A run folder holds the training files (bagclip/checkpoint.py) and, once finished,
predictions.npz (per target set, every image's score and pixel histograms: what
`bagclip.compare` resamples) and metrics.json (written last, atomically) with the Config, target
sizes and input fingerprints (`fingerprint.inputs_fingerprint`: the listings' sizes and dates)
it was made with: a finished run is read back only with the same, an interrupted one resumes
from its checkpoint (which refuses other training data or weights). Keys hash the
fingerprints, so other data is another run (issue 19: `reproduce --synth-root B` reused the
rows of A). `run_records` reads the predictions of a grid's runs.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .checkpoint import STATE
from .config import Config
from .errors import BagclipError
from .evaluate import evaluate_recorded
from .files import atomic_write_bytes, atomic_write_text
from .fingerprint import check_unique_values, inputs_fingerprint
from .metrics import METRIC_KEYS

EXECUTORS = ("inprocess", "local", "slurm")
PREDICTIONS = "predictions.npz"  # per-image records of a finished run, written before metrics.json


def target_sizes(targets: Mapping[str, Sequence]) -> dict[str, int]:
    """{target set: number of images}: what a finished run records it was evaluated on."""
    return {ds: len(samples) for ds, samples in targets.items()}


def _weights_sha(cfg: Config) -> str | None:
    """SHA-256 of a local weights file (memoised per process; load_backbone hashes it anyway);
    shipped weights count by their record's hash in `backbone_identity`."""
    from .backbone import weights_digest
    from .weights import SHIPPED

    p = cfg.pretrained
    return weights_digest(p) if p and p not in SHIPPED and Path(p).is_file() else None


def run_inputs(aux: Sequence, targets: Mapping[str, Sequence]) -> dict:
    """What a run is computed from beside its Config: the fingerprints of the training listing
    and of each target set (files by size and date: cheap, nothing read)."""
    return inputs_fingerprint(aux, targets)


def run_key(cfg: Config, aux: Sequence, targets: Mapping[str, Sequence], inputs: dict | None = None) -> str:
    """A run's identity (16 hex digits): its Config, the backbone's identity (shipped weights by
    hash, a weights file by its SHA-256), the fingerprints of the training and target sets
    (`run_inputs`, given as `inputs` when computed once for many keys) and the target sizes.
    Two settings with the same Config (the ablation's full model and the K=10 point) share one
    run; new weights, another training set or other target files make another."""
    text = json.dumps({"config": cfg.to_dict(), "backbone": cfg.backbone_identity(),
                       "weights_sha256": _weights_sha(cfg), "inputs": inputs or run_inputs(aux, targets),
                       "targets": target_sizes(targets)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_run(run_dir, cfg: Config, sizes: Mapping[str, int], inputs: dict | None = None) -> dict | None:
    """The per-dataset metrics of a finished run in run_dir made with cfg on targets of these
    sizes (and, given `inputs`, from these inputs: a record without them is not reused), or None
    (not run, interrupted, or made with something else: then it is evaluated again, and its
    training resumed only when made from the same training data and weights)."""
    done = Path(run_dir) / "metrics.json"
    if not done.is_file():
        return None
    saved = json.loads(done.read_text())
    same = saved.get("targets") == dict(sizes) and saved.get("config") == cfg.to_dict()
    if same and (inputs is None or saved.get("inputs") == json.loads(json.dumps(inputs))):
        return saved["metrics"]
    return None


def reusable_run(roots: Sequence, key: str, cfg: Config, sizes: Mapping[str, int], inputs: dict) -> Path | None:
    """The first roots/<key> that is a finished run of cfg on these inputs with its predictions
    (a `reuse` root of plan_runs, e.g. reproduce's), or None."""
    for r in roots:
        d = Path(r) / key
        if (d / PREDICTIONS).is_file() and finished_run(d, cfg, sizes, inputs) is not None:
            return d
    return None


def read_training(run_dir, cfg: Config, backbone):
    """The finished training of run_dir as bagclip.train.TrainResult, read only (nothing is
    written there, unlike a resume): the heads (`checkpoint.load_heads`, which refuses a torn or
    foreign file) and the loss history. ValueError when the heads were trained with another Config."""
    from .checkpoint import HISTORY, load_heads
    from .train import TrainResult

    run_dir = Path(run_dir)
    model, saved, _ = load_heads(run_dir, backbone=backbone)
    if saved != cfg:
        raise ValueError(f"{run_dir}: its heads were trained with other settings than the run asked for")
    return TrainResult(model, json.loads((run_dir / HISTORY).read_text()), run_dir)


def train_or_resume(cfg: Config, aux: Sequence, backbone, run_dir, cache, progress: bool = False):
    """The heads of run_dir trained with cfg on aux: trained, or resumed from its checkpoint (a
    finished training resumes to nothing left to do). run_dir None: trained in memory.
    Returns bagclip.train.TrainResult (model, history, out_dir)."""
    from .train import train

    resume = run_dir is not None and (Path(run_dir) / STATE).is_file()
    return train(cfg, aux, backbone, run_dir, cache=cache, resume=resume, progress=progress)


def save_records(path, records: Mapping[str, dict]) -> Path:
    """{target set: record} (bagclip.evaluate.evaluate_recorded) into one compressed .npz,
    atomically; `load_records` reads it back."""
    arrays = {}
    for ds, rec in records.items():
        for k, v in rec.items():
            v = np.asarray(v)
            if k in ("neg", "pos"):
                v = v.astype(np.int32)  # counts of at most H * W pixels
            arrays[f"{ds}::{k}"] = v.astype(str) if v.dtype.kind == "U" else v
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_records(path) -> dict[str, dict]:
    """{target set: record} from `save_records`' file."""
    out: dict[str, dict] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            ds, k = key.split("::", 1)
            v = z[key]
            out.setdefault(ds, {})[k] = v.item() if v.ndim == 0 else v
    return out


def _evaluate(model, cfg: Config, backbone, cache, targets: Mapping[str, Sequence]) -> tuple[dict, dict]:
    """({dataset: metrics}, {dataset: record}) of a detector on every target set."""
    per_ds, records = {}, {}
    for ds, samples in targets.items():
        m, records[ds] = evaluate_recorded(model, cfg, backbone, cache, samples)
        per_ds[ds] = {k: float(v) for k, v in m.items() if k in METRIC_KEYS}
    return per_ds, records


def run_one(cfg: Config, aux: Sequence, targets: Mapping[str, Sequence], run_dir, backbone, cache,
            inputs: dict | None = None) -> dict:
    """One run: heads trained with cfg (`train_or_resume`), evaluated on every target set;
    run_dir/predictions.npz, then run_dir/metrics.json (written last, atomically, with
    `run_inputs`: it marks the run finished); a finished run made from the same inputs is read
    back, not redone. Returns {dataset: metrics}."""
    sizes = target_sizes(targets)
    run_dir = Path(run_dir) if run_dir is not None else None
    inputs = inputs or run_inputs(aux, targets)
    if run_dir is not None and (saved := finished_run(run_dir, cfg, sizes, inputs)) is not None:
        return saved
    model = train_or_resume(cfg, aux, backbone, run_dir, cache).model
    per_ds, records = _evaluate(model, cfg, backbone, cache, targets)
    if run_dir is not None:  # the marker of a finished run, with what it was run on
        save_records(run_dir / PREDICTIONS, records)
        atomic_write_text(run_dir / "metrics.json", json.dumps({"config": cfg.to_dict(), "targets": sizes,
                                                                "inputs": inputs, "metrics": per_ds}, indent=2))
    return per_ds


def run_records(jobs: Sequence[tuple], aux: Sequence, targets: Mapping[str, Sequence], backbone,
                cache) -> dict[str, dict[str, list[dict]]]:
    """{setting: {dataset: [record per seed]}} of plan_runs' jobs, read from their folders'
    predictions.npz; a finished run made before predictions were kept gets them now (its heads
    read back, evaluated once more)."""
    out: dict[str, dict[str, list[dict]]] = {}
    for name, _seed, c, run_dir in jobs:
        path = Path(run_dir) / PREDICTIONS
        if not path.is_file():
            model = train_or_resume(c, aux, backbone, run_dir, cache).model
            save_records(path, _evaluate(model, c, backbone, cache, targets)[1])
        for ds, rec in load_records(path).items():
            out.setdefault(name, {}).setdefault(ds, []).append(rec)
    return out


def _job(cfg_dict: dict, aux: Sequence, targets: Mapping[str, Sequence], run_dir: str, cache_root: str,
         device: str | None, inputs: dict | None = None) -> dict:
    """One run as a submitit job: its own backbone, the feature cache shared on disk."""
    from .backbone import load_backbone
    from .cache import FeatureCache

    cfg = Config.from_dict(cfg_dict)
    backbone = load_backbone(cfg, device=device)
    return run_one(cfg, aux, targets, run_dir, backbone, FeatureCache(backbone, cache_root), inputs)


def spread_devices(device: str | None, n_jobs: int, n_gpus: int) -> list[str | None]:
    """One device per job: a plain "cuda" over n_gpus > 1 visible GPUs becomes cuda:0, cuda:1, ...
    round-robin (`submit_runs` starts them in waves of one per GPU); anything else is kept for
    every job."""
    if device == "cuda" and n_gpus > 1:
        return [f"cuda:{i % n_gpus}" for i in range(n_jobs)]
    return [device] * n_jobs


def submit_runs(jobs: Sequence[tuple[Config, Path]], aux: Sequence, targets: Mapping[str, Sequence],
                cache_root, folder, executor: str = "local", device: str | None = None,
                slurm: Mapping | None = None, inputs: dict | None = None) -> None:
    """Run (cfg, run_dir) pairs through submitit, one job per run.

    "local": submitit's local executor, one process per job as SLURM would, one job per visible
    GPU at a time (one at a time without a GPU). "slurm": sbatch with slurm's options, e.g.
    {"slurm_partition": "gpu", "gpus_per_node": 1, "timeout_min": 240}. Waits for all; a failed
    job raises with its log's path. Results are read from the run folders afterwards."""
    import torch

    try:
        import submitit
    except ImportError:  # an extra: pip install 'bagclip[cluster]'
        raise BagclipError(f"executor {executor!r} needs submitit: pip install submitit") from None
    ex = submitit.AutoExecutor(folder=str(folder), cluster="local" if executor == "local" else "slurm")
    opts = {"timeout_min": 60, **(slurm or {})}
    if executor == "local":
        opts = {k: v for k, v in opts.items() if not k.startswith("slurm_")}
    ex.update_parameters(**opts)
    n_gpus = torch.cuda.device_count() if executor == "local" else 0  # a SLURM job sees its own GPUs
    placed = list(zip(jobs, spread_devices(device, len(jobs), n_gpus)))
    # SLURM queues everything at once; the local executor starts whatever it is given, so it
    # gets waves of one job per GPU (one job on a CPU-only machine: each uses every core)
    wave = max(1, n_gpus) if executor == "local" else len(jobs)
    for start in range(0, len(jobs), wave):
        with ex.batch():
            handles = [ex.submit(_job, c.to_dict(), list(aux), dict(targets), str(d), str(cache_root), dev, inputs)
                       for (c, d), dev in placed[start:start + wave]]
        for h in handles:
            h.result()




def _check_settings(cfg: Config, settings: Mapping[str, dict], aux: Sequence,
                    targets: Mapping[str, Sequence], executor: str, seeds: Sequence[int]) -> None:
    """Refuse, before any training, an empty set, a bad setting, a seed given twice, or a setting
    that would change the shared backbone."""
    if not aux:
        raise ValueError("run_settings: no auxiliary (training) samples")
    if not targets or not all(len(t) for t in targets.values()):
        raise ValueError(f"run_settings: every target dataset needs samples; got "
                         f"{ {k: len(v) for k, v in targets.items()} }")
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}; choose one of {EXECUTORS}")
    check_unique_values(list(seeds), "seeds")  # issue 19: a seed twice ran, and counted, one run twice
    for name, changes in settings.items():
        cfg.replace(**changes)  # fail on a bad setting before any training
        changed = sorted(set(Config.backbone_fields()) & set(changes))
        if changed:
            raise ValueError(f"setting {name!r} changes the backbone ({changed}); the settings share "
                             f"one backbone and feature cache: make a separate run for it")


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "=-_." else "_" for ch in name)


def plan_runs(cfg: Config, settings: Mapping[str, dict], aux: Sequence, targets: Mapping[str, Sequence],
              seeds: Sequence[int], out_dir=None, runs_root=None, reuse: Sequence = (),
              inputs: dict | None = None) -> list[tuple]:
    """[(setting name, seed, Config, run folder or None)], one per (setting, seed): folders
    out_dir/<setting>/seed_<s>, or runs_root/<run_key> (shared by every grid making that run).
    reuse: other runs roots (e.g. reproduce's) whose finished run of the same key and inputs,
    with its predictions, is taken instead (read only: nothing is written there)."""
    sizes = target_sizes(targets)
    inputs = inputs or run_inputs(aux, targets)  # once, not once per key
    jobs = []
    for name in settings:
        for seed in seeds:
            c = cfg.replace(**{**settings[name], "seed": seed})
            key = run_key(c, aux, targets, inputs)
            done = reusable_run(reuse, key, c, sizes, inputs) if runs_root is not None else None
            run_dir = (done or Path(runs_root) / key if runs_root is not None
                       else Path(out_dir) / _slug(name) / f"seed_{seed}" if out_dir is not None else None)
            jobs.append((name, seed, c, run_dir))
    return jobs


def run_settings(cfg: Config, settings: Mapping[str, dict], aux: Sequence, targets: Mapping[str, Sequence],
                 seeds: Sequence[int] = (0,), backbone=None, cache=None, out_dir=None,
                 device: str | None = None, progress: bool = True, runs_root=None,
                 executor: str = "inprocess", slurm: Mapping | None = None, reuse: Sequence = ()) -> pd.DataFrame:
    """Train + evaluate once per (setting, seed).

    settings: name -> Config changes (heads only: the backbone and its cache are shared, so a
    change to a `Config.backbone_fields()` field is refused). targets: dataset name -> samples.
    Runs live in out_dir/<setting>/seed_<s>, or, with runs_root, in runs_root/<run_key> (shared
    by every grid that makes the same run; a finished one under a `reuse` root is read there). executor: "inprocess" (here, one after the other),
    "local" or "slurm" (submitit, one job per unfinished run; see `submit_runs`).
    Returns a long frame: setting, seed, dataset, METRIC_KEYS (fractions), one row per
    (setting, seed, dataset).
    """
    from tqdm.auto import tqdm

    from .backbone import load_backbone
    from .cache import FeatureCache

    _check_settings(cfg, settings, aux, targets, executor, seeds)
    if executor != "inprocess" and out_dir is None and runs_root is None:
        raise ValueError(f"executor {executor!r} needs out_dir or runs_root: results come back as files")
    backbone = backbone or load_backbone(cfg, device=device)
    cache = cache or FeatureCache(backbone)
    inputs = run_inputs(aux, targets)
    jobs = plan_runs(cfg, settings, aux, targets, seeds, out_dir, runs_root, reuse, inputs)
    if executor != "inprocess":
        sizes = target_sizes(targets)
        pending = {str(d): (c, d) for _, _, c, d in jobs if finished_run(d, c, sizes, inputs) is None}
        if pending:
            cache.ensure([s.image_path for s in [*aux, *[s for t in targets.values() for s in t]]],
                         progress=progress)  # encoded once, here; the jobs only read
            submit_runs(list(pending.values()), aux, targets, cache.root,
                        Path(runs_root or out_dir) / "submitit", executor,
                        device=device or str(backbone.device), slurm=slurm, inputs=inputs)
    rows = []
    for name, seed, c, run_dir in tqdm(jobs, desc="runs", unit="run", disable=not progress):
        per_ds = run_one(c, aux, targets, run_dir, backbone, cache, inputs)
        rows += [{"setting": name, "seed": seed, "dataset": ds, **m} for ds, m in per_ds.items()]
    return pd.DataFrame(rows, columns=["setting", "seed", "dataset", *METRIC_KEYS])
