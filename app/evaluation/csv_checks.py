"""Refusals shared by the CSV inputs (pairs file, manifest): a repeated column, not UTF-8."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path


def refuse_repeated_columns(csv_path: Path, header: Sequence[str], columns: Sequence[str]) -> None:
    """A ValueError naming the first of `columns` that heads more than one column of
    `header`: csv.DictReader would read the last of them and ignore the others in silence."""
    for column in columns:
        at = [str(i) for i, name in enumerate(header, start=1) if name == column]
        if len(at) > 1:
            raise ValueError(
                f"{csv_path} has the column {column} {len(at)} times in its header "
                f"(columns {', '.join(at[:-1])} and {at[-1]}); keep one"
            )


def not_utf8(csv_path: Path) -> ValueError:
    """The error for a CSV file that is not UTF-8 text, naming the line of the first bad
    byte."""
    return ValueError(
        f"{csv_path}{_first_bad_byte(csv_path)}: not UTF-8 text (saved as Latin-1 or UTF-16, "
        "or not a CSV at all?); save it as CSV UTF-8"
    )


def _first_bad_byte(csv_path: Path) -> str:
    """Where the file stops being UTF-8, as ":line: byte 0x..", or "" if it decodes now.
    Read again in chunks: a video passed by mistake must not be read whole. Plain utf-8,
    not utf-8-sig: a byte-order mark is valid UTF-8 and keeps the offsets the file's."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with csv_path.open("rb") as handle:
        while True:
            chunk = handle.read(1 << 16)
            # The decoder holds back an unfinished character; its errors index into both.
            data = decoder.getstate()[0] + chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                line += data.count(b"\n", 0, exc.start)
                return f":{line}: byte 0x{data[exc.start]:02x}"
            if not chunk:
                return ""
            line += chunk.count(b"\n")
