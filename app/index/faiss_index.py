"""FaceIndex: a thread-safe FAISS inner-product index of face ids, saved atomically."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from app.index import files
from app.index.hnsw import IndexKind, auto_ef_search, new_faiss_index, search_parameters
from app.index.tombstones import Tombstones

IdArray = npt.NDArray[np.int64]
VectorArray = npt.NDArray[np.float32]

REBUILD_TOMBSTONE_FRACTION = 0.10


class FaceIndex:
    """Face ids searchable by cosine similarity (inner product of L2-normalised vectors).

    "flat" is exact: IndexIDMap2(IndexFlatIP). "hnsw" is approximate and much faster at
    scale: IndexIDMap2(IndexHNSWFlat). HNSW cannot remove vectors, so a removal only
    tombstones the entry's position (app.index.tombstones). Re-adding an id tombstones its
    old position too, so ids stay unique. Once tombstones exceed 10% of the stored entries
    `needs_rebuild` turns true and the owner should rebuild the index from the database.

    One lock guards every call: FAISS is not safe for a write concurrent with a search.
    """

    def __init__(self, dim: int, model_version: str, kind: IndexKind = "flat") -> None:
        if kind not in ("flat", "hnsw"):
            raise ValueError(f"unknown index kind {kind!r}")
        self.dim = dim
        self.model_version = model_version
        self.kind: IndexKind = kind
        self._lock = threading.Lock()
        # Only orders whole saves, so two savers never share a temp file; searches wait
        # for the write_index call alone, not for the fsyncs.
        self._save_lock = threading.Lock()
        self._index: Any = new_faiss_index(dim, kind)
        self._label_cache: IdArray | None = None
        self._tombstones = Tombstones()  # hnsw only

    def __len__(self) -> int:
        with self._lock:
            return int(self._index.ntotal) - len(self._tombstones)

    @property
    def needs_rebuild(self) -> bool:
        with self._lock:
            stored = int(self._index.ntotal)
            return len(self._tombstones) > REBUILD_TOMBSTONE_FRACTION * stored

    def ids(self) -> IdArray:
        """The live ids, sorted."""
        with self._lock:
            if self.kind == "flat":
                return np.sort(self._labels())
            return self._tombstones.live_ids()

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add vectors under `ids`; an id already present is replaced."""
        id_array = _as_ids(ids)
        matrix = self._as_vectors(vectors)
        if len(id_array) != len(matrix):
            raise ValueError(f"{len(id_array)} ids for {len(matrix)} vectors")
        if len(np.unique(id_array)) != len(id_array):
            raise ValueError("duplicate ids in one add")
        if not len(id_array):
            return
        with self._lock:
            self._remove_locked(id_array)
            start = int(self._index.ntotal)
            self._index.add_with_ids(matrix, id_array)
            self._label_cache = None
            if self.kind == "hnsw":
                self._tombstones.added(id_array, start)

    def stored(self, ids: npt.ArrayLike) -> VectorArray:
        """The vectors held for `ids`, which must all be live, in their order."""
        id_array = _as_ids(ids)
        with self._lock:
            if self.kind == "flat":
                labels = self._labels()
                where = {int(labels[p]): int(p) for p in np.flatnonzero(np.isin(labels, id_array))}
            else:
                where = {
                    i: p
                    for i in id_array.tolist()
                    if (p := self._tombstones.position(i)) is not None
                }
            missing = [i for i in id_array.tolist() if i not in where]
            if missing:
                raise KeyError(f"ids not in the index: {missing[:5]}")
            inner = self._index.index  # IndexIDMap2 over a flat or HNSW-flat store
            rows = [inner.reconstruct(where[i]) for i in id_array.tolist()]
        return np.asarray(rows, dtype=np.float32).reshape(len(id_array), self.dim)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove `ids`; returns how many were present."""
        id_array = _as_ids(ids)
        with self._lock:
            return self._remove_locked(id_array)

    def search(
        self, queries: npt.ArrayLike, k: int, ef_search: int = 0
    ) -> tuple[VectorArray, IdArray]:
        """Top-k (scores, ids) per query, best first; k is capped at the size, -1 pads.

        `ef_search` is how many candidates an HNSW search keeps (at least k); 0 scales it
        with the gallery size (see app.index.hnsw). Flat searches are exact and ignore it.
        """
        matrix = self._as_vectors(queries)
        with self._lock:
            live = int(self._index.ntotal) - len(self._tombstones)
            k = max(0, min(k, live))
            if k == 0 or not len(matrix):
                return (
                    np.empty((len(matrix), k), dtype=np.float32),
                    np.empty((len(matrix), k), dtype=np.int64),
                )
            if self.kind == "flat":
                scores, ids = self._index.search(matrix, k)
                return scores.astype(np.float32), ids.astype(np.int64)
            ef = max(k, ef_search or auto_ef_search(live))
            return self._search_hnsw_locked(matrix, k, ef)

    def save(self, path: Path) -> None:
        """Write the index and its `<path>.json` sidecar, each via a temp file and rename."""
        path = Path(path)
        with self._save_lock:
            with self._lock:
                meta = {
                    "model_version": self.model_version,
                    "kind": self.kind,
                    "dim": self.dim,
                    "count": int(self._index.ntotal) - len(self._tombstones),
                    "ntotal": int(self._index.ntotal),
                    "tombstones": sorted(self._tombstones.dead),
                }
                files.stage(path, self._index)
            files.commit(path, meta)

    @classmethod
    def load(
        cls, path: Path, model_version: str, kind: IndexKind, dim: int | None = None
    ) -> FaceIndex | None:
        """The index saved at `path`, or None (logged) when missing, corrupt or foreign."""
        expected: dict[str, object] = {"model_version": model_version, "kind": kind}
        if dim is not None:
            expected["dim"] = dim
        found = files.read(Path(path), expected)
        if found is None:
            return None
        index, meta = found
        loaded = cls(int(index.d), model_version, kind)
        loaded._index = index
        if kind == "hnsw":
            dead = {int(p) for p in meta.get("tombstones", [])}
            loaded._tombstones = Tombstones.from_labels(loaded._labels(), dead)
        return loaded

    def _labels(self) -> IdArray:
        # A copy, since the id_map buffer moves when FAISS grows it; cached between writes
        # because copying 1M ids costs a millisecond per search.
        if self._label_cache is None:
            self._label_cache = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return self._label_cache

    def _remove_locked(self, ids: IdArray) -> int:
        if not len(ids):
            return 0
        if self.kind == "flat":
            self._label_cache = None
            return int(self._index.remove_ids(ids))
        return self._tombstones.remove(ids)

    def _search_hnsw_locked(
        self, queries: VectorArray, k: int, ef_search: int
    ) -> tuple[VectorArray, IdArray]:
        # The inner HNSW index works in positions, which (unlike ids) tell a replaced entry
        # from its replacement; the selector makes the graph walk skip tombstones, so
        # asking for k never returns fewer live hits because of them.
        params = search_parameters(ef_search, self._tombstones.selector())
        scores, positions = self._index.index.search(queries, k, params=params)
        labels = self._labels()
        ids = np.where(positions >= 0, labels[np.maximum(positions, 0)], -1)
        scores = np.where(positions >= 0, scores, -np.inf)
        return scores.astype(np.float32), ids.astype(np.int64)

    def _as_vectors(self, vectors: npt.ArrayLike) -> VectorArray:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) vectors, got shape {matrix.shape}")
        return matrix


def _as_ids(ids: npt.ArrayLike) -> IdArray:
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
