"""A body must come in the media type its route reads, else 415 (an upload's before it is read)."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import HTTPException, Request, params
from fastapi.dependencies.models import Dependant
from starlette.types import ASGIApp, Scope

from app.api.handlers import domain_error
from app.api.upload_routes import UploadRoute, routes_as_served
from app.errors import UnsupportedMediaType

_JSON = b"application/json"
_MULTIPART = b"multipart/form-data"
_URLENCODED = b"application/x-www-form-urlencoded"
_WIDE_MARKS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


async def check_media_type(request: Request) -> None:
    """A body in another media type than its route reads was parsed as no body at all (a
    form route finds no fields in JSON) or as raw bytes (a JSON route gets text/plain as a
    string): the client was told of a missing or invalid field rather than of its mistake.

    Reads headers only, and the route's own `body_field`: FastAPI merges a route's body
    parameters into it and makes it a File when any of them is a file, a Form when any is a
    form field, else a JSON Body.
    """
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    if body_field is None:
        return
    headers: dict[bytes, bytes] = {}
    for name, value in request.scope["headers"]:
        headers.setdefault(name, value)  # the first of repeated headers, as Starlette reads
    media = body_media(headers)
    if media is None:
        return  # the route's own validation says whether it needs a body
    info = body_field.field_info
    # A chunked body may be empty too (clients streaming from an iterator send one). FastAPI
    # has read a JSON route's body before the dependencies run, so this reads its cache.
    chunked = b"transfer-encoding" in headers
    if chunked and not isinstance(info, params.Form) and not await request.body():
        return
    if isinstance(info, params.File):  # a Form too: tested first
        if media == _MULTIPART:
            return
    elif isinstance(info, params.Form):
        if media in (_MULTIPART, _URLENCODED):
            return
    elif _is_json(media):
        check_utf8_json(await request.body())  # read already: this is FastAPI's cache
        return
    raise media_type_error(route, media)


def check_utf8_json(body: bytes) -> None:
    """400 for JSON in UTF-16 or UTF-32, which json.loads recognises (by a byte-order mark,
    or the NUL bytes of its first characters) and reads: JSON between systems is UTF-8
    (RFC 8259 8.1), whatever charset the header names, and other services would refuse it.
    A UTF-8 byte-order mark, which RFC 8259 lets a parser ignore, is taken."""
    if body.startswith(_WIDE_MARKS) or b"\x00" in body[:4]:
        raise HTTPException(400, "The JSON body is not UTF-8; send it in UTF-8.")


def body_media(headers: Mapping[bytes, bytes]) -> bytes | None:
    """The media type of a request's body, without its parameters (b"" without a
    Content-Type); None without a body, or with an empty one, as curl -d '' sends: nothing
    to misread, and the admin routes' body is optional. A chunked body counts as one."""
    length = headers.get(b"content-length")
    if b"transfer-encoding" not in headers and (length is None or not length.lstrip(b"0")):
        return None
    return headers.get(b"content-type", b"").partition(b";")[0].strip().lower()


class UploadMediaCheck:
    """The 415 of a body sent to an upload route in another media type than multipart, as
    its route would answer it, but before the body is read: the middleware held such a body
    to the JSON limit, and a photo sent raw was told 413 when over 1 MB."""

    def __init__(self, uploads: Iterable[UploadRoute]) -> None:
        self.uploads = tuple(uploads)

    def refusal(self, scope: Scope, path: str, headers: Mapping[bytes, bytes]) -> ASGIApp | None:
        """The answer refusing the request, or None to let it through. `path` is the one
        the router matches (without the root path); `headers` the first of each name."""
        media = body_media(headers)
        if media is None or media == _MULTIPART:
            return None
        method = scope["method"]
        upload = next((u for u in self.uploads if u.matches(method, path)), None)
        if upload is None:
            return None
        # The route itself names its file fields; the app that serves it is in the scope.
        routes = getattr(scope.get("app"), "routes", ())
        route = next((r for r in routes_as_served(routes) if _serves(r, upload, method)), None)
        if route is None:
            return None
        error = media_type_error(route, media)
        return domain_error(error)


def _serves(route: Any, upload: UploadRoute, method: str) -> bool:
    if getattr(route, "body_field", None) is None:
        return False
    return getattr(route, "path", None) == upload.path and method in (route.methods or ())


def _is_json(media: bytes) -> bool:
    """What FastAPI parses as JSON: application/json and application/*+json."""
    if media == _JSON:
        return True
    main, slash, sub = media.partition(b"/")
    return main == b"application" and slash == b"/" and b"/" not in sub and sub.endswith(b"+json")


def media_type_error(route: Any, media: bytes) -> UnsupportedMediaType:
    """The 415 of a body in `media` sent to `route`, naming what the route takes."""
    info = route.body_field.field_info
    # Cut short: it is the client's own header, echoed back.
    received = media[:100].decode("latin-1") if media else None
    sent = received or "a body without a Content-Type"
    if isinstance(info, params.File):
        names = _file_fields(route.dependant)
        named = " and ".join(names)
        expected = [_MULTIPART.decode()]
        takes = f"multipart/form-data with a field named {named}"
        if len(names) > 1:
            takes = f"multipart/form-data with fields named {named}"
    elif isinstance(info, params.Form):
        expected = [_MULTIPART.decode(), _URLENCODED.decode()]
        takes = " or ".join(expected)
    else:
        expected = [_JSON.decode()]
        takes = "a JSON body (Content-Type: application/json)"
    return UnsupportedMediaType(
        f"This endpoint takes {takes}, not {sent}.",
        {"expected": expected, "received": received},
    )


def _file_fields(root: Dependant) -> list[str]:
    """The route's required file fields, or all of them when none is required."""
    required: list[str] = []
    optional: list[str] = []
    stack = [root]
    while stack:
        dependant = stack.pop()
        for field in dependant.body_params:
            if isinstance(field.field_info, params.File):
                (required if field.field_info.is_required() else optional).append(field.alias)
        stack.extend(dependant.dependencies)
    return sorted(set(required or optional))
