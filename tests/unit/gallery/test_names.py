"""Subject names: the content rules, and the folding the name filter compares."""

from __future__ import annotations

import re
import unicodedata

import pytest
from sqlalchemy.orm import Session

from app.gallery import repository
from app.gallery.names import ACCENTS, BIDI_CONTROLS, POINTS, check_name, fold_name

ZWJ, ZWNJ = "\u200d", "\u200c"

# Names in use that must stay valid, each with a spelling the filter must find it by.
NAMES = {
    "Ada Lovelace": "ADA LOVELACE",
    "Σωκράτης": "ΣΩΚΡΆΤΗΣ",  # final sigma folds like any sigma
    "Straße": "STRASSE",
    "ẞ Großbuchstabe": "ss grossbuchstabe",
    "Çağla Şükrü": "ÇAĞLA ŞÜKRÜ",
    "İnci": "İNCI",  # casefold() has no Turkish rules: "İNCİ" folds its final İ to "i\u0307"
    "王小明": "小明",
    "山田ｶﾀｶﾅ": "カタカナ",  # half-width katakana, as NFKC widens it
    "ＡＤＡ": "ada",  # full-width letters
    f"👩{ZWJ}👩{ZWJ}👧 family": f"👩{ZWJ}👩{ZWJ}👧",
    f"می{ZWNJ}خواهم": f"می{ZWNJ}خواهم",  # Persian: ZWNJ inside a word
    f"क्{ZWJ}ष": f"क्{ZWJ}ष",  # Devanagari: ZWJ after a virama
    "\u05d3\u05d5\u05d3 \u200f(David)": "(david)",  # Hebrew with a right-to-left mark
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scot": "scot",
    "Ada\u00a0King": "ada\u00a0king",  # a no-break space inside
    " Ada ": "ada",  # kept as sent, spaces at the ends included
    "\u1112\u1161\u11ab": "한",  # Hangul as jamo (macOS file names) and as a syllable
}


@pytest.mark.parametrize("name", NAMES)
def test_names_in_any_script_are_valid_and_kept_as_sent(name: str) -> None:
    assert check_name(name) is name


@pytest.mark.parametrize(("name", "query"), NAMES.items())
def test_the_folded_name_contains_the_folded_query(name: str, query: str) -> None:
    assert fold_name(query) in fold_name(name)


def test_composed_and_decomposed_accents_fold_alike() -> None:
    composed, decomposed = "Zoë Café", "Zoe\u0308 Cafe\u0301"
    assert composed != decomposed
    assert fold_name(composed) == fold_name(decomposed) == "zoe cafe"
    assert fold_name("Cafe\u0301") in fold_name(composed)
    assert fold_name("Café") in fold_name(decomposed)


# Names, each with an unaccented spelling that must find it, as a people directory does.
ACCENTED = {
    "José": "Jose",
    "Björk Guðmundsdóttir": "bjork gudmundsdottir",
    "François": "FRANCOIS",
    "Nguyễn Văn Đức": "nguyen van duc",
    "Ñandú Çelik": "nandu celik",
    "Łukasz Żółć": "lukasz zolc",
    "Søren Kierkegaard": "SOREN KIERKEGAARD",
    "Æsa Œhlenschläger": "aesa oehlenschlager",
    "Þórunn": "thorunn",
    "Ħamrun": "hamrun",
    "Işıl": "ISIL",
    "İnci": "inci",
    "Σωκράτης": "σωκρατης",  # Greek tonos
    "Ёлкин Йозеф": "елкин иозеф",  # Cyrillic breve and diaeresis
    "Straße": "strasse",
    "Zoe\u0308": "zoe",  # decomposed, as macOS and iOS send it
}


@pytest.mark.parametrize(("name", "plain"), ACCENTED.items())
def test_accents_are_ignored_both_ways(name: str, plain: str) -> None:
    check_name(name)
    assert fold_name(plain) in fold_name(name)  # "Jose" finds "José"
    assert fold_name(name) in fold_name(plain)  # and "José" finds "Jose"


@pytest.mark.parametrize("name", [*NAMES, *ACCENTED])
def test_every_part_of_a_name_finds_it(name: str) -> None:
    """A query copied from a name finds it, whole or any part of it, unless the part starts
    inside a letter (with a combining mark, or inside a jamo or half-width sound mark)."""
    folded = fold_name(name)
    parts = [name[i:j] for i in range(len(name)) for j in range(i + 1, len(name) + 1)]
    starts = [part for part in parts if not unicodedata.category(part[0]).startswith("M")]
    for part in starts:
        if not any(0x1100 <= ord(char) <= 0x11FF or char in "\uff9e\uff9f" for char in part):
            assert fold_name(part) in folded, (name, part)


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("कुमार", "कमार"),  # Devanagari vowel sign U (Mn)
        ("किरण", "करण"),  # Devanagari vowel sign I (Mc)
        ("क़ासिम", "कासिम"),  # nukta: NFKD splits U+0958 into ka and a mark
        ("がっこう", "かっこう"),  # Japanese dakuten: NFKD splits it into a combining mark
        ("パン", "ハン"),  # handakuten
        ("ｶﾞｸ", "ｶｸ"),  # half-width, where the dakuten is a character of its own
        ("한", "하"),  # Hangul: NFKD makes jamo, letters, and NFKC joins them again
        ("สิน", "สน"),  # Thai vowel sign (Mn)
        ("أحمد", "احمد"),  # Arabic hamza above
    ],
)
def test_marks_that_make_another_name_in_other_scripts_still_count(name: str, other: str) -> None:
    check_name(name)
    assert fold_name(name) != fold_name(other)
    assert fold_name(name) == fold_name(unicodedata.normalize("NFD", name))


def test_no_valid_name_folds_to_nothing() -> None:
    """A name passes check_name only with a character that is not a mark, and each such
    character but the tatweel folds to something that is neither an accent nor a point:
    only a name of tatweels depends on the fallback."""
    for point in range(0x110000):
        if 0xD800 <= point <= 0xDFFF:
            continue
        try:
            check_name(chr(point))
        except ValueError:
            continue
        folded = fold_name(chr(point))
        assert folded, hex(point)
        if any(ord(char) in ACCENTS or char in POINTS for char in folded):
            assert "\u0640" in unicodedata.normalize("NFKD", chr(point)), hex(point)


def test_a_name_of_tatweels_keeps_them() -> None:
    # "ـ" or "ﹱ" (tatweel with fathatan) pass check_name; "" would match every name.
    assert fold_name("\u0640") == "\u0640"
    assert fold_name("\ufe71") == "\u0640\u064b"
    assert fold_name("\u05b8\u05bc") == "\u05b8\u05bc"  # points alone, as a query


def test_accents_alone_fold_to_themselves_not_to_nothing() -> None:
    # An empty query key would match every name.
    assert fold_name("\u0301") == "\u0301"
    assert fold_name("\u0308\u0301") == "\u0308\u0301"
    assert fold_name("") == ""


def test_folding_is_idempotent_for_every_character() -> None:
    for point in range(0x110000):
        if 0xD800 <= point <= 0xDFFF:
            continue
        folded = fold_name(chr(point))
        assert fold_name(folded) == folded, hex(point)


# Hebrew and Arabic names, each with the spelling without points most text uses.
POINTED = {
    "שָׁלוֹם": "שלום",
    "מֹשֶׁה": "משה",
    "דָּוִד": "דוד",
    "יִצְחָק": "יצחק",
    "\ufb2a\ufb2eל": "שאל",  # presentation forms: shin with shin dot, alef with patah
    "בְּרֵאשִׁ֖ית": "בראשית",  # with a cantillation mark (tipeha)
    "مُحَمَّد": "محمد",
    "فَاطِمَة": "فاطمة",
    "عَلِيٌّ": "علي",  # shadda and dammatan
    "مُوسَىٰ": "موسى",  # superscript alef
    "محـــمد": "محمد",  # tatweel stretches the word
    "مُحَمَّدٌ ﷺ": "محمد ﷺ",  # the honorific ligature is words (NFKC spells them), not a mark
    "\u0645\u0651\u0610": "م",  # a honorific sign over a word
    "قُرْآنٌ": "قرآن",  # the madda changes the letter, and stays
    "عَلِيٖ": "علي",  # subscript alef (standing kasra)
    "مُ\u0657حمد": "محمد",  # inverted damma
    "ن\u0658ور": "نور",  # the noon ghunna mark
    "پ\u0659ښتون": "پښتون",  # zwarakay
    "ك\u065cنو": "كنو",  # vowel sign dot below
    "م\u08e5ح\u08e4م\u0651د": "محمد",  # curly damma and fatha
    "كَنُو\u08ea": "كنو",  # a tone mark
    "داو\u08d3د": "داود",  # small low waw
    "يوسف\u08de": "يوسف",  # a Quranic pause mark (qif) over the word
    "عل\u08f3ي": "علي",  # small high waw
    "إِبْرَا\u08f0هِيم": "إبراهيم",  # open fathatan; the hamza below stays
}


@pytest.mark.parametrize(("name", "plain"), POINTED.items())
def test_hebrew_and_arabic_points_are_ignored_both_ways(name: str, plain: str) -> None:
    check_name(name)
    assert fold_name(name) == fold_name(plain)  # "שלום" finds "שָׁלוֹם", and back
    assert fold_name(fold_name(name)) == fold_name(name)


def test_letters_and_punctuation_of_hebrew_and_arabic_are_kept() -> None:
    assert fold_name("קרית\u05beגת") == "קרית\u05beגת"  # maqaf
    assert fold_name("א\u05c0ב\u05c3") == "א\u05c0ב\u05c3"  # paseq, sof pasuq
    assert fold_name("ג\u05f3ורג\u05f3") == "ג\u05f3ורג\u05f3"  # geresh: "George"
    assert fold_name("צה\u05f4ל") == "צה\u05f4ל"  # gershayim
    assert fold_name("ײַ") == "ײ"  # the Yiddish ligature keeps its letters
    assert fold_name("قرآن") != fold_name("قران")  # madda
    assert fold_name("إبراهيم") != fold_name("ابراهيم")  # hamza below
    assert fold_name("\u06e5") == "\u06e5"  # the small waw is a letter
    assert fold_name("ا\u065fحمد") != fold_name("احمد")  # wavy hamza below
    assert fold_name("يوسف\u08e2") == "يوسف\u08e2"  # the disputed end of ayah, a sign
    hebrew = [chr(p) for p in range(0x0590, 0x0600) if unicodedata.category(chr(p)) != "Cn"]
    arabic = [chr(p) for p in range(0x0600, 0x0700) if unicodedata.category(chr(p)) != "Cn"]
    extended = [chr(p) for p in range(0x0870, 0x0900) if unicodedata.category(chr(p)) != "Cn"]
    for char in hebrew + arabic + extended:
        if char in POINTS:
            assert unicodedata.category(char) == "Mn" or char == "\u0640", unicodedata.name(char)
        else:
            assert fold_name(f"א{char}") == unicodedata.normalize("NFKC", f"א{char}").casefold()


def test_the_further_arabic_marks_are_dropped_but_not_the_wavy_hamza() -> None:
    """Every mark from U+0656, of Arabic Extended-B and from U+08CA is optional but the
    wavy hamza below, which changes the letter as the hamza does; the disputed end of ayah
    U+08E2 is no mark."""
    for point in [*range(0x0656, 0x0660), *range(0x0898, 0x08A0), *range(0x08CA, 0x0900)]:
        char = chr(point)
        optional = unicodedata.category(char) == "Mn" and "HAMZA" not in unicodedata.name(char)
        assert (fold_name(f"ب{char}ت") == "بت") is optional, unicodedata.name(char)
        assert (char in POINTS) is optional, unicodedata.name(char)
    assert "\u065f" not in POINTS and "\u08e2" not in POINTS
    assert {"\u0653", "\u0654", "\u0655"}.isdisjoint(POINTS)  # madda and hamza


def test_the_name_filter_finds_pointed_names_by_plain_queries(session: Session) -> None:
    names = ["שָׁלוֹם", "שלום כהן", "מֹשֶׁה", "مُحَمَّد", "محمد علي", "محـــمد", "أحمد", "कुमार"]
    ids = {name: repository.create_subject(session, name, {}).id for name in names}
    assert [s.name for s, _ in repository.list_subjects(session, 10, 0)[0]] == names  # as sent

    def found(query: str) -> list[str]:
        page, _ = repository.list_subjects(session, 10, 0, query)
        return sorted(subject.name for subject, _ in page)

    assert found("שלום") == found("שָׁלוֹם") == sorted(["שָׁלוֹם", "שלום כהן"])
    assert found("משה") == ["מֹשֶׁה"]
    assert found("محمد") == found("مُحَمَّد") == sorted(["مُحَمَّد", "محمد علي", "محـــمد"])
    assert found("احمد") == []  # the hamza still counts
    assert found("कमार") == []  # and so does a Devanagari vowel sign
    repository.update_subject(session, ids["שלום כהן"], name="שָׁלוֹם כֹּהֵן")
    assert found("כהן") == ["שָׁלוֹם כֹּהֵן"]

    more = ["عَلِيٖ", "م\u08e5ح\u08e4م\u0651د", "ا\u065fحمد", "يوسف\u08e2"]
    for name in more:
        repository.create_subject(session, name, {})
    assert found("علي") == found("عَلِيٖ") == sorted(["عَلِيٖ", "محمد علي"])
    assert found("م\u08e5حمد") == found("محمد")
    assert "م\u08e5ح\u08e4م\u0651د" in found("محمد")
    assert found("احمد") == []  # the wavy hamza below counts too
    assert found("ا\u065fحمد") == ["ا\u065fحمد"]
    assert found("يوسف") == ["يوسف\u08e2"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "name must not be empty"),
        ("   ", "at least one visible character"),
        ("\u3000", "at least one visible character"),  # ideographic space
        ("\u200b", "at least one visible character"),  # zero-width space (Cf)
        (f"{ZWJ}{ZWNJ}", "at least one visible character"),
        ("\ufeff \u2060", "at least one visible character"),
        ("\u00ad", "at least one visible character"),  # soft hyphen
        ("\u3164", "at least one visible character"),  # Hangul filler, a letter that shows nothing
        ("\ufe0f", "at least one visible character"),  # variation selector
        ("\u0301\u0301", "at least one visible character"),  # combining marks alone
        ("\u2800", "at least one visible character"),  # Braille pattern blank
        ("\U0001d159", "at least one visible character"),  # musical null notehead
        ("\u200b\u2800 ", "at least one visible character"),
        ("Ada\nLovelace", "control characters or line breaks (U+000A)"),
        ("Ada\r", "control characters or line breaks (U+000D)"),
        ("\tAda", "control characters or line breaks (U+0009)"),
        ("Ada\x07", "control characters or line breaks (U+0007)"),
        ("Ada\x7f", "control characters or line breaks (U+007F)"),
        ("Ada\x85", "control characters or line breaks (U+0085)"),
        ("Ada\u2028King", "control characters or line breaks (U+2028)"),
        ("Ada\u2029", "control characters or line breaks (U+2029)"),
        ("Ada\u202eecilA", "bidirectional override or isolate characters (U+202E)"),
        ("\u2067Ada\u2069", "bidirectional override or isolate characters (U+2067)"),
    ],
)
def test_invisible_or_unsafe_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_name(name)


@pytest.mark.parametrize("control", sorted(BIDI_CONTROLS))
def test_every_bidi_override_and_isolate_is_refused(control: str) -> None:
    with pytest.raises(ValueError, match="bidirectional"):
        check_name(f"Ada{control}King")


def test_the_bidi_controls_are_the_embeddings_overrides_and_isolates() -> None:
    names = {unicodedata.name(char) for char in BIDI_CONTROLS}
    assert len(names) == 9
    assert all(("EMBEDDING" in n or "OVERRIDE" in n or "ISOLATE" in n or "POP" in n) for n in names)


def test_every_control_character_is_refused() -> None:
    controls = [chr(p) for p in range(0x110000) if unicodedata.category(chr(p)) == "Cc"]
    assert len(controls) == 65
    for char in controls:
        with pytest.raises(ValueError, match="control"):
            check_name(f"Ada{char}")
