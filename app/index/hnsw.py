"""FAISS index construction, and how hard HNSW searches as the gallery grows."""

from __future__ import annotations

from typing import Any, Literal

import faiss

IndexKind = Literal["flat", "hnsw"]

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# efSearch scales with the gallery: on clustered synthetic 512-d faces (benchmarks/
# gallery_scaling.py) about 1 candidate per 1,000 faces keeps recall@1 at or above 0.99,
# from 128 up to 100k faces to ~1,000 at 1M, where a search takes about 16 ms.
HNSW_EF_SEARCH_MIN = 128
HNSW_EF_SEARCH_MAX = 4096
HNSW_FACES_PER_EF = 1000


def auto_ef_search(faces: int) -> int:
    """HNSW efSearch for a gallery of `faces` live entries."""
    return min(HNSW_EF_SEARCH_MAX, max(HNSW_EF_SEARCH_MIN, faces // HNSW_FACES_PER_EF))


def new_faiss_index(dim: int, kind: IndexKind) -> Any:
    """An empty IndexIDMap2 over an exact (flat) or HNSW inner-product index."""
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return faiss.IndexIDMap2(hnsw)


def search_parameters(ef_search: int, selector: Any | None) -> Any:
    """HNSW search parameters; `selector`, when given, filters positions during the walk."""
    # faiss's bundled stubs omit SearchParametersHNSW.
    params = faiss.SearchParametersHNSW(efSearch=ef_search)  # type: ignore[attr-defined]
    if selector is not None:
        params.sel = selector
    return params
