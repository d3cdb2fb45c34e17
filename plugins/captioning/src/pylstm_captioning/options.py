"""The captioning task's options: ``pylstm train captioning --...`` and ``pylstm predict``.

Each dataclass field is one flag (``batch_size`` -> ``--batch-size``); the values are saved in
the run's ``run.json`` and checked again when the run is opened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pylstm.plugins import TaskError

__all__ = ["CaptionRequest", "CaptioningOptions"]


def _help(text: str, group: str, **extra: object) -> dict[str, object]:
    return {"help": text, "group": group, **extra}


def _need(ok: bool, name: str, what: str, value: object) -> None:
    if not ok:
        raise TaskError(f"--{name.replace('_', '-')}: expected {what}, got {value}")


@dataclass
class CaptioningOptions:
    """The data, the vocabulary, the decoder, its training and the evaluation."""

    # data
    images: Path | None = field(default=None, metadata=_help(
        "your own data: a folder of images (else the built-in emoji data: Noto Color Emoji "
        "captioned with their Unicode/CLDR names)", "data"))
    captions: Path | None = field(default=None, metadata=_help(
        "your own data: captions in the Flickr8k token format (image.jpg#0<TAB>caption) or "
        "COCO captions JSON", "data"))
    caption_format: Literal["auto", "flickr", "coco"] = field(default="auto", metadata=_help(
        "format of --captions (auto: COCO for .json, else Flickr8k)", "data"))
    valid_size: float = field(default=0.0, metadata=_help(
        "held-out validation images: a count (>= 1) or a share in (0, 1); 0: 300 emoji or "
        "10%% of your images", "data"))
    test_size: float = field(default=0.0, metadata=_help(
        "held-out test images, as --valid-size", "data"))
    cache_dir: Path | None = field(default=None, metadata=_help(
        "cache of encoder weights, rendered emoji and features (default "
        "$PYLSTM_CACHE/captioning or ~/.cache/pylstm/captioning)", "data"))
    train_captions: Literal["auto", "first", "all"] = field(default="auto", metadata=_help(
        "which captions of a training image to learn (auto: the emoji's name only, every "
        "caption of your own images)", "data"))
    # vocabulary
    min_count: int = field(default=1, metadata=_help(
        "words seen fewer times in the training captions become <unk>", "vocab"))
    # model
    reduce: int = field(default=512, metadata=_help(
        "project the 1280 encoder features onto their leading principal components (fitted "
        "on the training images, frozen) before the decoder; 0: attend over the raw features",
        "model"))
    emb: int = field(default=128, metadata=_help("word embedding size", "model"))
    hidden: int = field(default=384, metadata=_help("LSTM size", "model"))
    attn_dim: int = field(default=256, metadata=_help("attention projection size", "model"))
    attention: bool = field(default=True, metadata=_help(
        "soft attention over the 7x7 grid (--no-attention: the mean feature only)", "model"))
    dropout: float = field(default=0.5, metadata=_help("dropout before the output layer",
                                                       "model"))
    penalty: float = field(default=1.0, metadata=_help(
        "weight of the doubly-stochastic attention penalty", "model"))
    max_len: int = field(default=20, metadata=_help("longest caption decoded (words + EOS)",
                                                    "model"))
    # training
    epochs: int = field(default=30, metadata=_help("epochs", "training"))
    batch_size: int = field(default=64, metadata=_help("captions per batch", "training"))
    lr: float = field(default=2e-3, metadata=_help("Adam learning rate", "training"))
    warmup: int = field(default=100, metadata=_help("warm-up steps", "training"))
    clip: float = field(default=5.0, metadata=_help("gradient-norm clip (0: off)", "training"))
    patience: int = field(default=6, metadata=_help(
        "stop after this many epochs without a better validation loss (0: never)", "training"))
    time_budget: float = field(default=600.0, metadata=_help(
        "stop training after this many seconds (0: no limit)", "training"))
    baseline: bool = field(default=True, metadata=_help(
        "also train the decoder without attention (for as many epochs as the model trained)",
        "training"))
    # evaluation
    beam: int = field(default=3, metadata=_help("beam width (1: greedy)", "decoding"))
    length_penalty: float = field(default=0.0, metadata=_help(
        "GNMT length penalty alpha (0: raw log-probability)", "decoding"))
    samples: int = field(default=6, metadata=_help(
        "test images drawn with their attention maps (PNG files in the run folder)",
        "evaluation"))

    def __post_init__(self) -> None:
        for name in ("emb", "hidden", "attn_dim", "epochs", "batch_size", "beam", "min_count"):
            _need(getattr(self, name) >= 1, name, "an integer >= 1", getattr(self, name))
        _need(self.max_len >= 2, "max_len", "an integer >= 2", self.max_len)
        for name in ("warmup", "patience", "samples", "reduce"):
            _need(getattr(self, name) >= 0, name, "an integer >= 0", getattr(self, name))
        _need(math.isfinite(self.dropout) and 0 <= self.dropout < 1, "dropout",
              "a number in [0, 1)", self.dropout)
        _need(math.isfinite(self.lr) and self.lr > 0, "lr", "a positive number", self.lr)
        for name in ("clip", "time_budget", "length_penalty", "penalty", "valid_size",
                     "test_size"):
            v = getattr(self, name)
            _need(math.isfinite(v) and v >= 0, name, "a number >= 0", v)
        for name in ("valid_size", "test_size"):
            v = getattr(self, name)
            _need(v < 1 or float(v).is_integer(), name, "a whole count or a share in (0, 1)", v)
        if (self.images is None) != (self.captions is None):
            raise TaskError("--images/--captions: expected both (a folder and its caption "
                            "file) or neither, got one")

    def split_size(self, name: str) -> int | float:
        """``valid_size``/``test_size`` as the dataset loaders take it (int count or float
        share), the default filled in."""
        v = float(getattr(self, name))
        if v == 0:
            return 300 if self.images is None else 0.1
        return int(v) if v >= 1 else v


@dataclass
class CaptionRequest:
    """``pylstm predict RUN --image photo.jpg``: the caption, optionally its attention map."""

    image: Path | None = field(default=None, metadata={"help": "the image to caption"})
    attention_map: Path | None = field(default=None, metadata={
        "help": "also draw each word's attention over the image into this PNG"})
    beam: int = field(default=3, metadata={"help": "beam width (1: greedy)"})
    length_penalty: float = field(default=0.0, metadata={"help": "GNMT length penalty"})

    def __post_init__(self) -> None:
        if self.image is None:
            raise TaskError("predict: expected --image FILE, got none")
        _need(self.beam >= 1, "beam", "an integer >= 1", self.beam)
        _need(math.isfinite(self.length_penalty) and self.length_penalty >= 0,
              "length_penalty", "a number >= 0", self.length_penalty)
