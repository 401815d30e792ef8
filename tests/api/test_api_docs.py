"""FACE_API_DOCS: the OpenAPI description and its pages, on by default, off on request."""

from __future__ import annotations

from tests.api.conftest import ClientFactory, assert_error

PAGES = ("/openapi.json", "/docs", "/redoc")


def test_the_pages_are_served_by_default(make_client: ClientFactory) -> None:
    client = make_client(api_keys="admin:adm-secret-123456,client:cli-secret-456789")
    assert "/v1/verify" in client.get("/openapi.json").json()["paths"]
    assert all(client.get(page).status_code == 200 for page in PAGES)


def test_api_docs_false_hides_them_and_the_api_still_serves(make_client: ClientFactory) -> None:
    client = make_client(api_docs=False)
    for page in PAGES:
        assert_error(client.get(page), 404, "not_found")
    assert client.get("/v1/subjects").status_code == 200


def test_the_description_says_what_the_service_refuses(make_client: ClientFactory) -> None:
    """A contract audit (schemathesis) found answers and refusals the description left out."""
    client = make_client()
    schema = client.get("/openapi.json").json()
    paths, schemas = schema["paths"], schema["components"]["schemas"]
    # An unparsable body is a 400 on every route that reads one.
    assert "400" in paths["/v1/subjects"]["post"]["responses"]
    assert "400" in paths["/v1/detect"]["post"]["responses"]
    for path in ("/v1/health", "/v1/ready", "/v1/info"):  # query parameters are refused
        assert "422" in paths[path]["get"]["responses"], path
    assert client.get("/v1/health", params={"x": 1}).status_code == 422
    assert set(schemas["ErrorBody"]["required"]) == {"code", "message", "details"}
    # Form bodies: only the declared fields, at least one file, no empty file.
    forms = {name: body for name, body in schemas.items() if name.startswith("Body_")}
    assert len(forms) >= 4 and all(body["additionalProperties"] is False for body in forms.values())
    enrol = next(body for name, body in forms.items() if name.startswith("Body_enrol"))
    assert enrol["properties"]["files"]["minItems"] == 1
    assert enrol["properties"]["files"]["items"]["minLength"] == 1
    verify = next(body for name, body in forms.items() if name.startswith("Body_verify"))
    assert verify["properties"]["image"]["minLength"] == 1
    assert verify["properties"]["image2"]["anyOf"][0]["minLength"] == 1
    # Built once and kept, so the rules are not added twice.
    assert client.get("/openapi.json").json() == schema
