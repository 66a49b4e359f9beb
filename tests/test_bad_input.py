"""Every bad input of issue 10 through the command line: a non-zero exit, no traceback, one line
naming the file or setting and what to do; and for each case that used to give a silently wrong
result, the right result or a refusal.

Most cases call `main(argv)` in this process (a traceback there is an exception that fails the
test); the cases marked SUB run `python -m bagclip.cli` as a real subprocess.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bagclip.cli import main
from bagclip.config import Config

from fixtures_data import write_image, write_mask

REPO = Path(__file__).resolve().parents[1]
TINY = Config.tiny(image_size=112, epochs=1, batch_size=4)
SMALL = ["--quick", "--set", "image_size=112", "--set", "epochs=1"]


# --- shared material ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_backbone):
    """A small synthetic tree, a trained run folder, and files for the hostile cases."""
    from bagclip.cache import FeatureCache
    from bagclip.data import load_dataset
    from bagclip.data.synth import generate
    from bagclip.train import train

    base = tmp_path_factory.mktemp("bad")
    synth = generate(base / "synth", size=112, n_train=1, n_test_good=1, n_test_bad=4,
                     categories=["wood", "screw"])
    samples = load_dataset("synth", synth, "test")
    run = base / "run"
    train(TINY, samples, tiny_backbone, run, cache=FeatureCache(tiny_backbone, base / "cache"),
          progress=False)
    w = {"base": base, "synth": synth, "run": run, "heads": run / "heads.safetensors",
         "image": synth / "screw" / "test" / "good" / "000.png", "file": base / "a_file.txt"}
    w["file"].write_text("not a folder\n")
    data = w["heads"].read_bytes()
    (base / "trunc").mkdir()
    (base / "trunc" / "heads.safetensors").write_bytes(data[: len(data) // 2])
    (base / "garbage.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00hello" + b"\x00" * 64)
    # tensors of gcn_hidden=64 heads labelled as gcn_hidden=32: a mismatched checkpoint
    from safetensors.torch import load_file, save

    other = json.dumps(TINY.replace(gcn_hidden=32).to_dict())
    (base / "mismatch.safetensors").write_bytes(save(load_file(w["heads"]), metadata={"bagclip_config": other}))
    (base / "bad.yaml").write_text("lr: [1e-3\nk: : 2\n")
    (base / "bad.json").write_text("{lr: 0.001}")
    (base / "not_a_map.json").write_text("[1, 2]")
    return w


def _cli(argv, capsys=None, sub=False):
    """(exit code, stdout, stderr) of the CLI, in this process or as a subprocess."""
    if sub:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "HF_HUB_OFFLINE": "1"}
        p = subprocess.run([sys.executable, "-m", "bagclip.cli", *argv], capture_output=True, text=True,
                           env=env, timeout=600)
        return p.returncode, p.stdout, p.stderr
    msg = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main(argv)
        rc = 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
        msg = "" if isinstance(e.code, int) or e.code is None else str(e.code) + "\n"
    out, err = capsys.readouterr()
    return rc, out, err + msg


def _check_refusal(rc, err, words):
    assert rc != 0, err
    assert "Traceback" not in err, err
    last = [l for l in err.splitlines() if l.strip()][-1]  # the one message: the last line
    for w in words:
        assert w.lower() in last.lower(), (w, last)


def _sub(w, text: str) -> str:
    """"@name" -> the world's path of that name (also inside "synth=@synth", "@base/t1")."""
    return re.sub(r"@(\w+)", lambda m: str(w[m.group(1)]), text)


# (case id, argv with @name for a world path, words the message must hold, run as a subprocess)
EVAL = ["eval", "--checkpoint", "@run", "--dataset", "synth=@synth", "--out", "@base"]
PREDICT = ["predict", "@image", "--checkpoint", "@run"]
TRAIN = ["train", *SMALL, "--dataset", "synth=@synth"]
CASES = [
    # --- settings: the same Config check for --set, files and the CLI -------------------------
    ("set k=ten", [*TRAIN, "--out", "@base/t1", "--set", "k=ten"], ["--set k=ten", "whole number"], True),
    ("set lr=abc", [*TRAIN, "--out", "@base/t1", "--set", "lr=abc"], ["--set lr=abc", "number"], False),
    ("set betas=5", [*TRAIN, "--out", "@base/t1", "--set", "betas=5"], ["betas", "two numbers"], False),
    ("set image_size=224.0", [*TRAIN, "--out", "@base/t1", "--set", "image_size=224.0"],
     ["image_size", "whole number", "224"], False),
    ("set k=1.5", [*TRAIN, "--out", "@base/t1", "--set", "k=1.5"], ["k=1.5", "whole number"], False),
    ("set epochs=1.5", [*TRAIN, "--out", "@base/t1", "--set", "epochs=1.5"], ["epochs", "whole number"], False),
    ("set loss_lambda=NaN", [*TRAIN, "--out", "@base/t1", "--set", "loss_lambda=NaN"],
     ["loss_lambda", "finite"], False),
    ("set lr=Infinity", [*TRAIN, "--out", "@base/t1", "--set", "lr=Infinity"], ["lr", "finite"], False),
    ("set lr=-1", [*TRAIN, "--out", "@base/t1", "--set", "lr=-1"], ["lr", "> 0"], False),
    ("set betas out of range", [*TRAIN, "--out", "@base/t1", "--set", "betas=[0.5, 1.5]"],
     ["betas", "[0, 1)"], False),
    ("set bogus=1", [*TRAIN, "--out", "@base/t1", "--set", "bogus=1"], ["bogus", "allowed"], False),
    ("set without =", [*TRAIN, "--out", "@base/t1", "--set", "epochs"], ["key=value"], False),
    ("YAML syntax error", [*TRAIN, "--out", "@base/t1", "--config", "@base/bad.yaml"],
     ["bad.yaml", "YAML", "fix the file"], True),
    ("bad JSON config", [*TRAIN, "--out", "@base/t1", "--config", "@base/bad.json"],
     ["bad.json", "JSON"], False),
    ("missing config", [*TRAIN, "--out", "@base/t1", "--config", "@base/none.yaml"],
     ["none.yaml", "not found"], False),
    ("seed -1", [*TRAIN, "--out", "@base/t1", "--seed", "-1"], ["--seed", "whole number"], False),
    ("save-every 0", [*TRAIN, "--out", "@base/t1", "--save-every", "0"], ["--save-every", ">= 1"], False),
    ("sweep k=1.5", ["sweep", *SMALL, "--train", "synth=@synth", "--target", "synth=@synth", "--param", "k",
                     "--values", "1.5", "--out", "@base/sw"], ["k=1.5", "whole number"], False),
    ("sweep unknown setting", ["sweep", *SMALL, "--train", "synth=@synth", "--target", "synth=@synth",
                               "--param", "kk", "--values", "3", "--out", "@base/sw"], ["kk"], False),
    ("unknown dataset", ["train", *SMALL, "--dataset", "mvtech=@synth", "--out", "@base/t1"],
     ["mvtech", "choose one of"], False),
    # --- a checkpoint keeps its settings: nothing silently ignored -----------------------------
    ("checkpoint + missing class-name-map", [*PREDICT, "--class-name-map", "@base/nope.json"],
     ["--class-name-map", "nope.json", "not found"], False),
    ("checkpoint + bad class-name-map", [*PREDICT, "--class-name-map", "@base/not_a_map.json"],
     ["not_a_map.json", "expected"], False),
    ("checkpoint + set bogus=1", [*PREDICT, "--set", "bogus=1"], ["bogus", "unknown"], False),
    ("checkpoint + set k=5", [*PREDICT, "--set", "k=5"], ["trained with k=10", "retrain"], False),
    ("checkpoint + quick", [*PREDICT, "--quick"], ["--quick", "--checkpoint", "drop"], False),
    ("checkpoint + config", [*EVAL, "--config", "@base/bad.json"], ["--config", "--checkpoint"], False),
    # --- command line values -------------------------------------------------------------------
    ("threshold 1.5", [*PREDICT, "--threshold", "1.5"], ["--threshold", "[0, 1]"], False),
    ("threshold -3", [*PREDICT, "--threshold", "-3"], ["--threshold", "[0, 1]"], False),
    ("threshold nan", [*PREDICT, "--threshold", "nan"], ["--threshold", "[0, 1]"], True),
    ("resolution abc", [*EVAL, "--resolution", "abc"], ["--resolution", "native"], False),
    ("device cuda without a GPU", [*PREDICT, "--device", "cuda"], ["cuda", "--device cpu"], False),
    ("device junk", [*PREDICT, "--device", "gpu0"], ["gpu0", "not a device"], False),
    # --- outputs checked before the work, not after --------------------------------------------
    ("reproduce --out a file", ["reproduce", "--quick", "--out", "@file"], ["--out", "a_file.txt", "is a file"],
     True),
    ("eval --out under a file", [*EVAL[:-1], "@file/sub"], ["--out", "not a writable folder"], False),
    ("predict --save-maps a file", [*PREDICT, "--save-maps", "@file"], ["--save-maps", "is a file"], False),
    ("train --out under a file", [*TRAIN, "--out", "@file/run"], ["--out", "not a writable folder"], False),
    # --- checkpoints ---------------------------------------------------------------------------
    ("truncated checkpoint", ["predict", "@image", "--checkpoint", "@base/trunc"],
     ["heads.safetensors", "truncated", "retrain"], True),
    ("garbage checkpoint", ["predict", "@image", "--checkpoint", "@base/garbage.safetensors"],
     ["garbage.safetensors", "not a readable"], False),
    ("mismatched checkpoint", ["predict", "@image", "--checkpoint", "@base/mismatch.safetensors"],
     ["mismatch.safetensors", "do not fit"], False),
    ("missing checkpoint", ["predict", "@image", "--checkpoint", "@base/none"], ["none", "train first"], False),
    ("fresh train into a run folder", [*TRAIN, "--out", "@run"], ["already holds", "--resume"], False),
    # --- inputs --------------------------------------------------------------------------------
    ("predict a missing image", ["predict", "@base/none.png", "--checkpoint", "@run"],
     ["none.png", "not found"], False),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line(case, world, capsys):
    _, spec, words, sub = case
    if "cuda" in case[0] and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    rc, _, err = _cli([_sub(world, x) for x in spec], capsys, sub)
    _check_refusal(rc, err, [_sub(world, w) for w in words])
    assert "weights_only=False" not in err


def test_pickle_as_state_is_refused_without_advising_weights_only_false(world, tmp_path, capsys):
    import argparse
    import shutil

    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    torch.save({"step": argparse.Namespace(evil=True)}, run / "state.pt")  # not plain tensors
    rc, _, err = _cli(["train", *SMALL, "--dataset", f"synth={world['synth']}", "--out", str(run),
                       "--resume"], sub=True)
    _check_refusal(rc, err, ["state.pt", "never unpickles", "new --out"])
    assert "weights_only" not in err


def test_nan_weights_give_no_score(world, tmp_path, capsys, tiny_backbone):
    from safetensors.torch import save

    from bagclip.checkpoint import load_heads

    model, cfg, _ = load_heads(world["run"], backbone=tiny_backbone)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    # written around save_heads, which refuses non-finite weights since issue 19: a file made
    # elsewhere (or by an older version) is what predict must still refuse
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    (tmp_path / "nan.safetensors").write_bytes(save(tensors, metadata={"bagclip_config": json.dumps(cfg.to_dict())}))
    rc, out, err = _cli(["predict", str(world["image"]), "--checkpoint", str(tmp_path / "nan.safetensors"),
                         "--threshold", "0.5"], capsys)
    _check_refusal(rc, err, ["nan", "diverged", "retrain"])
    assert "score=" not in out


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(world, tmp_path, tiny_backbone,
                                                                    monkeypatch):
    import bagclip.losses as L
    from bagclip.data import load_dataset
    from bagclip.checkpoint import load_heads
    from bagclip.train import train

    real, calls = L.bagclip_loss, {"n": 0}

    def nan_at_step_2(*a, **k):
        calls["n"] += 1
        loss, parts = real(*a, **k)
        return (loss * float("nan") if calls["n"] == 2 else loss), parts

    monkeypatch.setattr(L, "bagclip_loss", nan_at_step_2)
    samples = load_dataset("synth", world["synth"], "test")
    with pytest.raises(ValueError, match="loss is nan at step 2.*diverged"):
        train(TINY, samples, tiny_backbone, tmp_path / "r", save_every=1, progress=False)
    kept = json.loads((tmp_path / "r" / "history.json").read_text())
    assert len(kept) == 1 and np.isfinite(kept[0])  # step 1 kept, nothing of step 2
    load_heads(tmp_path / "r", backbone=tiny_backbone)  # finite weights, a complete set


# --- silent cases: the right result ---------------------------------------------------------
def test_checkpoint_takes_eval_settings_and_the_name_map(world, tmp_path, capsys):
    def score(*extra):
        rc, out, err = _cli(["predict", str(world["image"]), "--checkpoint", str(world["run"]),
                             "--class-name", "screw", *extra], capsys)
        assert rc == 0, err
        return float(out.split("score=")[1].split()[0])

    plain = score()
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"screw": "rusty bolt"}))
    assert score("--class-name-map", str(names)) != plain  # the prompt name is used
    assert score("--set", "image_score=global") != plain  # an evaluation setting applies


def test_config_file_applies_over_quick_and_yaml_strings_are_read(tmp_path):
    import argparse

    from bagclip.cli.commands import _config

    f = tmp_path / "c.yaml"
    f.write_text("lr: 1e-3\nuse_sag: 'no'\nk: 5\n")  # PyYAML reads 1e-3 as a string
    a = argparse.Namespace(quick=True, config=str(f), set=[], seed=None, class_name_map=None)
    cfg = _config(a)
    assert (cfg.backbone, cfg.image_size) == ("bagclip-mini", 224)  # --quick is not ignored
    assert (cfg.lr, cfg.use_sag, cfg.k) == (1e-3, False, 5)
    a.quick = False
    assert _config(a).backbone == "ViT-L-14-336"


def _folder_set(root: Path, extra_unmasked: bool) -> Path:
    """normal/, abnormal/<defect>/, masks/<defect>/<stem>_mask.png; the same stems in two defects."""
    for i in range(2):
        write_image(root / "normal" / f"{i:03d}.png", seed=i)
    for j, d in enumerate(("scratch", "dent")):
        for i in range(2):
            write_image(root / "abnormal" / d / f"{i:03d}.png", seed=10 + 3 * i + j)
            write_mask(root / "masks" / d / f"{i:03d}_mask.png", box=4 + 4 * j)
    if extra_unmasked:
        write_image(root / "abnormal" / "unlabelled" / "099.png", seed=99)
    return root


def test_folder_layout_pairs_masks_within_each_defect(tmp_path):
    from bagclip.data import DataError, load_dataset

    samples = load_dataset("folder", _folder_set(tmp_path / "f", False), "test")
    pairs = {(s.image_path.parent.name, s.image_path.name): s.mask_path for s in samples if s.label}
    assert len(pairs) == 4
    for (d, name), m in pairs.items():
        assert (m.parent.name, m.name) == (d, name.replace(".png", "_mask.png"))
    flat = tmp_path / "g"
    for d in ("scratch", "dent"):
        write_image(flat / "abnormal" / d / "001.png")
    write_mask(flat / "masks" / "001.png")  # which of the two is it for?
    with pytest.raises(DataError, match="masks/<defect>"):
        load_dataset("folder", flat, "test")


def test_eval_image_level_leaves_unmasked_anomalies_out_of_pixel_metrics(world, tmp_path, capsys):
    out = {}
    for extra in (False, True):
        root = _folder_set(tmp_path / str(extra) / "part", extra)  # same class name both times
        rc, _, err = _cli(["eval", "--checkpoint", str(world["run"]), "--dataset", f"folder={root}",
                           "--image-level", "--out", str(tmp_path / f"ev{extra}")], capsys)
        assert rc == 0, err
        out[extra] = json.loads((tmp_path / f"ev{extra}" / "folder" / "metrics.json").read_text())
    assert out[True]["n_images"] == out[False]["n_images"] + 1
    for k in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"):
        assert out[True][k] == out[False][k], k  # the unmasked image adds no "all normal" pixels


def test_mask_of_another_size_and_empty_meta_are_refused(world, tmp_path, capsys):
    root = _folder_set(tmp_path / "f", False)
    write_mask(root / "masks" / "dent" / "001_mask.png", hw=(48, 64))
    rc, _, err = _cli(["eval", "--checkpoint", str(world["run"]), "--dataset", f"folder={root}",
                       "--out", str(tmp_path / "ev")], capsys)
    _check_refusal(rc, err, ["001_mask.png", "64x48", "32x24", "re-export"])
    meta = tmp_path / "m"
    write_image(meta / "a.png")
    (meta / "meta.json").write_text(json.dumps({"train": {}, "test": {}}))
    rc, _, err = _cli(["eval", "--checkpoint", str(world["run"]), "--dataset", f"meta={meta}",
                       "--out", str(tmp_path / "ev")], capsys)
    _check_refusal(rc, err, ["meta.json", "no images", "'test'"])
    assert not (tmp_path / "ev" / "meta").exists()  # no all-NaN metrics written


def test_predict_folder_skips_bad_entries_and_keeps_every_map(world, tmp_path, capsys):
    src = tmp_path / "in"
    for sub, name in (("a", "000.png"), ("a", "000.jpg"), ("b", "000.png")):
        (src / sub).mkdir(parents=True, exist_ok=True)
        Image.open(world["image"]).convert("RGB").save(src / sub / name)
    (src / "a" / "x.png").mkdir()  # a folder with an image's name
    os.symlink(src / "a" / "loop.png", src / "a" / "loop.png")  # a self-loop link
    (src / "a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    rc, out, err = _cli(["predict", str(src / "a"), str(src / "b" / "000.png"), "--checkpoint", str(world["run"]),
                         "--save-maps", str(tmp_path / "maps")], capsys)
    _check_refusal(rc, err, ["1 of 4", "corrupt.png", "could not be read", "replace or remove"])
    assert "corrupt.png" in err and "Traceback" not in err
    assert len([l for l in out.splitlines() if "score=" in l]) == 3  # the others were predicted
    maps = [q for q in (tmp_path / "maps").iterdir() if not q.name.startswith(".")]  # not the kit's marker
    assert len(maps) == 3  # three inputs, three maps, none overwritten


def test_read_only_cache_serves_its_entries_and_names_the_folder_when_short(world, tmp_path, capsys,
                                                                           monkeypatch):
    import errno

    import bagclip.cache as C

    cache = tmp_path / "cache"
    args = ["cache", *SMALL, "--dataset", f"synth={world['synth']}", "--cache-dir"]
    assert _cli([*args, str(cache)], capsys)[0] == 0

    def refuse(path, data):  # what a read-only folder does (tests run as root: chmod would not)
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(C, "atomic_write_bytes", refuse)
    rc, out, err = _cli([*args, str(cache)], capsys)
    assert rc == 0, err  # fully populated: reading needs no write
    rc, _, err = _cli([*args, str(tmp_path / "empty")], capsys)
    _check_refusal(rc, err, ["feature cache folder", "not writable", "--cache-dir"])


def test_ctrl_c_says_how_to_resume_and_resume_finishes(world, tmp_path, capsys, ctrl_c_at_loss):
    argv = ["train", *SMALL, "--dataset", f"synth={world['synth']}", "--out", str(tmp_path / "r"),
            "--set", "batch_size=2", "--save-every", "1", "--cache-dir", str(tmp_path / "c")]
    ctrl_c_at_loss(3)
    rc, _, err = _cli(argv, capsys)
    assert rc == 130 and "Traceback" not in err
    assert "interrupted" in err and "--resume" in err and str(tmp_path / "r") in err
    ctrl_c_at_loss(None)
    rc, out, err = _cli([*argv, "--resume"], capsys)
    assert rc == 0, err


def test_disk_full_during_train_is_one_line(world, tmp_path, capsys, monkeypatch):
    import errno

    import bagclip.checkpoint as T

    real, calls = T.atomic_write_bytes, {"n": 0}

    def full_after_two(path, data):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(T, "atomic_write_bytes", full_after_two)
    rc, _, err = _cli(["train", *SMALL, "--dataset", f"synth={world['synth']}", "--out", str(tmp_path / "r"),
                       "--cache-dir", str(tmp_path / "c")], capsys)
    _check_refusal(rc, err, ["No space left", "--resume"])


def test_killed_synth_generation_leaves_no_temp_folder(tmp_path):
    from bagclip.data.synth import generate

    out = tmp_path / "s"
    code = ("import os, signal; from bagclip.data.synth import generate; "
            f"generate({str(out)!r}, size=64, n_train=1, n_test_good=1, n_test_bad=1, categories=['wood'], "
            "hook=lambda *a: os.kill(os.getpid(), signal.SIGKILL))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert p.returncode == -signal.SIGKILL
    assert list(tmp_path.glob(".s.tmp-*")), "the kill should have left its temp folder"
    generate(out, size=64, n_train=1, n_test_good=1, n_test_bad=1, categories=["wood"])
    assert not list(tmp_path.glob(".s.tmp-*"))
    assert (out / "synth_manifest.json").is_file()


# --- issue 32: pretrain-mini's init and export paths --------------------------------------------
def _init_file(kind: str, tmp: Path) -> Path:
    """An --init that is not weights the model can start from."""
    from safetensors.torch import load_file, save_file

    shipped = REPO / "bagclip" / "weights" / "bagclip-mini.safetensors"
    p = tmp / f"init-{kind}"
    if kind == "text":
        p.write_text("these are not weights\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "image":
        write_image(p.with_suffix(".png"), (16, 16))
        p = p.with_suffix(".png")
    elif kind == "truncated":
        p.write_bytes(shipped.read_bytes()[:4096])
    elif kind == "folder":
        p.mkdir()
    elif kind == "other shapes":
        t = load_file(shipped)
        k = sorted(t)[0]
        t[k] = torch.zeros(3)
        save_file(t, p)
    elif kind == "other names":
        save_file({"some.weight": torch.zeros(2)}, p)
    return p  # "missing": never written


INITS = ["text", "empty", "image", "truncated", "folder", "missing", "other shapes", "other names"]


@pytest.mark.parametrize("kind", INITS)
def test_pretrain_init_that_is_not_weights_is_one_line(kind, tmp_path, capsys):
    init = _init_file(kind, tmp_path)
    rc, _, err = _cli(["pretrain-mini", "--out", str(tmp_path / "run"), "--steps", "1", "--batch-pairs", "1",
                       "--threads", "1", "--init", str(init)], capsys)
    _check_refusal(rc, err, ["init weights", str(init), "checkpoint"])
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()  # refused before any step


@pytest.mark.parametrize("where", ["a new folder", "the run folder", "the current folder"])
def test_pretrain_export_to_a_folder_is_one_line_before_training(where, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    export = {"a new folder": tmp_path / "weights", "the run folder": run, "the current folder": Path(".")}[where]
    export.mkdir(exist_ok=True)
    rc, _, err = _cli(["pretrain-mini", "--out", str(run), "--steps", "1", "--export", str(export)], capsys)
    _check_refusal(rc, err, [f"--export {export} is a folder", "bagclip-mini.safetensors"])
    assert ".tmp" not in err and not (run / "checkpoint.safetensors").exists()


def test_an_atomic_write_onto_a_folder_names_the_folder(tmp_path):
    from bagclip.files import atomic_write_bytes

    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError) as e:
        atomic_write_bytes(tmp_path / "dir", b"x")
    assert e.value.filename == str(tmp_path / "dir") and not list(tmp_path.glob(".*.tmp"))
