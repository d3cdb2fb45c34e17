"""Subword and word tokenizers on Hugging Face ``tokenizers``.

One :class:`Tokenizer` wraps a ``tokenizers.Tokenizer`` built the same way for every model:
NFKC normalisation with whitespace runs collapsed to one space (optionally lowercased), the
specials first (pad=0, unk=1, bos=2, eos=3, then any extras), and

* ``bpe`` / ``unigram``: the Metaspace pre-tokenizer and decoder (SentencePiece's ``▁``), so
  ``decode(encode(s)) == normalize(s)`` for any text the vocabulary covers;
* ``wordlevel``: whitespace split with each punctuation character its own token; decoding
  joins the words with single spaces (``"Where is Mary ?"``).

``save`` writes the standard ``tokenizer.json`` that ``tokenizers.Tokenizer.from_file`` reads.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pylstm.errors import CheckpointError, DTypeError, LstmValueError

from ._checks import as_id_sequence, as_id_sequences, check_bool, check_int, check_text, check_texts
from .specials import BOS_ID, DEFAULT_SPECIALS, EOS_ID, PAD_ID, UNK_ID

if TYPE_CHECKING:
    import tokenizers

ModelKind = Literal["bpe", "unigram", "wordlevel"]
MODELS: tuple[str, ...] = ("bpe", "unigram", "wordlevel")
_HF_MODEL_KIND = {"BPE": "bpe", "Unigram": "unigram", "WordLevel": "wordlevel"}
_DEFAULT_MIN_FREQUENCY = {"bpe": 2, "wordlevel": 1}


def _hf() -> Any:
    """The ``tokenizers`` package, or an ImportError naming the extra that installs it."""
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - tokenizers is in the test extra
        raise ImportError(
            "pylstm.data.Tokenizer needs Hugging Face tokenizers: pip install 'pylstm[text]'"
        ) from exc
    return tokenizers


def _normalizer(lowercase: bool) -> Any:
    n = _hf().normalizers
    steps = [n.NFKC(), n.Replace(_hf().Regex(r"\s+"), " "), n.Strip()]
    if lowercase:
        steps.append(n.Lowercase())
    return n.Sequence(steps)


def _word_pre_tokenizer(split_punctuation: bool) -> Any:
    p = _hf().pre_tokenizers
    if split_punctuation:
        return p.Sequence([p.WhitespaceSplit(), p.Punctuation(behavior="isolated")])
    return p.WhitespaceSplit()


def _check_specials(specials: Any) -> list[str]:
    items = check_texts(specials, "specials")
    if len(items) < 4:
        raise LstmValueError(
            f"specials: expected at least the 4 tokens pad, unk, bos, eos (in that order), "
            f"got {len(items)}: {items!r}"
        )
    for i, s in enumerate(items):
        if not s or s != s.strip():
            raise LstmValueError(
                f"specials[{i}]: expected a non-empty token without surrounding "
                f"whitespace, got {s!r}"
            )
    if len(set(items)) != len(items):
        raise LstmValueError(f"specials: expected distinct tokens, got {items!r}")
    return items


def _check_path(path: Any) -> str | os.PathLike[str]:
    if not isinstance(path, (str, os.PathLike)):
        raise DTypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    return path


class Tokenizer:
    """Text <-> token ids, with the fixed specials ``pad_id=0, unk_id=1, bos_id=2, eos_id=3``.

    Build one with :meth:`train`, :meth:`from_vocabulary` or :meth:`load`; the constructor wraps
    an existing ``tokenizers.Tokenizer`` whose ids 0-3 are special tokens.
    """

    pad_id: int = PAD_ID
    unk_id: int = UNK_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID

    def __init__(self, hf_tokenizer: tokenizers.Tokenizer) -> None:
        hf = _hf()
        if not isinstance(hf_tokenizer, hf.Tokenizer):
            raise DTypeError(
                f"hf_tokenizer: expected a tokenizers.Tokenizer, got {type(hf_tokenizer).__name__}"
            )
        kind = _HF_MODEL_KIND.get(type(hf_tokenizer.model).__name__)
        if kind is None:
            raise LstmValueError(
                f"hf_tokenizer: expected a BPE, Unigram or WordLevel model, got "
                f"{type(hf_tokenizer.model).__name__}"
            )
        added = hf_tokenizer.get_added_tokens_decoder()
        specials = {i: t.content for i, t in added.items() if t.special}
        missing = [i for i in range(4) if i not in specials]
        if missing:
            raise LstmValueError(
                f"hf_tokenizer: expected special tokens pad, unk, bos, eos at ids 0-3, "
                f"ids {missing} are not special tokens"
            )
        self._hf = hf_tokenizer
        self._model: str = kind
        self._specials = tuple(specials[i] for i in sorted(specials))

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        model: ModelKind = "bpe",
        vocab_size: int = 8000,
        min_frequency: int | None = None,
        lowercase: bool = False,
        specials: Sequence[str] = DEFAULT_SPECIALS,
    ) -> Tokenizer:
        """Train a tokenizer on a training split.

        Args:
            texts: the training texts (an iterable of str, read once).
            model: ``"bpe"``, ``"unigram"`` (subwords) or ``"wordlevel"`` (one id per word or
                punctuation mark).
            vocab_size: the most entries, specials included; must exceed ``len(specials)``.
                BPE always keeps every character of the corpus; Unigram needs room for them.
            min_frequency: the fewest occurrences of a merge (bpe, default 2) or a word
                (wordlevel, default 1); Unigram has no such setting.
            lowercase: lowercase after NFKC normalisation.
            specials: pad, unk, bos, eos (in that order), then any extra special tokens.
        """
        hf = _hf()
        items = check_texts(texts, "texts")
        if not any(t.strip() for t in items):
            raise LstmValueError(
                f"texts: expected at least one non-empty text, got {len(items)} "
                f"text(s){' all blank' if items else ''}"
            )
        if model not in MODELS:
            raise LstmValueError(f"model: expected one of {MODELS}, got {model!r}")
        special_list = _check_specials(specials)
        vocab_size = check_int(vocab_size, "vocab_size")
        if vocab_size <= len(special_list):
            raise LstmValueError(
                f"vocab_size: expected more than the {len(special_list)} special tokens, "
                f"got {vocab_size}"
            )
        if min_frequency is None:
            min_frequency = _DEFAULT_MIN_FREQUENCY.get(model)
        elif model == "unigram":
            raise LstmValueError(
                f"min_frequency: not a setting of model='unigram', got {min_frequency!r}"
            )
        else:
            min_frequency = check_int(min_frequency, "min_frequency", minimum=0)
        lowercase = check_bool(lowercase, "lowercase")
        unk = special_list[UNK_ID]

        if model == "bpe":
            tok = hf.Tokenizer(hf.models.BPE(unk_token=unk, fuse_unk=True))
            trainer = hf.trainers.BpeTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=special_list,
                show_progress=False,
            )
        elif model == "unigram":
            tok = hf.Tokenizer(hf.models.Unigram())
            trainer = hf.trainers.UnigramTrainer(
                vocab_size=vocab_size,
                special_tokens=special_list,
                unk_token=unk,
                show_progress=False,
            )
        else:
            tok = hf.Tokenizer(hf.models.WordLevel(unk_token=unk))
            trainer = hf.trainers.WordLevelTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=special_list,
                show_progress=False,
            )
        tok.normalizer = _normalizer(lowercase)
        if model == "wordlevel":
            tok.pre_tokenizer = _word_pre_tokenizer(split_punctuation=True)
        else:
            tok.pre_tokenizer = hf.pre_tokenizers.Metaspace()
            tok.decoder = hf.decoders.Metaspace()
        try:
            tok.train_from_iterator(items, trainer=trainer, length=len(items))
        except Exception as exc:
            if "not large enough" not in str(exc):
                raise
            chars = {c for t in items for c in tok.normalizer.normalize_str(t).replace(" ", "▁")}
            raise LstmValueError(
                f"vocab_size: model='unigram' needs room for every character of texts plus the "
                f"specials (about {len(chars) + 1 + len(special_list)}), got {vocab_size}"
            ) from exc
        return cls(tok)

    @classmethod
    def from_vocabulary(
        cls,
        words: Iterable[str],
        *,
        lowercase: bool = False,
        split_punctuation: bool = True,
        specials: Sequence[str] = DEFAULT_SPECIALS,
    ) -> Tokenizer:
        """A word-level tokenizer over a fixed word list (e.g. bAbI's answers).

        Ids follow the specials in the order of ``words`` (normalised; repeats and words equal
        to a special are kept once). With ``split_punctuation`` (as ``train(model="wordlevel")``)
        encoding splits punctuation off words, so a word with punctuation inside it is an error;
        pass ``False`` to keep such entries (``"apple,football"``) as single tokens.
        """
        hf = _hf()
        items = check_texts(words, "words")
        if not items:
            raise LstmValueError("words: expected at least one word, got 0")
        lowercase = check_bool(lowercase, "lowercase")
        split_punctuation = check_bool(split_punctuation, "split_punctuation")
        special_list = _check_specials(specials)
        normalizer = _normalizer(lowercase)
        pre_tokenizer = _word_pre_tokenizer(split_punctuation)
        vocab: dict[str, int] = {s: i for i, s in enumerate(special_list)}
        for i, word in enumerate(items):
            if word in special_list:
                continue
            norm = normalizer.normalize_str(word)
            pieces = [p for p, _ in pre_tokenizer.pre_tokenize_str(norm)]
            if pieces != [norm] or not norm:
                hint = (
                    " (pass split_punctuation=False to keep it whole)"
                    if split_punctuation and len(pieces) > 1 and " " not in norm
                    else ""
                )
                raise LstmValueError(
                    f"words[{i}]: expected a single token, got {word!r} which encodes as "
                    f"{pieces!r}{hint}"
                )
            vocab.setdefault(norm, len(vocab))
        tok = hf.Tokenizer(hf.models.WordLevel(vocab=vocab, unk_token=special_list[UNK_ID]))
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizer
        tok.add_special_tokens(special_list)
        return cls(tok)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Reload a tokenizer written by :meth:`save` (any ``tokenizer.json`` whose ids 0-3 are
        the special tokens pad, unk, bos, eos).

        Raises:
            pylstm.CheckpointError: the file is missing, unreadable, not a tokenizers JSON file,
                or lacks the specials; the message names the file.
        """
        hf = _hf()
        _check_path(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise CheckpointError(f"tokenizer file {os.fspath(path)!r}: not found") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(
                f"tokenizer file {os.fspath(path)!r}: cannot be read as UTF-8 text ({exc})"
            ) from exc
        try:
            tok = hf.Tokenizer.from_str(text)
        except Exception as exc:
            raise CheckpointError(
                f"tokenizer file {os.fspath(path)!r}: not a valid tokenizers JSON file ({exc})"
            ) from exc
        try:
            return cls(tok)
        except (LstmValueError, DTypeError) as exc:
            raise CheckpointError(f"tokenizer file {os.fspath(path)!r}: {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as a ``tokenizer.json`` file (atomically: a crash leaves either
        the old file or the new one)."""
        target = Path(_check_path(path))
        data = self._hf.to_str(pretty=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ---- encoding and decoding ----------------------------------------------------------

    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (NFKC, whitespace collapsed, maybe lowercased)."""
        return self._hf.normalizer.normalize_str(check_text(text, "text"))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no bos/eos: :func:`pylstm.data.pad` adds them)."""
        return self._hf.encode(check_text(text, "text"), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (encoded in parallel by the Rust library)."""
        items = check_texts(texts, "texts")
        return [e.ids for e in self._hf.encode_batch(items, add_special_tokens=False)]

    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text``, one per id of :meth:`encode` (for attention plots)."""
        return self._hf.encode(check_text(text, "text"), add_special_tokens=False).tokens

    def _check_ids(self, ids: np.ndarray, name: str) -> list[int]:
        if ids.size and ids.max() >= self.vocab_size:
            j = int(np.argmax(ids >= self.vocab_size))
            raise LstmValueError(
                f"{name}[{j}]: expected an id below vocab_size={self.vocab_size}, got {int(ids[j])}"
            )
        return ids.tolist()

    def decode(self, ids: Sequence[int] | np.ndarray, skip_specials: bool = True) -> str:
        """Text of ``ids``; with ``skip_specials`` pad/unk/bos/eos (and extras) are left out."""
        checked = self._check_ids(as_id_sequence(ids, "ids"), "ids")
        skip = check_bool(skip_specials, "skip_specials")
        return self._hf.decode(checked, skip_special_tokens=skip)

    def decode_batch(
        self, sequences: Sequence[Sequence[int]] | np.ndarray, skip_specials: bool = True
    ) -> list[str]:
        """Text of each id sequence (a ragged list or a batch-major ``[B, T]`` array)."""
        seqs = as_id_sequences(sequences, "sequences")
        checked = [self._check_ids(s, f"sequences[{i}]") for i, s in enumerate(seqs)]
        skip = check_bool(skip_specials, "skip_specials")
        return self._hf.decode_batch(checked, skip_special_tokens=skip)

    # ---- vocabulary ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids (specials included); every id is in ``range(vocab_size)``."""
        return self._hf.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def model(self) -> str:
        """``"bpe"``, ``"unigram"`` or ``"wordlevel"``."""
        return self._model

    @property
    def specials(self) -> tuple[str, ...]:
        """The special tokens in id order: pad, unk, bos, eos, then any extras."""
        return self._specials

    @property
    def hf_tokenizer(self) -> tokenizers.Tokenizer:
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._hf

    def token_to_id(self, token: str) -> int:
        """Id of a vocabulary entry; ``unk_id`` when it is not one (use ``in`` to ask)."""
        found = self._hf.token_to_id(check_text(token, "token"))
        return self.unk_id if found is None else found

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self._hf.token_to_id(token) is not None

    def id_to_token(self, id: int) -> str:
        """The vocabulary entry of ``id``."""
        i = check_int(id, "id", minimum=0)
        if i >= self.vocab_size:
            raise LstmValueError(f"id: expected an id below vocab_size={self.vocab_size}, got {i}")
        return self._hf.id_to_token(i)

    def __repr__(self) -> str:
        return f"Tokenizer(model={self._model!r}, vocab_size={self.vocab_size})"


__all__ = ["MODELS", "ModelKind", "Tokenizer"]
