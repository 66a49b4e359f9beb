"""bagclip-mini pretraining: deterministic, resumable bit for bit, checked settings, clean export;
the shipped weights load offline and match their record."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bagclip import Config, load_backbone
from bagclip.pretrain_losses import _balanced
from bagclip.pretrain import CHECKPOINT, PretrainConfig, WorldBatches, build_model, \
    export_weights, pretrain
from bagclip.weights import SHIPPED, record, shipped_path

SHORT = dict(steps=4, batch_pairs=2, low_size=64, final_share=0.0, workers=0, save_every=2, warmup=1,
             threads=1)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_short_schedule_is_deterministic_and_resumes_bit_identically(tmp_path, precision):
    cfg = PretrainConfig(**SHORT, precision=precision, reuse=2)  # the resume lands inside a reused batch
    full, hist_full = pretrain(cfg, tmp_path / "a", progress=False)
    again, _ = pretrain(cfg, tmp_path / "b", progress=False)
    _, _ = pretrain(cfg, tmp_path / "c", progress=False, stop_after=2)  # "interrupted" after step 2
    resumed, hist_res = pretrain(cfg, tmp_path / "c", progress=False)  # rerun: resumes at step 2
    a, b, c = _weights(full), _weights(again), _weights(resumed)
    assert a.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert hist_full == hist_res and len(hist_full) == 4
    moved = _weights(build_model(cfg)[0])
    assert any(not torch.equal(moved[k], a[k]) for k in moved)  # it did train


def test_resume_refuses_other_settings(tmp_path):
    pretrain(PretrainConfig(**SHORT), tmp_path, progress=False, stop_after=2)
    with pytest.raises(ValueError, match="lr"):
        pretrain(PretrainConfig(**{**SHORT, "lr": 1e-3}), tmp_path, progress=False)


def test_export_drops_the_probe_and_loads_as_a_backbone(tmp_path):
    cfg = PretrainConfig(**SHORT)
    model, _ = pretrain(cfg, tmp_path / "run", progress=False)
    sha = export_weights(tmp_path / "run", tmp_path / "w.safetensors")
    assert sha == hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()
    w = load_file(tmp_path / "w.safetensors")
    assert not any(k.startswith("state_probe") for k in w) and all(v.dtype == torch.float16 for v in w.values())
    bb = load_backbone(Config.quick(pretrained=str(tmp_path / "w.safetensors"), image_size=64))
    want = model.visual.conv1.weight.detach().half().float()
    assert torch.equal(bb.visual.conv1.weight, want)


def test_batches_label_patches_by_mask_cover():
    cfg = PretrainConfig(**SHORT)
    model, tok = build_model(cfg)
    x, cover, tokens = WorldBatches(cfg, 16, tok)[0]
    assert x.shape == (4, 3, 64, 64) and cover.shape == (4, 16) and tokens.shape[0] == 4
    from bagclip.data.world import make_pair

    masks = np.stack([make_pair(cfg.seed, i, 64, random_name_p=cfg.random_name_p).masks[1] for i in range(2)])
    block = masks.reshape(2, 4, 16, 4, 16).mean(axis=(2, 4)).reshape(2, 16)  # numpy block means
    np.testing.assert_allclose(cover[2:].numpy(), block, atol=1e-6)
    assert cover[:2].abs().max() == 0  # clean images first


def test_balanced_loss_by_hand():
    ce = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
    pos = torch.tensor([[True, False, False, False]])
    neg = torch.tensor([[False, True, True, False]])  # the last patch is ignored
    assert float(_balanced(ce, pos, neg)) == pytest.approx(0.5 * 1.0 + 0.5 * 2.5)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_match_their_record_and_load_offline(monkeypatch, name):
    path = shipped_path(name)
    rec = record(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["sha256"]
    assert path.stat().st_size <= 20 * 2 ** 20
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bb = load_backbone(Config.quick(pretrained=name))
    assert bb.grid == 14 and bb.embed_dim == 128
    text = bb.encode_text(["carpet"])[0]
    assert float(text[0] @ text[1]) < 0.999  # normal and abnormal prompts are not one vector


def test_damaged_shipped_weights_are_refused(tmp_path, monkeypatch):
    import bagclip.weights as weights

    src = shipped_path("bagclip-mini")
    (tmp_path / src.name).write_bytes(src.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "bagclip-mini.json").write_text(json.dumps(record("bagclip-mini")))
    monkeypatch.setattr(weights, "_DIR", tmp_path)
    with pytest.raises(ValueError, match="hash"):
        weights.shipped_path("bagclip-mini")


def test_second_stage_starts_from_the_first_and_trains_the_prototypes(tmp_path):
    first, _ = pretrain(PretrainConfig(**SHORT), tmp_path / "one", progress=False)
    cfg = PretrainConfig(**{**SHORT, "init": str(tmp_path / "one" / CHECKPOINT), "w_probe": 0.0,
                            "w_proto": 1.0, "seed": 1})
    start, _ = pretrain(cfg, tmp_path / "two", progress=False, stop_after=0)  # no step yet
    a = {k: v for k, v in _weights(first).items() if not k.startswith("state_")}
    b = _weights(start)
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, hist = pretrain(cfg, tmp_path / "two", progress=False)
    assert {"proto_patch", "proto_text"} <= set(hist[-1])


def test_min_contrast_labels_only_what_changed_visibly():
    """Visible cover against a numpy transcription; masked-but-unseen patches become NaN (ignored)."""
    from bagclip.data.world import make_pair

    cfg = PretrainConfig(**{**SHORT, "batch_pairs": 4, "min_contrast": 12})
    _, tok = build_model(cfg)
    _, cover, _ = WorldBatches(cfg, 16, tok)[0]
    pairs = [make_pair(cfg.seed, i, 64, random_name_p=cfg.random_name_p) for i in range(4)]
    for j, p in enumerate(pairs):
        diff = np.abs(p.images[1].astype(int) - p.images[0].astype(int)).max(-1) > 12
        seen = ((p.masks[1] >= 0.5) & diff).reshape(4, 16, 4, 16).mean(axis=(1, 3)).reshape(16)
        drawn = p.masks[1].reshape(4, 16, 4, 16).mean(axis=(1, 3)).reshape(16)
        want = np.where((drawn > 0) & (seen < cfg.min_cover), np.nan, seen)
        np.testing.assert_allclose(cover[4 + j].numpy(), want, atol=1e-6)
    assert torch.equal(cover[:4], torch.zeros(4, 16))


def test_mil_loss_by_hand():
    """L_mil = BCE(mean of a tap's top-k abnormal-minus-normal logits, image state), from scratch."""
    from open_clip.loss import ClipLoss

    from bagclip.backbone import forward_taps, interpolate_pos_embed, project_patches
    from bagclip.pretrain import losses

    cfg = PretrainConfig(**{**SHORT, "w_mil": 1.0, "mil_share": 0.1, "tau": 10.0})
    model, tok = build_model(cfg)
    x, cover, tokens = WorldBatches(cfg, 16, tok)[0]
    out = losses(model, cfg, x, cover, tokens, ClipLoss())
    with torch.no_grad():
        taps, _ = forward_taps(model.visual, x, cfg.taps, pos=interpolate_pos_embed(model.visual.positional_embedding, 4))
        p = torch.nn.functional.normalize(project_patches(model.visual, taps), dim=-1).numpy()  # (4, L, 16, E)
        t = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()  # (4, E)
    want = []
    for b in range(4):  # images [clean 0, clean 1, defective 0, defective 1]; captions alike
        pair = b % 2
        tn, ta = t[pair], t[2 + pair]
        for l in range(p.shape[1]):
            z = 10.0 * (p[b, l] @ ta - p[b, l] @ tn)
            top = np.sort(z)[-2:].mean()  # k = round(0.1 * 16) = 2
            y = float(b >= 2)
            want.append(-(y * np.log(1 / (1 + np.exp(-top))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-top)))))
    assert float(out["mil"].detach()) == pytest.approx(np.mean(want), rel=1e-4)


def test_bfloat16_autocast_is_really_used(tmp_path):
    """The precision switch changes the arithmetic: the same seed gives other weights."""
    a, _ = pretrain(PretrainConfig(**{**SHORT, "steps": 2}), tmp_path / "bf16", progress=False)
    b, _ = pretrain(PretrainConfig(**{**SHORT, "steps": 2, "precision": "float32"}), tmp_path / "f32",
                    progress=False)
    wa, wb = _weights(a), _weights(b)
    assert all(v.dtype == torch.float32 for v in wa.values())  # float32 master weights
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


def test_reused_batches_are_the_drawn_one_rotated_and_flipped():
    """Step t shows drawn batch t // reuse under the (t % reuse)-th rotation / flip, images and
    patch labels alike: checked against numpy's rot90 / fliplr on the drawn arrays."""
    cfg = PretrainConfig(**{**SHORT, "batch_pairs": 2, "reuse": 8, "steps": 16})
    _, tok = build_model(cfg)
    data = WorldBatches(cfg, 16, tok)
    x0, c0, t0 = data[0]
    G = 64 // 16
    for g in range(8):
        x, c, t = data[g]
        want_x = np.rot90(x0.numpy(), g % 4, axes=(-2, -1))
        want_c = np.rot90(c0.numpy().reshape(-1, G, G), g % 4, axes=(-2, -1))
        if g >= 4:
            want_x, want_c = want_x[..., ::-1], want_c[..., ::-1]
        np.testing.assert_array_equal(x.numpy(), want_x)
        np.testing.assert_array_equal(c.numpy(), want_c.reshape(c.shape))
        assert torch.equal(t, t0)
    x8, _, _ = data[8]  # the next drawn batch: other scenes
    assert not torch.equal(x8, x0)


def test_tie_loss_by_hand():
    """L_tie = BCE(class token's abnormal-minus-normal logit, sigmoid(mean over taps of L_mil's
    top-patch logit)), recomputed from the forward's pieces."""
    from open_clip.loss import ClipLoss

    from bagclip.backbone import forward_taps, interpolate_pos_embed, project_patches
    from bagclip.pretrain import losses

    cfg = PretrainConfig(**{**SHORT, "w_mil": 1.0, "w_tie": 1.0, "mil_share": 0.1, "tau": 10.0,
                            "precision": "float32"})
    model, tok = build_model(cfg)
    x, cover, tokens = WorldBatches(cfg, 16, tok)[0]
    out = losses(model, cfg, x, cover, tokens, ClipLoss())
    with torch.no_grad():
        taps, cls = forward_taps(model.visual, x, cfg.taps, pos=interpolate_pos_embed(model.visual.positional_embedding, 4))
        p = torch.nn.functional.normalize(project_patches(model.visual, taps), dim=-1).numpy()
        c = torch.nn.functional.normalize(cls, dim=-1).numpy()  # (4, E)
        t = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    want = []
    for b in range(4):
        pair = b % 2
        tn, ta = t[pair], t[2 + pair]
        top = np.mean([np.sort(10.0 * (p[b, l] @ ta - p[b, l] @ tn))[-2:].mean() for l in range(p.shape[1])])
        z, y = 10.0 * (c[b] @ ta - c[b] @ tn), sig(top)
        want.append(-(y * np.log(sig(z)) + (1 - y) * np.log(1 - sig(z))))
    assert float(out["tie"].detach()) == pytest.approx(np.mean(want), rel=1e-4)


@pytest.mark.parametrize("bad", [dict(w_probe=float("nan")), dict(w_mil=-1.0), dict(w_tie=1.0),
                                 dict(precision="float16"), dict(reuse=9), dict(lr=float("inf"))])
def test_bad_settings_are_refused_with_one_line(bad):
    with pytest.raises(ValueError, match="pretrain: "):
        PretrainConfig(**SHORT, **bad)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import bagclip.pretrain as pt

    pretrain(PretrainConfig(**SHORT), tmp_path, progress=False, stop_after=2)
    before = (tmp_path / CHECKPOINT).read_bytes()
    real = pt.losses

    def poisoned(*a, **k):
        out = real(*a, **k)
        out["total"] = out["total"] * float("nan")
        return out

    monkeypatch.setattr(pt, "losses", poisoned)
    with pytest.raises(FloatingPointError, match="not finite at step 2"):
        pretrain(PretrainConfig(**SHORT), tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).read_bytes() == before


def test_export_refuses_non_finite_weights(tmp_path):
    model, _ = build_model(PretrainConfig(**SHORT))
    with torch.no_grad():
        model.visual.proj[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="not finite"):
        export_weights(model, tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()


def test_run_time_adds_up_over_sessions_and_survives_a_rerun(tmp_path):
    """time.txt (the weights record's wall_time): a resumed session adds its seconds to the
    earlier ones; rerunning a finished run (to --export) keeps them (it used to write 0 s)."""
    cfg = PretrainConfig(**SHORT)
    pretrain(cfg, tmp_path, progress=False, stop_after=2)
    (tmp_path / "time.txt").write_text("1000 s for steps up to 2\n")  # as if the first session took 1000 s
    pretrain(cfg, tmp_path, progress=False)
    first = (tmp_path / "time.txt").read_text().split()
    assert float(first[0]) >= 1000 and first[-1] == str(cfg.steps)
    pretrain(cfg, tmp_path, progress=False)  # finished: nothing runs
    assert (tmp_path / "time.txt").read_text().split() == first


# ----------------------------------------------------------------------------- v3: where the patch losses attach
PATCH_TERMS = ("dense", "probe", "proto_patch", "mil")  # every loss computed from the tapped tokens


def _patch_loss_grads(patch_proj: str) -> dict:
    """Gradients of the patch losses alone (no L_clip / L_state) on one batch, per parameter."""
    from open_clip.loss import ClipLoss

    from bagclip.pretrain import _training_model, losses

    cfg = PretrainConfig(**{**SHORT, "w_proto": 1.0, "w_mil": 1.0, "patch_proj": patch_proj,
                            "precision": "float32", "min_contrast": 0})
    model, tok = _training_model(cfg, start_from_init=False)
    x, cover, tokens = WorldBatches(cfg, 16, tok)[0]
    out = losses(model, cfg, x, cover, tokens, ClipLoss(), model.state_probe, model.state_prototypes)
    sum(out[k] for k in PATCH_TERMS).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_own_patch_projection_keeps_every_patch_loss_away_from_the_shipped_proj():
    """With patch_proj="own" no patch loss reaches `visual.proj` (the class token's projection,
    shipped); with "proj" (v2) they all do. The own matrix is trained and is not exported."""
    own, shipped = _patch_loss_grads("own"), _patch_loss_grads("proj")
    assert own["visual.proj"] is None or float(own["visual.proj"].abs().max()) == 0.0
    assert float(own["state_patch_proj"].abs().max()) > 0
    assert float(shipped["visual.proj"].abs().max()) > 0 and "state_patch_proj" not in shipped


def test_export_drops_the_own_patch_projection(tmp_path):
    cfg = PretrainConfig(**{**SHORT, "patch_proj": "own"})
    pretrain(cfg, tmp_path / "run", progress=False)
    export_weights(tmp_path / "run", tmp_path / "w.safetensors")
    assert not any(k.startswith("state_") for k in load_file(tmp_path / "w.safetensors"))


def test_v2_checkpoints_without_the_field_resume_as_proj(tmp_path):
    """A checkpoint written before patch_proj existed reads as the default ("proj")."""
    import bagclip.pretrain as pt
    from bagclip.files import safetensors_metadata

    pretrain(PretrainConfig(**SHORT), tmp_path, progress=False, stop_after=2)
    meta = safetensors_metadata(tmp_path / CHECKPOINT)
    old = json.loads(meta["config"])
    old.pop("patch_proj")
    t = load_file(str(tmp_path / CHECKPOINT))
    (tmp_path / CHECKPOINT).write_bytes(pt.safetensors_bytes(t, {**meta, "config": json.dumps(old)}))
    _, hist = pretrain(PretrainConfig(**SHORT), tmp_path, progress=False)
    assert len(hist) == SHORT["steps"]
    with pytest.raises(ValueError, match="patch_proj"):
        pretrain(PretrainConfig(**{**SHORT, "patch_proj": "own", "steps": 6}), tmp_path, progress=False)


@pytest.mark.parametrize("recipe", ["recipe-v3.json"])
def test_shipped_v3_recipe_sends_no_patch_loss_through_the_shipped_proj(recipe):
    """The v3 recipe file, and the record of the weights it made: every patch loss is listed
    with its projection, and none is the shipped proj."""
    from pathlib import Path

    import bagclip.weights as weights
    from bagclip.pretrain import PATCH_PROJECTIONS, patch_losses

    fields = {k: v for k, v in json.loads((Path(weights.__file__).parent / recipe).read_text()).items()
              if not k.startswith("_")}
    via = patch_losses(PretrainConfig(**fields))
    assert set(via) >= {"dense", "probe", "mil"}
    assert PATCH_PROJECTIONS["proj"] not in via.values()
    rec = record("bagclip-mini-v3")
    assert set(rec["patch_losses"]) == set(via) and PATCH_PROJECTIONS["proj"] not in rec["patch_losses"].values()
    assert all(rec["config"][k] == v for k, v in fields.items() if k not in ("threads", "workers", "save_every"))
    assert rec["loss_weights"] == {k: rec["config"][k] for k in rec["loss_weights"]} and "w_dense" in rec["loss_weights"]


def test_shipped_weights_total_at_most_40_mb():
    from pathlib import Path

    import bagclip.weights as weights

    assert sum(f.stat().st_size for f in Path(weights.__file__).parent.glob("*.safetensors")) <= 40 * 10 ** 6
