"""The access log keeps paths but drops query strings, which can carry names."""

from __future__ import annotations

import logging

from app.api.access_log import ACCESS_LOGGER, DropQueryStrings, drop_query_strings


def test_query_strings_are_dropped_from_access_lines() -> None:
    # The shape uvicorn's access logger uses.
    record = logging.LogRecord(
        ACCESS_LOGGER,
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/subjects?name=Ada%20Lovelace", "1.1", 200),
        None,
    )
    assert DropQueryStrings().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /v1/subjects HTTP/1.1" 200'


def test_installed_once() -> None:
    drop_query_strings()
    drop_query_strings()
    filters = logging.getLogger(ACCESS_LOGGER).filters
    assert sum(isinstance(f, DropQueryStrings) for f in filters) == 1
