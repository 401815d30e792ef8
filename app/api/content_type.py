"""check_media_type: a body must come in the media type its route reads, else 415."""

from __future__ import annotations

from fastapi import Request, params
from fastapi.dependencies.models import Dependant

from app.errors import UnsupportedMediaType

_JSON = b"application/json"
_MULTIPART = b"multipart/form-data"
_URLENCODED = b"application/x-www-form-urlencoded"


async def check_media_type(request: Request) -> None:
    """A body in another media type than its route reads was parsed as no body at all (a
    form route finds no fields in JSON) or as raw bytes (a JSON route gets text/plain as a
    string): the client was told of a missing or invalid field rather than of its mistake.

    Reads headers only, and the route's own `body_field`: FastAPI merges a route's body
    parameters into it and makes it a File when any of them is a file, a Form when any is a
    form field, else a JSON Body.
    """
    body_field = getattr(request.scope.get("route"), "body_field", None)
    if body_field is None:
        return
    content_type = length = chunked = None
    for name, value in request.scope["headers"]:
        # The first of repeated headers, as Starlette and FastAPI read them.
        if name == b"content-type":
            content_type = content_type or value
        elif name == b"content-length":
            length = length or value
        elif name == b"transfer-encoding":
            chunked = value
    # No body (or an empty one, as curl -d '' sends): nothing to misread, and the route's own
    # validation says whether it needs one; the admin routes' body is optional.
    if chunked is None and (length is None or not length.lstrip(b"0")):
        return
    info = body_field.field_info
    # A chunked body may be empty too (clients streaming from an iterator send one). FastAPI
    # has read a JSON route's body before the dependencies run, so this reads its cache.
    if chunked is not None and not isinstance(info, params.Form) and not await request.body():
        return
    media = content_type.partition(b";")[0].strip().lower() if content_type else b""
    if isinstance(info, params.File):  # a Form too: tested first
        if media == _MULTIPART:
            return
    elif isinstance(info, params.Form):
        if media in (_MULTIPART, _URLENCODED):
            return
    elif _is_json(media):
        return
    raise _refusal(request, info, media)


def _is_json(media: bytes) -> bool:
    """What FastAPI parses as JSON: application/json and application/*+json."""
    if media == _JSON:
        return True
    main, slash, sub = media.partition(b"/")
    return main == b"application" and slash == b"/" and b"/" not in sub and sub.endswith(b"+json")


def _refusal(request: Request, info: object, media: bytes) -> UnsupportedMediaType:
    # Cut short: it is the client's own header, echoed back.
    received = media[:100].decode("latin-1") if media else None
    sent = received or "a body without a Content-Type"
    if isinstance(info, params.File):
        names = _file_fields(request.scope["route"].dependant)
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
