"""What BAG-CLIP costs on this machine: the paper's Table 4 (one SAG) and Table 5 (inference).

Everything is measured here, nothing copied; the paper's numbers (`bagclip.paper.paper_table`)
sit beside ours, and every table carries a `hardware` column so that a CPU number is never read
as the paper's A6000 one.
- params: counted from the modules.
- GFLOPs: `torch.utils.flop_counter.FlopCounterMode`, which counts matrix products (mm, bmm,
  baddbmm, addmm, ...: 2 FLOPs per multiply-add), plus one formula of ours for the edge-list
  aggregation `embedding_bag` (2 FLOPs per edge and feature: a multiply and an add).
  Element-wise ops (exp, top-k, ReLU, normalisation) are not counted, as in the paper's
  3.84 GFLOPs = 2 N^2 D for graph construction. From N = 512 on (measured under no_grad)
  our distance product multiplies only the row blocks on and right of the diagonal
  (`bagclip.sag.pairwise_d2`), so the count there is about 2/3 of 2 N^2 D (2.56 GFLOPs at
  the paper's size).
- peak memory: the most allocated during the call beyond what was live before it (inputs and
  weights excluded). CUDA: `torch.cuda.max_memory_allocated`; CPU: the torch profiler's
  allocation and free events (the paper's "peak VRAM" is the CUDA one).
- time: median of `repeats` runs after `WARMUP` warm-up rounds, under no_grad, CUDA
  synchronised, cases round-robin; every run's time is kept in `df.attrs["timing"]`, and
  `timing_check(df)` says whether the parts' medians sum to the total's within the runs' own
  spread (`sags_within_heads` checks Table 4 against Table 5). `threads` sets torch's CPU
  threads while timing (None: as they are): on a CPU shared with other jobs, threads that
  wait for each other make multi-thread times swing by an order of magnitude.

    sag_cost(cfg)                     Table 4: one SAG module (one tap), one image
    timing_check(t4 or t5)            do the parts sum to the total, within noise?
    inference_cost(cfg)               Table 5: backbone encode + heads + smoothing, one image
    graph_scaling(cfg, sizes)         graph construction cost against image size (N^2)
    paper_size_parameters()           trainable parameters at the paper's sizes vs its claims
    bench_main(cfg, device, out_dir)  all of it logged as markdown and written to CSV
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .config import Config
from .files import atomic_write_text
from .model import BAGCLIP, count_parameters, make_sag
from .paper import paper_table
from .report import number, to_markdown

log = logging.getLogger(__name__)

COMPONENTS = ("dynamic graph construction", "GCN feature propagation", "total")
STAGES = ("backbone", "heads", "smoothing + score")  # Table 5's parts of inference_ms
WARMUP = 2  # untimed rounds first: lazy allocations, thread pools and caches settle
REL_FLOOR = 0.1  # timing_check's smallest tolerance, as a share of the total (call overheads)
MEASURED = ("params_m", "gflops", "peak_mem_mb", "time_ms")
PAPER_T4 = {"params_m": "paper_params_m", "gflops": "paper_gflops",
            "peak_mem_mb": "paper_peak_vram_mb", "time_ms": "paper_time_ms"}  # ours -> paper's column


# ---------------------------------------------------------------------------- measuring helpers
def hardware(device: str | torch.device = "cpu") -> str:
    """One line naming what measured: device name, CPU threads, torch (and CUDA) version."""
    dev = torch.device(device)
    if dev.type == "cuda":
        name = f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda})"
    else:
        name = platform.processor() or platform.machine()
        try:  # Linux leaves platform.processor() empty; /proc/cpuinfo has the model name
            lines = Path("/proc/cpuinfo").read_text().splitlines()
            name = next(l.split(":", 1)[1].strip() for l in lines if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
        name = f"CPU {name}"
    return f"{name}; {torch.get_num_threads()} threads; torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def times_ms(cases: dict[str, Callable[[], object]], device: torch.device, repeats: int,
             warmup: int = WARMUP, clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """`repeats` wall times (ms) of each case after `warmup` untimed rounds. Cases run
    round-robin so that load from other processes hits all of them alike."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    times: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(warmup + repeats):
        for name, fn in cases.items():
            _sync(device)
            t0 = clock()
            fn()
            _sync(device)
            if rep >= warmup:
                times[name].append((clock() - t0) * 1e3)
    return times


def median_ms(cases: dict[str, Callable[[], object]], device: torch.device, repeats: int,
              warmup: int = WARMUP) -> dict[str, float]:
    """Median of `times_ms` per case."""
    return {name: statistics.median(ts) for name, ts in times_ms(cases, device, repeats, warmup).items()}


def spread_ms(ts: Sequence[float]) -> float:
    """Interquartile range of some runs' times (0 for fewer than two)."""
    if len(ts) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(ts, n=4, method="inclusive")
    return q3 - q1


def timing_check(df: pd.DataFrame, rel_floor: float = REL_FLOOR) -> dict:
    """Whether the parts' median times sum to the total's median within noise, for a table of
    `sag_cost` (graph + GCN vs one whole SAG, timed as separate calls) or `inference_cost`
    (encode + heads + smoothing vs the whole, stamped inside each run). Noise: the runs' own
    spread, sqrt(sum of the squared IQRs); tolerance max(2 noise, rel_floor total). Returns
    parts_ms, sum_ms, total_ms, difference_ms (sum - total), noise_ms, tolerance_ms,
    consistent, repeats, warmup, threads."""
    t = df.attrs["timing"]
    parts = {k: statistics.median(v) for k, v in t["parts"].items()}
    total = statistics.median(t["total"])
    noise = math.sqrt(sum(spread_ms(v) ** 2 for v in [*t["parts"].values(), t["total"]]))
    tol = max(2 * noise, rel_floor * total)
    diff = sum(parts.values()) - total
    return dict(parts_ms=parts, sum_ms=sum(parts.values()), total_ms=total, difference_ms=diff,
                noise_ms=noise, tolerance_ms=tol, consistent=abs(diff) <= tol,
                repeats=len(t["total"]), warmup=t["warmup"], threads=t["threads"])


def sags_within_heads(t4: pd.DataFrame, t5: pd.DataFrame, n_taps: int, rel_floor: float = REL_FLOOR) -> dict:
    """The heads run one SAG per tap (at Table 4's N and D), so n_taps x one SAG's time must
    not exceed Table 5's heads time beyond noise (both from their runs, see timing_check).
    Returns sags_ms, heads_ms, tolerance_ms, consistent, share (sags / heads)."""
    sag, heads = t4.attrs["timing"]["total"], t5.attrs["timing"]["parts"]["heads"]
    sags_ms, heads_ms = n_taps * statistics.median(sag), statistics.median(heads)
    noise = math.sqrt((n_taps * spread_ms(sag)) ** 2 + spread_ms(heads) ** 2)
    tol = max(2 * noise, rel_floor * heads_ms)
    return dict(sags_ms=sags_ms, heads_ms=heads_ms, tolerance_ms=tol, consistent=sags_ms <= heads_ms + tol,
                share=sags_ms / heads_ms)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op CPU threads set to n inside the block (None: left as they are)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _embedding_bag_flop(weight_shape, indices_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * indices_shape[0] * weight_shape[1]  # weighted sum: one multiply-add per (edge, feature)


_CUSTOM_FLOPS = {torch.ops.aten._embedding_bag: _embedding_bag_flop,
                 torch.ops.aten._embedding_bag_forward_only: _embedding_bag_flop}


def count_gflops(fn: Callable[[], object]) -> float:
    """GFLOPs of one call of fn, as FlopCounterMode counts them (+ embedding_bag, see top)."""
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
        fn()
    return counter.get_total_flops() / 1e9


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null: the profiler's C++ side (kineto) logs start/stop
    lines there, which Jupyter would show in every cell."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory (MiB) allocated by one call of fn beyond what was allocated before it."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cur = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        cur += e.self_cpu_memory_usage  # each allocation (+) and free (-) counted once
        peak = max(peak, cur)
    return peak / 2**20


def params_m(module: nn.Module | nn.Parameter | None) -> float:
    """All parameters of a module (or one parameter), in millions."""
    return sum(count_parameters(module)) / 1e6


def cost_config(cfg: Config) -> Config:
    """The same architecture with random weights (costs do not depend on weights; no download).
    Keeps the activation the configured weights would select (QuickGELU for OpenAI's)."""
    return cfg.replace(pretrained=None, quick_gelu=cfg.use_quick_gelu)


# ---------------------------------------------------------------------------- Table 4
def _features(n: int, dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """Random patch features (1, N, D); graph cost does not depend on their values."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, n, dim, generator=g).to(device)


def sag_cost(cfg: Config, device: str | torch.device = "cpu", repeats: int = 7, n: int | None = None,
             dim: int | None = None, sparse: bool = True, warmup: int = WARMUP,
             threads: int | None = None) -> pd.DataFrame:
    """Table 4 for one SAG module (one tap; BAG-CLIP runs one per tap) on one image.

    N = cfg.grid^2 patches, D = backbone width (overridable by n, dim); K, P, hidden from cfg.
    sparse: the edge-list path SAG uses by default; False: the dense N x N path.
    Rows COMPONENTS; columns component, params_m, gflops, peak_mem_mb, time_ms, the paper's
    values as paper_params_m, paper_gflops, paper_peak_vram_mb, paper_time_ms, then setting
    and hardware. Every run's time is in df.attrs["timing"] (see `timing_check`).
    """
    with torch_threads(threads):
        return _sag_cost(cfg, torch.device(device), repeats, n, dim, sparse, warmup)


def _sag_cost(cfg: Config, device: torch.device, repeats: int, n: int | None, dim: int | None,
              sparse: bool, warmup: int) -> pd.DataFrame:
    n = n or cfg.grid ** 2
    dim = dim or cfg.arch.width
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sag = make_sag(cfg, dim, sparse=sparse)
    sag = sag.to(device).eval()
    h = _features(n, dim, cfg.seed, device)
    with torch.no_grad():
        graph = sag.graph(h)
        cases = {COMPONENTS[0]: lambda: sag.graph(h),
                 COMPONENTS[1]: lambda: sag.gcn_layers(graph, h),
                 COMPONENTS[2]: lambda: sag(h)}
        owners = {COMPONENTS[0]: sag.metric, COMPONENTS[1]: sag.gcn, COMPONENTS[2]: sag}
        runs = times_ms(cases, device, repeats, warmup)
        rows = [dict(component=c, params_m=params_m(owners[c]), gflops=count_gflops(fn),
                     peak_mem_mb=peak_mb(fn, device), time_ms=statistics.median(runs[c]))
                for c, fn in cases.items()]
    df = pd.DataFrame(rows)
    paper = paper_table(4).rename(columns={"peak_vram_mb": "peak_mem_mb"})
    paper = paper.set_index("component")[list(MEASURED)].rename(columns=PAPER_T4)
    df = df.join(paper, on="component")
    df["setting"] = (f"one SAG ({'edge list' if sparse else 'dense'}), one image: N={n} D={dim} "
                     f"K={cfg.k} P={cfg.gcn_layers} hidden={cfg.gcn_hidden}")
    df["hardware"] = hardware(device)
    df.attrs["paper_hardware"] = "paper: " + paper_table(4).set_index("component").note["total"]
    df.attrs["timing"] = dict(parts={c: runs[c] for c in COMPONENTS[:2]}, total=runs[COMPONENTS[2]],
                              warmup=warmup, threads=torch.get_num_threads())
    return df


def graph_scaling(cfg: Config, sizes: Sequence[int], device: str | torch.device = "cpu",
                  repeats: int = 3, sparse: bool = True, threads: int | None = None) -> pd.DataFrame:
    """Graph construction cost per image size: columns image_size, n, gflops, peak_mem_mb, time_ms.
    N = (size / patch)^2, so FLOPs grow as N^2 (the N x N x D distance product)."""
    with torch_threads(threads):
        return _graph_scaling(cfg, sizes, device, repeats, sparse)


def _graph_scaling(cfg: Config, sizes: Sequence[int], device, repeats: int, sparse: bool) -> pd.DataFrame:
    device, dim, patch = torch.device(device), cfg.arch.width, cfg.arch.patch_size
    sag = make_sag(cfg, dim, sparse=sparse).to(device)
    rows = []
    with torch.no_grad():
        for size in sizes:
            n = (size // patch) ** 2
            h = _features(n, dim, cfg.seed, device)
            fn = lambda: sag.graph(h)  # noqa: E731
            rows.append(dict(image_size=size, n=n, gflops=count_gflops(fn), peak_mem_mb=peak_mb(fn, device),
                             time_ms=median_ms({"g": fn}, device, repeats)["g"]))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- Table 5
def inference_cost(cfg: Config, backbone=None, heads: nn.Module | None = None,
                   device: str | torch.device = "cpu", repeats: int = 5, batch: int = 1,
                   class_name: str = "object", warmup: int = WARMUP, threads: int | None = None) -> pd.DataFrame:
    """Table 5: our measured row, then the paper's rows (source "paper", their hardware note).

    Inference = backbone encode + heads + Gaussian smoothing and image score, on random images
    (each part at cfg.backbone_precision / cfg.heads_precision)
    at the backbone's input size; the class text features are computed once beforehand (they are
    cached per class in use). backbone None: random weights of cfg's architecture
    (`cost_config`); heads None: `build_heads(cfg, backbone)`. Both are moved to `device`.
    Per image: inference_ms = batch time / batch, fps = 1000 / inference_ms; backbone_ms,
    heads_ms, smoothing_ms split it (each the median of `repeats` runs after `warmup`; every
    run's stamps are in df.attrs["timing"], see `timing_check`).
    Params follow the paper's notation "Total Params/M = 429.0 + 1.3 x 10^1", frozen +
    trainable: the CSV's total_params_m is its first term, the frozen CLIP (image and text
    towers, at 518 px), so ours holds the frozen backbone too; all_params_m is the sum, every row.
    """
    from .backbone import load_backbone
    from .model import build_heads

    device = torch.device(device)
    backbone = load_backbone(cost_config(cfg), device=device) if backbone is None else backbone.to(device)
    heads = build_heads(cfg, backbone) if heads is None else heads
    was_training = heads.training
    heads = heads.to(device).eval()
    try:
        with torch_threads(threads), torch.no_grad():
            runs = _inference_runs(cfg, backbone, heads, device, repeats, batch, class_name, warmup)
            threads_used = torch.get_num_threads()
            hw = hardware(device)
    finally:
        heads.train(was_training)
    per_image = {k: [v / batch for v in ts] for k, ts in runs.items()}
    ms = tuple(statistics.median(per_image[k]) for k in (*STAGES, "total"))
    df = pd.concat([pd.DataFrame([_measured_row(heads, backbone, hw, batch, ms)]), _paper_rows()],
                   ignore_index=True)
    df.attrs["timing"] = dict(parts={k: per_image[k] for k in STAGES}, total=per_image["total"],
                              warmup=warmup, threads=threads_used)
    return df


def _inference_runs(cfg, backbone, heads, device, repeats: int, batch: int, class_name: str,
                    warmup: int) -> dict[str, list[float]]:
    """ms per batch of each of STAGES and of the whole ("total"), stamped inside each run."""
    from .inference import run_heads, score_output

    size = backbone.cfg.image_size
    text = backbone.encode_text([class_name])[0].to(device).expand(batch, -1, -1)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    runs: dict[str, list[float]] = {k: [] for k in (*STAGES, "total")}
    for rep in range(warmup + repeats):
        _sync(device)
        stamps = [time.perf_counter()]
        tokens = backbone.encode(x, micro_batch=None)  # the raw forward at this batch (issue 19)
        _sync(device)
        stamps.append(time.perf_counter())
        out = run_heads(heads, tokens, text, cfg)
        _sync(device)
        stamps.append(time.perf_counter())
        score_output(out, cfg)
        _sync(device)
        stamps.append(time.perf_counter())
        if rep >= warmup:
            for k, a, b in zip(STAGES, stamps, stamps[1:]):
                runs[k].append((b - a) * 1e3)
            runs["total"].append((stamps[-1] - stamps[0]) * 1e3)
    return runs


def _measured_row(heads, backbone, hw: str, batch: int, ms: tuple) -> dict:
    """Table 5's row for us: parameters frozen + trainable, and the per-image times."""
    from .model import parameter_table

    backbone_ms, heads_ms, smoothing_ms, total_ms = ms
    size = backbone.cfg.image_size
    table = parameter_table(heads, backbone).set_index("module")
    return dict(method="BAG-CLIP (ours, measured)", total_params_m=table.frozen_m["total"],
                trainable_params_m=table.trainable_m["total"], inference_ms=total_ms,
                fps=1000.0 / total_ms, all_params_m=table.total_m["total"], backbone_ms=backbone_ms,
                heads_ms=heads_ms, smoothing_ms=smoothing_ms, source="measured",
                hardware=f"{hw}; {backbone.cfg.backbone} at {size}x{size}, batch {batch}")


def _paper_rows() -> pd.DataFrame:
    """Table 5's quoted rows, with the paper's setting as their hardware note."""
    paper = paper_table(5)
    note = next(s for s in paper.note if s)  # the paper states its setting once, on the first row
    return paper.drop(columns="note").assign(source="paper", hardware="paper: " + note,
                                             all_params_m=paper.total_params_m + paper.trainable_params_m)


# ---------------------------------------------------------------------------- parameters
def paper_size_parameters(cfg: Config | None = None) -> pd.DataFrame:
    """Trainable parameters of the heads at the paper's sizes (default `Config()`: W = 1024,
    E = 768, G = 37), per module, beside what the paper states: "the SAG" 1.08 M (Table 4) and
    13 M trainable in all (Table 5, section 4.4). Built from the architecture's numbers only.
    Columns module, ours_m, paper_m (NaN where the paper gives none)."""
    from .model import parameter_table

    cfg = cfg or Config()
    arch = cfg.arch
    with torch.random.fork_rng(devices=[]):
        heads = BAGCLIP(cfg, arch.width, arch.embed_dim, cfg.image_size // arch.patch_size)
    table = parameter_table(heads)[["module", "trainable_m"]].rename(columns={"trainable_m": "ours_m"})
    paper_sag = float(paper_table(4).set_index("component").params_m["total"])
    paper_total = float(paper_table(5).set_index("method").trainable_params_m["BAG-CLIP"])
    table["paper_m"] = [paper_sag if m.startswith("SAG") else paper_total if m == "heads total"
                        else float("nan") for m in table.module]
    return table


# ---------------------------------------------------------------------------- report
def bench_main(cfg: Config, device: str = "cpu", out_dir: str | os.PathLike = "bench",
               repeats: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure Tables 4 and 5 for cfg on device, log them as markdown with the hardware line,
    and write out_dir/table4_sag_cost.csv and out_dir/table5_inference.csv atomically.
    Random weights of cfg's architecture (`cost_config`): nothing is downloaded."""
    t4 = sag_cost(cfg, device=device, repeats=repeats)
    t5 = inference_cost(cfg, device=device, repeats=repeats)
    out = Path(out_dir)
    atomic_write_text(out / "table4_sag_cost.csv", t4.to_csv(index=False))
    atomic_write_text(out / "table5_inference.csv", t5.to_csv(index=False))
    log.info(f"measured on: {t4.hardware[0]}\n{t4.attrs['paper_hardware']}\n")
    log.info(f"Table 4, SAG cost ({t4.setting[0]})\n"
          f"{to_markdown(t4, index=False, drop=['setting', 'hardware'], fmt=number)}")
    log.info(f"Table 5, inference cost per image\n{to_markdown(t5, index=False, fmt=number)}")
    log.info(f"Trainable parameters at the paper's sizes (ours per module; the paper's one SAG and "
          f"total)\n{to_markdown(paper_size_parameters(), index=False, fmt=number)}")
    log.info(f"wrote {out / 'table4_sag_cost.csv'} and {out / 'table5_inference.csv'}")
    return t4, t5
