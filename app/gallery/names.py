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
# Graphic characters whose glyph is empty by design, so that a name of them shows blank:
# the Braille pattern with no dots and the musical null notehead.
BLANK_GLYPHS = frozenset("\u2800\U0001d159")

# Accents are the marks of the Combining Diacritical Marks block, U+0300 to U+036F: every
# mark that NFKD splits off a Latin, Greek or Cyrillic letter ("é", "ö", "ç", "ệ", "ά", "й"),
# which an unaccented query must find. Other scripts' marks are not accents to their
# readers: a Devanagari vowel sign or virama, a Thai vowel or tone, Hebrew and Arabic points
# or the Japanese dakuten (カ "ka", ガ "ga") make another name, so they still count.
ACCENTS = range(0x0300, 0x0370)
# Letters that NFKD leaves whole, but that ASCII spellings of a name drop the stroke from or
# split all the same ("Lukasz" for "Łukasz", "Soren" for "Søren", "Gudrun" for "Guðrún").
# A small fixed set from living alphabets; casefold() already makes "ß" "ss".
BASE_LETTERS = str.maketrans(
    {"æ": "ae", "ð": "d", "đ": "d", "ħ": "h", "ı": "i", "ł": "l", "ø": "o", "œ": "oe", "þ": "th"}
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
    """The name as the name filter compares it: accents dropped, NFKC-normalised, case-folded.

    Case in any script ("STRASSE", "straße"), accents on Latin, Greek and Cyrillic letters
    however they are encoded ("Jose", "José", "Jose" then U+0301 as macOS and iOS send it),
    and compatibility forms (full-width letters, ligatures) all compare equal. The folding
    of a non-empty name is never empty, and folding a folded name changes nothing.
    """
    # casefold() can add an accent ("İ" to "i" then U+0307): decompose again after it.
    letters = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", name).casefold())
    bare = "".join(char for char in letters if ord(char) not in ACCENTS).translate(BASE_LETTERS)
    # Accents alone (a query; check_name refuses such a name) stay: "" would match every name.
    return unicodedata.normalize("NFKC", bare or letters)


def _invisible(char: str) -> bool:
    if unicodedata.category(char) == "Cf" or char in BLANK_GLYPHS:
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in _IGNORABLE_RANGES)


def _mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"
