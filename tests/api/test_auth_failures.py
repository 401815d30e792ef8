"""FACE_AUTH_FAILURE_LIMIT over HTTP: missing or wrong keys get 429 per address, past a burst."""

# A token every 1000 s: none comes back during a test, however busy the machine.

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tests.api.conftest import ClientFactory, assert_error, upload

ADMIN = "admin-key-0123456789abcdef"
CLIENT = "client-key-0123456789abcdef"
OTHER = "other-client-key-0123456789"
KEYS = f"admin:{ADMIN},client:{CLIENT},client:{OTHER}"
SLOW = {"api_keys": KEYS, "auth_failure_limit": 0.001, "auth_failure_burst": 3}


def guessed(response: Any) -> dict[str, Any]:
    """The 429 a guesser gets, with its Retry-After."""
    error = assert_error(response, 429, "rate_limited")
    wait = error["details"]["retry_after_s"]
    assert 900 < wait <= 1000
    assert response.headers["Retry-After"] == str(math.ceil(wait))
    assert "limit of 0.001 requests a second without a valid X-API-Key" in error["message"]
    assert "(bursts of 3)" in error["message"]
    return error


def test_wrong_keys_get_401_up_to_the_burst_then_429(make_client: ClientFactory) -> None:
    """Before, a wrong key was answered 401 however often it was tried, FACE_RATE_LIMIT or
    not: keys could be guessed as fast as the service answered."""
    client = make_client(**SLOW, rate_limit=2, rate_limit_burst=3)
    mine = {"X-API-Key": CLIENT}
    assert client.get("/v1/subjects", headers=mine).status_code == 200
    assert_error(client.get("/v1/subjects"), 401, "unauthorized")  # a missing key counts
    for n in range(2):
        refused = client.get("/v1/subjects", headers={"X-API-Key": f"wrongkey{n}"})
        assert_error(refused, 401, "unauthorized")
    for n in range(2, 5):
        guessed(client.get("/v1/subjects", headers={"X-API-Key": f"wrongkey{n}"}))
    # The key this address was using goes on, on its own rate limit.
    assert client.get("/v1/subjects", headers=mine).status_code == 200
    # A valid key it never used gets the same answer as a wrong one: told apart, the
    # right guess would stand out. Before its role is checked, for the same reason.
    new_key = guessed(client.get("/v1/subjects", headers={"X-API-Key": OTHER}))
    wrong_key = guessed(client.get("/v1/subjects", headers={"X-API-Key": "wrongkey"}))
    assert new_key["message"].split("; retry")[0] == wrong_key["message"].split("; retry")[0]
    guessed(client.post("/v1/admin/index/rebuild", headers={"X-API-Key": OTHER}))
    # One metric label for both: /metrics is open to all.
    metrics = client.get("/metrics").text
    assert 'face_rate_limited_total{role="unauthenticated"} 6.0' in metrics


def test_a_key_of_the_wrong_role_is_no_guess(make_client: ClientFactory) -> None:
    client = make_client(**SLOW)
    for _ in range(5):
        refused = client.post("/v1/admin/index/rebuild", headers={"X-API-Key": CLIENT})
        assert_error(refused, 403, "forbidden")
    assert_error(client.get("/v1/subjects", headers={"X-API-Key": "wrong0"}), 401, "unauthorized")
    # Nor does a valid key, however often, refill or spend the failures of its address.
    for _ in range(5):
        assert client.get("/v1/subjects", headers={"X-API-Key": CLIENT}).status_code == 200
        assert client.post("/nope", headers={"X-API-Key": OTHER}).status_code == 404
    assert_error(client.get("/v1/subjects", headers={"X-API-Key": "wrong1"}), 401, "unauthorized")
    assert_error(client.get("/v1/subjects", headers={"X-API-Key": "wrong2"}), 401, "unauthorized")
    guessed(client.get("/v1/subjects", headers={"X-API-Key": "wrong3"}))


def test_a_limit_of_0_turns_it_off(make_client: ClientFactory) -> None:
    client = make_client(api_keys=KEYS, auth_failure_limit=0, auth_failure_burst=1)
    for _ in range(20):
        assert_error(client.get("/v1/subjects", headers={"X-API-Key": "x"}), 401, "unauthorized")
    assert client.get("/v1/subjects", headers={"X-API-Key": OTHER}).status_code == 200
    on = make_client(api_keys=KEYS)  # on by default
    throttle = on.app.state.face.key_guesses  # type: ignore[attr-defined]
    assert (throttle.failures.rate, throttle.failures.burst) == (1.0, 10)


def test_an_upload_refused_before_its_body_is_read_is_charged_once(
    make_client: ClientFactory, package_images: Path
) -> None:
    """Uploads without a valid key are refused by the guard middleware before routing;
    they spend the same bucket as the route's check, one token each."""
    client = make_client(**SLOW)
    mine = {"X-API-Key": CLIENT}
    created = client.post("/v1/subjects", json={"name": "Yao"}, headers=mine)
    assert created.status_code == 201, created.text
    faces = f"/v1/subjects/{created.json()['id']}/faces"
    photo = [("files", upload("yao.jpg", (package_images / "yaoming.jpg").read_bytes()))]

    def enrol(key: str | None) -> Any:
        return client.post(faces, files=photo, headers={"X-API-Key": key} if key else {})

    assert_error(enrol("wrongkey"), 401, "unauthorized")
    assert_error(enrol(None), 401, "unauthorized")
    assert_error(client.get("/v1/subjects", headers={"X-API-Key": "x"}), 401, "unauthorized")
    guessed(enrol("wrongkey2"))
    guessed(client.get("/v1/subjects", headers={"X-API-Key": "x2"}))
    guessed(enrol(OTHER))  # valid, but new to this address: refused before the body too
    enrolled = enrol(CLIENT)
    assert enrolled.status_code == 201, enrolled.text


def test_a_valid_key_new_to_a_guessing_address_gets_429_on_any_path(
    make_client: ClientFactory,
) -> None:
    """Before, a body's valid key reached the router whenever no keyed route matched: a
    wrong key got 429 and a valid one 404 or 405, telling a guesser over its limit
    which key was right, at any speed."""
    client = make_client(**SLOW)
    mine, new = {"X-API-Key": CLIENT}, {"X-API-Key": OTHER}
    assert client.post("/nope", headers=mine).status_code == 404  # CLIENT is in use here
    for n in range(3):
        assert_error(
            client.get("/v1/subjects", headers={"X-API-Key": f"w{n}"}), 401, "unauthorized"
        )
    refused = 0
    for method, path, answer in [
        ("POST", "/nope", 404),
        ("POST", "/metrics", 405),
        ("POST", "/v1/ready", 405),
        ("PUT", "/v1/subjects", 405),
        ("PATCH", "/v1/admin/calibration", 405),
        ("POST", "/v1/subjects/", 404),
    ]:
        wrong = {"X-API-Key": f"guess-{method}-{path}"}
        guessed(client.request(method, path, headers=wrong, follow_redirects=False))
        guessed(client.request(method, path, headers=new, follow_redirects=False))
        used = client.request(method, path, headers=mine, follow_redirects=False)
        assert used.status_code == answer, (method, path, used.text)
        refused += 2
    # Without a body, an open route or an unknown path answers every key alike, checking
    # none; a keyed route answers a new key as a wrong one.
    for path, answer in [("/nope", 404), ("/metrics", 200), ("/v1/ready", 200)]:
        statuses = {
            client.get(path, headers=key).status_code for key in (mine, new, {"X-API-Key": "w9"})
        }
        assert statuses == {answer}, path
    guessed(client.get("/v1/subjects", headers={"X-API-Key": "w10"}))
    guessed(client.get("/v1/subjects", headers=new))
    guessed(client.get("/v1/admin/calibration", headers=new))
    refused += 3
    # Each refusal counted once, the wrong keys charged (and refused) once each.
    metrics = client.get("/metrics").text
    assert f'face_rate_limited_total{{role="unauthenticated"}} {refused}.0' in metrics


def test_a_stale_key_retried_does_not_lock_out_its_neighbours(make_client: ClientFactory) -> None:
    """Before, each retry of the same wrong key spent a token: one client retrying a stale
    key kept its address (a NAT, a proxy) over the limit for good, and a working client
    there first seen after a restart was refused for as long."""
    client = make_client(**SLOW)
    stale = {"X-API-Key": "stale-key-0123456789abcdef"}
    for _ in range(10):
        assert_error(client.get("/v1/subjects", headers=stale), 401, "unauthorized")
        assert_error(
            client.post("/v1/subjects", json={"name": "A"}, headers=stale), 401, "unauthorized"
        )
        assert_error(client.get("/v1/subjects"), 401, "unauthorized")  # missing: one value
        assert_error(client.post("/v1/subjects", json={"name": "A"}), 401, "unauthorized")
    # Two of the three tokens spent: a new valid key is let in, and then known.
    assert client.get("/v1/subjects", headers={"X-API-Key": OTHER}).status_code == 200
    # Distinct wrong keys still run the bucket out.
    assert_error(client.get("/v1/subjects", headers={"X-API-Key": "guess-1"}), 401, "unauthorized")
    guessed(client.get("/v1/subjects", headers={"X-API-Key": "guess-2"}))
    # A guess answered 429 was not charged nor noted: retried, it is still answered as a
    # valid new key would be, not with a 401 that would tell it apart.
    guessed(client.get("/v1/subjects", headers={"X-API-Key": "guess-2"}))
    guessed(client.get("/v1/subjects", headers={"X-API-Key": CLIENT}))
    assert_error(client.get("/v1/subjects", headers=stale), 401, "unauthorized")
    assert client.get("/v1/subjects", headers={"X-API-Key": OTHER}).status_code == 200
