"""Any caller works (issue 32): the data API from a plain script without a main guard, a heredoc
and `python -c`, under each start method the caller may set, gives the tree the CLI gives; the
drawing workers fall back to drawing in this process, with the same bytes, whenever they fail."""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bagclip.data import synth
from bagclip.data import workers

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # the default counts (500 images: the worker path, >= 64) at a cheap size
# The three-line handout, at SIZE; a first line sets the start method, a second shows
# the library's log (which path drew the images).
SCRIPT = """import multiprocessing as mp; mp.set_start_method("{method}", force=True)
import logging; logging.basicConfig(level=logging.INFO)
import tempfile
from bagclip.data import synth
print(synth.ensure_synth(tempfile.mkdtemp(), size={size}))
"""
WORKERS_USED = "worker processes"


def manifest_hash(root) -> str:
    """The tree's identity: its manifest lists the sha256 of every file and the parameters."""
    return hashlib.sha256((Path(root) / synth.MANIFEST).read_bytes()).hexdigest()


def _env(tmp_path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "BAGCLIP_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}


@pytest.fixture(scope="module")
def cli_tree(tmp_path_factory):
    """The CLI's tree at SIZE (drawn by its workers) and its manifest hash."""
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "tree"
    r = subprocess.run([sys.executable, "-m", "bagclip.cli", "synth", str(out), "--size", str(SIZE)],
                       env=_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return manifest_hash(out)


def test_cli_tree_equals_drawing_in_this_process(cli_tree, tmp_path):
    # a hook draws every image here, without workers: the reference bytes of "today"
    root = synth.generate(tmp_path / "here", size=SIZE, hook=lambda *a: None)
    assert manifest_hash(root) == cli_tree


CALLERS = {
    "script file": lambda text, tmp: ([sys.executable, str(_write(tmp / "handout.py", text))], None),
    "heredoc": lambda text, tmp: ([sys.executable, "-"], text),
    "python -c": lambda text, tmp: ([sys.executable, "-c", text], None),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: the library draws without workers")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_caller_gets_the_cli_tree(cli_tree, tmp_path, caller, method):
    args, stdin = CALLERS[caller](SCRIPT.format(method=method, size=SIZE), tmp_path)
    r = subprocess.run(args, input=stdin, env=_env(tmp_path), cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert WORKERS_USED in r.stderr and "WARNING" not in r.stderr, r.stderr[-2000:]
    assert manifest_hash(r.stdout.strip().splitlines()[-1]) == cli_tree


# Kinds of worker failure: each is drawn in this process instead, with the same bytes.
FAILURES = {
    "no executable": lambda mp: mp.setattr(sys, "executable", ""),
    "not a Python": lambda mp: mp.setattr(sys, "executable", "/bin/false"),
    "another bagclip": lambda mp: mp.setattr(
        workers, "_BOOT", "print('{\"module\": \"/elsewhere/bagclip/data/synth.py\"}')"),
    "stops mid-tree": lambda mp: mp.setattr(
        workers, "_BOOT", workers._BOOT.replace(
            "worker_main()", "import os, bagclip.data.synth as s; f = s.make_image; n = [0]; "
            "s.make_image = lambda *a: (n.append(1), os._exit(3) if len(n) > 5 else f(*a))[1]; worker_main()")),
    "crashes at start": lambda mp: mp.setattr(workers, "_BOOT", "raise SystemExit(7)"),
}
SMALL = dict(size=64, n_train=8, n_test_good=8, n_test_bad=16, categories=["wood", "fabric"])  # 64 images


@pytest.fixture(scope="module")
def small_ref(tmp_path_factory):
    return manifest_hash(synth.generate(tmp_path_factory.mktemp("ref") / "t", hook=lambda *a: None, **SMALL))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: the library draws without workers")
@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_failing_workers_fall_back_to_the_same_bytes(small_ref, tmp_path, monkeypatch, caplog, kind):
    FAILURES[kind](monkeypatch)
    with caplog.at_level(logging.INFO, logger="bagclip.data.workers"):
        root = synth.generate(tmp_path / "t", **SMALL)
    assert manifest_hash(root) == small_ref
    assert any(r.levelno == logging.WARNING and "in this process" in r.getMessage() for r in caplog.records), \
        caplog.text


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: the library draws without workers")
@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_an_interrupted_generation_ends_its_workers(tmp_path, monkeypatch, error):
    started, write = [], synth._write_image
    real_popen = subprocess.Popen

    def popen(*a, **kw):
        started.append(real_popen(*a, **kw))
        return started[-1]

    def write_then_fail(tmp, cat, split, defect, i, im):
        if i == 2:
            raise error("stopped by the test")
        return write(tmp, cat, split, defect, i, im)

    monkeypatch.setattr(workers.subprocess, "Popen", popen)
    monkeypatch.setattr(synth, "_write_image", write_then_fail)
    with pytest.raises(error):
        synth.generate(tmp_path / "t", **SMALL)
    assert len(started) == 2 and all(p.poll() is not None for p in started)
    assert not list(tmp_path.glob(".t.tmp-*")) and not (tmp_path / "t").exists()
