"""API keys: client and admin roles, 401 without a key, 403 for the wrong role."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import ClientFactory, assert_error

KEYS = "admin:adm-secret-123,client:cli-secret-456"


def test_roles(make_client: ClientFactory) -> None:
    client: TestClient = make_client(api_keys=KEYS)
    assert_error(client.get("/v1/subjects"), 401, "unauthorized")
    assert_error(client.get("/v1/subjects", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
    assert client.get("/v1/subjects", headers={"X-API-Key": "cli-secret-456"}).status_code == 200
    assert client.get("/v1/subjects", headers={"X-API-Key": "adm-secret-123"}).status_code == 200

    rebuild = "/v1/admin/index/rebuild"
    assert_error(client.post(rebuild), 401, "unauthorized")
    assert_error(client.post(rebuild, headers={"X-API-Key": "cli-secret-456"}), 403, "forbidden")
    done = client.post(rebuild, headers={"X-API-Key": "adm-secret-123"})
    assert done.status_code == 200 and done.json()["size"] == 0

    assert client.get("/v1/health").status_code == 200
    assert client.get("/v1/info").json()["auth_enabled"] is True


def test_bad_key_spec_is_refused() -> None:
    import pytest

    from app.security import KeyRing

    with pytest.raises(ValueError):
        KeyRing.parse("superuser:abc")
    ring = KeyRing.parse(KEYS)
    assert ring.role_of("adm-secret-123") == "admin"
    assert ring.role_of("cli-secret-456") == "client"
    assert ring.role_of(None) is None
