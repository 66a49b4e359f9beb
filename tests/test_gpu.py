"""The GPU path: runs on CUDA when a GPU is present, skipped otherwise."""
from __future__ import annotations

import pytest
import torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@cuda
def test_bfloat16_switches_keep_maps_close(tiny_cfg):
    from bagclip import load_backbone
    from bagclip.inference import heads_forward
    from bagclip.model import build_heads

    low_cfg = tiny_cfg.replace(backbone_precision="bfloat16", heads_precision="bfloat16")
    bb, bb_low = load_backbone(tiny_cfg, device="cuda"), load_backbone(low_cfg, device="cuda")
    heads = build_heads(tiny_cfg, bb).cuda().eval()
    x = torch.randn(4, 3, tiny_cfg.image_size, tiny_cfg.image_size, device="cuda")
    text = bb.encode_text(["screw"])[0].expand(4, -1, -1)
    ref, _, _ = heads_forward(heads, bb.encode(x), text, tiny_cfg)
    low, _, _ = heads_forward(heads, bb_low.encode(x), text, low_cfg)
    assert low.dtype == torch.float32 and (low - ref).abs().max() < 0.02


@cuda
def test_gpu_benchmark_runs_one_batch(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gpu", Path(__file__).parents[1] / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    gpu.main(["--batches", "1", "2", "--repeats", "1", "--out", str(tmp_path / "g.csv")])
    assert "FPS" in capsys.readouterr().out and (tmp_path / "g.csv").is_file()


def test_gpu_benchmark_smoke_on_cpu(tmp_path, capsys):
    # the script's whole path (both precisions, two batches, CSV, report) on the quick backbone,
    # so that a GPU session only has to run it
    import importlib.util
    from pathlib import Path

    import pandas as pd

    spec = importlib.util.spec_from_file_location("gpu", Path(__file__).parents[1] / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    out = tmp_path / "g.csv"
    gpu.main(["--device", "cpu", "--quick", "--batches", "1", "2", "--repeats", "1", "--out", str(out)])
    df = pd.read_csv(out)
    assert sorted(zip(df.precision, df.batch)) == [("bfloat16", 1), ("bfloat16", 2), ("float32", 1), ("float32", 2)]
    assert (df.fps > 0).all() and (df.ms_per_image > 0).all()
    printed = capsys.readouterr().out
    assert "not the paper setting" in printed and "best batch per precision" in printed
    assert "not comparable" in printed and not any(c.startswith("vs_paper") for c in df.columns)
