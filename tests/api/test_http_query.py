"""Query parameters a route does not declare are refused, not ignored (app/api/query_guard.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Query
from fastapi.testclient import TestClient

from app.api.query_guard import check_query
from tests.api.conftest import ClientFactory, api_routes, assert_error, enrol, new_subject


def _page(cursor: Annotated[str | None, Query()] = None) -> str | None:
    return cursor


def listing(cursor: Annotated[str | None, Depends(_page)], size: int = 10) -> dict[str, object]:
    """A route some later change could add, whose dependency reads the query."""
    return {"cursor": cursor, "size": size}


def refused(response: object, name: str) -> str:
    """The refusal's message, after checking it names `name` as the parameter at fault."""
    error = assert_error(response, 422, "invalid_request")
    assert ["query", name] in [problem["loc"] for problem in error["details"]], error
    message: str = error["message"]
    return message


def test_verify_refuses_a_threshold_sent_in_the_query(
    client: TestClient, yao: str, package_images: Path
) -> None:
    """It was ignored: the request was verified at the default threshold (0.26)."""
    probe = {"image": ("y.jpg", (package_images / "yaoming.jpg").read_bytes())}
    response = client.post(
        "/v1/verify", params={"threshold": 0.99}, data={"subject_id": yao}, files=probe
    )
    message = refused(response, "threshold")
    assert "threshold is a form field of this endpoint, not a query parameter" in message
    # As a form field it is the threshold the decision uses.
    strict = client.post("/v1/verify", data={"subject_id": yao, "threshold": 0.99}, files=probe)
    assert strict.status_code == 200, strict.text
    assert strict.json()["threshold"] == 0.99


def test_identify_refuses_its_form_fields_in_the_query_and_honours_top_k(
    client: TestClient, yao: str, package_images: Path
) -> None:
    players = {"image": ("p.jpg", (package_images / "players.jpg").read_bytes())}
    for name, value in (("max_faces", 1), ("threshold", 0.9)):
        response = client.post("/v1/identify", params={name: value}, files=players)
        message = refused(response, name)
        assert f"{name} is a form field of this endpoint, not a query parameter" in message
        assert "query parameters it takes: top_k" in message
    # A second enrolled subject, so that top_k=1 has one to leave out.
    team = ("gdp.jpg", (package_images / "gdp.jpg").read_bytes())
    assert enrol(client, new_subject(client, "Speaker"), team, face="largest").status_code == 201
    answer = client.post("/v1/identify", params={"top_k": 1}, files=players)
    assert answer.status_code == 200, answer.text
    assert all(len(face["candidates"]) == 1 for face in answer.json()["faces"])


def test_every_route_refuses_an_unknown_parameter_before_acting(
    client: TestClient, yao: str
) -> None:
    faces = client.get(f"/v1/subjects/{yao}/faces").json()["faces"]
    routes = [
        ("GET", "/v1/health"),
        ("HEAD", "/v1/health"),
        ("GET", "/v1/ready"),
        ("GET", "/v1/info"),
        ("GET", "/metrics"),
        ("GET", "/v1/subjects"),
        ("POST", "/v1/subjects"),
        ("GET", f"/v1/subjects/{yao}"),
        ("PATCH", f"/v1/subjects/{yao}"),
        ("DELETE", f"/v1/subjects/{yao}"),
        ("GET", f"/v1/subjects/{yao}/faces"),
        ("POST", f"/v1/subjects/{yao}/faces"),
        ("DELETE", f"/v1/subjects/{yao}/faces/{faces[0]['id']}"),
        ("POST", "/v1/verify"),
        ("POST", "/v1/identify"),
        ("POST", "/v1/detect"),
        ("POST", "/v1/admin/index/rebuild"),
        ("POST", "/v1/admin/calibrate"),
        ("GET", "/v1/admin/calibration"),
        ("DELETE", "/v1/admin/calibration"),
        ("POST", "/v1/admin/finetune"),
        ("GET", "/v1/admin/jobs"),
        ("GET", "/v1/admin/jobs/some-job"),
        ("DELETE", "/v1/admin/jobs/some-job"),
        ("GET", "/v1/admin/models"),
        ("POST", "/v1/admin/models/some-model/activate"),
        ("DELETE", "/v1/admin/models/some-model"),
    ]
    for method, path in routes:
        response = client.request(method, path, params={"dry_run": "1"})
        if method == "HEAD":
            assert response.status_code == 422, path
            continue
        message = refused(response, "dry_run")
        assert message.startswith("dry_run is not a query parameter of this endpoint"), path
    # Nothing was done: the subject and its face are still there, and no job was started.
    assert client.get(f"/v1/subjects/{yao}/faces").json()["faces"] == faces
    assert client.get("/v1/admin/jobs").json()["jobs"] == []


def test_the_declared_parameters_of_clients_and_the_readme_still_work(
    client: TestClient, yao: str, package_images: Path
) -> None:
    # README: /v1/subjects?limit=50&offset=0&name=ada; the import client adds the same.
    listed = client.get("/v1/subjects", params={"limit": 50, "offset": 0, "name": "yao"})
    assert listed.status_code == 200 and listed.json()["total"] == 1
    # README and the import client: enrolment with ?face=largest.
    team = ("gdp.jpg", (package_images / "gdp.jpg").read_bytes())
    assert enrol(client, new_subject(client, "Speaker"), team, face="largest").status_code == 201
    # docs/finetuning.md: /v1/admin/jobs?limit=50.
    assert client.get("/v1/admin/jobs", params={"limit": 50}).status_code == 200
    # Verify's face policy may come in the query (a form field too).
    probe = {"image": ("y.jpg", (package_images / "yaoming.jpg").read_bytes())}
    same = client.post(
        "/v1/verify", params={"face": "largest"}, data={"subject_id": yao}, files=probe
    )
    assert same.status_code == 200 and same.json()["verified"] is True


def test_the_message_says_where_a_misplaced_name_belongs(client: TestClient, yao: str) -> None:
    renamed = client.patch(f"/v1/subjects/{yao}", params={"name": "X"}, json={"metadata": {}})
    assert "name is a JSON body field of this endpoint" in refused(renamed, "name")
    got = client.get(f"/v1/subjects/{yao}", params={"subject_id": yao})
    message = refused(got, "subject_id")
    assert message == (
        "subject_id is a path parameter of this endpoint, not a query parameter"
        " (it takes no query parameters)."
    )
    assert client.get(f"/v1/subjects/{yao}").json()["name"] == "Yao Ming"
    # Several at once are all named.
    both = client.get("/v1/subjects", params={"limit": 5, "a": 1, "b": 2})
    error = assert_error(both, 422, "invalid_request")
    assert [problem["loc"] for problem in error["details"]] == [["query", "a"], ["query", "b"]]
    assert "query parameters it takes: after, limit, name, offset" in error["message"]


def test_the_declared_names_follow_the_route_and_its_dependencies(client: TestClient) -> None:
    """Read from the route itself: a route added later, with a dependency of its own that
    reads the query, takes that dependency's parameter and refuses others."""
    client.app.add_api_route(  # type: ignore[attr-defined]
        "/listing", listing, dependencies=[Depends(check_query)]
    )
    answer = client.get("/listing", params={"cursor": "c", "size": 3})
    assert answer.json() == {"cursor": "c", "size": 3}
    message = refused(client.get("/listing", params={"limit": 3}), "limit")
    assert message.endswith("(query parameters it takes: cursor, size).")


def test_the_key_is_checked_before_the_query(make_client: ClientFactory) -> None:
    """A caller without the right key gets 401 or 403, and learns nothing of a route's
    query parameters; only with the right key is an unknown one a 422."""
    client = make_client(api_keys="admin:adm-secret-123,client:cli-secret-456")
    path = "/v1/admin/jobs?bogus=1"
    assert_error(client.get(path), 401, "unauthorized")
    assert_error(client.get(path, headers={"X-API-Key": "cli-secret-456"}), 403, "forbidden")
    refused(client.get(path, headers={"X-API-Key": "adm-secret-123"}), "bogus")
    assert_error(client.get("/v1/subjects?bogus=1"), 401, "unauthorized")
    refused(client.get("/v1/health?bogus=1"), "bogus")  # no key needed: checked at once


def test_every_route_checks_its_query(client: TestClient) -> None:
    """Each router runs the check, after its key check: a router added without it would
    ignore unknown parameters again."""
    unguarded, checked = [], 0
    for route in api_routes(client):
        checked += 1
        stack, calls = [route.dependant], []
        while stack:
            dependant = stack.pop()
            calls.append(getattr(dependant.call, "__qualname__", ""))
            stack.extend(dependant.dependencies)
        if not any(c in ("check_query", "require_role.<locals>.check") for c in calls):
            unguarded.append(route.path)
    assert checked >= 20 and unguarded == []


def test_a_setting_given_in_both_the_query_and_the_form_must_agree(
    client: TestClient, yao: str, package_images: Path
) -> None:
    """top_k and face may come either way. Before, identify took the query's top_k and
    verify the form's face, each silently dropping the other value."""
    players = {"image": ("p.jpg", (package_images / "players.jpg").read_bytes())}
    # A second enrolled subject, so that top_k=1 has one to leave out.
    team = ("gdp.jpg", (package_images / "gdp.jpg").read_bytes())
    assert enrol(client, new_subject(client, "Speaker"), team, face="largest").status_code == 201
    clash = client.post("/v1/identify", params={"top_k": 1}, data={"top_k": 2}, files=players)
    error = assert_error(clash, 422, "invalid_request")
    assert error["message"] == (
        "top_k is given twice, as 2 in the form and 1 in the query; give it once."
    )
    assert [(d["loc"], d["type"]) for d in error["details"]] == [
        (["body", "top_k"], "conflicting_value"),
        (["query", "top_k"], "conflicting_value"),
    ]
    agreed = client.post("/v1/identify", params={"top_k": 1}, data={"top_k": 1}, files=players)
    assert agreed.status_code == 200, agreed.text
    assert all(len(face["candidates"]) == 1 for face in agreed.json()["faces"])
    as_form = client.post("/v1/identify", data={"top_k": "1"}, files=players)
    assert all(len(face["candidates"]) == 1 for face in as_form.json()["faces"])
    default = client.post("/v1/identify", files=players)
    assert {len(face["candidates"]) for face in default.json()["faces"]} == {2}  # all there are
    probe = {"image": ("y.jpg", (package_images / "yaoming.jpg").read_bytes())}
    policies = client.post(
        "/v1/verify",
        params={"face": "largest"},
        data={"subject_id": yao, "face": "center"},
        files=probe,
    )
    error = assert_error(policies, 422, "invalid_request")
    assert error["message"] == (
        "face is given twice, as center in the form and largest in the query; give it once."
    )


def test_a_query_parameter_sent_twice_is_refused(
    client: TestClient, yao: str, package_images: Path
) -> None:
    """Starlette keeps both values and FastAPI read the last: ?top_k=1&top_k=2 gave 2."""
    players = {"image": ("p.jpg", (package_images / "players.jpg").read_bytes())}
    twice = client.post("/v1/identify?top_k=1&top_k=2", files=players)
    error = assert_error(twice, 422, "invalid_request")
    assert error["details"] == [
        {
            "loc": ["query", "top_k"],
            "msg": "top_k was sent 2 times; this endpoint takes one",
            "type": "repeated_field",
        }
    ]
    assert error["message"].endswith("(query parameters it takes: top_k).")
    listed = client.get("/v1/subjects?limit=5&name=yao&limit=5")
    assert refused(listed, "limit").startswith("limit was sent 2 times")
    assert client.get("/v1/subjects?limit=5&name=yao").json()["total"] == 1
