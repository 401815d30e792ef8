"""Split, validation pairs, equal-size micro-batches and augmentation."""

from __future__ import annotations

import numpy as np

from app.training.dataset import augment, epoch_batches
from app.training.split import held_out, split_faces, validation_pairs

# 4 subjects with 2, 3, 5 and 8 faces, ids 1 to 18, no two photos alike.
LABELS = np.repeat(np.arange(4), [2, 3, 5, 8]).astype(np.int64)
FACE_IDS = np.arange(1, len(LABELS) + 1, dtype=np.int64)


def distinct_vectors(n: int) -> np.ndarray:
    """Random unit vectors: in 128 dimensions no two come near NEAR_DUPLICATE_COSINE."""
    vectors = np.random.default_rng(0).standard_normal((n, 128))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_split_sends_every_face_to_exactly_one_side() -> None:
    split = split_faces(FACE_IDS, LABELS, distinct_vectors(len(LABELS)), 0.25)
    assert sorted([*split.train, *split.validation]) == list(range(len(LABELS)))
    assert len(split.set_aside) == 0  # no near-duplicates here
    assert set(split.validation) == {i for i, f in enumerate(FACE_IDS) if held_out(int(f), 0.25)}


def test_validation_pairs_pair_each_held_out_face_once_with_every_other_face() -> None:
    split = split_faces(FACE_IDS, LABELS, distinct_vectors(len(LABELS)), 0.25)
    a, b, same = validation_pairs(LABELS, split.validation)
    pairs = {tuple(sorted(p)) for p in zip(a.tolist(), b.tolist(), strict=True)}
    assert len(pairs) == len(a) and all(i != j for i, j in pairs)
    n, held = len(LABELS), len(split.validation)
    assert held >= 2
    assert len(a) == held * (n - 1) - held * (held - 1) // 2
    assert np.array_equal(same, (LABELS[a] == LABELS[b]).astype(np.int64))
    assert same.sum() > 0 and (same == 0).sum() > 0
    assert set(a.tolist()) == set(split.validation.tolist())  # `a` is the probe


def test_epoch_batches_are_equal_sized_and_cover_every_training_face() -> None:
    train = np.arange(len(LABELS), dtype=np.int64)
    batches = epoch_batches(train, LABELS, 4, np.random.default_rng(0))
    assert all(len(batch) == 4 for batch in batches) and len(batches) == 5  # ceil(18 / 4)
    assert set(np.concatenate(batches).tolist()) == set(train.tolist())
    # Faces come in same-subject pairs, so a triplet anchor has a positive in its batch.
    flat = np.concatenate(batches)[: len(train)]
    assert np.mean(LABELS[flat[0::2]] == LABELS[flat[1::2]]) > 0.8


def test_a_micro_batch_larger_than_the_training_set_shrinks_to_it() -> None:
    # Padding 3 faces up to 4096 repeated each face over a thousand times: that much more
    # compute for no more data.
    for size in (8, 4096):
        batches = epoch_batches(np.array([0, 1, 2]), LABELS, size, np.random.default_rng(0))
        assert len(batches) == 1 and sorted(batches[0]) == [0, 1, 2]


def test_augment_keeps_shape_and_type_and_changes_pixels_slightly() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(40, 200, (112, 112, 3), dtype=np.uint8)
    out = augment([image] * 8, np.random.default_rng(1))
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in out)
    flipped = [o for o in out if np.corrcoef(o.ravel(), image[:, ::-1].ravel())[0, 1] > 0.9]
    assert 0 < len(flipped) < 8
    assert all(abs(float(o.mean()) - float(image.mean())) < 0.15 * float(image.mean()) for o in out)
