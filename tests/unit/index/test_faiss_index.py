from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.index.faiss_index import FaceIndex
from app.index.hnsw import HNSW_EF_SEARCH_MAX, HNSW_EF_SEARCH_MIN, auto_ef_search

DIM = 512
MODEL = "arcface-mbf@9cc6e4a75f0e"
KINDS = ["flat", "hnsw"]
UnitVectors = Callable[[int], np.ndarray]


def filled(kind: str, vectors: np.ndarray, first_id: int = 100) -> FaceIndex:
    index = FaceIndex(DIM, MODEL, kind)  # type: ignore[arg-type]
    index.add(np.arange(first_id, first_id + len(vectors)), vectors)
    return index


@pytest.mark.parametrize("kind", KINDS)
def test_search_finds_each_vector_first_with_score_one(
    kind: str, unit_vectors: UnitVectors
) -> None:
    vectors = unit_vectors(50)
    index = filled(kind, vectors)

    scores, ids = index.search(vectors, 3)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert scores.shape == ids.shape == (50, 3)
    assert ids[:, 0].tolist() == list(range(100, 150))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (scores[:, 1] < scores[:, 0]).all()
    assert len(index) == 50 and index.ids().tolist() == list(range(100, 150))


@pytest.mark.parametrize("kind", KINDS)
def test_k_is_capped_at_the_size(kind: str, unit_vectors: UnitVectors) -> None:
    empty = FaceIndex(DIM, MODEL, kind)  # type: ignore[arg-type]
    scores, ids = empty.search(unit_vectors(2), 5)
    assert scores.shape == ids.shape == (2, 0)

    index = filled(kind, unit_vectors(3))
    index.remove([101])
    scores, ids = index.search(unit_vectors(4), 10)
    assert ids.shape == (4, 2) and set(ids.ravel().tolist()) <= {100, 102}


@pytest.mark.parametrize("kind", KINDS)
def test_remove(kind: str, unit_vectors: UnitVectors) -> None:
    vectors = unit_vectors(10)
    index = filled(kind, vectors)

    assert index.remove([100, 105, 999]) == 2
    assert index.remove([100]) == 0
    assert len(index) == 8
    assert 100 not in index.ids() and 105 not in index.ids()
    _, ids = index.search(vectors, 8)
    assert not np.isin(ids, [100, 105]).any()
    assert ids[1, 0] == 101


@pytest.mark.parametrize("kind", KINDS)
def test_adding_an_existing_id_replaces_it(kind: str, unit_vectors: UnitVectors) -> None:
    old, new = unit_vectors(2)
    others = unit_vectors(20)
    index = filled(kind, others)
    index.add([7], old[None])
    index.add([7], new[None])

    assert len(index) == 21 and (index.ids() == 7).sum() == 1
    scores, ids = index.search(new[None], 1)
    assert ids[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    scores, ids = index.search(old[None], 21)
    assert (ids[0] == 7).sum() == 1
    assert scores[0, ids[0].tolist().index(7)] < 0.5  # the old vector is gone


def test_add_rejects_bad_input(unit_vectors: UnitVectors) -> None:
    index = FaceIndex(DIM, MODEL)
    with pytest.raises(ValueError):
        index.add([1, 2], unit_vectors(3))
    with pytest.raises(ValueError):
        index.add([1, 1], unit_vectors(2))
    with pytest.raises(ValueError):
        index.add([1], np.zeros((1, 128), np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind: str, tmp_path: Path, unit_vectors: UnitVectors) -> None:
    vectors = unit_vectors(30)
    index = filled(kind, vectors)
    index.remove([103, 104])
    path = tmp_path / "nested" / "index.faiss"
    index.save(path)

    assert not list(path.parent.glob("*.tmp"))
    meta = json.loads(path.with_name("index.faiss.json").read_text())
    assert meta["model_version"] == MODEL and meta["kind"] == kind
    assert meta["dim"] == DIM and meta["count"] == 28

    loaded = FaceIndex.load(path, MODEL, kind, dim=DIM)  # type: ignore[arg-type]
    assert loaded is not None and len(loaded) == 28
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    np.testing.assert_array_equal(loaded.search(vectors, 5)[1], index.search(vectors, 5)[1])
    # A loaded index keeps working: tombstones, replacement and saving again.
    loaded.add([103], vectors[3:4])
    assert loaded.search(vectors[3:4], 1)[1][0, 0] == 103
    loaded.save(path)
    again = FaceIndex.load(path, MODEL, kind)  # type: ignore[arg-type]
    assert again is not None and len(again) == 29


def test_load_rejects_what_is_not_ours(tmp_path: Path, unit_vectors: UnitVectors) -> None:
    path = tmp_path / "index.faiss"
    assert FaceIndex.load(path, MODEL, "flat") is None  # missing

    filled("flat", unit_vectors(5)).save(path)
    assert FaceIndex.load(path, MODEL, "flat") is not None
    assert FaceIndex.load(path, "facenet-vggface2@0123", "flat") is None
    assert FaceIndex.load(path, MODEL, "hnsw") is None
    assert FaceIndex.load(path, MODEL, "flat", dim=128) is None

    sidecar = path.with_name("index.faiss.json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "ntotal": 4}))  # from another save
    assert FaceIndex.load(path, MODEL, "flat") is None
    sidecar.write_text("{not json")
    assert FaceIndex.load(path, MODEL, "flat") is None
    sidecar.write_text("[]")
    assert FaceIndex.load(path, MODEL, "flat") is None
    sidecar.unlink()
    assert FaceIndex.load(path, MODEL, "flat") is None


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_load_refuses_a_file_whose_vectors_were_swapped(
    kind: str, tmp_path: Path, unit_vectors: UnitVectors
) -> None:
    # FAISS reads such a file without complaint, and identify would name the wrong person
    # at similarity 1.0; the sha256 in the sidecar catches it.
    vectors = unit_vectors(10)
    path = tmp_path / "index.faiss"
    filled(kind, vectors).save(path)
    data = path.read_bytes()
    first, second = vectors[0].tobytes(), vectors[1].tobytes()
    assert data.count(first) == 1 and data.count(second) == 1
    swapped = data.replace(first, b"\0" * len(first)).replace(second, first)
    path.write_bytes(swapped.replace(b"\0" * len(first), second))
    assert path.read_bytes() != data and len(path.read_bytes()) == len(data)
    assert FaceIndex.load(path, MODEL, kind) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"tombstones": None},
        {"tombstones": ["x"]},
        {"tombstones": [10**6]},
        {"tombstones": [-1]},
        {"tombstones": [2, 2]},
        {"sha256": None},
    ],
    ids=["none", "strings", "beyond-the-file", "negative", "repeated", "no-checksum"],
)
def test_load_refuses_a_sidecar_that_does_not_describe_the_file(
    change: dict[str, object], tmp_path: Path, unit_vectors: UnitVectors
) -> None:
    path = tmp_path / "index.faiss"
    index = filled("hnsw", unit_vectors(10))
    index.remove([102])
    index.save(path)
    sidecar = path.with_name("index.faiss.json")
    meta = json.loads(sidecar.read_text())
    assert meta["tombstones"] == [2] and FaceIndex.load(path, MODEL, "hnsw") is not None
    sidecar.write_text(json.dumps({**meta, **change}))
    assert FaceIndex.load(path, MODEL, "hnsw") is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_load_of_a_corrupt_file_returns_none(
    damage: str, tmp_path: Path, unit_vectors: UnitVectors
) -> None:
    path = tmp_path / "index.faiss"
    filled("flat", unit_vectors(20)).save(path)
    data = path.read_bytes()
    damaged = {
        "garbage": bytes(range(256)) * 10,
        "truncated": data[: len(data) // 2],
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    assert FaceIndex.load(path, MODEL, "flat") is None


def test_hnsw_recall_matches_flat_and_skips_tombstones(unit_vectors: UnitVectors) -> None:
    gallery = unit_vectors(5000)
    # Probes near enrolled faces, as real ones are, plus unrelated random vectors.
    noisy = gallery[:500] + 0.05 * unit_vectors(500)
    queries = np.concatenate(
        [noisy / np.linalg.norm(noisy, axis=1, keepdims=True), unit_vectors(500)]
    )
    flat, hnsw = filled("flat", gallery), filled("hnsw", gallery)

    _, exact = flat.search(queries, 1)
    _, approx = hnsw.search(queries, 1)
    recall = float((exact[:, 0] == approx[:, 0]).mean())
    assert recall >= 0.95, recall

    dead = np.arange(100, 600)  # includes the true match of every noisy probe
    flat.remove(dead)
    hnsw.remove(dead)
    assert not hnsw.needs_rebuild  # exactly 10% is not over the line
    _, approx = hnsw.search(queries, 10)
    assert not np.isin(approx, dead).any()
    assert (approx >= 0).all()  # tombstones never cost a slot
    _, exact = flat.search(queries, 1)
    assert float((exact[:, 0] == approx[:, 0]).mean()) >= 0.95
    hnsw.remove([600])
    assert hnsw.needs_rebuild


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_adds_removes_and_searches(kind: str, unit_vectors: UnitVectors) -> None:
    index = filled(kind, unit_vectors(200), first_id=0)
    batches = [unit_vectors(20) for _ in range(20)]
    queries = unit_vectors(8)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n, batch in enumerate(batches[worker::4]):
                ids = np.arange(20) + 1000 * (worker + 1) + 100 * n
                index.add(ids, batch)
                index.remove(ids[:5])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(50):
                scores, ids = index.search(queries, 5)
                assert ids.shape == (8, 5) and (ids >= 0).all()
                len(index)
                index.ids()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(index) == 200 + 20 * 15


def test_auto_ef_search_scales_with_the_gallery() -> None:
    assert auto_ef_search(0) == auto_ef_search(100_000) == HNSW_EF_SEARCH_MIN == 128
    assert auto_ef_search(650_000) == 650
    assert auto_ef_search(1_000_000) == 1000
    assert auto_ef_search(100_000_000) == HNSW_EF_SEARCH_MAX


def test_ef_search_trades_recall_for_speed() -> None:
    # Unclustered 64-d vectors are hard for HNSW: a tiny efSearch visibly loses recall,
    # and the default (128 at this size) finds the exact nearest neighbour.
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((300, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = FaceIndex(64, MODEL, "hnsw")
    index.add(np.arange(len(vectors)), vectors)
    exact = (queries @ vectors.T).argmax(axis=1)

    def recall(ef: int) -> float:
        return float((index.search(queries, 1, ef)[1][:, 0] == exact).mean())

    assert recall(1) < 0.5 < recall(16) < 0.95
    assert recall(0) == recall(1024) == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_searches_see_every_write_between_them(kind: str, unit_vectors: UnitVectors) -> None:
    vectors = unit_vectors(6)
    index = filled(kind, vectors[:3])
    assert index.search(vectors[:3], 1)[1][:, 0].tolist() == [100, 101, 102]
    index.add([200, 201], vectors[3:5])
    assert index.search(vectors[3:5], 1)[1][:, 0].tolist() == [200, 201]
    index.remove([100])
    index.add([300], vectors[5:])
    assert index.search(vectors[5:], 1)[1][0, 0] == 300
    assert 100 not in index.search(vectors[:1], 5)[1]
