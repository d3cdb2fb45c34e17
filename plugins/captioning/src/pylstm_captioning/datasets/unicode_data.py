"""Emoji names and keywords from the Unicode data files Debian ships.

* ``emoji-test.txt`` (Debian ``unicode-data``): one line per emoji sequence,
  ``code points ; status # emoji E<version> name``, under ``# group:`` / ``# subgroup:`` headers.
  Only ``fully-qualified`` lines are kept (the RGI set, about 3,655 in Emoji 15.0).
* CLDR ``annotations/en.xml`` and ``annotationsDerived/en.xml`` (Debian ``unicode-cldr-core``):
  ``<annotation cp="...">kw | kw | ...</annotation>`` keyword phrases and
  ``<annotation cp="..." type="tts">name</annotation>`` short names. CLDR drops U+FE0F from
  ``cp``, so lookups strip it too.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from pylstm.plugins import TaskError

__all__ = [
    "ANNOTATIONS_DERIVED_EN",
    "ANNOTATIONS_EN",
    "EMOJI_TEST",
    "Annotation",
    "EmojiEntry",
    "annotation_key",
    "parse_annotations",
    "parse_emoji_test",
]

EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
ANNOTATIONS_EN = Path("/usr/share/unicode/cldr/common/annotations/en.xml")
ANNOTATIONS_DERIVED_EN = Path("/usr/share/unicode/cldr/common/annotationsDerived/en.xml")

# "1F9CE 1F3FD 200D 2640 FE0F ; fully-qualified # 🧎🏽‍♀️ E12.0 woman kneeling: medium skin tone"
_LINE = re.compile(
    r"^(?P<cps>[0-9A-Fa-f]{4,6}(?: [0-9A-Fa-f]{4,6})*)\s*;\s*(?P<status>[a-z-]+)\s*"
    r"#\s*\S+\s+E(?P<version>\d+\.\d+)\s+(?P<name>.+?)\s*$"
)


@dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified line of ``emoji-test.txt``."""

    emoji: str
    """The emoji sequence itself (with its U+FE0F presentation selectors)."""
    name: str
    """The CLDR short name exactly as written (``"flag: Kosovo"``)."""
    group: str
    subgroup: str
    version: str
    """The Emoji version that introduced it (``"12.0"``)."""

    @property
    def codepoints(self) -> tuple[int, ...]:
        """The sequence's code points."""
        return tuple(ord(ch) for ch in self.emoji)

    @property
    def hex(self) -> str:
        """Code points as ``1f9ce-1f3fd-200d-2640-fe0f`` (file names, stable ids)."""
        return "-".join(f"{cp:x}" for cp in self.codepoints)


@dataclass(frozen=True)
class Annotation:
    """CLDR's English annotation of one emoji: its short name and keyword phrases."""

    tts: str | None
    keywords: tuple[str, ...]


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise TaskError(f"{path}: expected {what}, got no such file")


def parse_emoji_test(path: Path | str = EMOJI_TEST) -> list[EmojiEntry]:
    """The fully-qualified emoji of ``emoji-test.txt``, in the file's (CLDR) order.

    Raises :class:`~pylstm.plugins.TaskError` naming the file and line for a malformed data
    line, and when the file is missing or holds no fully-qualified emoji.
    """
    path = Path(path)
    _require_file(path, "emoji-test.txt (Debian package unicode-data)")
    entries: list[EmojiEntry] = []
    group = subgroup = ""
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                if line.startswith("# group:"):
                    group = line.split(":", 1)[1].strip()
                elif line.startswith("# subgroup:"):
                    subgroup = line.split(":", 1)[1].strip()
                continue
            m = _LINE.match(line)
            if m is None:
                raise TaskError(
                    f"{path} line {lineno}: expected 'code points ; status # emoji E<version> "
                    f"name', got {line[:80]!r}"
                )
            if m["status"] != "fully-qualified":
                continue
            emoji = "".join(chr(int(cp, 16)) for cp in m["cps"].split())
            entries.append(EmojiEntry(emoji, m["name"], group, subgroup, m["version"]))
    if not entries:
        raise TaskError(f"{path}: expected fully-qualified emoji lines, got none")
    return entries


def annotation_key(emoji: str) -> str:
    """The ``cp`` CLDR files use for ``emoji``: the sequence without U+FE0F."""
    return emoji.replace("\ufe0f", "")


def parse_annotations(*paths: Path | str) -> dict[str, Annotation]:
    """CLDR annotations keyed by :func:`annotation_key`; later files fill what earlier lack.

    With no paths, reads ``annotations/en.xml`` then ``annotationsDerived/en.xml`` (skin-tone,
    gender and other ZWJ sequences live only in the derived file). A missing file or one that
    is not CLDR XML raises :class:`~pylstm.plugins.TaskError`.
    """
    if not paths:
        paths = (ANNOTATIONS_EN, ANNOTATIONS_DERIVED_EN)
    tts: dict[str, str] = {}
    keywords: dict[str, tuple[str, ...]] = {}
    for p in map(Path, paths):
        _require_file(p, "a CLDR annotations XML file (Debian package unicode-cldr-core)")
        try:
            root = ET.parse(p).getroot()
        except ET.ParseError as exc:
            raise TaskError(
                f"{p}: expected CLDR annotations XML, got a parse error ({exc})"
            ) from exc
        for node in root.iter("annotation"):
            cp = node.get("cp")
            text = (node.text or "").strip()
            if not cp or not text:
                continue
            key = annotation_key(cp)
            if node.get("type") == "tts":
                tts.setdefault(key, text)
            else:
                phrases = tuple(k.strip() for k in text.split("|") if k.strip())
                keywords.setdefault(key, phrases)
    return {k: Annotation(tts.get(k), keywords.get(k, ())) for k in tts.keys() | keywords.keys()}
