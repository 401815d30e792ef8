"""Where the benchmarks take their photos from (benchmarks/photos.py)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from benchmarks.photos import NoPhotos, load_photos, shared_photos


def test_a_folder_per_person_as_the_import_takes_it(
    tmp_path: Path, package_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone outside this workplace has no ../shared/faces: an operator benchmarks on
    photos of their own, laid out as for `python -m app import`."""
    (tmp_path / "yao").mkdir()
    (tmp_path / "team").mkdir()
    (tmp_path / ".hidden").mkdir()
    shutil.copy(package_images / "yaoming.jpg", tmp_path / "yao" / "a.jpg")
    shutil.copy(package_images / "players.jpg", tmp_path / "team" / "b.jpg")
    shutil.copy(package_images / "gdp.jpg", tmp_path / "team" / "c.jpg")
    shutil.copy(package_images / "gdp.jpg", tmp_path / ".hidden" / "d.jpg")
    (tmp_path / "team" / "notes.txt").write_text("not a photo")
    monkeypatch.setenv("FACE_SHARED_FACES", str(tmp_path))
    photos = shared_photos()
    assert [(p.path, p.identity) for p in photos] == [
        ("team/b.jpg", "team"),
        ("team/c.jpg", "team"),
        ("yao/a.jpg", "yao"),
    ]
    assert photos[2].data == (package_images / "yaoming.jpg").read_bytes()
    assert [p.path for p in shared_photos(limit=1)] == ["team/b.jpg"]


def test_a_manifest_names_the_photos_and_their_people_in_its_order(
    tmp_path: Path, package_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(package_images / "yaoming.jpg", tmp_path / "z.jpg")
    shutil.copy(package_images / "gdp.jpg", tmp_path / "a.jpg")
    (tmp_path / "manifest.csv").write_text("path,identity,source\nz.jpg,Yao,x\na.jpg,Speaker,y\n")
    monkeypatch.setenv("FACE_SHARED_FACES", str(tmp_path))
    assert [(p.path, p.identity) for p in shared_photos()] == [
        ("z.jpg", "Yao"),
        ("a.jpg", "Speaker"),
    ]


@pytest.mark.parametrize("layout", ["missing", "empty", "flat"])
def test_no_photos_is_a_message_saying_what_to_set(
    tmp_path: Path, package_images: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    root = tmp_path / "photos"
    if layout != "missing":
        root.mkdir()
    if layout == "flat":  # photos, but in no person's folder
        shutil.copy(package_images / "yaoming.jpg", root / "a.jpg")
    monkeypatch.setenv("FACE_SHARED_FACES", str(root))
    with pytest.raises(NoPhotos) as refused:
        shared_photos()
    message = str(refused.value)
    assert message.startswith(f"no benchmark photos in {root}: set FACE_SHARED_FACES")
    assert "DIR/<name>/*.jpg" in message


def test_links_to_nothing_and_fifos_are_left_out_not_read(
    tmp_path: Path, package_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import's folder scan keeps them, for its report; reading a FIFO waits forever."""
    (tmp_path / "yao").mkdir()
    shutil.copy(package_images / "yaoming.jpg", tmp_path / "yao" / "a.jpg")
    (tmp_path / "yao" / "b.jpg").symlink_to(tmp_path / "gone.jpg")
    os.mkfifo(tmp_path / "yao" / "c.jpg")
    (tmp_path / "yao" / "d.jpg").symlink_to(tmp_path / "yao" / "a.jpg")
    monkeypatch.setenv("FACE_SHARED_FACES", str(tmp_path))
    assert [p.path for p in shared_photos()] == ["yao/a.jpg", "yao/d.jpg"]


def test_a_manifest_without_its_columns_says_which_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "manifest.csv").write_text("file,identity\na.jpg,Yao\n")
    monkeypatch.setenv("FACE_SHARED_FACES", str(tmp_path))
    with pytest.raises(NoPhotos, match="manifest.csv has no column 'path'"):
        shared_photos()


def test_crops_skip_photos_that_do_not_decode_and_need_one_face(
    tmp_path: Path, package_images: Path, monkeypatch: pytest.MonkeyPatch, models: Any
) -> None:
    (tmp_path / "yao").mkdir()
    shutil.copy(package_images / "yaoming.jpg", tmp_path / "yao" / "a.jpg")
    (tmp_path / "yao" / "b.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (200, 200), "grey").save(tmp_path / "yao" / "c.jpg")
    monkeypatch.setenv("FACE_SHARED_FACES", str(tmp_path))
    crops = load_photos(120, None, models.detector)
    assert [(c.path, c.identity) for c in crops] == [("yao/a.jpg", "yao")]
    assert Image.open(io.BytesIO(crops[0].data)).size == (120, 120)
    (tmp_path / "yao" / "a.jpg").unlink()
    with pytest.raises(NoPhotos, match="no face found in any of the 2 benchmark photos"):
        load_photos(120, None, models.detector)
