"""Enrolment: one acceptable face per file, all-or-nothing, clear rejections."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image, ImageFilter, ImageOps

from tests.api.conftest import ClientFactory, assert_error, enrol, jpeg_bytes, new_subject


def test_enrol_list_and_delete_a_face(client: TestClient, package_images: Path) -> None:
    subject = new_subject(client, "Yao Ming")
    response = enrol(client, subject, ("yao.jpg", (package_images / "yaoming.jpg").read_bytes()))
    assert response.status_code == 201, response.text
    (face,) = response.json()["faces"]
    assert face["quality"]["passed"] and len(face["box"]) == 4

    listed = client.get(f"/v1/subjects/{subject}/faces").json()["faces"]
    assert [f["id"] for f in listed] == [face["id"]]
    assert len(listed[0]["landmarks"]) == 5

    assert client.delete(f"/v1/subjects/{subject}/faces/{face['id']}").status_code == 204
    assert client.get(f"/v1/subjects/{subject}/faces").json()["faces"] == []
    assert client.get("/v1/info").json()["index_size"] == 0
    missing = client.delete(f"/v1/subjects/{subject}/faces/{face['id']}")
    assert_error(missing, 404, "face_not_found")


def test_group_photo_needs_a_face_policy(client: TestClient, package_images: Path) -> None:
    subject = new_subject(client, "someone")
    players = (package_images / "players.jpg").read_bytes()
    error = assert_error(enrol(client, subject, ("p.jpg", players)), 422, "multiple_faces")
    assert error["details"]["files"][0]["code"] == "multiple_faces"
    chosen = enrol(client, subject, ("p.jpg", players), face="largest")
    assert chosen.status_code == 201, chosen.text


def test_all_or_nothing_lists_every_rejected_file(client: TestClient, package_images: Path) -> None:
    subject = new_subject(client, "Yao Ming")
    good = (package_images / "yaoming.jpg").read_bytes()
    blank = jpeg_bytes(Image.new("RGB", (320, 240), (120, 160, 200)))
    response = enrol(client, subject, ("good.jpg", good), ("blank.jpg", blank), ("x.txt", b"hi"))
    error = assert_error(response, 422, "no_face")
    files = error["details"]["files"]
    assert [(f["index"], f["code"]) for f in files] == [
        (1, "no_face"),
        (2, "unsupported_media_type"),
    ]
    # Smaller faces are not searched for, and the message says which size that is.
    assert files[0]["message"] == "No face of at least 32 px was found in the image."
    assert client.get(f"/v1/subjects/{subject}").json()["face_count"] == 0
    assert client.get("/v1/info").json()["index_size"] == 0


def test_no_face_message_names_the_smallest_face_searched_in_a_large_photo(
    client: TestClient,
) -> None:
    # 3000 px wide: detection runs at 960 px (x0.32), where MTCNN looks for 20 px and up.
    blank = jpeg_bytes(Image.new("RGB", (3000, 2000), (120, 160, 200)))
    response = client.post(
        "/v1/verify", files=[("image", ("a.jpg", blank)), ("image2", ("b.jpg", blank))]
    )
    error = assert_error(response, 422, "no_face")
    # With two images, the message says which one it is about.
    assert error["message"] == "image: No face of at least 63 px was found in the image."


def test_low_quality_face_is_refused_with_reasons(client: TestClient, package_images: Path) -> None:
    subject = new_subject(client, "Yao Ming")
    image = Image.open(package_images / "yaoming.jpg")
    blurred = jpeg_bytes(image.filter(ImageFilter.GaussianBlur(6)))
    error = assert_error(enrol(client, subject, ("blur.jpg", blurred)), 422, "low_quality")
    reasons = error["details"]["files"][0]["reasons"]
    assert any(reason.startswith("blurry") for reason in reasons), reasons


def test_same_image_twice_is_a_conflict(client: TestClient, package_images: Path) -> None:
    subject = new_subject(client, "Yao Ming")
    data = (package_images / "yaoming.jpg").read_bytes()
    created = enrol(client, subject, ("a.jpg", data))
    assert created.status_code == 201
    face_id = created.json()["faces"][0]["id"]
    error = assert_error(enrol(client, subject, ("b.jpg", data)), 409, "duplicate_image")
    # A client retrying after a lost answer learns which face it already has.
    assert (error["details"]["filename"], error["details"]["face_id"]) == ("b.jpg", face_id)
    assert f"as face {face_id}" in error["message"]
    assert client.get(f"/v1/subjects/{subject}").json()["face_count"] == 1


def test_every_already_enrolled_file_is_named(client: TestClient, package_images: Path) -> None:
    subject = new_subject(client, "Yao Ming")
    yao = (package_images / "yaoming.jpg").read_bytes()
    flipped = jpeg_bytes(ImageOps.mirror(Image.open(package_images / "yaoming.jpg")))
    enrolled = enrol(client, subject, ("a.jpg", yao), ("b.jpg", flipped))
    assert enrolled.status_code == 201, enrolled.text
    ids = [face["id"] for face in enrolled.json()["faces"]]
    new = jpeg_bytes(Image.open(package_images / "yaoming.jpg").rotate(3))
    error = assert_error(
        enrol(client, subject, ("new.jpg", new), ("a2.jpg", yao), ("b2.jpg", flipped)),
        409,
        "duplicate_image",
    )
    files = error["details"]["files"]
    assert [(f["index"], f["filename"], f["face_id"]) for f in files] == [
        (1, "a2.jpg", ids[0]),
        (2, "b2.jpg", ids[1]),
    ]
    assert "(2 of 3 files are)" in error["message"]
    assert client.get(f"/v1/subjects/{subject}").json()["face_count"] == 2


def test_the_same_image_twice_in_one_request_is_refused(
    client: TestClient, package_images: Path
) -> None:
    subject = new_subject(client, "Yao Ming")
    data = (package_images / "yaoming.jpg").read_bytes()
    gdp = (package_images / "gdp.jpg").read_bytes()
    refused = enrol(client, subject, ("a.jpg", data), ("gdp.jpg", gdp), ("b.jpg", data))
    error = assert_error(refused, 422, "invalid_request")
    assert error["message"].startswith("Files 0 and 2 of this request are the same image")
    assert error["details"] == [
        {
            "loc": ["body", "files", 2],
            "msg": f"the same image as file 0 (sha256 {hashlib.sha256(data).hexdigest()})",
            "type": "repeated_image",
        }
    ]
    assert client.get(f"/v1/subjects/{subject}").json()["face_count"] == 0


def test_unknown_subject(client: TestClient, package_images: Path) -> None:
    data = (package_images / "yaoming.jpg").read_bytes()
    assert_error(enrol(client, "no-such-id", ("a.jpg", data)), 404, "subject_not_found")


def test_bad_uploads_get_stable_codes(make_client: ClientFactory, package_images: Path) -> None:
    client = make_client(max_upload_bytes=200_000, max_image_pixels=2_000_000)
    subject = new_subject(client, "x")
    jpeg = (package_images / "yaoming.jpg").read_bytes()
    assert_error(enrol(client, subject, ("e.jpg", b"")), 422, "invalid_image")
    assert_error(enrol(client, subject, ("t.jpg", b"plain text")), 415, "unsupported_media_type")
    assert_error(enrol(client, subject, ("c.jpg", jpeg[: len(jpeg) // 3])), 422, "invalid_image")
    # Its header patched to twice the height: libjpeg filled the missing half grey.
    frame = jpeg.index(b"\xff\xc0")
    height = int.from_bytes(jpeg[frame + 5 : frame + 7], "big")
    tall = jpeg[: frame + 5] + (2 * height).to_bytes(2, "big") + jpeg[frame + 7 :]
    assert_error(enrol(client, subject, ("tall.jpg", tall)), 422, "invalid_image")
    deep = io.BytesIO()  # 32-bit integers: 8-bit or 16-bit values cannot be told apart
    Image.open(io.BytesIO(jpeg)).convert("L").convert("I").resize((100, 100)).save(deep, "TIFF")
    assert_error(
        enrol(client, subject, ("deep.tif", deep.getvalue())), 415, "unsupported_media_type"
    )
    big = (package_images / "players.jpg").read_bytes()  # ~370 kB, over the 200 kB limit
    assert_error(enrol(client, subject, ("big.jpg", big)), 413, "payload_too_large")
    bomb = io.BytesIO()
    Image.new("1", (3000, 3000)).save(bomb, format="PNG")  # 9 MP in a few kB
    assert_error(enrol(client, subject, ("bomb.png", bomb.getvalue())), 422, "image_too_large")
    assert client.get("/v1/health").json() == {"status": "ok"}
    assert enrol(client, subject, ("ok.jpg", jpeg)).status_code == 201
