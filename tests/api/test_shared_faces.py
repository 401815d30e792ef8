"""Real accuracy over HTTP on ../shared/faces: labelled pairs, identification, group photos."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import assert_error, enrol, new_subject, open_client

SPECIAL = {"noface", "multi"}


@pytest.fixture(scope="module")
def gallery_client(tmp_path_factory: pytest.TempPathFactory, models: Any) -> Iterator[TestClient]:
    client = open_client(tmp_path_factory.mktemp("shared") / "data", models)
    yield client
    client.__exit__(None, None, None)


def photo(root: Path, relative: str) -> tuple[str, bytes]:
    return (Path(relative).name, (root / relative).read_bytes())


def by_identity(manifest: list[dict[str, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for row in manifest:
        if row["identity"] not in SPECIAL:
            groups[row["identity"]].append(row["path"])
    return groups


def enrol_each_image(client: TestClient, root: Path, paths: set[str]) -> dict[str, str | None]:
    """One subject per image, so each pair is one verify call against a subject."""
    subjects: dict[str, str | None] = {}
    for path in sorted(paths):
        subject = new_subject(client, f"image {path}")
        response = enrol(client, subject, photo(root, path))
        subjects[path] = subject if response.status_code == 201 else None
    return subjects


def test_verification_accuracy_on_labelled_pairs(
    gallery_client: TestClient, shared_faces: Path
) -> None:
    with (shared_faces / "pairs.csv").open() as handle:
        pairs = [(r["path_a"], r["path_b"], r["same"] == "1") for r in csv.DictReader(handle)]
    subjects = enrol_each_image(
        gallery_client, shared_faces, {p for a, b, _ in pairs for p in (a, b)}
    )
    correct = scored = no_face = 0
    for a, b, same in pairs:
        probe, reference = (a, b) if subjects[b] else (b, a)
        if subjects[reference]:
            response = gallery_client.post(
                "/v1/verify",
                data={"subject_id": subjects[reference]},
                files={"image": photo(shared_faces, probe)},
            )
        else:
            response = gallery_client.post(
                "/v1/verify",
                files={"image": photo(shared_faces, a), "image2": photo(shared_faces, b)},
            )
        if response.status_code == 422 and response.json()["error"]["code"] == "no_face":
            no_face += 1
            continue
        assert response.status_code == 200, response.text
        scored += 1
        correct += response.json()["verified"] == same
    accuracy = correct / scored
    print(f"\nverify: {correct}/{scored} pairs right = {accuracy:.4f}; {no_face} pairs no face")
    assert scored >= 0.95 * len(pairs)
    assert accuracy >= 0.95


def test_identify_rank1_and_strangers(
    make_client: Any, shared_faces: Path, manifest: list[dict[str, str]]
) -> None:
    client: TestClient = make_client()
    groups = by_identity(manifest)
    probes: list[tuple[str, str | None]] = []
    for identity, paths in sorted(groups.items()):
        if len(paths) < 3:
            probes += [(path, None) for path in paths]  # strangers: never enrolled
            continue
        subject = new_subject(client, identity)
        enrolled = 0
        for path in paths:
            if (
                enrolled < 2
                and enrol(client, subject, photo(shared_faces, path)).status_code == 201
            ):
                enrolled += 1
            else:
                probes.append((path, subject))
        assert enrolled >= 1, identity
    hits = known = strangers = false_matches = 0
    for path, expected in probes:
        response = client.post(
            "/v1/identify", files={"image": photo(shared_faces, path)}, data={"max_faces": "1"}
        )
        if response.status_code == 422:
            continue  # no face found: counted by the verification test
        (face,) = response.json()["faces"]
        if expected is None:
            strangers += 1
            false_matches += face["match"] is not None
        else:
            known += 1
            hits += bool(face["candidates"]) and face["candidates"][0]["subject_id"] == expected
    print(
        f"\nidentify: rank-1 {hits}/{known} = {hits / known:.4f}; "
        f"strangers matched {false_matches}/{strangers}"
    )
    assert known >= 40 and hits / known >= 0.90
    assert false_matches / strangers <= 0.2


def test_no_face_and_group_photos_are_refused(
    client: TestClient, shared_faces: Path, manifest: list[dict[str, str]]
) -> None:
    subject = new_subject(client, "anyone")
    for row in manifest:
        if row["identity"] == "noface":
            assert_error(enrol(client, subject, photo(shared_faces, row["path"])), 422, "no_face")
        elif row["identity"] == "multi":
            response = enrol(client, subject, photo(shared_faces, row["path"]))
            assert_error(response, 422, "multiple_faces")
    assert client.get(f"/v1/subjects/{subject}").json()["face_count"] == 0


def _rule(policy: str, face: dict[str, Any], width: int, height: int) -> tuple[float, ...]:
    x1, y1, x2, y2 = face["box"]
    area = (x2 - x1) * (y2 - y1)
    offset = ((x1 + x2) / 2 - width / 2) ** 2 + ((y1 + y2) / 2 - height / 2) ** 2
    quality = face["quality"]
    return {
        "largest": (area,),
        "center": (-offset,),
        "prominent": (area - 2.0 * offset,),
        "best": (quality["passed"], round(face["probability"], 2), quality["face_size"]),
    }[policy]


@pytest.mark.parametrize("policy", ["prominent", "largest", "center", "best"])
def test_face_policy_on_group_photos(
    client: TestClient, shared_faces: Path, manifest: list[dict[str, str]], policy: str
) -> None:
    """The enrolled face is the one the documented rule picks among the acceptable faces."""
    for row in (r for r in manifest if r["identity"] == "multi"):
        image = photo(shared_faces, row["path"])
        detected = client.post("/v1/detect", files={"image": image}).json()
        pool = [f for f in detected["faces"] if f["quality"]["passed"]] or detected["faces"]
        size = (detected["width"], detected["height"])
        expected = max(pool, key=lambda f: _rule(policy, f, *size))
        subject = new_subject(client, f"{policy} {row['path']}")
        response = enrol(client, subject, image, face=policy)
        if response.status_code == 422:  # the chosen face failed the quality gate
            assert not expected["quality"]["passed"], response.text
            continue
        assert response.status_code == 201, response.text
        assert response.json()["faces"][0]["box"] == expected["box"], row["path"]
