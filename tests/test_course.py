"""bagclip.course's shared lesson measurements (tap_auroc, separations, heads_table), checked by
properties an independent computation fixes: swapped prompts flip an AUROC to 1 - AUROC; without
SAFR, F_pre is the cached tap itself; identical heads give identical rows."""
import json
import math

import numpy as np
import pytest
import torch

from bagclip import analysis as an, course
from bagclip.cache import FeatureCache
from bagclip.data import load_dataset
from bagclip.data.synth import ensure_synth
from bagclip.model import build_heads
from bagclip.prompts import class_texts


@pytest.fixture(scope="module")
def lab(tiny_cfg, tiny_backbone, tmp_path_factory):
    root = ensure_synth(tmp_path_factory.mktemp("synth"), seed=3, size=tiny_cfg.image_size, n_train=1,
                        n_test_good=2, n_test_bad=4, categories=["carpet", "screw"])
    samples = load_dataset("synth", root, "test", classes=["carpet", "screw"])
    cache = FeatureCache(tiny_backbone, tmp_path_factory.mktemp("cache"))
    return course.Lab("quick", tiny_cfg, "cpu", tiny_backbone, targets={"synth": samples}, cache=cache)


def test_tap_auroc_flips_when_the_prompts_swap(lab):
    texts = class_texts(lab.backbone, sorted({s.class_name for s in lab.target}), lab.cfg)
    swapped = {c: t.flip(0) for c, t in texts.items()}  # [abnormal, normal]: p_abnormal -> 1 - p
    a, b = course.tap_auroc(lab, texts, n=5), course.tap_auroc(lab, swapped, n=5)
    assert list(a.index) == [f"block {t}" for t in lab.cfg.taps]
    np.testing.assert_allclose(a.to_numpy() + b.to_numpy(), 1.0, atol=1e-9)


def test_separations_one_row_per_image_and_tap(lab):
    torch.manual_seed(0)
    heads = build_heads(lab.cfg.replace(use_safr=False), lab.backbone).eval()
    sep = course.separations(lab, heads, n=8)
    kept = [s for s in course.defective(lab, 8)
            if (an.patch_fraction(lab.view(s)[1], lab.backbone.grid) > 0.25).sum() >= 2]
    assert len(sep) == len(kept) * len(lab.cfg.taps) and len(kept) >= 1
    s = kept[0]
    _, m, tok = lab.view(s)
    is_defect = an.patch_fraction(m, lab.backbone.grid) > 0.25
    row = sep[(sep.image == s.image_path.stem) & (sep.tap == f"block {lab.cfg.taps[1]}")].iloc[0]
    # no SAFR: F_pre is the cached tap, so its separation is computable without the heads
    assert row.F_pre == pytest.approx(an.separation(tok.patches[0, 1], is_defect), rel=1e-6)
    no_sag = course.separations(lab, build_heads(lab.cfg.replace(use_sag=False), lab.backbone), n=8)
    assert no_sag.F_SAG.map(math.isnan).all() and no_sag.Psi.notna().all()


def test_heads_table_rows_follow_the_heads(lab):
    torch.manual_seed(0)
    a = build_heads(lab.cfg, lab.backbone).eval()
    b = build_heads(lab.cfg, lab.backbone).eval()
    b.load_state_dict(a.state_dict())
    t = course.heads_table(lab, {"a": a, "copy of a": b})
    assert list(t.index) == [("synth", "a"), ("synth", "copy of a")]
    assert (t.xs("a", level="heads") == t.xs("copy of a", level="heads")).all().all()
    assert t.to_numpy().min() >= 0 and t.to_numpy().max() <= 1


def test_reproduce_runs_are_found_from_lessons_and_solutions(tmp_path):
    runs = tmp_path / "runs" / "reproduce-quick" / "runs"
    runs.mkdir(parents=True)
    deep = tmp_path / "notebooks" / "solutions" / "more"
    deep.mkdir(parents=True)
    assert course.reproduce_runs(tmp_path) == [runs]  # reproduce's own folder
    assert course.reproduce_runs(tmp_path / "notebooks") == [runs]  # a lesson
    assert course.reproduce_runs(tmp_path / "notebooks" / "solutions") == [runs]  # a solution
    assert course.reproduce_runs(deep) == []  # three levels up is not looked at


def test_trained_heads_reads_reproduces_finished_run_without_writing(lab, tmp_path, monkeypatch):
    """The lessons' heads come from reproduce's run of the same key, read where it is: the same
    weights, nothing written there, nothing trained in the course cache; another Config (no such
    run) is trained into the course cache."""
    from bagclip.runs import run_key, run_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BAGCLIP_CACHE", str(tmp_path / "cache"))
    cfg = lab.cfg.replace(epochs=1, batch_size=4)
    aux = lab.targets["synth"][:4]  # any labelled samples train the heads; the plumbing is the point
    lab2 = course.Lab("quick", cfg, "cpu", lab.backbone, aux=aux, targets=lab.targets, cache=lab.cache)
    runs = tmp_path / "runs" / "reproduce-quick" / "runs"
    run_settings(cfg, {"ours": {}}, aux, lab.targets, [cfg.seed], backbone=lab.backbone, cache=lab.cache,
                 runs_root=runs, progress=False)
    run = runs / run_key(cfg, aux, lab.targets)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()}

    got = course.trained_heads(lab2)
    assert got.out_dir == run
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()} == before
    assert not (tmp_path / "cache" / "course").exists()
    saved = json.loads((run / "history.json").read_text())
    assert got.history == saved and len(saved) == 1  # 4 samples, batch 4, one epoch: one step
    from bagclip.checkpoint import load_heads

    ref = load_heads(run, backbone=lab.backbone)[0].state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in got.model.state_dict().items())

    other = course.trained_heads(lab2, cfg.replace(loss_lambda=0.0))
    assert other.out_dir.parent == tmp_path / "cache" / "course"
