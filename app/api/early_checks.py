"""EarlyChecks: the key role and rate limit of a request with a body, before it is read."""

# The routes' own check (app/api/deps.py require_role) runs only once FastAPI has parsed
# the body: a multipart upload of tens of MB, spooled to disk, before a 403 or a 429.

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi.dependencies.models import Dependant
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Scope

from app.api.admission import admit, client_address, known_role
from app.api.deps import CHARGED_EARLY, required_role
from app.api.handlers import domain_error
from app.api.upload_routes import routes_as_served
from app.errors import FaceServiceError, Unauthorized
from app.security import KeyRing, Role

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class RouteRole:
    """A route as the router matches it, with the role its key check asks for."""

    path: str  # the template, to read in tests and errors
    path_regex: re.Pattern[str]
    methods: frozenset[str] | None  # None: every method (a mount)
    role: Role | None  # None: the route checks no key

    def matches(self, method: str, path: str) -> bool:
        return (self.methods is None or method in self.methods) and bool(
            self.path_regex.match(path)
        )


def find_route_roles(routes: Iterable[BaseRoute]) -> tuple[RouteRole, ...]:
    """Every route among `routes` (an app's, once its routers are included), in the order
    the router tries them, with the role its dependencies ask for: the role of a new
    router comes from its AdminKey or ClientKey, with no list of paths to keep up to date."""
    found: list[RouteRole] = []
    for route in routes_as_served(routes):
        regex = getattr(route, "path_regex", None)
        if regex is None:
            continue
        methods = getattr(route, "methods", None)
        dependant = getattr(route, "dependant", None)
        role = _role_of(dependant) if isinstance(dependant, Dependant) else None
        found.append(
            RouteRole(str(route.path), regex, frozenset(methods) if methods else None, role)
        )
    return tuple(found)


def _role_of(root: Dependant) -> Role | None:
    """The strictest role the route's key checks ask for: each of them runs on it."""
    roles: set[Role] = set()
    stack = [root]
    while stack:
        dependant = stack.pop()
        role = required_role(dependant.call)
        if role is not None:
            roles.add(role)
        stack.extend(dependant.dependencies)
    return "admin" if "admin" in roles else ("client" if roles else None)


class EarlyChecks:
    """For a request with a body: 403 when its key's role may not use the route, then 429
    when it is over the rate limit, charged to the bucket the route's own check would
    charge; a request let through is marked so that the route's check charges it once."""

    def __init__(self, routes: Iterable[RouteRole]) -> None:
        self.routes = tuple(routes)

    def refusal(self, scope: Scope, path: str, key: bytes | None) -> ASGIApp | None:
        """The answer refusing the request, or None to let it through. `path` is the one
        the router matches (without the root path)."""
        if scope["method"] not in BODY_METHODS:
            return None  # the route's check answers for requests without a body
        route = next((r for r in self.routes if r.matches(scope["method"], path)), None)
        # The state is the lifespan's (app/main.py): the key ring and the limiter the
        # route's check would use. Without it (no lifespan yet) the route's check answers.
        app = scope.get("app")
        state = getattr(getattr(app, "state", None), "face", None)
        if route is None or route.role is None or state is None:
            return None
        try:
            charged = admit(
                state, key.decode("latin-1") if key else None, route.role, client_address(scope)
            )
        except FaceServiceError as error:
            return domain_error(error)
        if charged is not None:
            scope.setdefault("state", {})[CHARGED_EARLY] = charged
        return None

    @staticmethod
    def key_refusal(scope: Scope, keys: KeyRing, key: bytes | None) -> ASGIApp | None:
        """For a guard that checks a body's key before routing: 401 without a valid key, or
        429 over FACE_AUTH_FAILURE_LIMIT, its failed attempt charged once, as the route's
        check (app/api/admission.py known_role) would; and the same 429 for a valid key new to
        an address over it, whatever the path: let on, the router's 404 or 405 would tell
        a guesser its key is valid. None to let the request on."""
        text = None if key is None else key.decode("latin-1")
        state = getattr(getattr(scope.get("app"), "state", None), "face", None)
        if state is None:  # no lifespan yet: nothing to charge
            if keys.role_of(text) is None:
                return domain_error(Unauthorized("A valid X-API-Key header is required."))
            return None
        try:
            known_role(state, text, client_address(scope))
        except FaceServiceError as error:
            return domain_error(error)
        return None
