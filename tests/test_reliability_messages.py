"""Issue 19, messages: every error line names the file or setting and an action the CLI offers
(no "image_level=True", no "skip_bad=True", no "--resume" with nothing to resume, no torch text)."""
from __future__ import annotations

import errno

import pytest

from bagclip.cli import main

SMALL = ["--quick", "--set", "image_size=112", "--set", "epochs=1"]


def _exit(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    code = e.value.code
    return code if isinstance(code, int) else 1, capsys.readouterr().err + "\n" + (code if isinstance(code, str) else "")


# (id, argv, words of the message, words it must not hold)
ARGS = [
    ("sweeps a list", ["reproduce", "--sweeps", "[1, 2]"], ["--sweeps", "JSON object"], ["Traceback"]),
    ("sweeps a number per setting", ["reproduce", "--sweeps", '{"k": 5}'], ["--sweeps", "JSON object"], []),
    ("sweeps not JSON", ["reproduce", "--sweeps", "k=5"], ["--sweeps"], ["JSONDecodeError"]),
    ("seed beyond int64", ["train", "--quick", "--seed", str(2**64), "--dataset", "synth=x", "--out", "o"],
     ["seed", "too large"], ["Overflow"]),
    ("dataset named twice", ["cache", "--quick", "--dataset", "folder=a", "--dataset", "folder=b"],
     ["given twice", "folder"], []),
]


@pytest.mark.parametrize("case", ARGS, ids=[c[0] for c in ARGS])
def test_one_line_with_an_action(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err = _exit(case[1], capsys)
    assert rc != 0
    last = [l for l in err.splitlines() if l.strip()][-1]
    for w in case[2]:
        assert w in last, (w, last)
    for w in case[3]:
        assert w not in err, (w, err)


@pytest.mark.parametrize("fail_at, resume", [("first checkpoint", False), ("second checkpoint", True)])
def test_disk_full_advice_matches_what_is_on_disk(tmp_path, capsys, monkeypatch, fail_at, resume):
    import bagclip.train as T
    from bagclip.data.synth import generate

    synth = generate(tmp_path / "s", size=112, n_train=1, n_test_good=2, n_test_bad=3, categories=["wood"])
    real, calls = T.write_checkpoint, {"n": 0}

    def full_disk(out, *a, **k):
        calls["n"] += 1
        if calls["n"] == (1 if fail_at == "first checkpoint" else 2):
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "state.pt"))
        return real(out, *a, **k)

    monkeypatch.setattr(T, "write_checkpoint", full_disk)
    rc, err = _exit(["train", *SMALL, "--set", "batch_size=2", "--save-every", "1", "--dataset",
                     f"synth={synth}", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")],
                    capsys)
    last = [l for l in err.splitlines() if l.strip()][-1]
    assert rc == 1 and "No space left" in last
    assert ("--resume" in last) == resume, last


# --- issue 32: library messages never name the command line's syntax ------------------------
import ast
import re
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "bagclip"
# a flag (--set, --out) or a command (`bagclip train`): the CLI adds these when it phrases an error
CLI_SYNTAX = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*|\bbagclip (?:train|eval|predict|calibrate|adapt|"
                        r"reproduce|sweep|ablate|bench|cache|synth|browse|pretrain-mini)\b")
_LOGGERS = {"log", "logger", "logging", "LOG", "_log"}
_LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def _message_call(call: ast.Call) -> bool:
    """An error, warning or log message is made here (a raise's exception, an *Error(...) built
    to be raised later, warnings.warn, log.warning...)."""
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
    owner = getattr(getattr(f, "value", None), "id", "")
    return (name.endswith(("Error", "Exception", "Warning", "Exit")) or (owner == "warnings" and name == "warn")
            or (owner in _LOGGERS and name in _LEVELS))


def cli_syntax_in_messages(source: str) -> list[tuple[int, str]]:
    """(line, the CLI syntax) of every message string in `source` that names the command line."""
    found, seen = [], set()
    for node in ast.walk(ast.parse(source)):
        parts = [node.exc] if isinstance(node, ast.Raise) and node.exc is not None else []
        if isinstance(node, ast.Call) and _message_call(node):
            parts += [*node.args, *(k.value for k in node.keywords)]
        for part in parts:
            for s in ast.walk(part):  # f-strings' pieces too (they share a position: dedupe by node)
                if isinstance(s, ast.Constant) and isinstance(s.value, str) and id(s) not in seen:
                    seen.add(id(s))
                    found += [(s.lineno, m.group(0)) for m in CLI_SYNTAX.finditer(s.value)]
    return found


# (id, a message the scan must catch): the scan itself can fail
CAUGHT = [
    ("a raise", 'raise ValueError("use --set k=5")'),
    ("an f-string's piece", 'raise ConfigError(f"{x}: give --out DIR")'),
    ("an error built, raised later", 'err = CheckpointError("rerun bagclip train")'),
    ("a warning", 'warnings.warn("pass --resume")'),
    ("a log line", 'log.warning("see --cache-dir %s", p)'),
]


@pytest.mark.parametrize("case", CAUGHT, ids=[c[0] for c in CAUGHT])
def test_the_scan_finds_cli_syntax_in_a_message(case):
    assert cli_syntax_in_messages(case[1])
    assert not cli_syntax_in_messages(case[1].replace("--", "the ").replace("bagclip ", "the "))


MODULES = sorted(str(p.relative_to(LIBRARY)) for p in LIBRARY.rglob("*.py") if "cli" not in p.parts)


@pytest.mark.parametrize("module", MODULES)
def test_library_messages_do_not_name_cli_syntax(module):
    """Library messages name settings (`the image_size setting`), never flags or commands:
    bagclip.cli phrases each error with its own flag names (cli/errors.py)."""
    found = cli_syntax_in_messages((LIBRARY / module).read_text(encoding="utf-8"))
    assert not found, f"bagclip/{module}: " + ", ".join(f"line {n}: {s}" for n, s in found)


# (id, argv, what the CLI's line names): the CLI adds the flag to a setting's error
SET_PHRASED = [
    ("a bad value", ["train", *SMALL, "--set", "k=ten", "--dataset", "synth=x", "--out", "o"], "--set k=ten:"),
    ("an unknown setting", ["train", *SMALL, "--set", "bogus=1", "--dataset", "synth=x", "--out", "o"],
     "--set bogus=1:"),
    ("no =", ["train", *SMALL, "--set", "epochs", "--dataset", "synth=x", "--out", "o"], "--set epochs: "),
]


@pytest.mark.parametrize("case", SET_PHRASED, ids=[c[0] for c in SET_PHRASED])
def test_the_cli_names_set_before_the_settings_string(case, capsys, tmp_path, monkeypatch):
    from bagclip import Config
    from bagclip.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    rc, err = _exit(case[1], capsys)
    last = [l for l in err.splitlines() if l.strip()][-1]
    assert rc != 0 and case[2] in last, last
    pair = case[1][len(SMALL) + 3]  # the library names the string, not the flag
    with pytest.raises(ConfigError) as e:
        Config.quick().with_overrides([pair])
    assert str(e.value).startswith(pair) and "--set" not in str(e.value) and e.value.override == pair


# --- issue 32: a backbone the kit cannot tap is refused by the Config -------------------------
NOT_VITS = ["RN50", "RN101-quickgelu", "convnext_base", "ViT-B-16-SigLIP"]  # ResNets, timm towers


@pytest.mark.parametrize("name", NOT_VITS)
def test_a_backbone_without_a_vit_is_one_line(name, capsys, tmp_path):
    """Refused when the settings are read (was predict's TypeError traceback for RN50), in the
    library and in one line from the CLI; open_clip's own ViTs still pass."""
    from PIL import Image

    from bagclip import Config
    from bagclip.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        Config.quick(backbone=name, pretrained=None)
    assert e.value.field == "backbone" and "VisionTransformer" in str(e.value)
    img = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(img)
    rc, err = _exit(["predict", str(img), "--quick", "--set", f"backbone={name}", "--set", "pretrained=null"],
                    capsys)
    last = [l for l in err.splitlines() if l.strip()][-1]
    assert rc == 1 and f"--set backbone={name}" in last and "ViT-B-16" in last and "Traceback" not in err
    assert Config(backbone="ViT-B-16", image_size=224, taps=(3, 6, 9, 12)).arch.patch_size == 16


# --- issue 32: a sweeps table names what the sensitivity figures sweep ------------------------
# (id, the --sweeps table): settings no figure sweeps (they were a KeyError 'k' traceback, or ignored)
FOREIGN_SWEEPS = [
    ("image_size only", {"image_size": [112]}),
    ("K in capitals", {"K": [5, 15]}),
    ("P for gcn_layers", {"k": [5, 15], "P": [3, 5]}),
    ("a misspelt name", {"gcn_layer": [3, 5]}),
]


@pytest.mark.parametrize("case", FOREIGN_SWEEPS, ids=[c[0] for c in FOREIGN_SWEEPS])
def test_a_sweeps_table_naming_other_settings_is_one_line(case, capsys, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    rc, err = _exit(["reproduce", "--parts", "sensitivity", "--sweeps", json.dumps(case[1])], capsys)
    last = [l for l in err.splitlines() if l.strip()][-1]
    bad = [k for k in case[1] if k not in ("k", "gcn_layers")]
    assert rc == 1 and all(repr(k) in last for k in bad) and "Figure 5 sweeps k" in last, last
    assert "--sweeps" in last and "Traceback" not in err


# (id, the table, full mode, the grids the figures get)
GRIDS = [
    ("none: quick's", None, False, {"k": [5, 10, 15, 20, 30], "gcn_layers": [2, 3, 5, 7]}),
    ("none: the paper's", None, True, {"k": [5, 10, 15, 20, 30], "gcn_layers": [2, 3, 4, 5, 6, 7]}),
    ("k only", {"k": [5, 15]}, False, {"k": [5, 15], "gcn_layers": [2, 3, 5, 7]}),
    ("gcn_layers only", {"gcn_layers": [3]}, True, {"k": [5, 10, 15, 20, 30], "gcn_layers": [3]}),
    ("both", {"gcn_layers": [3], "k": [7]}, False, {"k": [7], "gcn_layers": [3]}),
]


@pytest.mark.parametrize("case", GRIDS, ids=[c[0] for c in GRIDS])
def test_a_setting_left_out_of_the_sweeps_keeps_its_default_grid(case, caplog):
    import logging

    from bagclip.experiments import sensitivity_grids

    _, table, full, want = case
    with caplog.at_level(logging.INFO, logger="bagclip.experiments"):
        assert sensitivity_grids(table, full) == want
    kept = [k for k in want if table is not None and k not in table]
    assert all(any(f"{k} keeps its default grid" in r.getMessage() for r in caplog.records) for k in kept)
