"""Caption datasets of the captioning task: rendered emoji (the default) and the user's own.

* :func:`load_emoji` - Noto Color Emoji images captioned with their Unicode/CLDR names, split
  so that held-out images are new combinations of trained parts
  (:mod:`~pylstm_captioning.datasets.emoji_split` states the rule).
* :func:`load_flickr` / :func:`load_coco` - a folder of images with Flickr8k token lines or
  COCO captions JSON.

Each returns a :class:`CaptionDataset` of :class:`CaptionItem` (``image_id``, ``captions``,
``load()`` -> RGB ``PIL.Image``). :func:`normalize_caption` is the tokenizer-friendly form of a
caption (lower-case, punctuation split off). Errors are :class:`pylstm.plugins.TaskError`.
"""

from pylstm_captioning.datasets.base import (
    CaptionDataset,
    CaptionItem,
    caption_tokens,
    caption_words,
    clean_caption,
    normalize_caption,
    open_rgb,
    vocabulary_coverage,
)
from pylstm_captioning.datasets.emoji import (
    EmojiAudit,
    EmojiItem,
    audit_emoji,
    is_blank,
    load_emoji,
    render_emoji,
)
from pylstm_captioning.datasets.emoji_split import emoji_bases, hold_out
from pylstm_captioning.datasets.unicode_data import EmojiEntry, parse_annotations, parse_emoji_test
from pylstm_captioning.datasets.user import load_coco, load_flickr, parse_coco, parse_flickr

__all__ = [
    "CaptionDataset",
    "CaptionItem",
    "EmojiAudit",
    "EmojiEntry",
    "EmojiItem",
    "audit_emoji",
    "caption_tokens",
    "caption_words",
    "clean_caption",
    "emoji_bases",
    "hold_out",
    "is_blank",
    "load_coco",
    "load_emoji",
    "load_flickr",
    "normalize_caption",
    "open_rgb",
    "parse_annotations",
    "parse_coco",
    "parse_emoji_test",
    "parse_flickr",
    "render_emoji",
    "vocabulary_coverage",
]
