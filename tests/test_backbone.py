"""The backbone against open_clip's own computations."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bagclip
from bagclip import Config
from bagclip.backbone import interpolate_pos_embed, vv_attention


def test_native_grid_interpolation_is_identity_and_cls_equals_encode_image():
    cfg = Config.tiny()  # 224 = bagclip-tiny's native size: interpolation runs, at the same grid
    bb = bagclip.load_backbone(cfg)
    pos = bb.visual.positional_embedding
    assert torch.equal(interpolate_pos_embed(pos, 16), pos)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tok = bb.encode(x)
    ref = bb.model.encode_image(x)
    torch.testing.assert_close(tok.cls, ref.half().float(), rtol=0, atol=0)


def test_interpolation_keeps_class_row_and_reproduces_constant_grid():
    pos = torch.zeros(1 + 4, 3)
    pos[0] = 7.0
    pos[1:] = 2.5  # a constant field stays constant under bicubic resampling
    out = interpolate_pos_embed(pos, 6)
    assert out.shape == (37, 3)
    assert torch.equal(out[0], pos[0])
    torch.testing.assert_close(out[1:], torch.full((36, 3), 2.5))


def test_taps_equal_open_clip_intermediates(tiny_backbone):
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    tok = tiny_backbone.encode(x)
    assert tok.patches.shape == (2, 4, 64, 128) and tok.cls.shape == (2, 64)
    ref = tiny_backbone.visual.forward_intermediates(
        x, indices=[t - 1 for t in tiny_backbone.taps], output_fmt="NLC", intermediates_only=True)
    for l, r in enumerate(ref["image_intermediates"]):
        # the tokens are rounded to float16 (cfg.feature_dtype), as the feature cache holds them
        torch.testing.assert_close(tok.patches[:, l], r.half().float(), rtol=0, atol=0)
    # distinct taps really are distinct blocks (the peers' aliasing bug made them identical)
    assert not torch.allclose(tok.patches[:, 0], tok.patches[:, 3])


def test_float32_tokens_and_ln_post_on_taps():
    """feature_dtype float32 keeps open_clip's values unrounded; tap_ln_post applies ln_post."""
    cfg = Config.tiny(image_size=112, feature_dtype="float32", tap_ln_post=True)
    bb = bagclip.load_backbone(cfg)
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(4))
    tok = bb.encode(x)
    ref = bb.visual.forward_intermediates(x, indices=[0, 1, 2, 3], output_fmt="NLC",
                                          intermediates_only=True)["image_intermediates"]
    ln = bb.visual.ln_post
    for l, r in enumerate(ref):
        mu, var = r.mean(-1, keepdim=True), r.var(-1, unbiased=False, keepdim=True)
        by_hand = (r - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias
        torch.testing.assert_close(tok.patches[:, l], by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tok.cls, bb.model.encode_image(x), rtol=1e-5, atol=1e-6)


def _vv_numpy(block, x):
    """Hand-written V-V attention of one block in float64 numpy."""
    x = x.double().numpy()[0]  # (T, W)
    ln = block.ln_1
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    h = (x - mu) / np.sqrt(var + ln.eps) * ln.weight.double().numpy() + ln.bias.double().numpy()
    W = x.shape[1]
    a = block.attn
    wv = a.in_proj_weight.double().numpy()[2 * W:]
    bv = a.in_proj_bias.double().numpy()[2 * W:]
    v = h @ wv.T + bv
    nh = a.num_heads
    hs = W // nh
    out = np.zeros_like(v)
    for i in range(nh):
        vi = v[:, i * hs:(i + 1) * hs]
        s = vi @ vi.T / math.sqrt(hs)
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        out[:, i * hs:(i + 1) * hs] = p @ vi
    y = out @ a.out_proj.weight.double().numpy().T + a.out_proj.bias.double().numpy()
    return x + y


def test_vv_stream_matches_hand_written_attention():
    cfg = Config.tiny(image_size=112, detail_attention="vv", bsa_start=3, feature_dtype="float32")
    bb = bagclip.load_backbone(cfg)
    x = torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    tok = bb.encode(x)
    # block inputs of the standard stream, from open_clip
    inter = bb.visual.forward_intermediates(x, indices=[0, 1, 2, 3], output_fmt="NLC",
                                            intermediates_only=True, output_extra_tokens=True)
    def stream(i):  # residual stream (with class token) after block i (1-indexed)
        return torch.cat([inter["image_intermediates_prefix"][i - 1], inter["image_intermediates"][i - 1]], 1)
    # taps 1, 2 are standard; taps 3, 4 are V-V outputs of blocks 3, 4 fed by the standard stream
    torch.testing.assert_close(tok.patches[:, 0], inter["image_intermediates"][0])
    for tap, blk in ((2, 3), (3, 4)):
        ref = _vv_numpy(bb.blocks[blk - 1], stream(blk - 1))[1:]
        np.testing.assert_allclose(tok.patches[0, tap].numpy(), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(vv_attention(bb.blocks[blk - 1], stream(blk - 1))[:, 1:], tok.patches[:, tap])
    # the global branch is untouched by the detail stream
    torch.testing.assert_close(tok.cls, bb.model.encode_image(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("per_sentence", [True, False])
def test_encode_text_is_renormalised_mean_of_sentences(tiny_backbone, per_sentence):
    from bagclip.prompts import prompt_sentences

    T = tiny_backbone.encode_text(["wood", "metal nut"], normalize_sentences=per_sentence)
    assert T.shape == (2, 2, 64)
    for c, name in enumerate(["wood", "metal nut"]):
        for s, sentences in enumerate(prompt_sentences(name)):
            assert len(sentences) == 22 * 4
            e = tiny_backbone.model.encode_text(tiny_backbone.tokenizer(sentences)).double()
            if per_sentence:
                e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(0)
            torch.testing.assert_close(T[c, s].double(), m / m.norm(), rtol=1e-5, atol=1e-6)


def test_encode_text_is_cached_per_name(tiny_backbone, monkeypatch):
    first = tiny_backbone.encode_text("wood")

    def no_text_tower(*a, **k):
        raise AssertionError("the text tower ran again for a cached name")

    monkeypatch.setattr(tiny_backbone.model, "encode_text", no_text_tower)
    torch.testing.assert_close(tiny_backbone.encode_text("wood"), first, rtol=0, atol=0)
    with pytest.raises(AssertionError, match="ran again"):
        tiny_backbone.encode_text("a name never seen")


def test_prompts_are_winclips_templates_times_the_papers_states():
    from bagclip.prompts import TEMPLATES, prompt_sentences

    # WinCLIP's templates: the CLIP context sentences in "a"/"the" pairs plus its two
    # inspection ones, 22 distinct in all
    pairs = ["cropped photo of", "close-up photo of", "bright photo of", "dark photo of",
             "jpeg corrupted photo of", "blurry photo of", "photo of"]
    expected = {f"{a} {p} {d} {{}}." for p in pairs for a, d in (("a", "a"), ("a", "the"))}
    expected |= {f"a photo of {d} {s} {{}}." for d in ("a", "the") for s in ("small", "large")}
    expected |= {f"a photo of {d} {{}} for {w}." for d in ("a", "the")
                 for w in ("visual inspection", "anomaly detection")}
    assert len(TEMPLATES) == len(set(TEMPLATES)) == 22 and set(TEMPLATES) == expected
    normal, abnormal = prompt_sentences("insulator")
    assert len(normal) == len(abnormal) == 22 * 4
    assert "a photo of the flawless insulator for anomaly detection." in normal
    for s in ("flawless insulator", "insulator without defect", "unblemished insulator", "perfect insulator"):
        assert any(s in t for t in normal)
    for s in ("damaged insulator", "insulator with defect", "insulator with flaw", "broken insulator"):
        assert any(s in t for t in abnormal)


def test_encode_rejects_wrong_size(tiny_backbone):
    with pytest.raises(ValueError, match=r"\(B, 3, 112, 112\)"):
        tiny_backbone.encode(torch.zeros(1, 3, 100, 100))


def test_backbone_is_frozen(tiny_backbone):
    assert not any(p.requires_grad for p in tiny_backbone.parameters())
    tiny_backbone.train()
    assert not tiny_backbone.training


def test_weights_that_cannot_be_fetched_fail_fast_naming_both_fixes(monkeypatch):
    import open_clip

    def offline(*a, **k):
        raise RuntimeError("Failed to download weights for tag 'openai'")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(RuntimeError) as e:
        bagclip.load_backbone(Config(backbone="ViT-B-32", image_size=224, taps=(3, 6, 9, 12)))
    from bagclip.cli.errors import phrase

    msg = str(e.value)
    assert "local file" in msg and "Config.quick()" in msg and "--quick" not in msg  # a library message
    assert "--quick" in phrase("predict", e.value)  # the command line adds its flag


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.safetensors"):
        bagclip.load_backbone(Config.tiny(pretrained=str(tmp_path / "nothere.safetensors")))


def test_local_checkpoint_file_loads(tmp_path):
    from safetensors.torch import save_file

    src = bagclip.load_backbone(Config.tiny(backbone_seed=5))
    sd = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    f = tmp_path / "tiny.safetensors"
    save_file(sd, f)
    bb = bagclip.load_backbone(Config.tiny(pretrained=str(f)))  # backbone_seed 0: differs unless loaded
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(bb.encode(x).cls, src.encode(x).cls)


@pytest.mark.slow
def test_real_architecture_at_518():
    """ViT-L-14-336 (random weights) at 518: the paper's tap shapes."""
    cfg = Config(pretrained=None)
    bb = bagclip.load_backbone(cfg)
    assert bb.visual.positional_embedding.shape == (1 + 37 * 37, 1024)
    tok = bb.encode(torch.randn(1, 3, 518, 518), micro_batch=1)  # the default pads to 8 images: 8x the time
    assert tok.patches.shape == (1, 4, 1369, 1024)
    assert tok.cls.shape == (1, 768)
    assert torch.isfinite(tok.patches).all()


def test_requested_random_weights_raise_no_open_clip_warning(caplog):
    """pretrained=None is a request (tiny backbone, cost tables): open_clip's "initialized
    randomly" warning is dropped inside load_backbone only; the root logger is left as it was."""
    import logging

    from bagclip import Config, load_backbone

    with caplog.at_level(logging.WARNING):
        load_backbone(Config.tiny(image_size=56))
        logging.warning("No pretrained weights loaded: a line of someone else's, after the load")
    texts = [r.getMessage() for r in caplog.records]
    assert texts == ["No pretrained weights loaded: a line of someone else's, after the load"]
    assert not logging.getLogger().filters
