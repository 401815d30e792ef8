"""Subject names: what one may contain, and the folded form the name filter compares."""

from __future__ import annotations

import unicodedata

# Embeddings, overrides and isolates reorder the text around them, so a name could display
# as another one (U+202E then "ecilA" shows as "Alice"). The marks U+200E, U+200F and
# U+061C reorder nothing and have real uses in right-to-left names, so they stay allowed.
BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
# Not Cc, but they end a line as a newline does.
LINE_BREAKS = frozenset("\u2028\u2029")
# Unicode's Default_Ignorable_Code_Point characters outside category Cf: fillers, joiners
# and variation selectors that show nothing by themselves (DerivedCoreProperties.txt).
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)


def check_name(name: str) -> str:
    """The name unchanged, or ValueError saying why a subject may not be called that.

    A name needs one visible character (neither whitespace nor an invisible format
    character such as U+200B), and may hold no control character, line break or
    bidirectional override. Joiners such as ZWJ and ZWNJ are fine inside a name: Persian,
    Indic scripts and emoji sequences need them.
    """
    if not name:
        raise ValueError("name must not be empty")
    for char in name:
        if unicodedata.category(char) == "Cc" or char in LINE_BREAKS:
            raise ValueError(
                f"name must not contain control characters or line breaks ({_code(char)})"
            )
        if char in BIDI_CONTROLS:
            raise ValueError(
                f"name must not contain bidirectional override or isolate characters "
                f"({_code(char)})"
            )
    # Combining marks show only on a base character: a name of marks alone shows nothing.
    if all(char.isspace() or _invisible(char) or _mark(char) for char in name):
        raise ValueError("name must contain at least one visible character")
    return name


def fold_name(name: str) -> str:
    """The name as the name filter compares it: NFKC-normalised and case-folded.

    That is Unicode's compatibility caseless match, so letter case in any script
    ("STRASSE", "straße"), precomposed and combining accents (U+00E9, or "e" then U+0301
    as macOS and iOS often send it) and compatibility forms (full-width letters,
    ligatures) all compare equal. Folding a folded name changes nothing.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _invisible(char: str) -> bool:
    if unicodedata.category(char) == "Cf":
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in _IGNORABLE_RANGES)


def _mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"
