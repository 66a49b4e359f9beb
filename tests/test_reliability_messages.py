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
