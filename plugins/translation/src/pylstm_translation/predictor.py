"""The trained translator as an application uses it: ``pylstm.load(run).translate([...])``.

:class:`Translator` holds the network in evaluation mode and its tokenizers; translating never
changes any state, so any number of threads may call it at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pylstm.data import Tokenizer
from pylstm.plugins import TaskError
from pylstm.runs import Run

from .model import Seq2Seq, TranslatorConfig
from .search import Decoded, decode

__all__ = ["MODEL", "SRC_TOKENIZER", "TGT_TOKENIZER", "Translator"]

MODEL = "model"
"""The run's weights and config: ``model.safetensors`` and ``model.json``."""
SRC_TOKENIZER = "tokenizer.src.json"
TGT_TOKENIZER = "tokenizer.tgt.json"


class Translator:
    """A trained translation model with its subword tokenizers (what ``pylstm.load``
    returns for a translation run).

    Attributes:
        net: the :class:`Seq2Seq` network (evaluation mode).
        src_tokenizer, tgt_tokenizer: the subword tokenizers (the same object for a joint
            vocabulary).
        options: the options the run was trained with (``None`` for a bare model).
    """

    def __init__(self, net: Seq2Seq, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer,
                 options: Any = None) -> None:
        self.net = net.eval()
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer
        self.options = options

    @property
    def config(self) -> TranslatorConfig:
        """The network's sizes and switches."""
        return self.net.cfg

    def translate_detailed(self, sentences: Sequence[str], *, beam: int = 5,
                           length_penalty: float = 1.0) -> list[tuple[str, Decoded]]:
        """``(translation, Decoded)`` per sentence (the ids, score and attention weights);
        an empty sentence translates to an empty string."""
        if isinstance(sentences, str) or not isinstance(sentences, Sequence):
            raise TaskError(f"sentences: expected a list of strings, got "
                            f"{type(sentences).__name__}")
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TaskError(f"sentences[{i}]: expected a string, got {type(s).__name__}")
        if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
            raise TaskError(f"beam: expected an integer >= 1, got {beam!r}")
        texts = [s.strip() for s in sentences]
        todo = [i for i, s in enumerate(texts) if s]
        ids = self.src_tokenizer.encode_batch([texts[i] for i in todo]) if todo else []
        found = decode(self.net, ids, beam=beam, length_penalty=float(length_penalty))
        out: list[tuple[str, Decoded]] = [("", Decoded([], 0.0, None))] * len(texts)
        for i, d in zip(todo, found, strict=True):
            out[i] = (self.tgt_tokenizer.decode(d.ids), d)
        return out

    def translate(self, sentences: Sequence[str], *, beam: int = 5,
                  length_penalty: float = 1.0) -> list[str]:
        """The translation of each sentence (``beam=1``: greedy search)."""
        return [t for t, _ in self.translate_detailed(sentences, beam=beam,
                                                      length_penalty=length_penalty)]

    # ------------------------------------------------------------------ run folder
    def save(self, run: Run) -> None:
        """Weights, config and tokenizers into ``run``."""
        run.save_tensors(MODEL, self.net.state_dict(), config=self.config.to_json())
        run.add_file(SRC_TOKENIZER, self.src_tokenizer.save)
        run.add_file(TGT_TOKENIZER, self.tgt_tokenizer.save)

    @classmethod
    def load(cls, run: Run, options: Any = None) -> Translator:
        """Rebuild from ``run``: digests checked, the config validated, then the weights."""
        tensors, config = run.load_tensors(MODEL)
        cfg = TranslatorConfig.from_json(config, str(run.file(MODEL + ".json")))
        net = Seq2Seq(cfg)
        net.load_state_dict(tensors)
        src = Tokenizer.load(run.verified_path(SRC_TOKENIZER))
        tgt = Tokenizer.load(run.verified_path(TGT_TOKENIZER))
        for name, tok, size in (("source", src, cfg.src_vocab), ("target", tgt, cfg.tgt_vocab)):
            if tok.vocab_size != size:
                raise TaskError(f"{run.path}: the {name} tokenizer has {tok.vocab_size} "
                                f"tokens, the model expects {size}")
        return cls(net, src, tgt, options)

    @staticmethod
    def tokenizer_paths(run_dir: Path) -> tuple[Path, Path]:
        """Where a run keeps its tokenizers."""
        return run_dir / SRC_TOKENIZER, run_dir / TGT_TOKENIZER
