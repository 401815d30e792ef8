"""find_upload_routes: the app's routes that take file uploads, read from the routes themselves."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute


@dataclass(frozen=True)
class UploadRoute:
    """A route whose body is multipart/form-data with files in it."""

    path: str  # the template, as the metrics label it
    path_regex: re.Pattern[str]
    methods: frozenset[str]
    files: int | None  # None: a list of files, as many as FACE_MAX_FILES_PER_REQUEST

    def matches(self, method: str, path: str) -> bool:
        """Whether the router sends this request here: the route's own compiled path."""
        return method in self.methods and self.path_regex.match(path) is not None


def find_upload_routes(routes: Iterable[BaseRoute]) -> tuple[UploadRoute, ...]:
    """The upload routes among `routes` (an app's, once its routers are included), so that
    a new upload route gets an upload-sized body limit without a list to keep up to date.

    FastAPI makes a route's `body_field` a File when any of its body parameters, its
    dependencies' included, is a file: the route then reads multipart/form-data.
    """
    found: list[UploadRoute] = []
    for route in routes_as_served(routes):
        if not isinstance(getattr(route, "original_route", route), APIRoute):
            continue
        if route.body_field is not None and isinstance(route.body_field.field_info, params.File):
            files = _file_count(route.dependant)
            found.append(UploadRoute(route.path, route.path_regex, frozenset(route.methods), files))
    return tuple(found)


def routes_as_served(routes: Iterable[BaseRoute]) -> Iterator[Any]:
    """Each route as the router serves it: its path with the prefixes, and its dependant
    with the dependencies, of the routers that include it."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI (pyproject allows 0.115) copies them into app.routes
        return iter(routes)
    # Newer FastAPI keeps an included router as one route, serving its routes through these.
    return iter_route_contexts(list(routes))


def _file_count(root: Dependant) -> int | None:
    """How many files the route reads: one per file field, None when any takes a list."""
    many: dict[str, bool] = {}  # by alias: a field read twice is still one form field
    stack = [root]
    while stack:
        dependant = stack.pop()
        for field in dependant.body_params:
            if isinstance(field.field_info, params.File):
                many[field.alias] = many.get(field.alias, False) or _is_list(
                    field.field_info.annotation
                )
        stack.extend(dependant.dependencies)
    return None if any(many.values()) else len(many)


def _is_list(annotation: object) -> bool:
    """list[UploadFile], list[bytes] | None, ...: FastAPI reads every part of that name."""
    origin = get_origin(annotation)
    if origin is Union or origin is UnionType:
        return any(_is_list(arg) for arg in get_args(annotation))
    return isinstance(origin, type) and issubclass(origin, (Sequence, AbstractSet))
