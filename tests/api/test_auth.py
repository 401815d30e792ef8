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
    spaced = {"X-API-Key": "  adm-secret-123\t"}
    assert client.post("/v1/admin/index/rebuild", headers=spaced).status_code == 200

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
    assert ring.role_of(" \tcli-secret-456 ") == "client"  # as a header may carry it
    assert ring.role_of("cli-secret-456\n") is None
    assert ring.short_keys == 2  # 14 characters each, under MIN_KEY_LENGTH
    assert KeyRing.parse("admin:a-long-random-admin-key").short_keys == 0
    with pytest.raises(ValueError, match="two roles"):
        KeyRing.parse("admin:same-key-for-both,client:same-key-for-both")
    # The same key twice for one role is harmless.
    assert KeyRing.parse("client:abcdefghijklmnopq,client:abcdefghijklmnopq").enabled
    # A header arrives as Latin-1: a key with other characters could never match.
    for key in ("clé-secrète-123456", "key-with\ttab-123456", "ключ-1234567890", " spaced-1234567"):
        with pytest.raises(ValueError, match="printable ASCII"):
            KeyRing.parse(f"admin:{key}")


def test_a_body_without_a_valid_key_is_refused_unread() -> None:
    """The guard answers 401 before the app, or the body, is touched; the routes' own
    check still decides roles."""
    import asyncio

    from app.api.middleware import GuardAndMeasure
    from app.metrics import Metrics
    from app.security import KeyRing

    reached: list[str] = []

    async def app(scope: object, receive: object, send: object) -> None:
        reached.append("app")

    async def receive() -> dict[str, object]:
        reached.append("receive")
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    guard = GuardAndMeasure(app, Metrics(), 10**9, KeyRing.parse(KEYS))

    def call(method: str, key: bytes | None) -> object:
        reached.clear()
        sent.clear()
        headers = [(b"content-type", b"multipart/form-data; boundary=b")]
        headers += [(b"x-api-key", key)] if key is not None else []
        scope = {"type": "http", "method": method, "path": "/v1/verify", "headers": headers}
        asyncio.run(guard(scope, receive, send))  # type: ignore[arg-type]
        return sent[0]["status"] if sent else None

    for key in (None, b"wrong"):
        assert call("POST", key) == 401
        assert reached == []
    assert call("POST", b"cli-secret-456") is None and reached == ["app"]
    # Whitespace around a header value is not part of it (RFC 9110 5.5); httptools keeps it.
    assert call("POST", b" cli-secret-456\t") is None and reached == ["app"]
    assert call("POST", b"cli-secret 456") == 401
    assert call("GET", None) is None and reached == ["app"]  # the route answers for itself


def test_without_keys_only_loopback_connections_are_answered() -> None:
    """However the app is served: uvicorn --host 0.0.0.0 must not open it to the network."""
    import asyncio

    from app.api.middleware import GuardAndMeasure
    from app.metrics import Metrics
    from app.security import KeyRing, is_loopback

    reached: list[bool] = []

    async def app(scope: object, receive: object, send: object) -> None:
        reached.append(True)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    guard = GuardAndMeasure(app, Metrics(), 10**6, KeyRing.parse(""))

    def status(server: tuple[str, int] | None) -> object:
        reached.clear()
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/v1/subjects", "headers": []}
        if server is not None:
            scope["server"] = server
        asyncio.run(guard(scope, receive, send))  # type: ignore[arg-type]
        return sent[0]["status"] if sent else ("app" if reached else None)

    assert status(("192.0.2.2", 8000)) == 403
    assert status(("2001:db8::1", 8000)) == 403
    for local in (("127.0.0.1", 8000), ("::1", 8000), ("::ffff:127.0.0.1", 8000)):
        assert status(local) == "app", local
    assert status(("testserver", 80)) == "app"  # not an address: an in-process client
    assert status(None) == "app"
    assert is_loopback("localhost") and not is_loopback("0.0.0.0")


def test_ready_keeps_start_up_details_from_anonymous_callers_when_keyed(
    make_client: ClientFactory,
) -> None:
    detail = "cannot read /srv/face/data/calibration.json: input_value={'model_version': 1}"
    for keys, shown in ((KEYS, "start-up failed; the service log says why"), ("", detail)):
        client = make_client(api_keys=keys)
        state = client.app.state.face  # type: ignore[attr-defined]
        runtime, state.runtime, state.startup_error = state.runtime, None, detail
        try:
            response = client.get("/v1/ready")
            assert response.status_code == 503
            assert response.json()["reason"] == shown
            # Routes that need the models say the same to any key.
            refused = client.get("/v1/admin/calibration", headers={"X-API-Key": "adm-secret-123"})
            assert refused.status_code == 503 and shown in refused.json()["error"]["message"]
        finally:
            state.runtime, state.startup_error = runtime, None


def test_ready_says_so_when_the_database_is_away(make_client: ClientFactory) -> None:
    from sqlalchemy.exc import OperationalError

    client = make_client()
    state = client.app.state.face  # type: ignore[attr-defined]
    assert client.get("/v1/ready").status_code == 200

    def unreachable() -> object:
        raise OperationalError("connect", {}, ConnectionRefusedError("refused"))

    sessions, state.sessions = state.sessions, unreachable
    try:
        response = client.get("/v1/ready")
        assert response.status_code == 503
        assert response.json()["reason"] == "the database cannot be reached"
    finally:
        state.sessions = sessions
    assert client.get("/v1/ready").status_code == 200
