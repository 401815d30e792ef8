"""FormGuard: refuses form fields a route does not declare, or sends twice, not ignore them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from fastapi import Request, params
from fastapi.dependencies.models import Dependant

from app.api.query_guard import dependants, param_names
from app.errors import InvalidRequest, Problem, problem


@dataclass(frozen=True)
class FormFields:
    """The form fields a route reads, and which of them it reads as a list."""

    single: frozenset[str]
    repeated: frozenset[str]

    @classmethod
    def of(cls, root: Dependant) -> FormFields:
        single: set[str] = set()
        repeated: set[str] = set()
        for dependant in dependants(root):
            for field in dependant.body_params:
                if not isinstance(field.field_info, params.Form):  # File is a Form too
                    continue
                annotation = field.field_info.annotation
                names = param_names(field.alias, annotation)
                (repeated if _is_list(annotation) else single).update(names)
        return cls(frozenset(single), frozenset(repeated))

    def problems(self, names: list[str]) -> list[Problem]:
        counts = Counter(names)
        found: list[Problem] = []
        for name, count in counts.items():
            if name not in self.single and name not in self.repeated:
                why = f"{name} is not a form field of this endpoint"
                kind = "extra_forbidden"
            elif count > 1 and name in self.single:
                why = f"{name} was sent {count} times; this endpoint takes one"
                kind = "repeated_field"
            else:
                continue
            found.append(problem(["body", name], why, kind))
        return found

    def refusal(self, problems: list[Problem]) -> InvalidRequest:
        takes = ", ".join(sorted(self.single | self.repeated))
        reasons = "; ".join(one["msg"] for one in problems)
        return InvalidRequest(f"{reasons} (form fields it takes: {takes}).", problems)


class FormGuard:
    """An app-wide dependency. Starlette keeps every part of a form and FastAPI reads the
    last one of each name, and none it does not declare: `-F treshold=0.99` on verify was
    decided at the default threshold, and a second `image` or `threshold` part silently
    replaced the first (a client could override a threshold a proxy had set)."""

    def __init__(self) -> None:
        # By id, as QueryGuard does: routes define __eq__, so they cannot be dict keys.
        self._fields: dict[int, tuple[object, FormFields]] = {}

    async def __call__(self, request: Request) -> None:
        route = request.scope.get("route")
        body_field = getattr(route, "body_field", None)
        dependant = getattr(route, "dependant", None)
        if body_field is None or not isinstance(body_field.field_info, params.Form):
            return
        if not isinstance(dependant, Dependant):
            return
        # FastAPI parsed the form before it ran the dependencies; this reads its cache.
        form = await request.form()
        known = self._fields.get(id(route))
        if known is None:
            known = self._fields[id(route)] = (route, FormFields.of(dependant))
        fields = known[1]
        problems = fields.problems([name for name, _ in form.multi_items()])
        if problems:
            raise fields.refusal(problems)


def _is_list(annotation: Any) -> bool:
    """list[X], or list[X] | None."""
    return any(get_origin(a) is list for a in (annotation, *get_args(annotation)))


async def check_form(request: Request) -> None:
    """The app's FormGuard, as a dependency: after the key and media-type checks."""
    guard: FormGuard = request.app.state.form_guard
    await guard(request)
