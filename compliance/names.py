"""Names and identifiers reduced to the form screening compares.

A name is transliterated to Latin letters (Cyrillic and Greek by table, accented Latin
by Unicode decomposition), lower-cased, stripped of punctuation and of legal-form words
("ltd", "llc", "gmbh" ...), and its words are sorted, so "PETROV, Ivan", "Ivan Petrov"
and "Иван Петров" all become ``"ivan petrov"``. Identifiers keep letters and digits only,
upper-cased, so "LEI 5299-00AB..." and "529900AB..." compare equal.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# ISO 9 / BGN-style romanisation, the spellings sanctions lists use most often
_CYRILLIC: Final = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
    "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
    "я": "ya", "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "u", "ј": "j", "љ": "lj",
    "њ": "nj", "ђ": "dj", "ћ": "c", "џ": "dz",
}  # fmt: skip
_GREEK: Final = {
    "α": "a", "β": "v", "γ": "g", "δ": "d", "ε": "e", "ζ": "z", "η": "i", "θ": "th",
    "ι": "i", "κ": "k", "λ": "l", "μ": "m", "ν": "n", "ξ": "x", "ο": "o", "π": "p",
    "ρ": "r", "σ": "s", "ς": "s", "τ": "t", "υ": "y", "φ": "f", "χ": "ch", "ψ": "ps",
    "ω": "o",
}  # fmt: skip
# letters NFKD does not decompose into ASCII
_SPECIAL: Final = {"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "ð": "d", "þ": "th", "ł": "l"}
_TABLE: Final = str.maketrans({**_CYRILLIC, **_GREEK, **_SPECIAL})

#: words that say what kind of legal person a name is, not which one
LEGAL_FORMS: Final = frozenset(
    [
        "ltd",
        "limited",
        "llc",
        "inc",
        "incorporated",
        "corp",
        "corporation",
        "co",
        "plc",
        "sa",
        "ag",
        "gmbh",
        "bv",
        "nv",
        "oy",
        "ab",
        "as",
        "srl",
        "spa",
        "sarl",
        "llp",
        "lp",
        "ooo",
        "oao",
        "zao",
        "pjsc",
        "jsc",
        "ojsc",
        "the",
        "of",
        "and",
    ]
)
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


def transliterate(text: str) -> str:
    """Latin-letter lower-case form of ``text`` (accents dropped)."""
    lowered = unicodedata.normalize("NFKC", text).lower().translate(_TABLE)
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def name_key(name: str) -> str:
    """The comparable form of a name: transliterated, legal forms dropped, words sorted.

    Returns "" for a name with no letters or digits left.
    """
    words = [w for w in _NOT_WORD.split(transliterate(name)) if w]
    significant = [w for w in words if w not in LEGAL_FORMS] or words
    return " ".join(sorted(significant))


def identifier_key(identifier: str) -> str:
    """Letters and digits of an identifier, upper-cased; "" if none."""
    return _NOT_ALNUM.sub("", transliterate(identifier).upper())
