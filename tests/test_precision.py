"""Mixed precision (Config.backbone_precision / heads_precision) and SDPA, checked on the CPU.

The numbers a GPU gives are benchmarks/gpu.py's; here: the switches reach every path, bfloat16
stays close to float32, and the cache never mixes the two.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bagclip import load_backbone
from bagclip.inference import heads_forward
from bagclip.model import build_heads


def test_backbone_attention_is_fused(tiny_cfg, tiny_backbone):
    """Every block's attention runs as one fused kernel: PyTorch's SDPA
    (odd head counts, grads or autocast), or its native MHA fast path (which dispatches to the
    same fused kernels) when nn.MultiheadAttention may take it."""
    from bagclip import Config

    fused = ("aten::scaled_dot_product_attention", "aten::_native_multi_head_attention")
    for bb, size in ((tiny_backbone, tiny_cfg.image_size), (load_backbone(Config.quick()), 224)):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            bb.encode(torch.randn(1, 3, size, size))
        names = [e.name for e in prof.events()]
        assert sum(n in fused for n in names) == len(bb.blocks)


def test_bfloat16_backbone_close_to_float32_and_cached_apart(tiny_cfg, tiny_backbone):
    low_cfg = tiny_cfg.replace(backbone_precision="bfloat16")
    low = load_backbone(low_cfg)
    x = torch.randn(2, 3, tiny_cfg.image_size, tiny_cfg.image_size, generator=torch.Generator().manual_seed(0))
    ref, got = tiny_backbone.encode(x), low.encode(x)
    assert got.patches.dtype == torch.float32  # tokens leave the backbone in one dtype
    rel = (got.patches - ref.patches).norm() / ref.patches.norm()
    assert 0 < rel < 0.03  # bfloat16 keeps ~3 significant digits; 0 would mean autocast never ran
    assert low.identity() != tiny_backbone.identity()  # a bfloat16 cache never serves float32 runs
    text_ref, text_low = tiny_backbone.encode_text(["screw"]), low.encode_text(["screw"])
    assert (text_low - text_ref).abs().max() < 0.05


def test_bfloat16_heads_score_close_to_float32(tiny_cfg, tiny_backbone):
    torch.manual_seed(0)
    heads = build_heads(tiny_cfg, tiny_backbone).eval()
    tok = tiny_backbone.encode(torch.randn(3, 3, tiny_cfg.image_size, tiny_cfg.image_size))
    text = tiny_backbone.encode_text(["screw"])[0].expand(3, -1, -1)
    maps, scores, _ = heads_forward(heads, tok, text, tiny_cfg)
    low_maps, low_scores, _ = heads_forward(heads, tok, text, tiny_cfg.replace(heads_precision="bfloat16"))
    assert low_maps.dtype == torch.float32 and not torch.equal(low_maps, maps)
    assert (low_maps - maps).abs().max() < 0.05 and (low_scores - scores).abs().max() < 0.05


def test_bfloat16_training_steps_are_finite(tiny_cfg, tiny_backbone, image_files, tmp_path):
    from PIL import Image

    from bagclip.cache import FeatureCache
    from bagclip.data.io import Sample
    from bagclip.train import train

    samples = []
    for i, p in enumerate(image_files):
        m = None
        if i % 2:
            m = tmp_path / f"m{i}.png"
            Image.fromarray((torch.rand(20, 20) > 0.7).numpy().astype("uint8") * 255).resize(
                Image.open(p).size).save(m)
        samples.append(Sample(p, m, "screw", "good" if m is None else "bad", int(m is not None)))
    cfg = tiny_cfg.replace(heads_precision="bfloat16", epochs=2, batch_size=2)
    res = train(cfg, samples, tiny_backbone, cache=FeatureCache(tiny_backbone, tmp_path / "c"), progress=False)
    assert len(res.history) == 4 and all(torch.isfinite(torch.tensor(res.history)))
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_native_bf16_is_read_from_the_cpu_flags_and_its_absence_warned_once(monkeypatch, caplog):
    import logging

    from bagclip import precision as P

    amd = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
    sapphire = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_tile\n"
    assert P.cpu_has_native_bf16(amd) is False
    assert P.cpu_has_native_bf16(sapphire) is True
    assert P.cpu_has_native_bf16("model name : x\n") is None  # no flags line: nothing claimed
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    P._warn_emulated_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="bagclip.precision"):
        for _ in range(3):
            with P.autocast("bfloat16", "cpu"):
                pass
        with P.autocast("float32", "cpu"):
            pass
    hits = [r for r in caplog.records if "emulated" in r.getMessage()]
    assert len(hits) == 1 and "float32" in hits[0].getMessage()
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    P._warn_emulated_bf16.cache_clear()
    caplog.clear()
    with P.autocast("bfloat16", "cpu"):
        pass
    assert not caplog.records
    P._warn_emulated_bf16.cache_clear()
