"""Subject CRUD over HTTP on a real SQLite file."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import assert_error, enrol, new_subject


def test_create_read_update_delete(client: TestClient) -> None:
    created = client.post("/v1/subjects", json={"name": "Ada", "metadata": {"badge": 7}})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "Ada" and body["metadata"] == {"badge": 7} and body["face_count"] == 0
    assert {"id", "created_at"} <= set(body)

    fetched = client.get(f"/v1/subjects/{body['id']}").json()
    assert fetched["name"] == "Ada"

    patched = client.patch(f"/v1/subjects/{body['id']}", json={"name": "Ada L."})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Ada L." and patched.json()["metadata"] == {"badge": 7}

    assert client.delete(f"/v1/subjects/{body['id']}").status_code == 204
    assert_error(client.get(f"/v1/subjects/{body['id']}"), 404, "subject_not_found")
    assert_error(client.delete(f"/v1/subjects/{body['id']}"), 404, "subject_not_found")


def test_list_paginates_and_filters(client: TestClient) -> None:
    for name in ["alice", "bob", "alicia", "carol"]:
        new_subject(client, name)
    page = client.get("/v1/subjects", params={"limit": 2, "offset": 0}).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    rest = client.get("/v1/subjects", params={"limit": 2, "offset": 2}).json()
    names = {s["name"] for s in page["items"]} | {s["name"] for s in rest["items"]}
    assert names == {"alice", "bob", "alicia", "carol"}
    filtered = client.get("/v1/subjects", params={"name": "ALI"}).json()
    assert sorted(s["name"] for s in filtered["items"]) == ["alice", "alicia"]


def test_a_cursor_continues_where_the_page_ended_when_earlier_subjects_are_deleted(
    client: TestClient,
) -> None:
    ids = [new_subject(client, name) for name in ["a", "b", "c", "d", "e"]]
    first = client.get("/v1/subjects", params={"limit": 2}).json()
    assert [s["id"] for s in first["items"]] == ids[:2] and first["next_after"]
    for gone in ids[:2]:  # the page just read, cursor subject included
        assert client.delete(f"/v1/subjects/{gone}").status_code == 204
    # An offset of 2 would now skip c and d.
    skipped = client.get("/v1/subjects", params={"limit": 2, "offset": 2}).json()
    assert [s["id"] for s in skipped["items"]] == ids[4:]
    second = client.get("/v1/subjects", params={"limit": 2, "after": first["next_after"]})
    assert second.status_code == 200, second.text
    assert [s["id"] for s in second.json()["items"]] == ids[2:4]
    assert second.json()["total"] == 3
    last = client.get("/v1/subjects", params={"limit": 2, "after": second.json()["next_after"]})
    assert [s["id"] for s in last.json()["items"]] == ids[4:]
    assert last.json()["next_after"] is None
    # With a name filter the cursor keeps its place in the same order.
    named = client.get("/v1/subjects", params={"name": "e", "after": first["next_after"]})
    assert [s["id"] for s in named.json()["items"]] == ids[4:]


def test_a_subject_cursor_that_is_not_one_is_refused(client: TestClient) -> None:
    # Also run on PostgreSQL (tests/postgres/test_api.py).
    face_cursor = "5"
    made_up = [  # a 500 before (a review): past the calendar in UTC; a NUL on PostgreSQL
        "OTk5OS0xMi0zMVQyMzo1OTo1OS0wNTowMHx4",
        "MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHx4",
        "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHwA",
    ]
    for after in ["", "%%%", "bm90IGEgY3Vyc29y", face_cursor, "MjAyNi0xMS0yOHw", *made_up]:
        error = assert_error(
            client.get("/v1/subjects", params={"after": after}), 422, "invalid_request"
        )
        assert error["details"][0]["loc"] == ["query", "after"], after
    error = assert_error(
        client.get("/v1/subjects", params={"after": "x" * 201}), 422, "invalid_request"
    )
    assert error["details"][0]["loc"] == ["query", "after"]


def test_name_filter_ignores_case_beyond_ascii(client: TestClient) -> None:
    # Also run on PostgreSQL (tests/postgres/test_api.py).
    longest = "\ufdfa" * 255  # NFKC makes each of these 18 characters
    decomposed = "Rene\u0301e"  # e + U+0301, as macOS and iOS keyboards send accents
    family = "👩\u200d👩\u200d👧 Family"
    for name in ["Élodie", "ÇAĞLA", "Straße", "elodie-ascii", "Zoë Café", decomposed]:
        new_subject(client, name)
    for name in ["Σωκράτης", "王小明", "ＡＤＡ", family, longest]:
        new_subject(client, name)

    def found(query: str) -> list[str]:
        page = client.get("/v1/subjects", params={"name": query}).json()
        return sorted(s["name"] for s in page["items"])

    assert found("élodie") == found("ÉLODIE") == ["elodie-ascii", "Élodie"]  # accents too
    assert found("çağla") == ["ÇAĞLA"]
    assert found("STRASSE") == ["Straße"]  # casefold(), not lower()
    assert found("100%") == []
    # NFKC: composed and decomposed accents match both ways; names come back as sent.
    assert found("Cafe\u0301") == found("café") == ["Zoë Café"]
    assert found("RENÉE") == found("rene\u0301e") == [decomposed]
    assert found("ΣΩΚΡΆΤΗΣ") == ["Σωκράτης"]
    assert found("小明") == ["王小明"]
    assert found("ada") == ["ＡＤＡ"]
    assert found("👩\u200d👧") == found("FAMILY") == [family]
    assert found("\ufdfa" * 3) == [longest]


def test_name_filter_ignores_accents_both_ways(client: TestClient) -> None:
    accented = ["José Ruiz", "Björk", "François", "Łukasz", "Nguyễn Đức", "Jose\u0301 Lee"]
    plain = ["Jose Diaz", "Bjorn", "Francoise"]
    for name in [*accented, *plain, "がっこう", "かっこう", "कुमार"]:
        new_subject(client, name)

    def found(query: str) -> list[str]:
        page = client.get("/v1/subjects", params={"name": query}).json()
        return sorted(s["name"] for s in page["items"])

    # An unaccented query finds the accented names, and an accented one the plain names.
    assert found("jose") == found("JOSÉ") == ["Jose Diaz", "Jose\u0301 Lee", "José Ruiz"]
    assert found("Bjork") == ["Björk"]
    assert found("Björn") == ["Bjorn"]
    assert found("Francois") == ["Francoise", "François"]
    assert found("françoise") == ["Francoise"]
    assert found("Lukasz") == ["Łukasz"]
    assert found("nguyen duc") == ["Nguyễn Đức"]
    # Each name is found by itself, as sent and in the other encoding of its accents.
    for name in accented + plain:
        assert name in found(name) and name in found(unicodedata.normalize("NFD", name))
    # Marks that make another name in other scripts still count.
    assert found("がっこう") == ["がっこう"]
    assert found("かっこう") == ["かっこう"]
    assert found("कमार") == []


def test_validation_errors_have_one_shape(client: TestClient) -> None:
    assert_error(client.post("/v1/subjects", json={}), 422, "invalid_request")
    assert_error(client.post("/v1/subjects", json={"name": ""}), 422, "invalid_request")
    bad_json = {"Content-Type": "application/json"}
    assert_error(
        client.post("/v1/subjects", content=b"{not json", headers=bad_json), 422, "invalid_request"
    )
    assert_error(client.get("/v1/subjects", params={"limit": 0}), 422, "invalid_request")
    assert_error(client.get("/v1/nowhere"), 404, "not_found")


def test_names_that_show_nothing_or_could_spoof_are_refused(client: TestClient) -> None:
    subject = new_subject(client, "Ada")
    for name, reason in [
        ("", "name must not be empty"),
        ("   ", "at least one visible character"),
        ("\u200b", "at least one visible character"),
        ("\u200d\u200c", "at least one visible character"),
        ("Ada\nLovelace", "control characters or line breaks (U+000A)"),
        ("Ada\x07", "control characters or line breaks (U+0007)"),
        ("Ada\u2028", "control characters or line breaks (U+2028)"),
        ("Ada\u202eecilA", "bidirectional override or isolate characters (U+202E)"),
        ("\u2066Ada\u2069", "bidirectional override or isolate characters (U+2066)"),
    ]:
        for response in (
            client.post("/v1/subjects", json={"name": name}),
            client.patch(f"/v1/subjects/{subject}", json={"name": name}),
        ):
            error = assert_error(response, 422, "invalid_request")
            # The reason is in the message too: the import's report shows only that.
            assert error["message"].startswith("Invalid request: name (name must")
            assert reason in error["message"], (name, error)
            assert error["details"][0]["loc"] == ["body", "name"]
            assert reason in error["details"][0]["msg"], (name, error)
    listed = client.get("/v1/subjects").json()
    assert [s["name"] for s in listed["items"]] == ["Ada"]


def test_names_in_any_script_are_kept_exactly_as_sent(client: TestClient) -> None:
    names = [
        "Σωκράτης",
        "Straße",
        "Çağla Işıl",
        "王小明",
        "👩\u200d👩\u200d👧",  # ZWJ sequence
        "می\u200cخواهم",  # Persian, with a ZWNJ
        "Zoe\u0308",  # decomposed: not normalised on the way in
        " Ada ",  # spaces at the ends are kept, as the importer matches names exactly
    ]
    for name in names:
        created = client.post("/v1/subjects", json={"name": name})
        assert created.status_code == 201, (name, created.text)
        assert created.json()["name"] == name
        fetched = client.get(f"/v1/subjects/{created.json()['id']}").json()
        assert fetched["name"] == name
        patched = client.patch(f"/v1/subjects/{created.json()['id']}", json={"name": name + "!"})
        assert patched.status_code == 200 and patched.json()["name"] == name + "!"


def test_patch_refuses_null_and_keeps_the_subject(client: TestClient) -> None:
    created = client.post("/v1/subjects", json={"name": "Ada", "metadata": {"badge": 7}})
    subject = created.json()["id"]
    for body, reason in [
        ({"name": None}, "name must not be null"),
        ({"metadata": None}, "metadata must not be null: send {} to clear the metadata"),
        ({"name": "Ada King", "metadata": None}, "send {} to clear the metadata"),
    ]:
        error = assert_error(
            client.patch(f"/v1/subjects/{subject}", json=body), 422, "invalid_request"
        )
        assert reason in error["details"][0]["msg"], error
    assert_error(client.post("/v1/subjects", json={"name": None}), 422, "invalid_request")
    unchanged = client.get(f"/v1/subjects/{subject}").json()
    assert (unchanged["name"], unchanged["metadata"]) == ("Ada", {"badge": 7})
    # Leaving a field out keeps it; {} clears the metadata.
    kept = client.patch(f"/v1/subjects/{subject}", json={})
    assert kept.status_code == 200 and kept.json()["metadata"] == {"badge": 7}
    cleared = client.patch(f"/v1/subjects/{subject}", json={"metadata": {}})
    assert cleared.status_code == 200
    assert (cleared.json()["name"], cleared.json()["metadata"]) == ("Ada", {})


def test_the_published_schema_allows_no_null_in_a_patch(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    update = schemas["SubjectUpdate"]["properties"]
    assert update["name"]["type"] == "string" and update["name"]["minLength"] == 1
    assert update["metadata"]["type"] == "object"
    assert "anyOf" not in update["name"] and "anyOf" not in update["metadata"]
    assert schemas["SubjectCreate"]["properties"]["name"]["maxLength"] == 255


def test_broken_json_is_reported_as_such(client: TestClient) -> None:
    error = assert_error(
        client.post(
            "/v1/subjects", content=b'{"name":', headers={"content-type": "application/json"}
        ),
        422,
        "invalid_request",
    )
    assert error["message"].startswith("The request body is not valid JSON:")
    assert "at character 8" in error["message"]


def test_metadata_that_could_not_be_served_back_is_refused(client: TestClient) -> None:
    # Deeper than pydantic serialises: it used to be stored, then break every listing.
    deep: object = 1
    for _ in range(300):
        deep = {"a": deep}
    allowed: object = 1
    for _ in range(16):
        allowed = {"a": allowed}
    headers = {"content-type": "application/json"}
    for metadata in ({"a": deep}, {"a": float("nan")}, {"a": float("inf")}, {"a": "x" * 70_000}):
        body = json.dumps({"name": "refused", "metadata": metadata})  # NaN as JSON's NaN
        assert_error(
            client.post("/v1/subjects", content=body, headers=headers), 422, "invalid_request"
        )
    assert client.get("/v1/subjects").json()["total"] == 0

    subject = client.post("/v1/subjects", json={"name": "ok", "metadata": allowed})
    assert subject.status_code == 201, subject.text
    subject_id = subject.json()["id"]
    patch = json.dumps({"metadata": {"a": deep}})
    assert_error(
        client.patch(f"/v1/subjects/{subject_id}", content=patch, headers=headers),
        422,
        "invalid_request",
    )
    listed = client.get("/v1/subjects")
    assert listed.status_code == 200
    assert listed.json()["items"][0]["metadata"] == allowed


def test_ids_and_offsets_beyond_a_database_integer_are_refused(client: TestClient) -> None:
    subject = new_subject(client, "Ada")
    too_big = 2**63
    assert client.get("/v1/subjects", params={"offset": too_big - 1}).status_code == 200
    assert_error(client.get("/v1/subjects", params={"offset": too_big}), 422, "invalid_request")
    assert_error(client.delete(f"/v1/subjects/{subject}/faces/{too_big}"), 422, "invalid_request")
    assert_error(
        client.delete(f"/v1/subjects/{subject}/faces/{too_big - 1}"), 404, "face_not_found"
    )


def test_delete_subject_removes_faces_from_db_and_index(
    client: TestClient, package_images: Path
) -> None:
    subject = new_subject(client, "Yao Ming")
    assert enrol(client, subject, ("yao.jpg", (package_images / "yaoming.jpg").read_bytes()))
    assert client.get("/v1/info").json()["index_size"] == 1
    assert client.get(f"/v1/subjects/{subject}").json()["face_count"] == 1

    assert client.delete(f"/v1/subjects/{subject}").status_code == 204
    info = client.get("/v1/info").json()
    assert info["index_size"] == 0 and info["faces"] == 0
    players = (package_images / "players.jpg").read_bytes()
    found = client.post("/v1/identify", files={"image": ("p.jpg", players)}).json()
    assert all(face["candidates"] == [] for face in found["faces"])


def test_nul_characters_are_refused_and_the_service_keeps_serving(client: TestClient) -> None:
    # PostgreSQL cannot store NUL, so every backend refuses it with the same 422.
    for body in (
        {"name": "Ada\x00"},
        {"name": "Ada", "metadata": {"badge": "4\x002"}},
        {"name": "Ada", "metadata": {"k\x00": 1}},
        {"name": "Ada", "metadata": {"tags": ["ok", {"deep": "\x00"}]}},
    ):
        assert_error(client.post("/v1/subjects", json=body), 422, "invalid_request")
    subject = new_subject(client, "Ada")
    assert_error(
        client.patch(f"/v1/subjects/{subject}", json={"name": "\x00"}), 422, "invalid_request"
    )
    in_path = assert_error(client.get("/v1/subjects/a%00b"), 422, "invalid_request")
    in_query = client.get("/v1/subjects", params={"name": "\x00", "li\x00mit": "3"})
    assert [problem["loc"] for problem in in_path["details"]] == [["path"]]
    assert [p["loc"] for p in assert_error(in_query, 422, "invalid_request")["details"]] == [
        ["query", "name"],
        ["query", "limit"],
    ]
    # Longer than any name: a 422, not the database's "pattern too complex" (a 503).
    for query in ("a" * 256, "_" * 50_000):
        assert_error(client.get("/v1/subjects", params={"name": query}), 422, "invalid_request")
    assert client.get("/v1/subjects", params={"name": "_" * 255}).json()["total"] == 0
    verify = client.post(
        "/v1/verify", files={"image": ("probe.jpg", b"x")}, data={"subject_id": "\x00"}
    )
    assert_error(verify, 422, "invalid_request")
    # Nothing was stored, and the service still answers.
    listed = client.get("/v1/subjects").json()
    assert [s["name"] for s in listed["items"]] == ["Ada"]
    assert client.get(f"/v1/subjects/{subject}").status_code == 200
