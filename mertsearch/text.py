"""One meaning of "the same text" for tags and look-ups, whatever the database or the script.

Tags come from many taggers: accents composed (NFC, "é") or decomposed (NFD, "e" + U+0301),
capitals in any script, German "ß" or "SS", Turkish dotted and dotless I. Every comparison of
text a user typed with tags (filters, look-ups, per-artist caps, no-repeat windows, Subsonic
matching) compares ``fold``ed text, computed in Python, so SQLite, PostgreSQL and Milvus give
one answer: the database never folds case itself (SQLite's ``lower()`` folds ASCII only, and
PostgreSQL's depends on the database's collation).
"""

from __future__ import annotations

import unicodedata

# Changed whenever ``fold`` changes: stored folded copies are then computed again.
FOLD_VERSION = "1"

# Turkish I: casefold() maps "I" to "i" but "İ" to "i" + U+0307 and leaves "ı"; without a locale,
# all four read as one letter, so "ISTANBUL", "İstanbul" and "ıstanbul" all find "istanbul".
_TURKISH_I = str.maketrans({"ı": "i", "\u0307": None})


def fold(text: str | None) -> str:
    """``text`` compared caselessly: compatibility-normalised (NFKC), case-folded, outer space removed.

    Accents are kept ("é" is not "e"; "é" in NFC equals "é" in NFD), as are the marks other scripts
    need ("が" is not "か"). Unpaired surrogates (bytes of a file name that is not UTF-8) become "?",
    and NUL characters (which end text for SQLite's LIKE) are dropped.
    """
    if not text:
        return ""
    text = text.replace("\x00", "")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
        text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold().translate(_TURKISH_I))
        return text.strip()
    return text.lower().strip()
