"""The OpenAPI description, with the form rules FastAPI leaves out of multipart bodies."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

# FastAPI names the schema of each route's form body so.
_FORM_BODY = "Body_"


def tighten_openapi(app: FastAPI) -> None:
    """Publish what the service enforces on forms (app/api/form_guard.py and the routes):
    no field besides the declared ones, at least one file where a list of files is taken,
    and no empty file. A client generated from the description then refuses what the
    service would."""
    build = app.openapi

    def described() -> dict[str, Any]:
        cached = app.openapi_schema is not None
        schema = build()
        if not cached:  # FastAPI builds it once and keeps it: tighten that copy once
            schemas = schema.get("components", {}).get("schemas", {})
            for name, body in schemas.items():
                if name.startswith(_FORM_BODY):
                    _tighten_form(body)
        return schema

    app.openapi = described  # type: ignore[method-assign]


def _tighten_form(body: dict[str, Any]) -> None:
    body["additionalProperties"] = False
    for field in body.get("properties", {}).values():
        if "items" in field and _is_file(field["items"]):
            field["minItems"] = 1
            field["items"]["minLength"] = 1
        for choice in [field, *field.get("anyOf", [])]:
            if _is_file(choice):
                choice["minLength"] = 1


def _is_file(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and (
        "contentMediaType" in schema or schema.get("format") == "binary"
    )
