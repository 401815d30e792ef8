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
