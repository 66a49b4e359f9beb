"""A training run cut at every checkpoint write, by a full disk (ENOSPC) or a kill in the middle
of a write (a partial temp file left behind, nothing after it runs): resuming ends bit-identical
to the uninterrupted run, or refuses with a clear message; the run folder never serves a torn
checkpoint (load_heads gives the weights of a complete checkpoint, or refuses)."""
from __future__ import annotations

import errno
import json

import pytest
import torch

import bagclip.checkpoint as T
import bagclip.train as TR
from bagclip.cache import FeatureCache


class Killed(BaseException):
    """Stands for SIGKILL: no except / finally of the writer runs after it."""


@pytest.fixture(scope="module")
def setup(tiny_cfg, tiny_backbone, tmp_path_factory):
    from bagclip.data import load_dataset
    from bagclip.data.synth import AUX_CLASSES, generate

    root = generate(tmp_path_factory.mktemp("synth"), seed=0, size=112, n_train=1, n_test_good=1,
                    n_test_bad=3, categories=list(AUX_CLASSES[:2]))
    samples = load_dataset("synth", root, "test")  # 8 images: 2 steps an epoch, 4 in all
    cfg = tiny_cfg.replace(epochs=2, batch_size=4, seed=5)
    cache = FeatureCache(tiny_backbone, tmp_path_factory.mktemp("cache"))
    writes, real = [], T.atomic_write_bytes

    def spy(path, data):
        writes.append((path.name, data))
        real(path, data)

    T.atomic_write_bytes = spy
    try:
        full = TR.train(cfg, samples, tiny_backbone, tmp_path_factory.mktemp("full"), cache=cache, progress=False)
    finally:
        T.atomic_write_bytes = real
    heads_at, heads = {}, None  # step -> heads bytes of the uninterrupted run's checkpoints
    for name, data in writes:
        if name == T.HEADS:
            heads = data
        elif name == T.HISTORY:
            heads_at[len(json.loads(data))] = heads
    return dict(cfg=cfg, samples=samples, cache=cache, full=full, n_writes=len(writes), heads_at=heads_at)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("mode", ["ENOSPC", "kill"])
def test_cut_at_every_checkpoint_write_resumes_bit_identical_or_refuses(setup, tiny_backbone, tmp_path,
                                                                         monkeypatch, mode):
    from safetensors.torch import load as load_bytes

    cfg, samples, cache, full = setup["cfg"], setup["samples"], setup["cache"], setup["full"]
    assert setup["n_writes"] == 8  # checkpoints at steps 2 and 4, four files each
    real = T.atomic_write_bytes
    outcomes = []
    for cut in range(1, setup["n_writes"] + 1):
        out, calls = tmp_path / f"cut{cut}", {"n": 0}

        def faulty(path, data):
            calls["n"] += 1
            if calls["n"] == cut:
                if mode == "ENOSPC":
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
                (path.parent / f".{path.name}.killed.tmp").write_bytes(data[: len(data) // 2])
                raise Killed()
            real(path, data)

        monkeypatch.setattr(T, "atomic_write_bytes", faulty)
        with pytest.raises(OSError if mode == "ENOSPC" else Killed):
            TR.train(cfg, samples, tiny_backbone, out, cache=cache, progress=False)
        monkeypatch.setattr(T, "atomic_write_bytes", real)

        # what eval / predict would see now: a complete checkpoint's heads, or a refusal
        try:
            model, _, _ = T.load_heads(out, backbone=tiny_backbone)
        except (ValueError, FileNotFoundError) as err:
            from bagclip.cli.errors import phrase

            # the library says what happened; the command line adds how to finish the run
            assert "--resume" in phrase("eval", err) or "train first" in str(err), err
        else:
            step = len(json.loads((out / T.HISTORY).read_text()))
            ref = load_bytes(setup["heads_at"][step])
            assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items()), cut

        # resume, or (nothing to resume yet) start again in the same folder
        try:
            res = TR.train(cfg, samples, tiny_backbone, out, cache=cache, resume=True, progress=False)
            outcomes.append("resumed")
        except FileNotFoundError as err:
            assert "nothing to resume" in str(err)
            res = TR.train(cfg, samples, tiny_backbone, out, cache=cache, progress=False)
            outcomes.append("restarted")
        assert res.history == full.history, cut
        assert _same(res.model, full.model), cut
        model, _, _ = T.load_heads(out, backbone=tiny_backbone)  # the set is whole again
        assert _same(model, full.model), cut
    assert outcomes[0] == "restarted" and set(outcomes[1:]) == {"resumed"}, outcomes


def test_resume_refuses_a_state_from_another_run(setup, tiny_backbone, tmp_path):
    cfg, samples, cache = setup["cfg"], setup["samples"], setup["cache"]
    TR.train(cfg.replace(epochs=1), samples, tiny_backbone, tmp_path / "a", cache=cache, progress=False)
    TR.train(cfg.replace(epochs=1, seed=9), samples, tiny_backbone, tmp_path / "b", cache=cache, progress=False)
    (tmp_path / "a" / T.STATE).write_bytes((tmp_path / "b" / T.STATE).read_bytes())
    with pytest.raises(ValueError, match=r"differs.*seed: 9 -> 5"):
        TR.train(cfg, samples, tiny_backbone, tmp_path / "a", cache=cache, resume=True, progress=False)
    (tmp_path / "a" / T.STATE).write_bytes((tmp_path / "b" / T.STATE).read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        TR.train(cfg, samples, tiny_backbone, tmp_path / "a", cache=cache, resume=True, progress=False)
