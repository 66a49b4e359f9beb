"""Cost tables (bagclip/cost.py) against independent counts: FLOP formulas derived from the code,
parameter sums, the paper's CSV layout. No timing assertions beyond positive and finite."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from bagclip import Config
from bagclip.cost import (COMPONENTS, MEASURED, PAPER_T4, STAGES, bench_main, cost_config, count_gflops,
                          graph_scaling, hardware, inference_cost, paper_size_parameters, sag_cost,
                          sags_within_heads, spread_ms, timing_check, times_ms)
from bagclip.paper import paper_table
from bagclip.sag import SAG


def graph_flops(n: int, d: int, metric: bool = False) -> int:
    """pairwise_d2: h @ h^T (2 N^2 D), after h @ W_phi^T (2 N D^2) with a metric. From N = 512
    on only 3 row blocks of it, each from its diagonal rightwards: rows r_a x (N - start_a)."""
    product = 2 * n * n * d
    if n >= 512:
        starts = [round(i * n / 3) for i in range(4)]
        product = sum(2 * (hi - lo) * (n - lo) * d for lo, hi in zip(starts, starts[1:]))
    return product + (2 * n * d * d if metric else 0)


def gcn_flops(n: int, d: int, k: int, layers: int, hidden: int, sparse: bool = True) -> int:
    """Per layer: lin(f) is 2 N Din Dout; propagate is embedding_bag over N(2K-1) edges
    (self-loop + K-1 out + K-1 in per node, zero weights kept), 2 per edge and feature,
    or a dense bmm, 2 N^2 hidden."""
    widths = [d] + [hidden] * layers
    lin = sum(2 * n * a * b for a, b in zip(widths, widths[1:]))
    agg = 2 * n * (2 * k - 1) * hidden if sparse else 2 * n * n * hidden
    return lin + layers * agg


@pytest.fixture(scope="module")
def t4(tiny_cfg):
    return sag_cost(tiny_cfg, repeats=1)


def test_table4_layout_matches_paper(t4):
    paper = paper_table(4)
    assert list(t4.component) == list(paper.component) == list(COMPONENTS)
    measured = [c for c in paper.columns if c not in ("component", "note")]
    assert [PAPER_T4[c] for c in MEASURED] == [f"paper_{c}" for c in measured]
    assert list(t4.columns[:5]) == ["component", *MEASURED]
    for ours, theirs in zip(MEASURED, measured):  # the paper's values, unchanged, beside ours
        assert t4[PAPER_T4[ours]].tolist() == paper[theirs].tolist()
    assert torch.__version__ in t4.hardware[0] and "A6000" in t4.attrs["paper_hardware"]


@pytest.mark.parametrize("sparse", [True, False])
def test_table4_flops_and_params(tiny_cfg, sparse):
    c, n, d = tiny_cfg, tiny_cfg.grid ** 2, 128  # bagclip-tiny width
    t = sag_cost(c, repeats=1, sparse=sparse).set_index("component")
    g = graph_flops(n, d) / 1e9
    p = gcn_flops(n, d, c.k, c.gcn_layers, c.gcn_hidden, sparse) / 1e9
    assert t.gflops.tolist() == pytest.approx([g, p, g + p], rel=1e-9)
    sag = SAG(d, c.gcn_hidden, c.k, c.gcn_layers)
    manual = sum(p.numel() for p in sag.parameters()) / 1e6
    assert manual == (d * c.gcn_hidden + (c.gcn_layers - 1) * c.gcn_hidden ** 2) / 1e6
    assert t.params_m.tolist() == pytest.approx([0.0, manual, manual])


@pytest.mark.parametrize("n", [50, 600])
def test_table4_metric_and_size_overrides(tiny_cfg, n):
    d = 24
    t = sag_cost(tiny_cfg.replace(metric_proj=True), repeats=1, n=n, dim=d).set_index("component")
    assert t.params_m["dynamic graph construction"] == pytest.approx(d * d / 1e6)
    assert t.gflops["dynamic graph construction"] == pytest.approx(graph_flops(n, d, metric=True) / 1e9)
    assert f"N={n} D={d}" in t.setting.iloc[0]


def test_table4_measurements_positive_finite(t4):
    for col in ("time_ms", "peak_mem_mb"):
        assert all(math.isfinite(v) and v > 0 for v in t4[col]), col
    total = t4.set_index("component").peak_mem_mb
    assert total["total"] >= 0.5 * total["dynamic graph construction"]  # the graph is inside it


def test_count_gflops_independent_ops():
    a, b = torch.randn(7, 5), torch.randn(5, 3)
    assert count_gflops(lambda: a @ b) == pytest.approx(2 * 7 * 5 * 3 / 1e9)
    w, idx = torch.randn(10, 6), torch.tensor([0, 3, 3, 9, 1])
    bag = lambda: F.embedding_bag(idx, w, torch.tensor([0, 2]), mode="sum",  # noqa: E731
                                  per_sample_weights=torch.ones(5))
    assert count_gflops(bag) == pytest.approx(2 * 5 * 6 / 1e9)


def test_graph_scaling_is_quadratic(tiny_cfg):
    df = graph_scaling(tiny_cfg, [56, 112], repeats=1)
    assert df.n.tolist() == [16, 64]
    assert df.gflops.tolist() == pytest.approx([graph_flops(n, 128) / 1e9 for n in (16, 64)])
    assert all(math.isfinite(v) and v > 0 for v in df.time_ms)


def test_table5(tiny_cfg, tiny_backbone):
    from bagclip.model import build_heads

    heads = build_heads(tiny_cfg, tiny_backbone)
    t5 = inference_cost(tiny_cfg, tiny_backbone, heads, repeats=1, batch=2)
    ours, paper = t5.iloc[0], paper_table(5)
    assert ours.source == "measured" and "measured" in ours.method and "batch 2" in ours.hardware
    assert ours.trainable_params_m == pytest.approx(sum(p.numel() for p in heads.parameters()) / 1e6)
    frozen = sum(p.numel() for p in tiny_backbone.parameters())  # paper's "429.0 + 13": frozen + trainable
    assert ours.total_params_m == pytest.approx(frozen / 1e6)
    assert (t5.all_params_m == t5.total_params_m + t5.trainable_params_m).all()
    assert ours.fps == pytest.approx(1000 / ours.inference_ms)
    for col in ("inference_ms", "backbone_ms", "heads_ms", "smoothing_ms"):
        assert math.isfinite(ours[col]) and ours[col] > 0, col
    cols = [c for c in paper.columns if c != "note"]
    assert list(t5.columns[:len(cols)]) == cols
    pd.testing.assert_frame_equal(t5.iloc[1:][cols].reset_index(drop=True), paper[cols])
    assert (t5.source.iloc[1:] == "paper").all() and t5.hardware.iloc[1:].str.contains("A6000").all()
    assert heads.training  # mode restored


def test_cost_config_keeps_architecture():
    c = cost_config(Config())
    assert c.pretrained is None and c.quick_gelu is True and c.backbone == "ViT-L-14-336"
    assert cost_config(Config.tiny()).quick_gelu is False


def test_bench_main_writes_csv(tiny_cfg, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="bagclip"):
        t4, t5 = bench_main(tiny_cfg, "cpu", tmp_path / "bench", repeats=1)
    out = caplog.text
    assert hardware("cpu") in out and "| component |" in out and "| method |" in out
    assert "| module | ours_m | paper_m |" in out  # the paper-size parameter comparison
    back4 = pd.read_csv(tmp_path / "bench" / "table4_sag_cost.csv")
    back5 = pd.read_csv(tmp_path / "bench" / "table5_inference.csv")
    assert list(back4.columns) == list(t4.columns) and list(back4.component) == list(COMPONENTS)
    assert list(back5.method) == list(t5.method)


def test_paper_size_parameters_beside_the_papers_claims():
    """At the paper's sizes: one SAG W h + (P-1) h^2 = 0.983 M vs its 1.08 M, the heads
    10.95 M vs its 13 M (SAFR 2 C C/r, 4 SAGs, 4 JFF (W + h) E, adapter E^2 + E)."""
    t = paper_size_parameters().set_index("module")
    sag = 1024 * 384 + 4 * 384 ** 2
    heads = 2 * 4096 * 256 + 4 * sag + 4 * (1024 + 384) * 768 + 768 * 769
    assert t.ours_m["SAG (tap 6)"] * 1e6 == pytest.approx(sag) and t.paper_m["SAG (tap 6)"] == 1.08
    assert t.ours_m["heads total"] * 1e6 == pytest.approx(heads) and t.paper_m["heads total"] == 13
    assert math.isnan(t.paper_m["SAFR"])
    off = paper_size_parameters(Config(global_adapter=False)).set_index("module")
    assert off.ours_m["heads total"] * 1e6 == pytest.approx(heads - 768 * 769)


def test_times_ms_discards_the_warm_up_rounds():
    """A fake clock: each call of a case takes the next of `durations` (s). The first `warmup`
    rounds (slow, as first calls are) are not in the result; the rest are, in order."""
    durations = iter([5.0, 4.0, 3.0, 2.0] + [0.001 * i for i in range(1, 7)])
    now = [0.0]

    def clock():
        return now[0]

    def step():
        now[0] += next(durations)

    runs = times_ms({"a": step, "b": step}, torch.device("cpu"), repeats=3, warmup=2, clock=clock)
    assert runs["a"] == pytest.approx([1, 3, 5]) and runs["b"] == pytest.approx([2, 4, 6])
    with pytest.raises(ValueError, match="repeats"):
        times_ms({"a": step}, torch.device("cpu"), repeats=0)


def _timed(parts: dict, total: list) -> pd.DataFrame:
    df = pd.DataFrame()
    df.attrs["timing"] = dict(parts=parts, total=total, warmup=2, threads=1)
    return df


def test_timing_check_flags_a_total_below_its_parts():
    ok = timing_check(_timed({"a": [10, 11, 10.5], "b": [5, 5.2, 4.9]}, [15.5, 16, 15.8]))
    assert ok["consistent"] and ok["sum_ms"] == pytest.approx(15.5) and ok["total_ms"] == 15.8
    bad = timing_check(_timed({"a": [176, 175, 177], "b": [5, 5, 5]}, [24, 25, 24.5]))
    assert not bad["consistent"] and bad["difference_ms"] == pytest.approx(181 - 24.5)
    assert spread_ms([1.0]) == 0.0 and spread_ms([1, 2, 3, 4, 5]) == pytest.approx(2.0)
    t4 = _timed({}, [176.0, 170.0, 180.0])
    t5 = _timed({"heads": [24.0, 25.0, 23.0]}, [])
    cross = sags_within_heads(t4, t5, n_taps=4)
    assert not cross["consistent"] and cross["share"] == pytest.approx(4 * 176 / 24)


def test_timings_are_consistent_on_a_tiny_config(tiny_cfg, tiny_backbone):
    """Measured for real (one thread, median of 9 after 2 warm-up rounds): one SAG's graph +
    GCN sum to the whole SAG, Table 5's stages to its total, and the heads' SAGs fit inside
    the heads' time, each within the runs' own noise."""
    from bagclip.model import build_heads

    t4 = sag_cost(tiny_cfg, repeats=9, threads=1)
    c4 = timing_check(t4)
    assert c4["consistent"], c4
    assert c4["repeats"] == 9 and c4["warmup"] == 2 and c4["threads"] == 1 and "1 threads" in t4.hardware[0]
    assert list(c4["parts_ms"]) == list(COMPONENTS[:2])
    assert t4.time_ms.tolist() == pytest.approx([*c4["parts_ms"].values(), c4["total_ms"]])
    heads = build_heads(tiny_cfg, tiny_backbone)
    t5 = inference_cost(tiny_cfg, tiny_backbone, heads, repeats=9, threads=1)
    c5 = timing_check(t5)
    assert c5["consistent"], c5
    assert list(c5["parts_ms"]) == list(STAGES) and t5.inference_ms[0] == pytest.approx(c5["total_ms"])
    cross = sags_within_heads(t4, t5, len(tiny_cfg.taps))
    assert cross["consistent"], cross
