"""Hints for SQLite's planner, which keeps no statistics by default: rarely_true(condition)
says a filter keeps few rows, unindexed(column) keeps a column's indexes out of a condition."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class rarely_true(FunctionElement[bool]):
    """The condition itself, marked as true for about one row in a thousand.

    SQLite keeps no statistics by default, so for `WHERE name LIKE '%x%' ORDER BY created_at
    LIMIT n` it walked the whole ordering index, reading each row at random, where scanning
    the table and sorting the few matches was 3-5x faster (300k subjects).
    """

    # No Boolean type: SQLite's compiler would append "= 1", which hides the hint.
    inherit_cache = True

    def __init__(self, condition: ColumnElement[bool]) -> None:
        super().__init__(condition)


@compiles(rarely_true, "sqlite")
def _sqlite(element: rarely_true, compiler: SQLCompiler, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, 0.001)"


class unindexed(FunctionElement[Any]):
    """The column itself, which SQLite may not look up in an index (`+column`): a condition
    on it then filters rows, never chooses how they are read. It keeps the column's type, so
    values compared with it are bound as the column binds them (UTCDateTime to UTC).

    A name search's later pages compare their cursor with (created_at, id), which SQLite
    served by seeking the order's index and walking it past every non-match: at 300k
    subjects a second page of 50 matches took 433 ms against the first page's 220 ms.
    """

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any] | QueryableAttribute[Any]) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(unindexed, "sqlite")
def _unary_plus(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


@compiles(rarely_true)
@compiles(unindexed)
def _plain(element: rarely_true | unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    """Elsewhere (PostgreSQL keeps statistics): the condition or column as it is."""
    return compiler.process(element.clauses, **kw)
