"""Issue 19, files: nothing a user owns is overwritten or deleted; a run folder has one writer;
map names are unique and never a user's file; non-finite weights never leave the process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bagclip.files import (KIT_MARKER, FolderLock, OutputError, beside, claim_output, is_kit_folder,
                           unique_names)

REPO = Path(__file__).resolve().parents[1]


# --- claim_output: new, empty, marked or recognised folders only ------------------------------
# (id, files put in the folder first (name -> text), legacy rule, claimed)
CLAIMS = [
    ("missing folder", None, None, True),
    ("empty folder", {}, None, True),
    ("only dot files", {".DS_Store": "x"}, None, True),
    ("a user's config.json", {"config.json": "{}"}, None, False),
    ("a user's README.md", {"README.md": "# mine"}, None, False),
    ("a user's sub-folder", {"notes/a.txt": "x"}, None, False),
    ("marked by the kit", {KIT_MARKER: "", "config.json": "{}"}, None, True),
    ("an old run (legacy)", {"checkpoint.json": "{}"}, lambda p: (p / "checkpoint.json").exists(), True),
    ("legacy rule not met", {"config.json": "{}"}, lambda p: (p / "checkpoint.json").exists(), False),
]


@pytest.mark.parametrize("case", CLAIMS, ids=[c[0] for c in CLAIMS])
def test_claim_output(tmp_path, case):
    _, files, legacy, ok = case
    d = tmp_path / "out"
    if files is not None:
        d.mkdir()
        for name, text in files.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(text)
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} if d.exists() else {}
    if ok:
        assert claim_output(d, "--out", legacy=legacy) == d
        assert is_kit_folder(d)
    else:
        with pytest.raises(OutputError) as e:
            claim_output(d, "--out", legacy=legacy, setting="out")
        msg = str(e.value)
        assert "\n" not in msg and str(d) in msg and "new or empty folder" in msg
        assert e.value.setting == "out" and not (d / KIT_MARKER).exists()
    assert all(p.read_bytes() == b for p, b in before.items())  # nothing of theirs changed


def test_claim_output_refuses_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        claim_output(f, "--out")


@pytest.mark.parametrize("existing, owned, want", [
    ([], (), "a.png"),
    (["a.png"], (), "a.1.png"),
    (["a.png", "a.1.png"], (), "a.2.png"),
    (["a.png"], ("a.png",), "a.png"),
])
def test_beside(tmp_path, existing, owned, want):
    for n in existing:
        (tmp_path / n).write_text("theirs")
    assert beside(tmp_path / "a.png", owned).name == want


# --- unique map names ------------------------------------------------------------------------
# (id, input paths relative to the base, names already taken in the output folder)
NAMES = [
    ("distinct stems", ["a.png", "b.png"], set()),
    ("issue: d1/a d2/a d1__a", ["d1/a.png", "d2/a.png", "d1__a.png"], set()),
    ("same stem, two formats", ["x/a.png", "x/a.jpg"], set()),
    ("deep and flat", ["p/q/a.png", "p__q/a.png", "p__q__a.png"], set()),
    ("a user's part_map.png", ["part.png"], {"part_map.png"}),
    ("taken in another case", ["Part.png"], {"part_map.png"}),
    ("taken and ~1 taken", ["part.png"], {"part_map.png", "part~1_map.png"}),
    ("many of one stem", [f"d{i}/a.png" for i in range(12)], set()),
    ("inputs named like maps", ["a.png", "a_map.png", "a_map_map.png"], {"a_map.png", "a_map_map.png"}),
]


@pytest.mark.parametrize("case", NAMES, ids=[c[0] for c in NAMES])
def test_unique_names_are_injective_and_avoid_taken(tmp_path, case):
    _, rels, taken = case
    paths = [str(tmp_path / r) for r in rels]
    names = unique_names(paths, "_map.png", taken)
    assert len(set(n.lower() for n in names.values())) == len(paths)
    assert not {n.lower() for n in names.values()} & {t.lower() for t in taken}
    assert all("/" not in n and n.endswith("_map.png") for n in names.values())


def test_predict_save_maps_into_the_inputs_folder_keeps_every_file(tmp_path, capsys, tiny_backbone):
    """`predict DIR --save-maps DIR` where DIR holds part.png and the user's part_map.png, and
    d1/a.png, d2/a.png, d1__a.png: one new map per image, no file of the user's changed."""
    import numpy as np
    from PIL import Image

    from bagclip.cli import main
    from bagclip.config import Config
    from bagclip.model import BAGCLIP  # noqa: F401  (heads are built by save_heads' caller)
    from bagclip.checkpoint import save_heads
    from bagclip.model import build_heads

    cfg = Config.tiny(image_size=112)
    ckpt = save_heads(build_heads(cfg, tiny_backbone), cfg, tmp_path / "heads.safetensors")
    d = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for rel in ("part.png", "d1/a.png", "d2/a.png", "d1__a.png"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(d / rel)
    (d / "part_map.png").write_bytes(b"the user's own file")
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    inputs = [str(d / r) for r in ("part.png", "d1/a.png", "d2/a.png", "d1__a.png")]
    main(["predict", *inputs, "--checkpoint", str(ckpt), "--save-maps", str(d)])
    after = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert all(after[p] == b for p, b in before.items())  # every old file as it was
    new = sorted(p.name for p in set(after) - set(before))
    assert len(new) == 4, new
    assert not is_kit_folder(d)  # the user's folder is not adopted


# --- the run folder lock ---------------------------------------------------------------------
def test_second_writer_is_refused_then_admitted(tmp_path):
    with FolderLock(tmp_path / "run"):
        with pytest.raises(OutputError, match=f"being written by process {os.getpid()}"):
            with FolderLock(tmp_path / "run", timeout=0.3):
                pass
    with FolderLock(tmp_path / "run"):  # released: free again
        pass


def test_second_writer_waits_for_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from bagclip.files import FolderLock
        with FolderLock({str(tmp_path / 'run')!r}):
            print("held", flush=True)
            time.sleep(1.5)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t = time.monotonic()
    with FolderLock(tmp_path / "run", timeout=30):
        waited = time.monotonic() - t
    holder.wait(30)
    assert 0.2 < waited < 30


@pytest.mark.parametrize("how", ["SIGKILL", "exit without release"])
def test_lock_of_a_dead_process_is_not_stale(tmp_path, how):
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from bagclip.files import FolderLock
        lock = FolderLock({str(tmp_path / 'run')!r}).__enter__()
        print("held", flush=True)
        os.kill(os.getpid(), signal.SIGKILL) if {how == 'SIGKILL'} else os._exit(0)
        """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "held" in p.stdout
    assert (tmp_path / "run" / FolderLock.NAME).read_text().startswith("process ")  # left behind
    with FolderLock(tmp_path / "run", timeout=0):  # and still free at once
        pass


def test_two_trainings_into_one_folder_cannot_interleave(tmp_path, tiny_backbone, monkeypatch):
    """The issue's case: while one `train` writes a run folder, another is refused with one
    line, and the folder's config.json and heads stay the first one's."""
    from bagclip.config import Config
    from bagclip.data import load_dataset
    from bagclip.data.synth import generate
    from bagclip.train import train

    synth = generate(tmp_path / "s", size=112, n_train=1, n_test_good=1, n_test_bad=1, categories=["wood"])
    samples = load_dataset("synth", synth, "test")
    run = tmp_path / "run"
    cfg = Config.tiny(image_size=112, epochs=1, batch_size=4, seed=1)
    with FolderLock(run):  # a first writer holds the folder
        with pytest.raises(OutputError, match="being written"):
            train(cfg.replace(seed=2), samples, tiny_backbone, run, progress=False)
    assert not (run / "config.json").exists()
    train(cfg, samples, tiny_backbone, run, progress=False)
    assert json.loads((run / "config.json").read_text())["seed"] == 1


def test_train_never_writes_into_a_users_folder(tmp_path, tiny_backbone):
    from bagclip.config import Config
    from bagclip.train import train

    d = tmp_path / "mine"
    d.mkdir()
    (d / "config.json").write_text('{"my": "settings"}')
    with pytest.raises(OutputError, match="did not write.*config.json"):
        train(Config.tiny(image_size=112), [object()], tiny_backbone, d, progress=False)
    assert (d / "config.json").read_text() == '{"my": "settings"}'


# --- synth never deletes a file it did not write ----------------------------------------------
# (id, where the user's file goes in an existing synthetic tree)
INTRUDERS = ["notes.txt", "wood/test/good/mine.png", "wood/extra/readme.md", ".hidden"]


@pytest.mark.parametrize("rel", INTRUDERS)
def test_synth_over_a_tree_with_a_users_file_refuses(tmp_path, rel):
    from bagclip.data import DataError
    from bagclip.data.synth import generate

    kw = dict(size=64, n_train=1, n_test_good=1, n_test_bad=1, categories=["wood"])
    root = generate(tmp_path / "s", **kw)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text("mine")
    with pytest.raises(DataError, match="did not write"):
        generate(root, seed=1, **kw)  # other parameters: the tree would be replaced
    assert (root / rel).read_text() == "mine"
    (root / rel).unlink()
    generate(root, seed=1, **kw)  # without it, regenerating works


# --- non-finite weights never leave the process ----------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["save_heads", "checkpoint"])
def test_non_finite_weights_are_never_written(tmp_path, tiny_backbone, value, where):
    from bagclip.config import Config
    from bagclip.checkpoint import save_heads, write_checkpoint
    from bagclip.model import build_heads

    cfg = Config.tiny(image_size=112)
    model = build_heads(cfg, tiny_backbone)
    with torch.no_grad():
        list(model.parameters())[-1].view(-1)[0] = value
    with pytest.raises(ValueError, match="NaN or infinite.*nothing was saved"):
        if where == "save_heads":
            save_heads(model, cfg, tmp_path / "h.safetensors")
        else:
            opt = torch.optim.Adam(model.parameters())
            write_checkpoint(tmp_path, model, opt, cfg, 1, [1.0])
    assert not any(tmp_path.iterdir())


# --- seeds within range ----------------------------------------------------------------------
@pytest.mark.parametrize("seed, ok", [(0, True), (2**32 - 1, True), (2**32, False), (2**63, False),
                                      (10**30, False)])
def test_seed_range(seed, ok):
    from bagclip.config import Config, ConfigError

    if ok:
        Config.tiny(seed=seed)
    else:
        with pytest.raises(ConfigError, match="too large"):
            Config.tiny(seed=seed)


def test_cli_huge_seed_is_one_line(tmp_path, capsys):
    from bagclip.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--quick", "--seed", str(10**25), "--dataset", f"synth={tmp_path}",
              "--out", str(tmp_path / "r")])
    msg = str(e.value.code)
    assert "too large" in msg and "Overflow" not in msg and "\n" not in msg


def test_safetensors_files_have_the_same_bytes_for_the_same_content(tmp_path):
    """safetensors orders metadata by a hash map, differently from call to call: a heads file
    (two metadata keys) came out in either of two byte orders, so adapt's record of its
    starting heads' SHA-256 failed to match on resume. The same heads now give the same bytes."""
    from safetensors import safe_open
    from safetensors.torch import load

    from bagclip import Config
    from bagclip.checkpoint import heads_blob
    from bagclip.files import safetensors_bytes

    lin = torch.nn.Linear(3, 2)
    cfg = Config.tiny(image_size=56)
    blobs = {heads_blob(lin, cfg, {"aux": "x", "backbone": "y"}) for _ in range(12)}
    assert len(blobs) == 1  # before: each call one of 2 orders (all 12 alike with p = 2^-11)
    meta = {f"k{i}": f"välue {i} \"quoted\"\n" for i in range(6)}
    tensors = {"b": torch.arange(5, dtype=torch.float16), "a": torch.ones(2, 3), "c": torch.zeros(0)}
    blob = safetensors_bytes(tensors, meta)
    assert blob == safetensors_bytes(dict(reversed(tensors.items())), dict(reversed(meta.items())))
    n = int.from_bytes(blob[:8], "little")
    assert (8 + n) % 8 == 0 and blob[8 + n - 1:8 + n] in (b" ", b"}")
    back = load(blob)
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    (tmp_path / "t.safetensors").write_bytes(blob)
    with safe_open(str(tmp_path / "t.safetensors"), "pt") as f:  # safetensors' own reader
        assert f.metadata() == meta and torch.equal(f.get_tensor("b"), tensors["b"])
