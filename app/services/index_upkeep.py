"""Lifespan tasks that keep the served index on disk and compact: periodic saves, rebuilds."""

from __future__ import annotations

import asyncio
import logging

from app.services.maintenance import rebuild_if_needed
from app.services.model_index import save_index
from app.state import AppState

log = logging.getLogger(__name__)


async def save_periodically(state: AppState) -> None:
    while True:
        await asyncio.sleep(state.settings.index_save_interval_s)
        try:
            await asyncio.to_thread(flush_index, state)
        except Exception:  # a full disk, say: the index stays dirty, the next tick retries
            log.exception(
                "saving the index failed; retrying in %ss", state.settings.index_save_interval_s
            )


async def rebuild_when_needed(state: AppState) -> None:
    """Rebuild an index whose deletes left too many tombstones, in the background."""
    while True:
        await asyncio.sleep(state.settings.index_save_interval_s)
        try:
            await asyncio.to_thread(rebuild_if_needed, state)
        except Exception:  # logged; the old index keeps serving and the next check retries
            log.exception("background index rebuild failed")


def flush_index(state: AppState) -> None:
    if not state.index_dirty:
        return
    with state.write_lock:
        runtime = state.runtime  # under the lock: a model swap may have replaced it
        if runtime is None or not state.index_dirty:
            return
        state.index_dirty = False
        try:
            save_index(state.settings, runtime.index)
        except BaseException:
            state.index_dirty = True  # not on disk yet: the next save must try again
            raise
