"""The training-free scorer against a numpy transcription of its equations."""
from __future__ import annotations

import numpy as np
import torch

from bagclip.backbone import Tokens
from bagclip.inference import heads_forward
from bagclip.zeroshot import ZeroShot


def _numpy_maps(patches, cls, text, ln_w, ln_b, proj, tau, eps=1e-5):
    """(abnormal prob per tap and patch (B, L, N), p_img (B,)), written out in numpy."""
    mu = patches.mean(-1, keepdims=True)
    var = patches.var(-1, keepdims=True)
    x = (patches - mu) / np.sqrt(var + eps) * ln_w + ln_b
    f = x @ proj
    f = f / np.linalg.norm(f, axis=-1, keepdims=True)
    cos = np.einsum("blne,bce->blnc", f, text)
    e = np.exp(tau * cos - (tau * cos).max(-1, keepdims=True))
    maps = (e / e.sum(-1, keepdims=True))[..., 1]
    g = cls / np.linalg.norm(cls, axis=-1, keepdims=True)
    z = tau * np.einsum("be,bce->bc", g, text)
    z = np.exp(z - z.max(-1, keepdims=True))
    return maps, (z / z.sum(-1, keepdims=True))[:, 1]


def test_zero_shot_maps_and_image_score_match_numpy(tiny_backbone):
    bb = tiny_backbone
    zs = ZeroShot(bb, tau=30.0)
    G, W, E = bb.grid, bb.width, bb.embed_dim
    zs.size = G  # no upsampling: compare on the patch grid
    g = torch.Generator().manual_seed(0)
    patches = torch.randn(2, len(bb.taps), G * G, W, generator=g)
    cls = torch.randn(2, E, generator=g)
    text = torch.nn.functional.normalize(torch.randn(2, 2, E, generator=g), dim=-1)
    out = zs(Tokens(patches, cls), text)
    want_maps, want_p = _numpy_maps(patches.double().numpy(), cls.double().numpy(), text.double().numpy(),
                                    bb.visual.ln_post.weight.double().numpy(),
                                    bb.visual.ln_post.bias.double().numpy(),
                                    bb.visual.proj.double().numpy(), 30.0)
    got = out.layer_maps[:, :, 1].reshape(2, len(bb.taps), G * G).double().numpy()
    np.testing.assert_allclose(got, want_maps, atol=1e-5)
    np.testing.assert_allclose(out.p_img.double().numpy(), want_p, atol=1e-5)
    np.testing.assert_allclose(out.anomaly_map.reshape(2, -1).double().numpy(), want_maps.mean(1), atol=1e-5)


def test_zero_shot_fits_the_heads_contract(tiny_backbone, tiny_cfg):
    bb = tiny_backbone
    zs = ZeroShot(bb)
    tok = bb.encode(torch.randn(3, 3, tiny_cfg.image_size, tiny_cfg.image_size))
    text = bb.encode_text("wood")[0]
    maps, scores, p_img = heads_forward(zs, tok, text.expand(3, -1, -1), tiny_cfg)
    assert maps.shape == (3, tiny_cfg.image_size, tiny_cfg.image_size)
    assert scores.shape == (3,) and ((0 <= p_img) & (p_img <= 1)).all()
    assert not any(p.requires_grad for p in zs.parameters())  # nothing to train


def test_heads_init_clip_starts_as_the_training_free_scorer(tiny_cfg):
    """heads_init="clip": before any step, the full heads (SAFR, SAG, JFF) give ZeroShot's maps
    (ln_post's bias set to 0, the one term a bias-free W_proj cannot hold)."""
    import copy

    from bagclip import load_backbone
    from bagclip.model import build_heads

    bb = copy.deepcopy(load_backbone(tiny_cfg))
    with torch.no_grad():
        bb.visual.ln_post.bias.zero_()
        bb.visual.ln_post.weight.uniform_(0.5, 1.5)  # a non-trivial gain
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, tiny_cfg.image_size, tiny_cfg.image_size, generator=g)
    tok = bb.encode(x)
    text = bb.encode_text(["screw"])[0]
    free = ZeroShot(bb)(tok, text)
    for cfg in (tiny_cfg.replace(heads_init="clip"), tiny_cfg.replace(heads_init="clip", use_safr=False, use_sag=False)):
        heads = build_heads(cfg, bb).eval()
        with torch.no_grad():
            out = heads(tok, text)
        torch.testing.assert_close(out.layer_maps, free.layer_maps, atol=2e-5, rtol=1e-4)
    random = build_heads(tiny_cfg, bb).eval()
    with torch.no_grad():
        assert (random(tok, text).layer_maps - free.layer_maps).abs().max() > 0.05
