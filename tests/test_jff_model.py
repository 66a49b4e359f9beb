"""JFF and the BAGCLIP heads against manual computations."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from bagclip import Config
from bagclip.jff import JFF
from bagclip.model import BAGCLIP, parameter_table, score_image, smooth_maps, upsample_grid
from bagclip.sag import SAG

WIDTH, E, GRID = 32, 16, 8


def small_cfg(**kw) -> Config:
    base = dict(image_size=112, k=5, gcn_layers=2, gcn_hidden=24, safr_reduction=8)
    base.update(kw)
    return Config.tiny(**base)


def tokens(B=2, L=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(patches=torch.randn(B, L, GRID * GRID, WIDTH, generator=g),
                           cls=torch.randn(B, E, generator=g))


def text(seed=1):
    return F.normalize(torch.randn(2, E, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_jff_by_hand_and_in_block_form():
    # one F_pre and one F_SAG channel, W_proj the identity: Psi = [3, 4] / 5 for inputs 3, 4
    jff = JFF(1, 1, 2)
    with torch.no_grad():
        jff.proj.weight.copy_(torch.eye(2))
    psi = jff(torch.tensor([[[3.0]]]), torch.tensor([[[4.0]]]))
    assert psi.tolist() == [[[pytest.approx(0.6), pytest.approx(0.8)]]]
    # in general the projection of the concatenation is the sum of the two blocks' projections
    torch.manual_seed(0)
    jff = JFF(6, 4, 5)
    a, b = torch.randn(2, 7, 6), torch.randn(2, 7, 4)
    W = jff.proj.weight.detach().double().numpy()  # (E, 6 + 4)
    blocks = a.double().numpy() @ W[:, :6].T + b.double().numpy() @ W[:, 6:].T
    expected = blocks / np.linalg.norm(blocks, axis=-1, keepdims=True)
    np.testing.assert_allclose(jff(a, b).detach().numpy(), expected, atol=1e-6)
    assert jff.proj.bias is None
    # ablations: one input alone
    only_pre, only_sag = JFF(6, 0, 5), JFF(0, 4, 5)
    assert torch.allclose(only_pre(a, None), F.normalize(a @ only_pre.proj.weight.T, dim=-1))
    assert torch.allclose(only_sag(None, b), F.normalize(b @ only_sag.proj.weight.T, dim=-1))
    with pytest.raises(ValueError):
        JFF(0, 0, 5)


def test_forward_shapes_and_ranges():
    cfg = small_cfg()
    model = BAGCLIP(cfg, WIDTH, E, GRID)
    out = model(tokens(), text())
    assert out.anomaly_map.shape == (2, 112, 112)
    assert out.layer_maps.shape == (2, 4, 2, 112, 112)
    assert out.image_score.shape == out.p_img.shape == (2,)
    lm = out.layer_maps
    assert lm.min() >= 0 and lm.max() <= 1
    assert torch.allclose(lm.sum(2), torch.ones_like(lm[:, :, 0]), atol=1e-5)
    assert torch.allclose(out.anomaly_map, lm[:, :, 1].mean(1))
    # per-image text (B, 2, E) equals the shared (2, E)
    out2 = model(tokens(), text().expand(2, 2, E))
    assert torch.allclose(out.anomaly_map, out2.anomaly_map)
    # batch of one works
    assert model(tokens(B=1), text()).anomaly_map.shape == (1, 112, 112)


def test_image_score_modes():
    p = torch.tensor([0.2, 0.9])
    m = torch.zeros(2, 4, 4)
    m[0, 1, 2], m[1, 3, 3] = 0.6, 0.1
    assert torch.allclose(score_image(p, m, "mix"), torch.tensor([0.4, 0.5]))
    assert torch.allclose(score_image(p, m, "global"), p)
    assert torch.allclose(score_image(p, m, "max"), torch.tensor([0.6, 0.1]))
    for mode in ("mix", "global", "max"):
        model = BAGCLIP(small_cfg(image_score=mode), WIDTH, E, GRID)
        out = model(tokens(), text())
        assert torch.allclose(out.image_score, score_image(out.p_img, out.anomaly_map, mode))


def test_manual_one_tap():
    """One tap, no SAFR, no SAG: the map is upsample(softmax(100 * normalize(P W^T) T^T))."""
    cfg = small_cfg(taps=(1,), use_safr=False, use_sag=False)
    model = BAGCLIP(cfg, WIDTH, E, GRID)
    tok = tokens(B=1, L=1)
    T = text()
    W = model.jff[0].proj.weight.detach().double().numpy()
    psi = tok.patches[0, 0].double().numpy() @ W.T
    psi /= np.linalg.norm(psi, axis=1, keepdims=True)
    logits = 100.0 * psi @ T.double().numpy().T  # (N, 2)
    prob_ab = 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))  # softmax, abnormal column
    grid_map = torch.from_numpy(prob_ab.reshape(1, 1, GRID, GRID))
    expected = F.interpolate(grid_map, size=(112, 112), mode="bilinear", align_corners=False)[0, 0]
    out = model(tok, T)
    np.testing.assert_allclose(out.anomaly_map[0].detach().numpy(), expected.numpy(), atol=1e-4)
    # global branch at identity init: p_img = softmax(100 * normalize(cls) T^T)[abnormal]
    g = F.normalize(tok.cls, dim=-1)
    assert torch.allclose(out.p_img, torch.softmax(100 * g @ T.T, -1)[:, 1], atol=1e-5)


def test_upsample_grid_by_hand_and_against_interpolate():
    # 2 -> 4, align_corners=False: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    x = torch.tensor([[0.0, 4.0], [8.0, 12.0]])
    rows = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    np.testing.assert_allclose(upsample_grid(x, 4).numpy(), rows @ x.numpy() @ rows.T, atol=1e-6)
    for g, size in [(14, 224), (5, 17), (37, 518)]:
        x = torch.rand(3, 2, g, g, requires_grad=True)
        go = torch.rand(3, 2, size, size)
        ref = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        ours = upsample_grid(x, size)
        assert torch.allclose(ours, ref, atol=1e-6)
        g_ref, = torch.autograd.grad(ref, x, go)
        g_ours, = torch.autograd.grad(ours, x, go)
        assert torch.allclose(g_ours, g_ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
def test_smooth_maps_equals_scipy(sigma):
    rng = np.random.default_rng(0)
    maps = rng.random((2, 23, 17))  # radius 16 > 17 / 2 at sigma 4: reflection wraps
    ours = smooth_maps(torch.from_numpy(maps), sigma).numpy()
    for b in range(2):
        ref = gaussian_filter(maps[b], sigma, mode="reflect", truncate=4.0)
        np.testing.assert_allclose(ours[b], ref, atol=1e-12)
    f32 = smooth_maps(torch.from_numpy(maps).float(), sigma).numpy()
    np.testing.assert_allclose(f32, ours, atol=1e-5)
    assert torch.equal(smooth_maps(torch.from_numpy(maps), 0.0), torch.from_numpy(maps))


def test_gradients_reach_every_parameter():
    from bagclip.losses import bagclip_loss

    # tau = 10: at 100, random text and tokens saturate the softmax and gradients underflow to 0
    cfg = small_cfg(metric_proj=True, logit_scale=10.0)
    model = BAGCLIP(cfg, WIDTH, E, GRID)
    out = model(tokens(), text())
    masks = torch.zeros(2, 112, 112)
    masks[1, 30:60, 40:70] = 1
    total, _ = bagclip_loss(out, masks, torch.tensor([0, 1]), cfg)
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_ablation_switches():
    def names(**kw):
        model = BAGCLIP(small_cfg(**kw), WIDTH, E, GRID)
        return model, {n.split(".")[0] for n, _ in model.named_parameters()}

    full, mods = names()
    assert mods == {"safr", "sag", "jff", "global_adapter"} and len(full.sag) == 4
    assert "safr" not in names(use_safr=False)[1]
    no_sag, mods = names(use_sag=False)
    assert "sag" not in mods and no_sag.jff[0].proj.in_features == WIDTH
    no_jff, _ = names(use_jff=False)
    assert no_jff.jff[0].proj.in_features == 24  # F_SAG alone
    assert full.jff[0].proj.in_features == WIDTH + 24
    assert len(names(share_sag=True)[0].sag) == 1
    for kw in (dict(use_safr=False), dict(use_sag=False), dict(use_jff=False), dict(share_sag=True)):
        out = names(**kw)[0](tokens(), text())
        assert out.anomaly_map.shape == (2, 112, 112)


def test_parameter_table():
    cfg = small_cfg()
    model = BAGCLIP(cfg, WIDTH, E, GRID)
    frozen = torch.nn.Linear(10, 10).requires_grad_(False)
    df = parameter_table(model, frozen)
    row = df.set_index("module")
    assert row.loc["SAFR", "trainable_m"] * 1e6 == pytest.approx(2 * 128 * 16)
    assert row.loc["SAG (tap 1)", "trainable_m"] * 1e6 == pytest.approx(32 * 24 + 24 * 24)
    assert row.loc["JFF", "trainable_m"] * 1e6 == pytest.approx(4 * (32 + 24) * 16)
    assert row.loc["global adapter", "trainable_m"] * 1e6 == pytest.approx(16 * 16 + 16)
    heads = sum(p.numel() for p in model.parameters()) / 1e6
    assert row.loc["heads total", "trainable_m"] == pytest.approx(heads)
    assert row.loc["backbone", "frozen_m"] * 1e6 == pytest.approx(110)
    assert row.loc["total", "total_m"] == pytest.approx(heads + 110e-6)


def test_global_adapter_switch():
    """Off: no trainable part on the global branch, g is CLIP's own class embedding."""
    off = BAGCLIP(small_cfg(global_adapter=False), WIDTH, E, GRID)
    assert off.global_adapter is None and "global_adapter" not in dict(off.named_parameters()).keys()
    tok, T = tokens(), text()
    g = tok.cls.double() / tok.cls.double().norm(dim=-1, keepdim=True)
    logits = 100.0 * g @ T.double().T
    expected = 1 / (1 + torch.exp(logits[:, 0] - logits[:, 1]))
    torch.testing.assert_close(off(tok, T).p_img.double(), expected, rtol=1e-5, atol=1e-6)
    row = parameter_table(off).set_index("module")
    assert row.loc["global adapter", "trainable_m"] == 0


def test_graph_on_raw_taps():
    """graph_input="taps": the SAG's graph is built on the raw taps, its features stay post-SAFR."""
    cfg = small_cfg(graph_input="taps")
    model = BAGCLIP(cfg, WIDTH, E, GRID)
    tok = tokens(B=1)
    from bagclip.safr import concat_taps, split_taps

    f_pre = split_taps(model.safr(concat_taps(tok.patches)), 4)
    f_sag = model.sag[2].gcn_layers(model.sag[2].graph(tok.patches[:, 2]), f_pre[:, 2])
    psi = model.jff[2](f_pre[:, 2], f_sag)
    torch.testing.assert_close(model.local_features(tok.patches)[:, 2], psi)
    detail = BAGCLIP(small_cfg(), WIDTH, E, GRID)
    detail.load_state_dict(model.state_dict())
    assert not torch.allclose(detail.local_features(tok.patches)[:, 2], psi, atol=1e-4)


def test_stages_are_the_forward_s_intermediates():
    """model.stages: F_pre, F_SAG and Psi per tap, each equal to its hand computation; no F_SAG
    without the SAG (Psi is then JFF of F_pre alone)."""
    from bagclip.safr import concat_taps, split_taps

    model = BAGCLIP(small_cfg(), WIDTH, E, GRID)
    tok = tokens(B=2)
    st = model.stages(tok.patches)
    f_pre = split_taps(model.safr(concat_taps(tok.patches)), 4)
    torch.testing.assert_close(st.f_pre, f_pre)
    for l in range(4):
        f_sag = model.sag[l](f_pre[:, l], f_pre[:, l])
        torch.testing.assert_close(st.f_sag[:, l], f_sag)
        torch.testing.assert_close(st.psi[:, l], model.jff[l](f_pre[:, l], f_sag))
    assert st.f_sag.shape == (2, 4, GRID ** 2, small_cfg().gcn_hidden)
    plain = BAGCLIP(small_cfg(use_sag=False), WIDTH, E, GRID)
    st = plain.stages(tok.patches)
    assert st.f_sag is None
    torch.testing.assert_close(st.psi[:, 1], plain.jff[1](st.f_pre[:, 1], None))


def test_paper_size_parameter_count():
    """At the paper's sizes one SAG is 0.98 M (paper 1.08 M); the heads about 11 M (paper 13 M)."""
    sag = SAG(1024, 384, 15, 5)
    assert sum(p.numel() for p in sag.parameters()) / 1e6 == pytest.approx(0.983, abs=1e-3)
    model = BAGCLIP(Config(), 1024, 768, 37)
    n = sum(p.numel() for p in model.parameters())
    # SAFR 2 * 4096 * 256 + 4 SAG + 4 JFF (1408 -> 768) + adapter 768 * 769
    assert n == 2 * 4096 * 256 + 4 * 983040 + 4 * 1408 * 768 + 768 * 769


def test_with_tiny_backbone():
    """The real Tokens of the offline tiny backbone go through the heads and the loss."""
    from bagclip import load_backbone
    from bagclip.losses import bagclip_loss

    cfg = Config.tiny(image_size=112)
    bb = load_backbone(cfg)
    with torch.no_grad():
        tok = bb.encode(torch.randn(2, 3, 112, 112))
        T = bb.encode_text(["screw"])[0]  # (2, E)
    model = BAGCLIP(cfg, bb.width, bb.embed_dim, bb.grid)
    out = model(tok, T)
    assert out.layer_maps.shape == (2, len(cfg.taps), 2, 112, 112)
    total, _ = bagclip_loss(out, torch.zeros(2, 112, 112), torch.tensor([0, 1]), cfg)
    assert torch.isfinite(total)
    df = parameter_table(model, bb).set_index("module")
    assert df.loc["backbone", "trainable_m"] == 0 and df.loc["backbone", "frozen_m"] > 0
