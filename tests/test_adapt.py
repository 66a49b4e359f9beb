"""bagclip.adapt: drawn defects with exact masks, only allowed kinds, deterministic weights,
bit-identical resume, starting from trained heads, train's checkpoint format."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from bagclip import adapt as A
from bagclip.data.synth import TARGET_CLASSES, make_image
from bagclip.checkpoint import load_heads


@pytest.fixture(scope="module")
def normals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("normals")
    for i in range(4):  # a class the heads never trained on, odd size on purpose
        Image.fromarray(make_image("carpet", "good", 120, seed=5, index=i).image).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def cache(tiny_backbone, tmp_path_factory):
    from bagclip.cache import FeatureCache

    return FeatureCache(tiny_backbone, tmp_path_factory.mktemp("cache"))


def _cfg(tiny_cfg, **kw):
    return tiny_cfg.replace(**{"epochs": 2, "batch_size": 4, "seed": 1, **kw})


def _run(cfg, normals, bb, cache, out, **kw):
    return A.adapt(normals, "carpet", out, cfg=cfg, backbone=bb, copies=1, cache=cache, progress=False, **kw)


def test_kinds_that_need_an_object_are_left_out_and_names_are_checked():
    from bagclip.data.world import DEFECTS

    assert set(A.ANY_IMAGE_KINDS) == set(DEFECTS) - {"missing"} and len(A.ANY_IMAGE_KINDS) == 11
    with pytest.raises(ValueError, match="choose from"):
        A.allowed_kinds(exclude_kinds=["rust"])
    with pytest.raises(ValueError, match="every defect kind"):
        A.allowed_kinds(kinds=["fold"], exclude_kinds=["fold"])


def test_excluded_kinds_are_never_drawn_not_even_as_a_fallback(normals, tmp_path, monkeypatch):
    from bagclip.data import synth, world

    test_kinds = sorted({k for c in TARGET_CLASSES for k in synth.CATEGORIES[c]} - {"missing"})
    called = []
    for k, fn in list(world.DEFECTS.items()):  # spy on every drawing function
        monkeypatch.setitem(world.DEFECTS, k, lambda rng, sc, _k=k, _f=fn: called.append(_k) or _f(rng, sc))
    samples, rec = A.draw_training_set(normals, "carpet", tmp_path, 112, seed=0, copies=12,
                                       exclude_kinds=test_kinds)
    allowed = set(A.ANY_IMAGE_KINDS) - set(test_kinds)
    assert set(called) <= allowed and set(rec["allowed_kinds"]) == allowed
    drawn = {d["kind"] for d in rec["drawn"]}
    assert drawn <= allowed and len(drawn) >= 4  # 48 draws over 6 kinds: most of them appear
    assert [s.defect_type for s in samples if s.label] == [d["kind"] for d in rec["drawn"]]
    # masks are exact: the defective copy differs from the resized normal image exactly there
    clean = np.asarray(Image.open(normals / "0.png").convert("RGB").resize((112, 112), Image.BICUBIC))
    for s in [s for s in samples if s.label][:12]:
        img, m = np.asarray(Image.open(s.image_path)), np.asarray(Image.open(s.mask_path)) > 0
        assert m.any() and np.array_equal((img != clean).any(-1), m)


def test_same_seed_same_weights_other_seed_other_data(tiny_cfg, tiny_backbone, normals, cache, tmp_path):
    a = _run(_cfg(tiny_cfg), normals, tiny_backbone, cache, tmp_path / "a")
    b = _run(_cfg(tiny_cfg), normals, tiny_backbone, cache, tmp_path / "b")
    assert a.history == b.history
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    ra, rb = (json.loads((tmp_path / d / A.RECORD).read_text()) for d in "ab")
    assert ra == rb
    _, rc = A.draw_training_set(normals, "carpet", tmp_path / "c", 112, seed=2, copies=1)
    assert [d["sha256"] for d in rc["drawn"]] != [d["sha256"] for d in ra["drawn"]]
    # train's checkpoint: load_heads reads it
    model, cfg, _ = load_heads(tmp_path / "a", backbone=tiny_backbone)
    assert cfg == _cfg(tiny_cfg)
    with pytest.raises(ValueError, match="already holds a training run"):
        _run(_cfg(tiny_cfg), normals, tiny_backbone, cache, tmp_path / "a")


def test_resume_after_an_interruption_is_bit_identical(tiny_cfg, tiny_backbone, normals, cache, tmp_path,
                                                       ctrl_c_at_loss):
    cfg = _cfg(tiny_cfg, seed=3)  # 8 samples, 2 steps an epoch, 4 in all
    full = _run(cfg, normals, tiny_backbone, cache, tmp_path / "full")
    ctrl_c_at_loss(3)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, normals, tiny_backbone, cache, tmp_path / "cut", save_every=1)
    ctrl_c_at_loss(None)
    resumed = _run(cfg, normals, tiny_backbone, cache, tmp_path / "cut", resume=True)
    assert resumed.history == full.history
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    with pytest.raises(ValueError, match="another adaptation"):
        _run(cfg, normals, tiny_backbone, cache, tmp_path / "cut", resume=True, exclude_kinds=["fold"])


def test_starts_from_trained_heads(tiny_cfg, tiny_backbone, normals, cache, tmp_path):
    first = _run(_cfg(tiny_cfg), normals, tiny_backbone, cache, tmp_path / "first")
    zero = A.adapt(normals, "carpet", tmp_path / "second", init=tmp_path / "first", backbone=tiny_backbone,
                   copies=1, cache=cache, progress=False, max_steps=0)  # no step: the start itself
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, zero.model.state_dict()[k]), k
    rec = json.loads((tmp_path / "second" / A.RECORD).read_text())
    assert rec["init_weights_sha256"] == A.weights_digest(first.model.state_dict()) and rec["config"]["seed"] == 1
    with pytest.raises(ValueError, match="do not fit"):
        A.adapt(normals, "carpet", tmp_path / "third", init=tmp_path / "first", backbone=tiny_backbone,
                cfg=_cfg(tiny_cfg, gcn_hidden=32), copies=1, cache=cache, progress=False)


def test_course_adapted_heads_adapts_once_then_reuses(tiny_cfg, tiny_backbone, normals, cache, tmp_path,
                                                     monkeypatch):
    from bagclip import course

    monkeypatch.setenv("BAGCLIP_CACHE", str(tmp_path / "kit-cache"))
    cfg = _cfg(tiny_cfg, epochs=1)
    _run(cfg, normals, tiny_backbone, cache, tmp_path / "init")
    lab = course.Lab("quick", cfg, "cpu", tiny_backbone, cache=cache)
    first = course.adapted_heads(lab, normals, "carpet", tmp_path / "init", copies=1, exclude_kinds=["crack"])
    assert first.out_dir.parent == tmp_path / "kit-cache" / "course"
    again = course.adapted_heads(lab, normals, "carpet", tmp_path / "init", copies=1, exclude_kinds=["crack"])
    assert again.out_dir == first.out_dir and again.history == first.history  # nothing retrained
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    other = course.adapted_heads(lab, normals, "carpet", tmp_path / "init", copies=1, exclude_kinds=["fold"])
    assert other.out_dir != first.out_dir  # other kinds drawn: another run


def test_replay_samples_are_trained_on_and_recorded_by_content(tiny_cfg, tiny_backbone, normals, cache,
                                                               tmp_path):
    # rehearsal samples: labelled images of another kind (here drawn copies with exact masks)
    replay, _ = A.draw_training_set(normals, "carpet", tmp_path / "rep", 112, seed=9, copies=1)
    cfg = _cfg(tiny_cfg)
    plain = _run(cfg, normals, tiny_backbone, cache, tmp_path / "plain")
    rehearsed = _run(cfg, normals, tiny_backbone, cache, tmp_path / "replay", replay=replay, save_every=1)
    assert any(not torch.equal(v, rehearsed.model.state_dict()[k]) for k, v in plain.model.state_dict().items())
    rec = json.loads((tmp_path / "replay" / A.RECORD).read_text())
    assert len(rec["replay"]) == len(replay) == 8
    assert [r["label"] for r in rec["replay"]] == [int(s.label) for s in replay]
    assert "replay" not in json.loads((tmp_path / "plain" / A.RECORD).read_text())
    # a replay file replaced under the same name is another adaptation: resume refuses it
    img = Image.open(replay[-1].image_path)
    Image.fromarray(255 - np.asarray(img)).save(replay[-1].image_path)
    with pytest.raises(ValueError, match="another adaptation"):
        _run(cfg, normals, tiny_backbone, cache, tmp_path / "replay", resume=True, replay=replay)


def test_resume_check_names_what_differs_and_survives_a_foreign_record(tmp_path):
    """The refusal names the differing fields; a record that is not a JSON object (a list, or
    not JSON) is refused the same way, never an AttributeError."""
    from bagclip.adapt import _check_record
    from bagclip.errors import ResumeError

    path = tmp_path / "adapt.json"
    for text, named in (('{"seed": 1, "copies": 2}', "differing: seed"), ("[1, 2]", "differing: copies, seed"),
                        ("{not json", "differing: copies, seed")):
        path.write_text(text)
        with pytest.raises(ResumeError, match=named):
            _check_record(path, {"seed": 2, "copies": 2})
    path.write_text('{"seed": 2, "copies": 2}')
    _check_record(path, {"seed": 2, "copies": 2})  # the same record: resumes


# --- issue 32: the record is a pure function of the inputs ---------------------------------------
def _rewrite_header(path, change):
    """Rewrite a safetensors file's JSON header with `change(header)`; the tensor bytes are kept
    (what a writer with another header order or other metadata leaves for the same weights)."""
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = change(json.loads(blob[8:8 + n]))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + n:])


def _reversed(d):
    return dict(reversed(list(d.items())))


# (id, how the starting heads' file is rewritten, resume accepted): the same weights under
# another header are the same start; other weights are another adaptation
HEADS_FILES = [
    ("metadata keys in another order", lambda h: {**h, "__metadata__": _reversed(h["__metadata__"])}, True),
    ("tensor entries in another order", lambda h: _reversed(h), True),
    ("other input fingerprints recorded", lambda h: {**h, "__metadata__": {**h["__metadata__"],
                                                                          "bagclip_inputs": "{}"}}, True),
    ("other weights", None, False),
]


@pytest.mark.parametrize("case", HEADS_FILES, ids=[c[0] for c in HEADS_FILES])
def test_the_start_is_recorded_by_its_weights_not_its_file(tiny_cfg, tiny_backbone, normals, cache, tmp_path, case):
    from safetensors.torch import load_file, save_file

    _, change, accepted = case
    _run(_cfg(tiny_cfg, epochs=1), normals, tiny_backbone, cache, tmp_path / "init")
    heads = tmp_path / "start.safetensors"
    heads.write_bytes((tmp_path / "init" / "heads.safetensors").read_bytes())
    kw = dict(init=heads, backbone=tiny_backbone, copies=1, cache=cache, progress=False)
    A.adapt(normals, "carpet", tmp_path / "ad", **kw)
    before = (tmp_path / "ad" / A.RECORD).read_bytes()
    if change is not None:
        _rewrite_header(heads, change)
    else:  # one weight moved: other heads, under the same settings
        t, meta = load_file(heads), json.loads(heads.read_bytes()[8:8 + int.from_bytes(heads.read_bytes()[:8], "little")])
        k = sorted(t)[0]
        t[k] = t[k] + 1e-3
        save_file(t, heads, metadata=meta["__metadata__"])
    if accepted:
        A.adapt(normals, "carpet", tmp_path / "ad", resume=True, **kw)
        assert (tmp_path / "ad" / A.RECORD).read_bytes() == before
    else:
        with pytest.raises(ValueError, match="another adaptation \\(differing: init_weights_sha256\\)"):
            A.adapt(normals, "carpet", tmp_path / "ad", resume=True, **kw)


def test_a_record_of_the_older_form_is_resumed_as_it_is(tiny_cfg, tiny_backbone, normals, cache, tmp_path,
                                                        monkeypatch):
    """Records written before init_weights_sha256 named the start by its file's hash: a resume
    with that same file accepts them and keeps them as they are (their checkpoints record the
    drawn set by the record's hash); a start file replaced since is refused."""
    from bagclip.cache import _file_digest

    _run(_cfg(tiny_cfg, epochs=1), normals, tiny_backbone, cache, tmp_path / "init")
    start = tmp_path / "init" / "heads.safetensors"
    kw = dict(init=tmp_path / "init", backbone=tiny_backbone, copies=1, cache=cache, progress=False)
    with monkeypatch.context() as m:  # the run as the version before left it, interrupted
        m.setattr(A, "_start_record", lambda state: {"init_heads_sha256": _file_digest(start)})
        A.adapt(normals, "carpet", tmp_path / "ad", max_steps=1, save_every=1, **kw)
    old = (tmp_path / "ad" / A.RECORD).read_bytes()
    A.adapt(normals, "carpet", tmp_path / "ad", resume=True, **kw)  # finishes it
    assert (tmp_path / "ad" / A.RECORD).read_bytes() == old  # kept as it is
    rec = json.loads(old)
    rec["init_heads_sha256"] = "0" * 64  # made from another start file
    (tmp_path / "ad" / A.RECORD).write_text(json.dumps(rec, indent=1))
    with pytest.raises(ValueError, match="differing: init_heads_sha256, init_weights_sha256"):
        A.adapt(normals, "carpet", tmp_path / "ad", resume=True, **kw)


CHILD = """
import json, sys
from pathlib import Path
from PIL import Image
from bagclip import Config, load_backbone
from bagclip.adapt import adapt
from bagclip.cache import FeatureCache
from bagclip.data import load_dataset
from bagclip.data.synth import generate, make_image
from bagclip.train import train

base = Path(sys.argv[1])
cfg = Config.tiny(image_size=112, epochs=1, batch_size=4)
bb = load_backbone(cfg)
cache = FeatureCache(bb, base / "cache")
aux = load_dataset("synth", generate(base / "synth", size=112, n_train=1, n_test_good=1, n_test_bad=2,
                                     categories=["wood", "screw"]), "test")
(base / "normals").mkdir(exist_ok=True)
for i in range(2):
    Image.fromarray(make_image("carpet", "good", 112, seed=5, index=i).image).save(base / "normals" / f"{i}.png")
# as benchmarks/adapt.py does: a finished run is resumed (its heads file written again)
zs, ad = base / "zero-shot", base / "adapted"
train(cfg, aux, bb, zs, cache=cache, resume=(zs / "state.pt").is_file(), progress=False)
adapt(base / "normals", "carpet", ad, cfg=cfg, init=zs, backbone=bb, copies=1, cache=cache, progress=False,
      resume=(ad / "state.pt").is_file())
"""


def test_a_record_made_in_one_process_is_resumed_in_another(tmp_path):
    """benchmarks/adapt.py's rerun in a reused work folder, in fresh processes with other hash
    seeds (Python's, and safetensors' own random header order before files.safetensors_bytes)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "BAGCLIP_CACHE": str(tmp_path / "kit-cache")}
    records = []
    for seed in ("1", "2", "3"):
        p = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env={**env, "PYTHONHASHSEED": seed},
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        records.append((tmp_path / "adapted" / A.RECORD).read_bytes())
    assert records[0] == records[1] == records[2]


# (id, image, side it is drawn at, allowed kinds): no allowed defect fits (real drawings)
NO_ROOM = [
    ("every kind on 4 pixels", "noise", 4, None),
    ("every kind on 8 pixels", "noise", 8, None),
    ("cracks on a flat 14-pixel image", "flat", 14, ["crack"]),
    ("holes on a black 14-pixel image", "black", 14, ["hole"]),
    ("folds on 8 pixels", "white", 8, ["fold"]),
]


@pytest.mark.parametrize("case", NO_ROOM, ids=[c[0] for c in NO_ROOM])
def test_no_room_for_a_defect_is_the_kits_error_in_one_line(case, tmp_path):
    """The kit's own error (the CLI's one line with what to do), never a RuntimeError traceback."""
    from bagclip.cli.errors import phrase
    from bagclip.errors import BagclipError, DefectDrawError

    _, what, side, kinds = case
    pixels = {"noise": np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8),
              "flat": np.full((64, 64, 3), 128, np.uint8), "black": np.zeros((64, 64, 3), np.uint8),
              "white": np.full((64, 64, 3), 255, np.uint8)}[what]
    img = tmp_path / f"{what}.png"
    Image.fromarray(pixels).save(img)
    with pytest.raises(DefectDrawError) as e:
        A.draw_training_set([img], "part", tmp_path / "out", side, kinds=kinds)
    err = e.value
    assert isinstance(err, BagclipError) and not isinstance(err, RuntimeError)
    assert err.path == img and err.size == side and err.kinds == tuple(kinds or A.ANY_IMAGE_KINDS)
    line = phrase("adapt", err)
    assert "\n" not in line and str(img) in line and f"{side}x{side}" in line and "image_size" in line


def test_the_benchmarks_set_reaches_the_config_and_keeps_its_own_runs_folder():
    """benchmarks/adapt.py --set KEY=VALUE overrides the preset's Config like the CLI's --set, and
    its default work folder names the override, so v3's runs never reuse v2's finished heads."""
    import importlib.util
    from pathlib import Path

    from bagclip import Config
    from bagclip.errors import ConfigError

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "adapt.py"
    spec = importlib.util.spec_from_file_location("bench_adapt", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    plain, v3 = bench.options([]), bench.options(["--set", "pretrained=bagclip-mini-v3"])
    assert plain.work == "runs/bench-adapt" and v3.work == "runs/bench-adapt-pretrained-bagclip-mini-v3"
    assert bench.config(v3).pretrained == "bagclip-mini-v3"
    assert bench.config(plain) == Config.quick()
    assert bench.options(["--set", "pretrained=x", "--work", "w"]).work == "w"  # an explicit folder wins
    with pytest.raises(ConfigError, match="no_such_field"):
        bench.config(bench.options(["--set", "no_such_field=1"]))
