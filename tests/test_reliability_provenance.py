"""Issue 19, rules 7-10 wired in: every result records what it was computed from and reuse checks
it (run keys, run records, training states, heads); zero-shot targets disjoint from training in
the commands; repeated seeds, values and names refused; eval and bench claim their --out.

Every refusal on the command line is one line (`bagclip <cmd>: ...`), never a traceback.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from bagclip.cli import main
from bagclip.data import DataError, Sample
from bagclip.errors import InputsChangedError, ListError, WeightsChangedError
from bagclip.files import KIT_MARKER

from fixtures_data import H, W, write_image, write_mask


def _one_line(e, cmd: str, *words: str) -> str:
    msg = str(e.value.code)
    assert msg.startswith(f"bagclip {cmd}:") and "\n" not in msg and "Traceback" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def _set(root, cls: str, n: int = 3, seed: int = 0) -> list:
    """n samples of class cls under root: normals, then one with a mask."""
    out = []
    for i in range(n):
        img = write_image(root / cls / f"{i}.png", seed=seed + i)
        mask = write_mask(root / cls / f"{i}_mask.png") if i == n - 1 else None
        out.append(Sample(img, mask, cls, "x" if mask else "good", int(mask is not None)))
    return out


def _touch(p):
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))


# --- rule 7: run keys and run records follow the inputs ----------------------------------------
# (id, change made to the tree of A after its key was taken, key changes)
KEY_CASES = [
    ("nothing", lambda root, aux, tgt: (aux, tgt), False),
    ("another order", lambda root, aux, tgt: (aux[::-1], tgt), False),
    ("a training image touched", lambda root, aux, tgt: (_touch(aux[0].image_path), (aux, tgt))[1], True),
    ("a target image rewritten", lambda root, aux, tgt: (
        write_image(tgt["t"][0].image_path, hw=(H + 1, W), seed=99), (aux, tgt))[1], True),
    ("a mask rewritten", lambda root, aux, tgt: (write_mask(aux[-1].mask_path, hw=(H + 2, W)), (aux, tgt))[1],
     True),
    # the example: another tree B of the same size (reproduce --synth-root B)
    ("the same tree copied to B", lambda root, aux, tgt: _copied(root, aux, tgt), True),
]


def _copied(root, aux, tgt):
    shutil.copytree(root, root.with_name("B"))
    move = lambda s: Sample(root.with_name("B") / s.image_path.relative_to(root),  # noqa: E731
                            s.mask_path and root.with_name("B") / s.mask_path.relative_to(root),
                            s.class_name, s.defect_type, s.label)
    return [move(s) for s in aux], {k: [move(s) for s in v] for k, v in tgt.items()}


@pytest.mark.parametrize("case", KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_run_key_follows_the_inputs(tmp_path, tiny_cfg, case):
    from bagclip.runs import plan_runs, run_key

    root = tmp_path / "A"
    aux, tgt = _set(root, "wood"), {"t": _set(root, "screw", seed=10)}
    before = run_key(tiny_cfg, aux, tgt)
    aux2, tgt2 = case[1](root, aux, tgt)
    assert (run_key(tiny_cfg, aux2, tgt2) != before) == case[2]
    (_, _, _, d), = plan_runs(tiny_cfg, {"x": {}}, aux2, tgt2, [tiny_cfg.seed], runs_root=tmp_path / "runs")
    assert d.name == run_key(tiny_cfg, aux2, tgt2)  # the folders follow the same key


# (id, the record's inputs, the inputs now, read back)
RECORDS = [
    ("same inputs", {"aux": "a", "targets": {"t": "b"}}, {"aux": "a", "targets": {"t": "b"}}, True),
    ("other training data", {"aux": "a", "targets": {"t": "b"}}, {"aux": "z", "targets": {"t": "b"}}, False),
    ("other target files", {"aux": "a", "targets": {"t": "b"}}, {"aux": "a", "targets": {"t": "z"}}, False),
    ("a record from before fingerprints", None, {"aux": "a", "targets": {"t": "b"}}, False),
    ("a caller that gives none", {"aux": "a", "targets": {"t": "b"}}, None, True),
]


@pytest.mark.parametrize("case", RECORDS, ids=[c[0] for c in RECORDS])
def test_finished_run_is_read_back_only_from_the_same_inputs(tmp_path, tiny_cfg, case):
    from bagclip.runs import finished_run

    rec = {"config": tiny_cfg.to_dict(), "targets": {"t": 3}, "metrics": {"t": {"image_auroc": 0.5}}}
    if case[1] is not None:
        rec["inputs"] = case[1]
    (tmp_path / "metrics.json").write_text(json.dumps(rec))
    got = finished_run(tmp_path, tiny_cfg, {"t": 3}, case[2])
    assert (got is not None) == case[3]


# (id, change after the first training step, resume refused, what differs)
RESUMES = [
    ("same data", lambda aux: aux, False, None),
    ("an image touched", lambda aux: (_touch(aux[0].image_path), aux)[1], True, "aux"),
    ("one image fewer", lambda aux: aux[1:], True, "aux"),
    ("a label flipped", lambda aux: [*aux[:-1], Sample(aux[-1].image_path, aux[-1].mask_path, "wood", "x", 0)],
     True, "aux"),
]


@pytest.mark.parametrize("case", RESUMES, ids=[c[0] for c in RESUMES])
def test_resume_with_other_training_data_is_refused(tmp_path, tiny_cfg, tiny_backbone, case):
    from bagclip.cache import FeatureCache
    from bagclip.train import train

    cfg, cache = tiny_cfg.replace(epochs=2, batch_size=2), FeatureCache(tiny_backbone, tmp_path / "c")
    aux = _set(tmp_path / "A", "wood", n=4)
    train(cfg, aux, tiny_backbone, tmp_path / "run", cache=cache, max_steps=1, progress=False)
    now = case[1](list(aux))
    if not case[2]:
        res = train(cfg, now, tiny_backbone, tmp_path / "run", cache=cache, resume=True, progress=False)
        assert len(res.history) == 4
        return
    with pytest.raises(InputsChangedError, match=f"other inputs \\({case[3]} differ"):
        train(cfg, now, tiny_backbone, tmp_path / "run", cache=cache, resume=True, progress=False)


def _weights(tmp_path):
    from safetensors.torch import save_file

    from bagclip import Config, load_backbone

    f = tmp_path / "w.safetensors"
    sd = {k: v.contiguous() for k, v in load_backbone(Config.tiny(image_size=56)).model.state_dict().items()}
    save_file(sd, str(f))
    return f, sd


def _perturb(f, sd, same_date: bool):
    from safetensors.torch import save_file

    st = f.stat()
    key = next(k for k in sd if k.endswith("proj") and sd[k].ndim == 2)
    save_file({**sd, key: sd[key] + 1.0}, str(f))
    if same_date:  # the name, size and date an old check saw
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


# (id, what happens to the weights file after training, eval refused)
WEIGHT_CHANGES = [
    ("untouched", lambda f, sd: None, False),
    ("touched, same bytes", lambda f, sd: _touch(f), False),
    ("replaced, same size and date", lambda f, sd: _perturb(f, sd, True), True),
    ("replaced", lambda f, sd: _perturb(f, sd, False), True),
]


@pytest.mark.parametrize("case", WEIGHT_CHANGES, ids=[c[0] for c in WEIGHT_CHANGES])
def test_heads_notice_replaced_weights(tmp_path, case):
    from bagclip import Config, load_backbone
    from bagclip.checkpoint import load_heads
    from bagclip.train import train

    f, sd = _weights(tmp_path)
    cfg = Config.tiny(image_size=56, pretrained=str(f), epochs=1, batch_size=4)
    bb = load_backbone(cfg)
    train(cfg, _set(tmp_path / "A", "wood"), bb, tmp_path / "run", progress=False)
    case[1](f, sd)
    if not case[2]:
        load_heads(tmp_path / "run")
        return
    with pytest.raises(WeightsChangedError, match="weights file was replaced"):
        load_heads(tmp_path / "run")
    with pytest.raises(SystemExit) as e:
        main(["eval", "--checkpoint", str(tmp_path / "run"), "--dataset", f"synth={tmp_path / 'none'}",
              "--out", str(tmp_path / "ev")])
    _one_line(e, "eval", "weights file was replaced", "retrain")


# --- rule 8: zero-shot targets disjoint from training, in the commands -------------------------
@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    from bagclip.data.synth import generate

    base = tmp_path_factory.mktemp("trees")
    kw = dict(seed=3, size=32, n_train=1, n_test_good=1, n_test_bad=1)
    return {"all": generate(base / "all", categories=["wood", "screw"], **kw),
            "wood": generate(base / "wood", categories=["wood"], **kw),
            "screw": generate(base / "screw", categories=["screw"], **kw)}


# (id, command, --train, --target, words)
SHARED = [
    ("sweep, the same tree", "sweep", "synth={all}", "synth={all}", "share class"),
    ("sweep, the same tree as mvtec", "sweep", "mvtec={all}", "mvtec={all}", "share class"),
    ("ablate, the same tree", "ablate", "synth={all}", "synth={all}", "share class"),
    ("ablate, a class of the tree", "ablate", "synth={all}", "synth={wood}", "'wood'"),
    ("sweep, a shared class in two trees", "sweep", "synth={wood}", "synth={all}", "'wood'"),
]


@pytest.mark.parametrize("case", SHARED, ids=[c[0] for c in SHARED])
def test_commands_refuse_targets_that_share_training_classes(trees, tmp_path, case):
    with pytest.raises(SystemExit) as e:
        main([case[1], "--quick", "--train", case[2].format(**trees), "--target", case[3].format(**trees),
              "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")])
    _one_line(e, case[1], case[4], "zero-shot")


def test_disjoint_trees_pass_the_check(trees):
    from bagclip.data import load_dataset
    from bagclip.fingerprint import check_zero_shot

    check_zero_shot(load_dataset("synth", trees["wood"]), {"t": load_dataset("synth", trees["screw"])})
    with pytest.raises(DataError):
        check_zero_shot(load_dataset("synth", trees["all"]), {"t": load_dataset("synth", trees["screw"])})


# --- rule 9: a seed, a swept value or a dataset name given twice --------------------------------
# (id, arguments, words of the one line)
REPEATS = [
    ("sweep --seeds 1 1", ["sweep", "--quick", "--seeds", "1", "1"], "seeds: 1 given more than once"),
    ("sweep --values 3 3", ["sweep", "--quick", "--values", "3", "5", "3"], "values of k: 3 given"),
    ("sweep --param seed", ["sweep", "--quick", "--param", "seed", "--values", "1", "2"], "--seeds"),
    ("ablate --seeds 0 2 0", ["ablate", "--quick", "--seeds", "0", "2", "0"], "0 given more than once"),
    ("reproduce --seeds 1 1", ["reproduce", "--seeds", "1", "1"], "seeds: 1 given"),
    ("reproduce --grid-seeds 0 0", ["reproduce", "--grid-seeds", "0", "0"], "--grid-seeds"),
    ("reproduce --sweeps k twice", ["reproduce", "--sweeps", '{"k": [5, 5]}'], "values of k: 5"),
    ("sweep --train twice", ["sweep", "--quick", "--train", "synth=A", "--train", "SYNTH=B", "--target",
                             "mpdd=C"], "given twice: synth"),
    ("train --dataset twice", ["train", "--quick", "--dataset", "folder=A", "--dataset", "folder=B"],
     "given twice: folder"),
]


@pytest.mark.parametrize("case", REPEATS, ids=[c[0] for c in REPEATS])
def test_repeated_seeds_values_and_names_are_refused(tmp_path, case):
    cmd = case[1][0]
    out = ["--out", str(tmp_path / "o")] + (["--figures", str(tmp_path / "f")] if cmd == "reproduce" else [])
    with pytest.raises(SystemExit) as e:
        main([*case[1], *out])
    _one_line(e, cmd, case[2])


@pytest.mark.parametrize("call", ["run_settings", "sweep seed", "sweep values"])
def test_the_library_refuses_repeats_too(tiny_cfg, call):
    from bagclip.runs import run_settings
    from bagclip.sweeps import sweep

    aux, tgt = [object()], {"t": [object()]}
    with pytest.raises(ListError):
        if call == "run_settings":
            run_settings(tiny_cfg, {"x": {}}, aux, tgt, seeds=(2, 2), backbone=object())
        elif call == "sweep seed":
            sweep(tiny_cfg, "seed", [1, 2], aux, tgt, backbone=object())
        else:
            sweep(tiny_cfg, "k", [3, 3], aux, tgt, backbone=object())


# --- rule 10: eval --out and bench --out claim their folder -------------------------------------
def _heads(tmp_path):
    from bagclip import Config, load_backbone
    from bagclip.checkpoint import save_heads
    from bagclip.model import build_heads

    cfg = Config.tiny(image_size=56)
    save_heads(build_heads(cfg, load_backbone(cfg)), cfg, tmp_path / "heads.safetensors")
    return tmp_path / "heads.safetensors"


# (id, what the --out folder holds, claimed)
FOLDERS = [
    ("new", None, True),
    ("empty", {}, True),
    ("a user's files", {"notes.txt": "mine"}, False),
    ("a user's hidden file and a file", {".x": "", "thesis.tex": "mine"}, False),
    ("an older kit's output", {"synth/metrics.json": "{}", "table4_sag_cost.csv": ""}, True),
]


@pytest.mark.parametrize("cmd", ["eval", "bench"])
@pytest.mark.parametrize("case", FOLDERS, ids=[c[0] for c in FOLDERS])
def test_eval_and_bench_claim_their_out_folder(tmp_path, monkeypatch, cmd, case):
    import bagclip.cost

    out = tmp_path / "out"
    for rel, text in (case[1] or {}).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    if case[1] == {}:
        out.mkdir()
    monkeypatch.setattr(bagclip.cost, "bench_main", lambda *a, **k: print("benched"))
    args = (["eval", "--checkpoint", str(_heads(tmp_path)), "--dataset", f"mvtec={tmp_path / 'none'}"]
            if cmd == "eval" else ["bench", "--quick"])
    with pytest.raises(SystemExit) if cmd == "eval" or not case[2] else _nothing() as e:
        main([*args, "--out", str(out)])
    if case[2]:
        assert (out / KIT_MARKER).is_file()
        if cmd == "eval":  # claimed, then the missing dataset is what stops it
            _one_line(e, "eval", "does not exist")
        return
    _one_line(e, cmd, "did not write", "--out")
    assert not (out / KIT_MARKER).exists()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
