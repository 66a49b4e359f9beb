"""Feature cache: bit-identical reuse, corruption recovery, keys."""
import pytest
import torch

import bagclip
from bagclip.cache import FeatureCache


def test_cache_returns_bit_identical_tensors(tiny_backbone, image_files, tmp_path):
    cache = FeatureCache(tiny_backbone, tmp_path / "c")
    first = cache.get(image_files, batch_size=3, progress=False)
    assert cache.misses == 4 and cache.hits == 0
    second = cache.get(image_files, progress=False)
    assert cache.hits == 4
    assert torch.equal(first.patches, second.patches) and torch.equal(first.cls, second.cls)
    assert first.patches.dtype == torch.float16 and first.patches.shape == (4, 4, 64, 128)
    # and they are the backbone's own output, which encode rounds to float16 as well: a fresh
    # encode (predict) and the cache (training, sweeps) see the same tokens, bit for bit
    from bagclip.data import load_image

    direct = tiny_backbone.encode(torch.stack([load_image(p, 112) for p in image_files]))
    assert torch.equal(first.patches.float(), direct.patches) and torch.equal(first.cls.float(), direct.cls)
    entries = cache.ensure(image_files, progress=False)
    batch = cache.load_batch(entries)
    assert batch.patches.dtype == torch.float32 and torch.equal(batch.patches, direct.patches)


def test_truncated_or_corrupted_entry_is_recomputed(tiny_backbone, image_files, tmp_path):
    cache = FeatureCache(tiny_backbone, tmp_path / "c")
    ref = cache.get(image_files[:2], progress=False)
    entry = cache.path_for(image_files[0])
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.warns(UserWarning, match="corrupt"):
        again = cache.get(image_files[:2], progress=False)
    assert torch.equal(again.patches, ref.patches)
    # a flipped byte inside the tensor data: the checksum catches it
    data = bytearray(entry.read_bytes())
    data[-10] ^= 0xFF
    entry.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checksum"):
        again = cache.get(image_files[:2], progress=False)
    assert torch.equal(again.patches, ref.patches)
    assert cache.repaired == 2


def test_key_depends_on_what_changes_the_tokens(tiny_backbone, tmp_path):
    a = FeatureCache(tiny_backbone, tmp_path)
    other = bagclip.load_backbone(tiny_backbone.cfg.replace(taps=(2, 3, 4)))
    vv = bagclip.load_backbone(tiny_backbone.cfg.replace(detail_attention="vv"))
    seeded = bagclip.load_backbone(tiny_backbone.cfg.replace(backbone_seed=1))
    keys = {a.key, FeatureCache(other, tmp_path).key, FeatureCache(vv, tmp_path).key,
            FeatureCache(seeded, tmp_path).key}
    assert len(keys) == 4
    # but not on head settings
    heads = bagclip.load_backbone(tiny_backbone.cfg.replace(k=5, seed=9))
    assert FeatureCache(heads, tmp_path).key == a.key


def test_same_content_different_name_shares_entry(tiny_backbone, image_files, tmp_path):
    cache = FeatureCache(tiny_backbone, tmp_path / "c")
    copy = tmp_path / "copy.png"
    copy.write_bytes(image_files[0].read_bytes())
    assert cache.path_for(copy) == cache.path_for(image_files[0])
