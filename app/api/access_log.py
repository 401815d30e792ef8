"""uvicorn's access log, without query strings: they can carry people's names."""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"


class DropQueryStrings(logging.Filter):
    """uvicorn logs (client, method, path with query, HTTP version, status); the query goes.

    `GET /v1/subjects?name=Ada%20Lovelace` would otherwise put a person's name in every
    log line of a listing. Paths hold only opaque ids.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def drop_query_strings() -> None:
    """Install the filter on uvicorn's access logger, once."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, DropQueryStrings) for f in logger.filters):
        logger.addFilter(DropQueryStrings())
