"""What every caption dataset returns: items, splits, caption normalisation and coverage."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from pylstm.plugins import TaskError

__all__ = [
    "CaptionDataset",
    "CaptionItem",
    "caption_tokens",
    "clean_caption",
    "caption_words",
    "normalize_caption",
    "open_rgb",
    "resolve_split_sizes",
    "seeded_order",
    "vocabulary_coverage",
]

# A word keeps inner apostrophes and hyphens ("woman's", "medium-light", "t-shirt"); any other
# non-space character is a token of its own, so "flag: st. lucia" -> flag : st . lucia.
_TOKEN = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*|[^\w\s]|_")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def clean_caption(text: str, lower: bool = True) -> str:
    """A caption as stored: NFC, curly quotes straightened, whitespace collapsed, lower-cased
    (unless ``lower`` is false); punctuation stays where it is (``"flag: st. lucia"``)."""
    text = " ".join(unicodedata.normalize("NFC", text).translate(_QUOTES).split())
    return text.lower() if lower else text


def caption_tokens(text: str) -> list[str]:
    """Tokenizer-friendly tokens of a caption: NFC, lower-case, punctuation split off.

    ``"Woman kneeling: medium skin tone"`` -> ``["woman", "kneeling", ":", "medium", "skin",
    "tone"]``. Curly quotes become straight ones; inner ``'`` and ``-`` stay in the word.
    """
    text = unicodedata.normalize("NFC", text).translate(_QUOTES).lower()
    return _TOKEN.findall(text)


def normalize_caption(text: str) -> str:
    """:func:`caption_tokens` joined by single spaces (what a whitespace tokenizer wants)."""
    return " ".join(caption_tokens(text))


def caption_words(text: str) -> list[str]:
    """The word tokens of a caption (no punctuation): what vocabulary coverage counts."""
    return [t for t in caption_tokens(text) if t[0].isalnum()]


def vocabulary_coverage(train_captions: Iterable[str], captions: Iterable[str]) -> float:
    """Share of the word tokens of ``captions`` that occur in ``train_captions`` (1.0 if none)."""
    vocab = {w for c in train_captions for w in caption_words(c)}
    words = [w for c in captions for w in caption_words(c)]
    return sum(w in vocab for w in words) / len(words) if words else 1.0


def seeded_order(keys: Iterable[str], seed: int) -> list[str]:
    """``keys`` in a pseudo-random order fixed by ``seed``: independent of ``PYTHONHASHSEED``,
    of the input order and of the platform (sorted by SHA-256 of ``seed`` and key)."""
    return sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).digest())


def resolve_split_sizes(n: int, valid_size: float, test_size: float) -> tuple[int, int]:
    """Counts of held-out items: an ``int`` is a count, a ``float`` in (0, 1) a share of ``n``
    (scikit-learn's ``train_test_split`` convention). At least one item stays in train."""
    counts = []
    for arg, value in (("valid_size", valid_size), ("test_size", test_size)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TaskError(f"{arg}: expected an int count or a float share, got {value!r}")
        if isinstance(value, float):
            if not 0.0 <= value < 1.0:
                raise TaskError(f"{arg}: expected a share in [0, 1), got {value}")
            counts.append(round(value * n))
        else:
            if value < 0:
                raise TaskError(f"{arg}: expected a count >= 0, got {value}")
            counts.append(value)
    if counts[0] + counts[1] >= n:
        raise TaskError(
            f"valid_size + test_size: expected fewer than the {n} items, got "
            f"{counts[0]} + {counts[1]} = {counts[0] + counts[1]}"
        )
    return counts[0], counts[1]


def open_rgb(path: Path) -> Image.Image:
    """Any image Pillow opens, as 8-bit RGB: EXIF orientation applied, transparency composited
    on white (``convert("RGB")`` would turn transparent pixels black), 16-bit and float
    grayscale scaled to 0-255. Raises :class:`~pylstm.plugins.TaskError` naming the file."""
    im: Image.Image
    try:
        with Image.open(path) as opened:
            opened.load()
            im = ImageOps.exif_transpose(opened)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TaskError(f"{path}: expected an image Pillow can read, got {exc}") from exc
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        im = Image.fromarray(a.round().astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(canvas, rgba)
    return im.convert("RGB") if im.mode != "RGB" else im


@dataclass
class CaptionItem:
    """One image and its reference captions (``captions[0]`` is the primary one)."""

    image_id: str
    captions: list[str]
    path: Path | None = None
    """The image file (for rendered datasets: its cache file, written on first :meth:`load`)."""

    def load(self) -> Image.Image:
        """The image as 8-bit RGB (see :func:`open_rgb`)."""
        if self.path is None:
            raise TaskError(f"item {self.image_id!r}: expected an image path, got None")
        return open_rgb(self.path)


@dataclass
class CaptionDataset:
    """Train, validation and test items, with a one-paragraph description of where they came
    from and ``stats`` (counts, skipped items, vocabulary coverage) for run records."""

    train: list[CaptionItem]
    valid: list[CaptionItem]
    test: list[CaptionItem]
    description: str
    stats: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[CaptionItem]:
        """``train``, ``valid`` or ``test`` by name."""
        if name not in ("train", "valid", "test"):
            raise TaskError(f"split: expected one of train, valid, test, got {name!r}")
        items: list[CaptionItem] = getattr(self, name)
        return items

    def coverage(self, name: str = "test", primary_only: bool = False) -> float:
        """Share of the words of split ``name``'s captions that occur in train's captions."""
        pick = _primary if primary_only else _all
        return vocabulary_coverage(pick(self.train), pick(self.split(name)))


def _primary(items: Sequence[CaptionItem]) -> list[str]:
    return [it.captions[0] for it in items if it.captions]


def _all(items: Sequence[CaptionItem]) -> list[str]:
    return [c for it in items for c in it.captions]
