"""Issue 19, the feature cache: tokens bit-identical whatever the batch an image was encoded in,
entries group-readable, a permission problem named as such (never "corrupt, re-encoding"), and
the backbone identity (a weights file's hash included) checked.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from bagclip.backbone import ENCODE_BATCH
from bagclip.cache import FeatureCache
from fixtures_data import random_pngs


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return random_pngs(tmp_path_factory.mktemp("imgs"), [(40 + i, 48) for i in range(20)], name="{i:02d}.png")


def _bytes(cache, paths):
    return [e.read_bytes() for e in cache.ensure(paths, progress=False)]


# (id, the order of the encoding calls: lists of image indices, then the whole set)
ORDERS = [
    ("one first, then the set", [[3]]),
    ("two singles", [[0], [19]]),
    ("a batch of three", [[5, 6, 7]]),
    ("reversed halves", [list(range(19, 9, -1))]),
    ("nine (one past a micro-batch)", [list(range(9))]),
    ("every odd one", [list(range(1, 20, 2))]),
]


@pytest.mark.parametrize("case", ORDERS, ids=[c[0] for c in ORDERS])
def test_tokens_do_not_depend_on_the_encoding_batch(tmp_path, tiny_backbone, images, case):
    ref = _bytes(FeatureCache(tiny_backbone, tmp_path / "ref"), images)  # the set at once
    c = FeatureCache(tiny_backbone, tmp_path / "c")
    for idx in case[1]:
        c.ensure([images[i] for i in idx], progress=False)
    got = _bytes(c, images)
    differ = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
    assert differ == [], f"{len(differ)} of {len(images)} entries differ: {differ}"


@pytest.mark.parametrize("batch", [1, 3, ENCODE_BATCH, 11, 20])
def test_encode_is_batch_invariant(tiny_backbone, images, batch):
    from bagclip.data import load_image

    x = torch.stack([load_image(p, tiny_backbone.cfg.image_size) for p in images])
    ref = tiny_backbone.encode(x)
    parts = [tiny_backbone.encode(x[i:i + batch]) for i in range(0, len(x), batch)]
    assert torch.equal(torch.cat([t.patches for t in parts]), ref.patches)
    assert torch.equal(torch.cat([t.cls for t in parts]), ref.cls)


@pytest.mark.parametrize("umask_value, want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_entries_get_the_permissions_of_a_plain_open(tmp_path, tiny_backbone, images, umask_value,
                                                     want, monkeypatch):
    import bagclip.files as files

    monkeypatch.setattr(files, "_UMASK", umask_value)
    c = FeatureCache(tiny_backbone, tmp_path / "c")
    entry = c.ensure(images[:2], progress=False)[0]
    assert stat.S_IMODE(entry.stat().st_mode) == want
    assert stat.S_IMODE((c.dir / "identity.json").stat().st_mode) == want


def test_umask_is_read_without_changing_it():
    import bagclip.files as files

    files._UMASK = None
    old = os.umask(0o027)
    try:
        assert files.umask() == 0o027
        assert os.umask(0o027) == 0o027  # still set
    finally:
        os.umask(old)
        files._UMASK = None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_entry_is_a_permission_error_and_is_kept(tmp_path, tiny_backbone, images):
    c = FeatureCache(tiny_backbone, tmp_path / "c")
    entry = c.ensure(images[:1], progress=False)[0]
    entry.chmod(0o000)
    try:
        with pytest.raises(PermissionError, match="not readable by this user.*chmod"):
            c.ensure(images[:1], progress=False)
        assert entry.exists()  # never deleted as "corrupt"
    finally:
        entry.chmod(0o644)


def test_unreadable_entry_is_named_as_such(tmp_path, tiny_backbone, images, monkeypatch):
    """The same as above for root, who reads every file: a read failing with EACCES."""
    c = FeatureCache(tiny_backbone, tmp_path / "c")
    entry = c.ensure(images[:1], progress=False)[0]
    real = Path.read_bytes

    def denied(self):
        if self == entry:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with _no_corrupt_warning():
        with pytest.raises(PermissionError, match="not readable by this user"):
            c.ensure(images[:1], progress=False)
    monkeypatch.undo()
    assert entry.exists() and c.repaired == 0


class _no_corrupt_warning:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings(record=True)
        self.log = self._w.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)
        assert not [w for w in self.log if "corrupt" in str(w.message)]
        return False


# (id, how an entry is spoiled, recomputed with a warning)
SPOIL = [
    ("truncated", lambda b, other: b[: len(b) // 2]),
    ("flipped byte", lambda b, other: b[:-5] + bytes([b[-5] ^ 1]) + b[-4:]),
    ("another identity's entry", lambda b, other: other),
    ("empty", lambda b, other: b""),
]


@pytest.mark.parametrize("case", SPOIL, ids=[c[0] for c in SPOIL])
def test_spoiled_or_foreign_entries_are_recomputed(tmp_path, tiny_backbone, images, case):
    from bagclip import Config, load_backbone

    c = FeatureCache(tiny_backbone, tmp_path / "c")
    entry = c.ensure(images[:1], progress=False)[0]
    good = entry.read_bytes()
    other_bb = load_backbone(Config.tiny(image_size=112, backbone_seed=1))
    other = FeatureCache(other_bb, tmp_path / "o").ensure(images[:1], progress=False)[0].read_bytes()
    entry.write_bytes(case[1](good, other))
    with pytest.warns(UserWarning, match="recomputing"):
        c.ensure(images[:1], progress=False)
    assert entry.read_bytes() == good


def test_a_folder_of_another_identity_is_refused(tmp_path, tiny_backbone, images):
    c = FeatureCache(tiny_backbone, tmp_path / "c")
    (c.dir / "identity.json").write_text('{"backbone": "something else"}')
    with pytest.raises(ValueError, match="another backbone.*delete that folder"):
        FeatureCache(tiny_backbone, tmp_path / "c")


# (id, how the weights file changes between two loads, the cache key changes)
WEIGHTS = [
    ("same file", lambda f, st: None, False),
    ("same bytes, touched", lambda f, st: os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000)), None),
    ("other bytes, same size and time", "perturb", True),
]


@pytest.mark.parametrize("case", WEIGHTS, ids=[c[0] for c in WEIGHTS])
def test_weights_file_counts_by_its_hash(tmp_path, case):
    from safetensors.torch import save_file

    from bagclip import Config, load_backbone

    base = load_backbone(Config.tiny(image_size=56))
    f = tmp_path / "w.safetensors"
    sd = {k: v.contiguous() for k, v in base.model.state_dict().items()}
    save_file(sd, str(f))
    cfg = Config.tiny(image_size=56, pretrained=str(f))
    a = load_backbone(cfg)
    st = f.stat()
    if case[1] == "perturb":
        key = next(k for k in sd if k.endswith("proj") and sd[k].ndim == 2)
        sd[key] = sd[key] + 1.0
        save_file(sd, str(f))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # the name, size and date an old key saw
        assert f.stat().st_size == st.st_size
    else:
        case[1](f, st)
    b = load_backbone(cfg)
    assert (a.weights_sha256 != b.weights_sha256) == (case[1] == "perturb")
    ka, kb = FeatureCache(a, tmp_path / "c").key, FeatureCache(b, tmp_path / "c").key
    if case[2] is not None:
        assert (ka != kb) == case[2]


# (id, file content, words of the one line)
BAD_WEIGHTS = [
    ("text file", b"these are not weights\n", ".txt"),
    ("pickle of an object", None, ".pt"),
    ("empty file", b"", ".safetensors"),
    ("truncated safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{", ".safetensors"),
]


@pytest.mark.parametrize("case", BAD_WEIGHTS, ids=[c[0] for c in BAD_WEIGHTS])
def test_a_bad_weights_file_says_so_without_weights_only(tmp_path, case, capsys):
    import argparse

    from bagclip.cli import main

    f = tmp_path / f"weights{case[2]}"
    if case[1] is None:
        torch.save({"x": argparse.Namespace(a=1)}, f)
    else:
        f.write_bytes(case[1])
    with pytest.raises(SystemExit) as e:
        main(["cache", "--quick", "--set", f"pretrained={f}", "--dataset", f"synth={tmp_path}",
              "--cache-dir", str(tmp_path / "c")])
    msg = str(e.value.code)
    assert "weights_only" not in msg and "Traceback" not in msg and "\n" not in msg, msg
    assert str(f) in msg and "not a weights file" in msg and "--set pretrained" in msg, msg


# --- issue 32: an entry knows the image it belongs to ---------------------------------------
def _swap(entries, i, j):
    a, b = entries[i].read_bytes(), entries[j].read_bytes()
    entries[i].write_bytes(b)
    entries[j].write_bytes(a)


def _rotate(entries, idx):
    blobs = [entries[i].read_bytes() for i in idx]
    for i, blob in zip(idx, blobs[1:] + blobs[:1]):
        entries[i].write_bytes(blob)


def _copy_over(entries, i, j):
    entries[j].write_bytes(entries[i].read_bytes())


# (id, what is done to the entries on disk, the entries that no longer hold their image)
MOVED = [
    ("two entries swapped", lambda e: _swap(e, 0, 1), [0, 1]),
    ("two pairs swapped", lambda e: (_swap(e, 2, 5), _swap(e, 3, 4)), [2, 3, 4, 5]),
    ("three rotated", lambda e: _rotate(e, [1, 4, 7]), [1, 4, 7]),
    ("one copied over another", lambda e: _copy_over(e, 6, 0), [0]),
]


@pytest.mark.parametrize("case", MOVED, ids=[c[0] for c in MOVED])
def test_an_entry_under_another_images_name_is_recomputed_with_a_word(tmp_path, tiny_backbone, images, case):
    """Training reads what the cache holds: an entry moved under another image's name is found
    on read (its checksum covers its image), named in a warning and recomputed, never used."""
    _, move, hit = case
    cache = FeatureCache(tiny_backbone, tmp_path / "c")
    paths = images[:8]
    entries = cache.ensure(paths, progress=False)
    truth = [e.read_bytes() for e in entries]
    move(entries)
    with pytest.warns(UserWarning) as rec:
        again = cache.ensure(paths, progress=False)
    named = sorted(i for i, e in enumerate(entries) if any(str(e) in str(w.message) for w in rec))
    assert named == sorted(hit), [str(w.message) for w in rec]
    assert all("another image" in str(w.message) for w in rec)
    assert [e.read_bytes() for e in again] == truth  # recomputed: each entry holds its own image again
    fresh = FeatureCache(tiny_backbone, tmp_path / "fresh").get(paths, progress=False)
    got = cache.load_batch(again)
    assert torch.equal(got.patches, fresh.patches.float()) and torch.equal(got.cls, fresh.cls.float())


def test_entries_that_do_not_name_their_image_are_recomputed_once(tmp_path, tiny_backbone, images, caplog):
    """An entry written before entries named their image (its checksum covers the identity key
    only) cannot be checked: recomputed, said once per cache, not called corrupt."""
    import logging

    from safetensors.torch import load_file, save

    from bagclip.cache import _tensor_digest

    cache = FeatureCache(tiny_backbone, tmp_path / "c")
    entries = cache.ensure(images[:3], progress=False)
    truth = [e.read_bytes() for e in entries]
    for e in entries:  # as the kit wrote them before
        t = load_file(e)
        e.write_bytes(save(t, metadata={"sha256": _tensor_digest(t["patches"], t["cls"], cache.key)}))
    import warnings

    with caplog.at_level(logging.INFO, logger="bagclip.cache"), warnings.catch_warnings():
        warnings.simplefilter("error")  # no "corrupt" warning
        again = FeatureCache(tiny_backbone, tmp_path / "c").ensure(images[:3], progress=False)
    assert [e.read_bytes() for e in again] == truth
    assert sum("named their image" in r.getMessage() for r in caplog.records) == 1
