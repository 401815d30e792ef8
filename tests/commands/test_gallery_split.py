"""Hand-checked gallery/probe/stranger splits for identification evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.commands.gallery_split import copies_of_gallery_photos, read_labelled, split_gallery


def photos(identity: str, count: int) -> list[Path]:
    return [Path(f"{identity}/{i}.jpg") for i in range(count, 0, -1)]  # unsorted on purpose


def test_first_k_by_path_enrol_and_small_identities_become_strangers() -> None:
    split = split_gallery(
        {"ann": photos("ann", 3), "bo": photos("bo", 2), "cy": photos("cy", 1)}, 1, 0.0
    )
    assert split.gallery == {"ann": [Path("ann/1.jpg")], "bo": [Path("bo/1.jpg")]}
    assert split.probes == [
        (Path("ann/2.jpg"), "ann"),
        (Path("ann/3.jpg"), "ann"),
        (Path("bo/2.jpg"), "bo"),
    ]
    assert split.strangers == [(Path("cy/1.jpg"), "cy")]
    assert (split.too_few_photos, split.held_out) == (["cy"], [])


def test_held_out_share_is_deterministic_and_leaves_someone_enrolled() -> None:
    people = {f"p{i:02d}": photos(f"p{i:02d}", 3) for i in range(10)}
    split = split_gallery(people, 2, 0.2)
    assert len(split.held_out) == 2
    assert split.held_out == split_gallery(dict(reversed(people.items())), 2, 0.2).held_out
    assert set(split.gallery).isdisjoint(split.held_out)
    assert all(len(faces) == 2 for faces in split.gallery.values())
    assert len(split.strangers) == 2 * 3
    assert len(split_gallery({"solo": photos("solo", 2)}, 1, 0.9).gallery) == 1


def test_probes_with_the_bytes_of_a_gallery_photo_are_found() -> None:
    split = split_gallery(
        {"ann": photos("ann", 3), "bo": photos("bo", 2), "cy": photos("cy", 1)}, 1, 0.0
    )
    # ann/3.jpg copies her own gallery photo, bo/2.jpg ann's, stranger cy/1.jpg bo's; a copy
    # among probes only (ann/2.jpg) is none of the gallery's.
    digests = {Path(f"{p}.jpg"): f"{p}.jpg" for p in ("ann/1", "ann/2", "bo/1")}
    digests |= {
        Path("ann/3.jpg"): "ann/1.jpg",
        Path("bo/2.jpg"): "ann/1.jpg",
        Path("cy/1.jpg"): "bo/1.jpg",
    }
    assert copies_of_gallery_photos(split, digests) == [
        (Path("ann/3.jpg"), Path("ann/1.jpg")),
        (Path("bo/2.jpg"), Path("ann/1.jpg")),
        (Path("cy/1.jpg"), Path("bo/1.jpg")),
    ]
    assert copies_of_gallery_photos(split, {path: str(path) for path in digests}) == []


def test_rejects_splits_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="more than 2"):
        split_gallery({"ann": photos("ann", 2)}, 2, 0.2)
    with pytest.raises(ValueError, match=">= 1"):
        split_gallery({"ann": photos("ann", 2)}, 0, 0.2)


def test_manifest_skips_special_labels(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,identity,source\nb.jpg,ann,x\na.jpg,ann,x\nc.jpg,noface,x\nd.jpg,multi,x\n"
    )
    assert read_labelled(tmp_path, manifest) == {"ann": [tmp_path / "a.jpg", tmp_path / "b.jpg"]}


def test_manifest_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(b"\xef\xbb\xbfpath,identity\na.jpg,ann\n")
    assert read_labelled(tmp_path, manifest) == {"ann": [tmp_path / "a.jpg"]}


def test_a_photo_labelled_twice_alike_is_kept_once_and_differently_is_refused(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,identity\na.jpg,ann\nb.jpg,ann\na.jpg,ann\n")
    assert read_labelled(tmp_path, manifest) == {"ann": [tmp_path / "a.jpg", tmp_path / "b.jpg"]}
    manifest.write_text("path,identity\na.jpg,ann\nb.jpg,ann\nx/../a.jpg,noface\n")
    with pytest.raises(ValueError) as refused:
        read_labelled(tmp_path, manifest)
    assert str(refused.value) == (
        f"{manifest}:4: {tmp_path / 'a.jpg'} is labelled 'noface' here and 'ann' on line 2; "
        "fix one of the two rows"
    )


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (",ann", "lacks path"),  # would have named --root itself as a photo
        ("b.jpg,", "lacks identity"),  # was dropped without a word
        ("b.jpg,  ", "lacks identity"),
        ("b.jpg", "lacks identity"),
        (" ,", "lacks path, identity"),
        ("b,c.jpg,ann", "has more than 2 fields"),  # an unquoted comma in a path
    ],
)
def test_a_row_with_a_missing_or_extra_field_is_refused_naming_its_line(
    tmp_path: Path, row: str, problem: str
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,identity\na.jpg,ann\n\n{row}\nc.jpg,bo\n")
    with pytest.raises(ValueError) as refused:
        read_labelled(tmp_path, manifest)
    assert str(refused.value) == f"{manifest}:4: the row {problem}"


def test_a_manifest_that_is_not_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes("path,identity\na.jpg,ann\nzoé.jpg,zoé\n".encode("latin-1"))
    with pytest.raises(ValueError) as refused:
        read_labelled(tmp_path, manifest)
    assert str(refused.value) == (
        f"{manifest}:3: byte 0xe9: not UTF-8 text (saved as Latin-1 or UTF-16, or not a CSV "
        "at all?); save it as CSV UTF-8"
    )
