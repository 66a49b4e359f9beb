"""The pretraining world: no target category, deterministic pairs, masks where the pixels changed."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from bagclip.data import synth, world
from bagclip.data.synth_draw import OBJECTS, TEXTURES


def test_world_has_30_categories_and_never_a_target():
    assert len(world.CATEGORIES) >= 30
    assert not set(world.CATEGORIES) & set(synth.TARGET_CLASSES)
    target_draws = {(TEXTURES | OBJECTS)[c] for c in synth.TARGET_CLASSES}
    assert not target_draws & {fn for fn, _ in world.CATEGORIES.values()}
    # ask the generator itself: what does it draw over many scenes?
    drawn = {world.make_pair(seed=3, index=i, size=64).category for i in range(150)}
    assert not drawn & set(synth.TARGET_CLASSES)
    assert len(drawn) >= 25  # it does visit the world, not a corner of it


def test_pairs_are_deterministic_and_independent_of_order():
    a = world.make_pair(seed=0, index=7, size=96)
    world.make_pair(seed=0, index=8, size=96)  # drawing another scene in between changes nothing
    b = world.make_pair(seed=0, index=7, size=96)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert a.captions == b.captions
    c = world.make_pair(seed=1, index=7, size=96)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("index", range(12))
def test_clean_and_defective_differ_only_at_the_defect(index):
    p = world.make_pair(seed=0, index=index, size=96)
    assert p.images.shape == (2, 96, 96, 3) and p.masks.shape == (2, 96, 96)
    assert p.masks[0].max() == 0 and p.masks[1].max() > 0
    changed = (p.images[0] != p.images[1]).any(-1)
    assert changed.any()
    # blur and zoom may spread a defect by a few pixels, never further
    near = ndi.binary_dilation(p.masks[1] > 0, iterations=4)
    assert not (changed & ~near).any()


def test_captions_share_template_and_name_and_differ_in_state():
    for i in range(20):
        p = world.make_pair(seed=0, index=i, size=64)
        normal, abnormal = p.captions
        assert normal != abnormal and p.name in normal and p.name in abnormal
        head, tail = p.template.split("{}")
        for c in (normal, abnormal):
            assert c.startswith(head) and c.endswith(tail)


def test_every_defect_kind_can_be_drawn_on_every_category_kind():
    rng = np.random.default_rng(0)
    for cat in ("wood", "nut", "o_ring", "paper", "zipper"):
        scene = world.CATEGORIES[cat][0](rng, 96)
        for kind in world.defect_kinds(cat):
            m, new = world._draw_defect(rng, scene, kind)
            assert m.shape == (96, 96) and m.sum() >= world.MIN_PIXELS and new.shape == (96, 96, 3)
