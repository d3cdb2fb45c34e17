"""The default caption dataset: Noto Color Emoji images captioned with their Unicode names.

Every fully-qualified emoji of ``emoji-test.txt`` (about 3,655 in Emoji 15.0) is one image,
rendered with Pillow from the CBDT bitmap font of Debian's ``fonts-noto-color-emoji``. Its
captions are the CLDR short name, lower-cased (``"woman kneeling: medium skin tone"``,
``"flag: kosovo"``, ``"nut and bolt"``), then, as further references, CLDR's English keyword
phrases (``"bolt"``, ``"nut"``, ``"tool"``). Emoji the font cannot draw as one glyph are
skipped and counted. Images are rendered lazily, on an item's first :meth:`EmojiItem.load`,
and cached as PNG files under the caller's cache folder. The split is the grouped hold-out of
:mod:`pylstm_captioning.datasets.emoji_split`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont, features

from pylstm.plugins import TaskError
from pylstm_captioning.datasets.base import (
    CaptionDataset,
    CaptionItem,
    clean_caption,
    open_rgb,
    resolve_split_sizes,
)
from pylstm_captioning.datasets.emoji_split import emoji_bases, hold_out
from pylstm_captioning.datasets.unicode_data import (
    ANNOTATIONS_DERIVED_EN,
    ANNOTATIONS_EN,
    EMOJI_TEST,
    Annotation,
    EmojiEntry,
    annotation_key,
    parse_annotations,
    parse_emoji_test,
)

__all__ = [
    "FONT",
    "FONT_SIZE",
    "EmojiAudit",
    "EmojiItem",
    "audit_emoji",
    "emoji_captions",
    "is_blank",
    "load_emoji",
    "render_emoji",
]

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109
"""The one bitmap strike of Noto's CBDT font; FreeType refuses other sizes for it."""
_MANIFEST_VERSION = 1


@lru_cache(maxsize=4)
def _font(path: str) -> ImageFont.FreeTypeFont:
    # Raqm (HarfBuzz) shapes ZWJ, flag and skin-tone sequences into one glyph; without it
    # Pillow's basic layout draws their parts side by side (see _single_glyph).
    layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    if not Path(path).is_file():
        raise TaskError(
            f"{path}: expected the Noto Color Emoji font (Debian package fonts-noto-color-emoji), "
            "got no such file"
        )
    try:
        return ImageFont.truetype(path, FONT_SIZE, layout_engine=layout)
    except OSError as exc:
        raise TaskError(
            f"{path}: expected a colour bitmap font with a {FONT_SIZE} px strike, got {exc}"
        ) from exc


def _layout_name(font: ImageFont.FreeTypeFont) -> str:
    return "raqm" if font.layout_engine == ImageFont.Layout.RAQM else "basic"


def _single_glyph(emoji: str, font: ImageFont.FreeTypeFont) -> bool:
    """Whether ``emoji`` lays out as one non-empty glyph (a cheap test, no pixels drawn)."""
    if _layout_name(font) == "basic" and len(emoji.replace("\ufe0f", "")) > 1:
        return False  # no shaping: sequences come out as their parts (tag flags as plain 🏴)
    left, top, right, bottom = font.getbbox(emoji)
    one = font.getlength("\U0001f600")
    return right > left and bottom > top and font.getlength(emoji) <= 1.5 * one


def render_emoji(emoji: str, size: int = 224, font_path: Path | str = FONT) -> Image.Image:
    """``emoji`` drawn in colour on a white square RGB canvas, resized to ``size`` pixels.

    The glyph (136x128 px at the font's strike) is centred on a 136 px square, then resized
    with Lanczos filtering. The result may be blank (all white) for emoji the font lacks; see
    :func:`is_blank`.
    """
    font = _font(str(font_path))
    left, top, right, bottom = (round(v) for v in font.getbbox(emoji))
    side = max(right - left, bottom - top, 1)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    origin = ((side - (right - left)) / 2 - left, (side - (bottom - top)) / 2 - top)
    ImageDraw.Draw(canvas).text(origin, emoji, font=font, embedded_color=True)
    if side != size:
        canvas = canvas.resize((size, size), Image.Resampling.LANCZOS)
    return canvas


def is_blank(image: Image.Image) -> bool:
    """Whether every pixel of ``image`` is pure white."""
    return bool((np.asarray(image.convert("RGB")) == 255).all())


@dataclass(frozen=True)
class EmojiAudit:
    """What drawing every emoji at the font's own size found."""

    blank: list[str]
    """Emoji whose drawing is all white (the font has no glyph for them)."""
    identical: list[list[str]]
    """Groups of two or more emoji whose drawings are pixel-identical (territory flags that
    reuse a country's, snowboarder skin tones behind goggles)."""


def audit_emoji(emoji: list[str], font_path: Path | str = FONT) -> EmojiAudit:
    """Draw each of ``emoji`` once (about 1 ms each) and report blank and identical drawings."""
    seen: dict[bytes, list[str]] = {}
    blank: list[str] = []
    for em in emoji:
        image = _native(em, font_path)
        if is_blank(image):
            blank.append(em)
            continue
        seen.setdefault(hashlib.sha1(image.tobytes()).digest(), []).append(em)
    return EmojiAudit(blank, [group for group in seen.values() if len(group) > 1])


def _native(emoji: str, font_path: Path | str) -> Image.Image:
    left, top, right, bottom = (round(v) for v in _font(str(font_path)).getbbox(emoji))
    return render_emoji(emoji, size=max(right - left, bottom - top, 1), font_path=font_path)


@dataclass
class EmojiItem(CaptionItem):
    """An emoji image: rendered into ``path`` (a PNG in the cache) on first :meth:`load`."""

    emoji: str = ""
    name: str = ""
    """The CLDR name as written in ``emoji-test.txt`` (``"flag: Kosovo"``)."""
    group: str = ""
    subgroup: str = ""
    base: str | None = None
    """The emoji this one varies (see :mod:`~.emoji_split`), or ``None``."""
    image_size: int = 224
    font_path: Path = FONT

    def load(self) -> Image.Image:
        """The rendered emoji (RGB, ``image_size`` square), from the cache when there."""
        assert self.path is not None
        if self.path.is_file():
            return open_rgb(self.path)
        image = render_emoji(self.emoji, self.image_size, self.font_path)
        if is_blank(image):
            raise TaskError(f"emoji {self.name!r}: expected a visible rendering, got a blank image")
        _atomic_save(image, self.path)
        return image


def _atomic_save(image: Image.Image, path: Path) -> None:
    # Several data-loader workers may render the same emoji: write aside, then rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def emoji_captions(
    entry: EmojiEntry, annotation: Annotation | None, keywords: bool = True
) -> list[str]:
    """``[name, *keyword phrases]`` lower-cased, without repeats (the name first)."""
    out = [clean_caption(entry.name)]
    if annotation is not None:
        extra = ([annotation.tts] if annotation.tts else []) + (
            list(annotation.keywords) if keywords else []
        )
        for phrase in extra:
            phrase = clean_caption(phrase)
            if phrase and phrase not in out:
                out.append(phrase)
    return out


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _manifest(
    cache: Path, entries: list[EmojiEntry], font_path: Path, audit: bool
) -> dict[str, Any]:
    """Renderability (and, with ``audit``, identical drawings), computed once per cache folder
    and check; the split depends on the check asked for, never on what the cache holds."""
    check = "pixels" if audit else "glyph-box"
    path = cache / f"manifest-{check}.json"
    if path.is_file():
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == _MANIFEST_VERSION:
                return data
        except (OSError, ValueError):
            pass  # unreadable: computed again and rewritten
    font = _font(str(font_path))
    # a sequence the layout cannot shape into one glyph would be a wrong image: skipped too
    unshaped = [e.emoji for e in entries if not _single_glyph(e.emoji, font)]
    identical: list[list[str]] = []
    skipped = unshaped
    if audit:
        found = audit_emoji([e.emoji for e in entries], font_path)
        blank = set(found.blank)
        skipped = found.blank + [em for em in unshaped if em not in blank]
        identical = found.identical
    data = {
        "version": _MANIFEST_VERSION,
        "check": check,
        "layout": _layout_name(font),
        "skipped": skipped,
        "identical": identical,
    }
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return data


def load_emoji(
    cache_dir: Path | str,
    valid_size: int | float = 300,
    test_size: int | float = 300,
    seed: int = 0,
    image_size: int = 224,
    keywords: bool = True,
    audit: bool = True,
    font_path: Path | str = FONT,
    emoji_test: Path | str = EMOJI_TEST,
    annotations: tuple[Path | str, ...] = (ANNOTATIONS_EN, ANNOTATIONS_DERIVED_EN),
) -> CaptionDataset:
    """The emoji caption dataset, split by the grouped hold-out rule.

    ``valid_size`` / ``test_size`` are counts (``int``) or shares of the renderable emoji
    (``float``); train is the rest. ``audit`` draws every emoji once (a few seconds, the first
    time a cache folder is used) to skip blank drawings by their pixels and to keep
    pixel-identical drawings in train; without it, the font's glyph boxes decide renderability
    (well under a second). Images are drawn ``image_size`` pixels square on first load and
    cached under ``cache_dir``. Returns a :class:`~.base.CaptionDataset` of
    :class:`EmojiItem`; ``stats`` holds the counts, the skipped names and the coverage.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise TaskError(f"image_size: expected an integer >= 8, got {image_size!r}")
    font_path, emoji_test = Path(font_path), Path(emoji_test)
    entries = parse_emoji_test(emoji_test)
    notes = parse_annotations(*annotations)
    font = _font(str(font_path))
    key = hashlib.sha1(
        "|".join(
            [_file_key(font_path), _file_key(emoji_test), PIL.__version__, _layout_name(font)]
        ).encode()
    ).hexdigest()[:16]
    cache = Path(cache_dir) / "emoji" / key
    manifest = _manifest(cache, entries, font_path, audit)
    skipped = set(manifest["skipped"])
    usable = [e for e in entries if e.emoji not in skipped]
    n_valid, n_test = resolve_split_sizes(len(usable), valid_size, test_size)
    identical = [em for group in manifest["identical"] for em in group]
    train, valid, test = hold_out(usable, n_valid, n_test, seed, keep_in_train=identical)

    bases = emoji_bases(usable)
    by_emoji = {e.emoji: e for e in usable}

    def item(em: str) -> EmojiItem:
        e = by_emoji[em]
        return EmojiItem(
            image_id=e.hex,
            captions=emoji_captions(e, notes.get(annotation_key(em)), keywords),
            path=cache / str(image_size) / f"{e.hex}.png",
            emoji=em,
            name=e.name,
            group=e.group,
            subgroup=e.subgroup,
            base=bases[em],
            image_size=image_size,
            font_path=font_path,
        )

    data = CaptionDataset(
        [item(em) for em in train],
        [item(em) for em in valid],
        [item(em) for em in test],
        description="",
    )
    names = {e.emoji: e.name for e in entries}
    version = max((e.version for e in entries), key=lambda v: tuple(map(int, v.split("."))))
    stats: dict[str, Any] = {
        "fully_qualified": len(entries),
        "renderable": len(usable),
        "skipped": len(skipped),
        "skipped_names": [names[em] for em in manifest["skipped"]],
        "render_check": manifest["check"],
        "layout": manifest["layout"],
        "identical_groups": [[names[em] for em in g] for g in manifest["identical"]],
        "annotated": sum(annotation_key(e.emoji) in notes for e in usable),
        "train": len(train),
        "valid": len(valid),
        "test": len(test),
        "seed": seed,
        "test_coverage_names": data.coverage("test", primary_only=True),
        "test_coverage_all": data.coverage("test"),
        "valid_coverage_all": data.coverage("valid"),
    }
    data.stats = stats
    skipped_text = f"{stats['skipped']} skipped as the font cannot draw them" + (
        f" ({', '.join(stats['skipped_names'][:3])}...)" if skipped else ""
    )
    data.description = (
        f"Noto Color Emoji ({font_path.name}) drawn {image_size} px square on white: "
        f"{len(entries)} fully-qualified emoji of {emoji_test.name} (Emoji {version}), "
        f"{len(usable)} renderable, {skipped_text}. Captions: the CLDR name, lower-cased"
        + (", then CLDR's English keyword phrases" if keywords else "")
        + f". Grouped hold-out (seed {seed}): train {len(train)} / valid {len(valid)} / "
        f"test {len(test)}; test words in the training vocabulary: "
        f"{stats['test_coverage_names']:.1%} of names, {stats['test_coverage_all']:.1%} of "
        "all references."
    )
    return data
