"""FACE_RATE_LIMIT over HTTP: 429 rate_limited with Retry-After, per key, after the key check."""

from __future__ import annotations

import math
import time

from tests.api.conftest import ClientFactory, assert_error

ADMIN = "admin-key-0123456789abcdef"
CLIENT = "client-key-0123456789abcdef"
OTHER = "other-client-key-0123456789"
KEYS = f"admin:{ADMIN},client:{CLIENT},client:{OTHER}"


def test_over_the_limit_gets_429_with_retry_after(make_client: ClientFactory) -> None:
    # A token every 10 s: slow enough that a busy test machine cannot refill one between
    # these requests.
    client = make_client(api_keys=KEYS, rate_limit=0.1, rate_limit_burst=2)
    mine = {"X-API-Key": CLIENT}
    for _ in range(2):
        assert client.get("/v1/subjects", headers=mine).status_code == 200
    refused = client.get("/v1/subjects", headers=mine)
    error = assert_error(refused, 429, "rate_limited")
    wait = error["details"]["retry_after_s"]
    assert 5 < wait <= 10
    assert refused.headers["Retry-After"] == str(math.ceil(wait))  # whole seconds, rounded up
    assert "rate limit of 0.1 requests a second (bursts of 2)" in error["message"]
    # Another key has its own bucket; an admin key too.
    assert client.get("/v1/subjects", headers={"X-API-Key": OTHER}).status_code == 200
    assert client.get("/v1/admin/calibration", headers={"X-API-Key": ADMIN}).status_code == 404
    # A wrong key is refused as before and spends nobody's tokens.
    assert_error(client.get("/v1/subjects", headers={"X-API-Key": "nope"}), 401, "unauthorized")
    # Health, readiness and metrics are never limited: probes must see the service.
    for _ in range(5):
        assert client.get("/v1/health").status_code == 200
    metrics = client.get("/metrics").text
    assert 'face_rate_limited_total{role="client"} 1.0' in metrics


def test_the_bucket_refills(make_client: ClientFactory) -> None:
    # A token a second: the second request comes well within it, even on a busy machine.
    client = make_client(api_keys=KEYS, rate_limit=1, rate_limit_burst=1)
    mine = {"X-API-Key": CLIENT}
    assert client.get("/v1/subjects", headers=mine).status_code == 200
    assert client.get("/v1/subjects", headers=mine).status_code == 429
    time.sleep(1.05)
    assert client.get("/v1/subjects", headers=mine).status_code == 200


def test_without_keys_it_limits_by_address_and_is_off_by_default(
    make_client: ClientFactory,
) -> None:
    client = make_client(rate_limit=0.1, rate_limit_burst=1)
    assert client.get("/v1/subjects").status_code == 200
    assert_error(client.get("/v1/subjects"), 429, "rate_limited")
    unlimited = make_client()
    assert all(unlimited.get("/v1/subjects").status_code == 200 for _ in range(30))
