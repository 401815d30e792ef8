"""QueryGuard: refuses query parameters a route does not declare, or sends twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from fastapi import Request, params
from fastapi.dependencies.models import Dependant
from pydantic import BaseModel

from app.errors import InvalidRequest, problem


@dataclass(frozen=True)
class Declared:
    """The names a route reads from the query, and where it reads the other names it
    declares (a form field, a JSON body field, a path parameter)."""

    query: frozenset[str]
    elsewhere: dict[str, str]
    lists: frozenset[str] = frozenset()  # query parameters that may repeat: list[X]

    @classmethod
    def of(cls, root: Dependant) -> Declared:
        query: set[str] = set()
        lists: set[str] = set()
        elsewhere: dict[str, str] = {}
        for dependant in dependants(root):
            for field in dependant.query_params:
                annotation = field.field_info.annotation
                names = param_names(field.alias, annotation)
                query.update(names)
                if any(get_origin(a) is list for a in (annotation, *get_args(annotation))):
                    lists.update(names)
            for field in dependant.path_params:
                elsewhere[field.alias] = "path parameter"
            for field in dependant.body_params:
                form = isinstance(field.field_info, params.Form)  # File is a Form too
                kind = "form field" if form else "JSON body field"
                for name in param_names(field.alias, field.field_info.annotation):
                    elsewhere.setdefault(name, kind)
        return cls(frozenset(query), elsewhere, frozenset(lists))

    def refusal(self, names: Iterable[str]) -> InvalidRequest:
        return self._refusal({name: (self._why(name), "extra_forbidden") for name in names})

    def repeated(self, counts: dict[str, int]) -> InvalidRequest:
        """Starlette keeps every value and FastAPI reads the last: `?top_k=1&top_k=2` was
        answered with 2."""
        return self._refusal(
            {
                name: (f"{name} was sent {count} times; this endpoint takes one", "repeated_field")
                for name, count in counts.items()
            }
        )

    def _refusal(self, reasons: dict[str, tuple[str, str]]) -> InvalidRequest:
        if self.query:
            takes = f"query parameters it takes: {', '.join(sorted(self.query))}"
        else:
            takes = "it takes no query parameters"
        problems = [problem(["query", name], why, kind) for name, (why, kind) in reasons.items()]
        whys = "; ".join(why for why, _ in reasons.values())
        return InvalidRequest(f"{whys} ({takes}).", problems)

    def _why(self, name: str) -> str:
        kind = self.elsewhere.get(name)
        if kind is None:
            return f"{name} is not a query parameter of this endpoint"
        return f"{name} is a {kind} of this endpoint, not a query parameter"


class QueryGuard:
    """An app-wide dependency. A parameter the route does not read would be ignored, and
    the request answered as if it were not there: `POST /v1/verify?threshold=0.99` was
    verified at the default threshold, since threshold is a form field there."""

    def __init__(self) -> None:
        # By id, since Starlette routes define __eq__ and so cannot be dict keys; each entry
        # holds its route, so that id cannot be reused while the entry stands.
        self._declared: dict[int, tuple[object, Declared]] = {}

    async def __call__(self, request: Request) -> None:
        if not request.scope["query_string"]:
            return
        route = request.scope.get("route")
        dependant = getattr(route, "dependant", None)
        if not isinstance(dependant, Dependant):
            return
        # The route's own dependant holds its parameters and those of its router's
        # dependencies; dependencies given to include_router are not in it (this app
        # gives none that read the query).
        known = self._declared.get(id(route))
        if known is None:
            known = self._declared[id(route)] = (route, Declared.of(dependant))
        declared = known[1]
        unknown = [name for name in request.query_params if name not in declared.query]
        if unknown:
            raise declared.refusal(unknown)
        counts = Counter(name for name, _ in request.query_params.multi_items())
        repeated = {n: c for n, c in counts.items() if c > 1 and n not in declared.lists}
        if repeated:
            raise declared.repeated(repeated)


def dependants(root: Dependant) -> Iterator[Dependant]:
    stack = [root]
    while stack:
        dependant = stack.pop()
        yield dependant
        stack.extend(dependant.dependencies)


def param_names(alias: str, annotation: Any) -> list[str]:
    """A parameter's request name; for a pydantic model (FastAPI reads a query model's
    fields from the query, a body model's from the body), its fields' names."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return [info.alias or name for name, info in candidate.model_fields.items()]
    return [alias]


async def check_query(request: Request) -> None:
    """The app's QueryGuard, as a dependency: after the key check, so that a caller without
    the right key gets 401 or 403 and learns nothing of the route's parameters."""
    guard: QueryGuard = request.app.state.query_guard
    await guard(request)
