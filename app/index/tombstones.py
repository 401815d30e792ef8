"""Deletes for HNSW, which cannot remove vectors: tombstoned positions that searches skip."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]


class Tombstones:
    """Which position holds each live id, which positions are dead, and a FAISS selector
    that skips the dead ones during the graph walk.

    Filtering inside the walk, rather than over-fetching k + len(dead) and filtering after,
    keeps k small: over-fetching would ask for 100k hits at 10% of 1M deleted. Positions,
    unlike ids, tell a replaced entry from its replacement.
    """

    def __init__(self) -> None:
        self.dead: set[int] = set()
        self._position: dict[int, int] = {}
        # The selector and the objects it points into, built on first use after a change.
        self._selector: tuple[Any, ...] | None = None

    @classmethod
    def from_labels(cls, labels: IdArray, dead: set[int]) -> Tombstones:
        """Rebuild from the index's id per position and the saved dead positions."""
        tombstones = cls()
        tombstones.dead = dead
        # Later positions win: a replaced id's earlier position is dead.
        tombstones._position = {
            face_id: position
            for position, face_id in enumerate(labels.tolist())
            if position not in dead
        }
        return tombstones

    def __len__(self) -> int:
        return len(self.dead)

    def added(self, ids: IdArray, start: int) -> None:
        """Record ids appended at positions start, start + 1, ..."""
        for offset, face_id in enumerate(ids.tolist()):
            self._position[face_id] = start + offset

    def remove(self, ids: IdArray) -> int:
        """Tombstone the live positions of `ids`; returns how many were live."""
        removed = 0
        for face_id in ids.tolist():
            position = self._position.pop(face_id, None)
            if position is not None:
                self.dead.add(position)
                removed += 1
        if removed:
            self._selector = None
        return removed

    def position(self, face_id: int) -> int | None:
        """Where a live id's vector sits; None when it is not live."""
        return self._position.get(face_id)

    def live_ids(self) -> IdArray:
        return np.array(sorted(self._position), dtype=np.int64)

    def selector(self) -> Any | None:
        """A FAISS IDSelector accepting only live positions; None when none are dead."""
        if not self.dead:
            return None
        if self._selector is None:
            batch = faiss.IDSelectorBatch(np.fromiter(self.dead, dtype=np.int64))
            self._selector = (faiss.IDSelectorNot(batch), batch)
        return self._selector[0]
