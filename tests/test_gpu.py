"""The GPU path: runs on CUDA when a GPU is present, skipped otherwise."""
from __future__ import annotations

import pytest
import torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@cuda
def test_bf16_autocast_keeps_maps_close(tiny_cfg):
    from bagclip import load_backbone
    from bagclip.train import build_heads

    bb = load_backbone(tiny_cfg, device="cuda")
    heads = build_heads(tiny_cfg, bb).cuda().eval()
    x = torch.randn(4, 3, tiny_cfg.image_size, tiny_cfg.image_size, device="cuda")
    text = torch.nn.functional.normalize(torch.randn(2, bb.embed_dim, device="cuda"), dim=-1)
    with torch.no_grad():
        ref = heads(bb.encode(x), text)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = heads(bb.encode(x), text)
    assert (low.anomaly_map.float() - ref.anomaly_map).abs().max() < 0.02


@cuda
def test_gpu_benchmark_runs_one_batch(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gpu", Path(__file__).parents[1] / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    gpu.main(["--batches", "1", "2", "--repeats", "1", "--out", str(tmp_path / "g.csv")])
    assert "FPS" in capsys.readouterr().out and (tmp_path / "g.csv").is_file()
