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
# which an unaccented query must find.
ACCENTS = range(0x0300, 0x0370)
# Hebrew points (niqqud) and cantillation, and Arabic short vowels (harakat), shadda, sukun,
# superscript and subscript alef, the further vowel and tone marks of other languages written
# in Arabic script, and Quranic annotation marks, are optional: most Hebrew and Arabic text
# leaves them out, so "שלום" must find "שָׁלוֹם" and "محمد" find "مُحَمَّد", and back.
# Tatweel only stretches a word ("محـــمد"). Hebrew punctuation (maqaf, paseq, sof pasuq,
# geresh) is not a point and stays, as do the Arabic hamza (wavy too) and madda, which change
# the letter ("أ", "آ"). Other scripts' marks are part of the spelling to their readers: a
# Devanagari vowel sign or virama, a Thai vowel or tone, or the Japanese dakuten (カ "ka",
# ガ "ga") make another name, so they still count.
POINTS = frozenset(
    map(
        chr,
        [
            *range(0x0591, 0x05BE),  # cantillation, then the vowel points to meteg
            0x05BF,  # rafe
            *range(0x05C1, 0x05C3),  # shin and sin dots
            *range(0x05C4, 0x05C6),  # upper and lower dots
            0x05C7,  # qamats qatan
            *range(0x0610, 0x061B),  # honorifics and small vowels over a word
            0x0640,  # tatweel
            *range(0x064B, 0x0653),  # fathatan to sukun
            # Subscript alef to fatha with two dots; not the wavy hamza below (U+065F), which
            # makes another letter of alef, as the hamza below U+0655 does ("ٳ" in Kashmiri).
            *range(0x0656, 0x065F),
            0x0670,  # superscript alef
            # Quranic marks; not the small waw and yeh (letters), end of ayah or signs.
            *range(0x06D6, 0x06DD),
            *range(0x06DF, 0x06E5),
            *range(0x06E7, 0x06E9),
            *range(0x06EA, 0x06EE),
            # Arabic Extended-B's marks (Mn, Unicode 14): Quranic small words, madda waajib,
            # superscript alef mokhassas, doubled and half maddas (recitation marks, not the
            # madda U+0653 that makes another letter of alef).
            *range(0x0898, 0x08A0),
            # Arabic Extended-A from U+08CA, all marks (Mn): Quranic small high words and
            # letters, pause, footnote and page marks, curly, open and dotted harakat, tone
            # marks, sukun below, large dots and circles, arrowheads and the sideways noon
            # ghunna. The small low and high waw
            # (U+08D3, U+08F3) are marks over a spelt word, as the small high yeh U+06E7 is,
            # not letters of it as the small waw U+06E5 (Lm) is. The disputed end of ayah
            # U+08E2 is a sign (Cf), as the end of ayah U+06DD is, and stays.
            *range(0x08CA, 0x08E2),
            *range(0x08E3, 0x0900),
        ],
    )
)
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
    """The name as the name filter compares it: accents and points dropped, NFKC, casefold.

    Case in any script ("STRASSE", "straße"), accents on Latin, Greek and Cyrillic letters
    however they are encoded ("Jose", "José", "Jose" then U+0301 as macOS and iOS send it),
    Hebrew and Arabic vowel points ("שלום", "שָׁלוֹם") and compatibility forms (full-width
    letters, ligatures) all compare equal. The folding of a non-empty name is never empty,
    and folding a folded name changes nothing.
    """
    # casefold() can add an accent ("İ" to "i" then U+0307): decompose again after it.
    letters = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", name).casefold())
    bare = "".join(char for char in letters if not _dropped(char)).translate(BASE_LETTERS)
    # Accents or points alone stay: "" would match every name. Only a query is such (a name
    # of marks alone fails check_name), or a name of tatweels (a letter), vowelled or not.
    return unicodedata.normalize("NFKC", bare or letters)


def _dropped(char: str) -> bool:
    return ord(char) in ACCENTS or char in POINTS


def _invisible(char: str) -> bool:
    if unicodedata.category(char) == "Cf" or char in BLANK_GLYPHS:
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in _IGNORABLE_RANGES)


def _mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"
