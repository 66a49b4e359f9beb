"""Issue 19, sizes: what cannot fit is refused before allocating, with one line naming the
setting. Estimates are checked against sizes computed here by hand; refusals against a given
`avail` (deterministic) and, through the CLI, against this machine's memory."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bagclip import budget
from bagclip.budget import BudgetError

GIB = 1 << 30


def test_available_bytes_sources(monkeypatch):
    real = budget.available_bytes()
    assert real is None or real > 0
    import builtins

    orig = builtins.__import__

    def no_psutil(name, *a, **k):
        if name == "psutil":
            raise ImportError
        return orig(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    meminfo = budget.available_bytes()  # /proc/meminfo (Linux) or sysconf
    assert meminfo is None or meminfo > 0


# (id, batch, image size, patch, width, heads, taps, bytes by hand)
FORWARD = [
    ("mini 224", 8, 224, 16, 192, 3, 4, 2 * 8 * 3 * 197**2 * 4 + 8 * 8 * 197 * 192 * 4 + 2 * 8 * 4 * 196**2 * 4),
    ("ViT-L 518", 8, 518, 14, 1024, 16, 4, 2 * 8 * 16 * 1370**2 * 4 + 8 * 8 * 1370 * 1024 * 4 + 2 * 8 * 4 * 1369**2 * 4),
    ("one image", 1, 112, 14, 128, 2, 2, 2 * 2 * 65**2 * 4 + 8 * 65 * 128 * 4 + 2 * 2 * 64**2 * 4),
]


@pytest.mark.parametrize("case", FORWARD, ids=[c[0] for c in FORWARD])
def test_forward_estimate(case):
    assert budget.forward_bytes(*case[1:7]) == case[7]


# (id, check, its arguments, memory available, refused, the setting named)
class _Cfg:
    def __init__(self, image_size, taps=(1, 2, 3, 4)):
        self.image_size, self.taps = image_size, taps


CHECKS = [
    ("image_size 4096 in 16 GiB", budget.check_forward, (_Cfg(4096), 192, 3, 16, 8), 16 * GIB, True, "image_size"),
    ("image_size 1024 in 16 GiB", budget.check_forward, (_Cfg(1024), 192, 3, 16, 8), 16 * GIB, False, None),
    ("image_size 518 ViT-L in 2 GiB", budget.check_forward, (_Cfg(518), 1024, 16, 14, 8), 2 * GIB, True, "image_size"),
    ("image_size 518 ViT-L in 8 GiB", budget.check_forward, (_Cfg(518), 1024, 16, 14, 8), 8 * GIB, False, None),
    ("sigma 1e7", budget.check_smoothing, (1, 224, 224, 1e7), 64 * GIB, True, "smoothing_sigma"),
    ("sigma 1e5 on 8 maps", budget.check_smoothing, (8, 224, 224, 1e5), 1 * GIB, True, "smoothing_sigma"),
    ("sigma 4", budget.check_smoothing, (8, 518, 518, 4.0), 1 * GIB, False, None),
    ("sigma 1000 small budget", budget.check_smoothing, (1, 224, 224, 1e3), 1 * GIB, False, None),
    ("resolution 30000", budget.check_resolution, (12, 30000), 32 * GIB, True, "resolution"),
    ("resolution 4096 x 500", budget.check_resolution, (500, 4096), 32 * GIB, True, "resolution"),
    ("resolution 518 x 500", budget.check_resolution, (500, 518), 4 * GIB, False, None),
]


@pytest.mark.parametrize("case", CHECKS, ids=[c[0] for c in CHECKS])
def test_checks_refuse_what_cannot_fit(case):
    _, fn, args, avail, refused, setting = case
    if not refused:
        fn(*args, avail=avail)
        return
    with pytest.raises(BudgetError) as e:
        fn(*args, avail=avail)
    msg = str(e.value)
    assert e.value.setting == setting and setting in msg and "GiB" in msg and "lower" in msg
    assert "\n" not in msg


def test_smooth_maps_refuses_before_allocating(monkeypatch):
    from bagclip.model import smooth_maps

    monkeypatch.setattr(budget, "available_bytes", lambda device=None: 1 * GIB)
    with pytest.raises(BudgetError, match="smoothing_sigma=1e\\+07"):
        smooth_maps(torch.zeros(1, 224, 224), 1e7)
    assert smooth_maps(torch.ones(1, 32, 32), 2.0).shape == (1, 32, 32)  # normal sizes pass


def test_evaluate_refuses_a_huge_resolution_before_scoring(monkeypatch, tmp_path):
    from bagclip.data import Sample
    from bagclip.evaluate import evaluate

    p = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p)
    m = tmp_path / "a_mask.png"
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(m)
    samples = [Sample(p, None, "c", "good", 0), Sample(p, m, "c", "x", 1)]
    called = []

    def fn(images, cls):
        called.append(1)
        return torch.zeros(len(images), 8, 8), torch.zeros(len(images))

    monkeypatch.setattr(budget, "available_bytes", lambda device=None: 4 * GIB)
    with pytest.raises(BudgetError, match="resolution 30000"):
        evaluate(fn, samples, 8, resolution=30000, progress=False)
    assert not called


@pytest.mark.parametrize("setting, word", [("image_size=4096", "image_size"),
                                           ("smoothing_sigma=1e7", "smoothing_sigma")])
def test_cli_predict_refuses_in_one_line(tmp_path, capsys, monkeypatch, setting, word):
    from bagclip.cli import main

    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    monkeypatch.setattr(budget, "available_bytes", lambda device=None: 16 * GIB)  # any machine
    with pytest.raises(SystemExit) as e:
        main(["predict", str(img), "--quick", "--set", setting])
    msg = str(e.value.code)
    assert msg.startswith("bagclip predict:") and word in msg and "GiB" in msg and "\n" not in msg


# --- issue 32: the heads' sizes ---------------------------------------------------------------
# (id, settings changed from Config.tiny's): the count from the settings against the built heads
HEADS = [
    ("tiny", {}),
    ("one shared SAG", {"share_sag": True}),
    ("learnt metric", {"metric_proj": True}),
    ("no SAFR", {"use_safr": False}),
    ("no SAG", {"use_sag": False}),
    ("no JFF fusion", {"use_jff": False}),
    ("no global adapter", {"global_adapter": False}),
    ("reduction 1, wide, deep", {"safr_reduction": 1, "gcn_hidden": 96, "gcn_layers": 7}),
]


@pytest.mark.parametrize("case", HEADS, ids=[c[0] for c in HEADS])
def test_heads_parameters_are_those_built(case, tiny_cfg, tiny_backbone):
    from bagclip.model import build_heads, count_parameters

    cfg = tiny_cfg.replace(**case[1])
    want = count_parameters(build_heads(cfg, tiny_backbone))[0]
    assert budget.heads_parameters(cfg, tiny_backbone.width, tiny_backbone.embed_dim) == want


# (id, settings, memory available or None for this machine's, the setting named)
TOO_LARGE = [
    ("gcn_hidden 1e9", ["gcn_hidden=1000000000"], None, "gcn_hidden"),
    ("gcn_hidden 1e6", ["gcn_hidden=1000000"], 64 * GIB, "gcn_hidden"),
    ("gcn_layers 1e8", ["gcn_layers=100000000"], None, "gcn_layers"),
    ("deep and wide", ["gcn_hidden=20000", "gcn_layers=500"], 64 * GIB, "gcn_layers"),
    ("a batch beyond the memory", ["batch_size=4"], 9 << 20, "batch_size"),
]


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    from bagclip.data.synth import generate

    return generate(tmp_path_factory.mktemp("s") / "s", size=112, n_train=1, n_test_good=2, n_test_bad=2,
                    categories=["wood"])


@pytest.mark.parametrize("case", TOO_LARGE, ids=[c[0] for c in TOO_LARGE])
def test_heads_too_large_are_refused_in_one_line(case, small_synth, tmp_path, capsys, monkeypatch):
    """Before anything is encoded or allocated: one line naming the setting, never torch's
    allocation traceback (768 GB for gcn_hidden=1e9)."""
    from bagclip.cli import main

    _, settings, avail, word = case
    if avail is not None:
        monkeypatch.setattr(budget, "available_bytes", lambda device=None: avail)
    argv = ["train", "--quick", "--set", "image_size=112", "--set", "epochs=1",
            *[a for s in settings for a in ("--set", s)], "--dataset", f"synth={small_synth}",
            "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]
    with pytest.raises(SystemExit) as e:
        main(argv)
    msg = str(e.value.code)
    assert msg.startswith("bagclip train:") and f"lower {word}" in msg and "GiB" in msg and "\n" not in msg
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.safetensors"))  # nothing encoded


def test_build_heads_refuses_before_allocating(tiny_cfg, tiny_backbone):
    from bagclip.model import build_heads

    with pytest.raises(BudgetError, match="gcn_hidden=1000000000"):
        build_heads(tiny_cfg.replace(gcn_hidden=10**9), tiny_backbone)
