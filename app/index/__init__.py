"""FAISS search index over face embeddings, a rebuildable cache of the gallery."""

from app.index.faiss_index import FaceIndex
from app.index.hnsw import IndexKind
from app.index.reconcile import ReconcileReport, index_path, open_index, rebuild, reconcile

__all__ = [
    "FaceIndex",
    "IndexKind",
    "ReconcileReport",
    "index_path",
    "open_index",
    "rebuild",
    "reconcile",
]
