"""Words to ids: the vocabulary built from the training data, and samples as id arrays.

* :class:`Vocab`: the words of the training stories, questions and answers (lower-cased,
  punctuation dropped), after the toolkit's fixed special ids (pad 0, unk 1, bos 2, eos 3; the
  eos id is the answer's *end* marker). A word never seen in training reads as unk in a story
  or a question; as an answer it is an error naming the word.
* :class:`Encoded`: one sample as ids: its facts (the last ``max_facts`` statements, one id list
  each), the question, the answer and the support indices into the kept facts.
* :class:`Batch` / :func:`make_batch`: samples padded into arrays ``facts [B, F, W]``,
  ``n_facts [B]``, ``question [B, Q]``, ``q_len [B]``, ``answer [B, L]``.

Answers are sequences: a single word is ``[word]``; the lists of task 8 and the paths of task 19
(``milk,apple``; ``n,w``) are their words in the file's order. The model predicts ``L`` (the
longest training answer) positions, each a word or the end marker, and an answer is right when
the whole sequence is (see the README).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pylstm.data import EOS_ID, PAD_ID, UNK_ID
from pylstm.plugins import TaskError
from pylstm_dmn.babi import Story, tokenize

__all__ = ["END", "Batch", "Encoded", "Vocab", "make_batch", "sentence_words"]

END = EOS_ID
"""The id that closes an answer (the toolkit's eos id)."""
SPECIALS = ("<pad>", "<unk>", "<bos>", "<end>")
_WORD = re.compile(r"\w")


def sentence_words(sentence: str) -> list[str]:
    """The words of a sentence as the model reads them: lower-cased, punctuation dropped."""
    return [t for t in tokenize(sentence) if _WORD.match(t)]


def answer_words(answer: Sequence[str]) -> list[str]:
    """The answer's words, lower-cased (``("Fred",)`` -> ``["fred"]``)."""
    return [w.strip().lower() for w in answer]


class Vocab:
    """Word <-> id. Ids 0-3 are the toolkit's specials; words follow in sorted order."""

    def __init__(self, words: Iterable[str]) -> None:
        seen = [w for w in words if w not in SPECIALS]
        self.words: list[str] = list(SPECIALS) + sorted(set(seen))
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, samples: Iterable[Story]) -> Vocab:
        """The vocabulary of ``samples`` (stories, questions and answers)."""
        words: set[str] = set()
        for s in samples:
            for sentence in s.sentences:
                words.update(sentence_words(sentence))
            words.update(sentence_words(s.question.text))
            words.update(answer_words(s.question.answer))
        return cls(words)

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, words: Sequence[str]) -> list[int]:
        """Ids of ``words``; unknown words are unk."""
        return [self.index.get(w, UNK_ID) for w in words]

    def unknown(self, words: Iterable[str]) -> list[str]:
        """The words of ``words`` the vocabulary lacks, in order, once each."""
        out: list[str] = []
        for w in words:
            if w not in self.index and w not in out:
                out.append(w)
        return out

    def answer_ids(self, answer: Sequence[str], length: int, where: str) -> list[int]:
        """The answer as ``length`` ids: its words, then end markers. An unknown word or a
        longer answer is a :class:`TaskError` naming ``where``."""
        words = answer_words(answer)
        for w in words:
            if w not in self.index:
                raise TaskError(f"{where}: expected an answer word of the model's vocabulary "
                                f"({len(self.words) - len(SPECIALS)} words), got {w!r}")
        if len(words) > length:
            raise TaskError(f"{where}: expected an answer of at most {length} words, got "
                            f"{len(words)} ({','.join(words)})")
        return [self.index[w] for w in words] + [END] * (length - len(words))

    def decode_answer(self, ids: Sequence[int]) -> list[str]:
        """Answer ids -> words, stopping at the end marker (other specials skipped)."""
        out = []
        for i in ids:
            if i == END:
                break
            if i >= len(SPECIALS):
                out.append(self.words[i])
        return out

    def to_json(self) -> list[str]:
        """The words in id order (specials first)."""
        return list(self.words)

    @classmethod
    def from_json(cls, words: object, where: str) -> Vocab:
        """A vocabulary read back from ``where`` (the specials checked)."""
        if (not isinstance(words, list) or not all(isinstance(w, str) for w in words)
                or tuple(words[:len(SPECIALS)]) != SPECIALS or len(set(words)) != len(words)):
            raise TaskError(f"{where}: expected the vocabulary as a list of distinct words "
                            f"starting with {list(SPECIALS)}, got {str(words)[:60]}")
        v = cls(())
        v.words = list(words)
        v.index = {w: i for i, w in enumerate(words)}
        return v


@dataclass(frozen=True)
class Encoded:
    """One sample as ids (see the module docstring); ``support`` indexes ``facts``."""

    facts: list[list[int]]
    question: list[int]
    answer: list[int]
    support: tuple[int, ...]
    task: int


def encode(samples: Sequence[Story], vocab: Vocab, answer_len: int, max_facts: int,
           where: str = "data") -> list[Encoded]:
    """Samples as :class:`Encoded` (only the last ``max_facts`` statements are kept; support
    ids before that window are dropped). Answer errors name ``where`` and the question."""
    out = []
    for n, s in enumerate(samples):
        start = max(0, len(s.sentences) - max_facts)
        facts = [vocab.ids(sentence_words(x)) or [UNK_ID] for x in s.sentences[start:]]
        q = vocab.ids(sentence_words(s.question.text)) or [UNK_ID]
        ans = vocab.answer_ids(s.question.answer, answer_len,
                               f"{where}: question {n + 1} ({s.question.text!r})")
        support = tuple(i - start for i in s.question.support if i >= start)
        out.append(Encoded(facts, q, ans, support, s.task))
    return out


@dataclass
class Batch:
    """Padded samples: ``facts [B, F, W]`` int64 (0: padding), ``n_facts [B]``,
    ``question [B, Q]``, ``q_len [B]``, ``answer [B, L]``, ``support`` per sample and
    ``task [B]``."""

    facts: np.ndarray
    n_facts: np.ndarray
    question: np.ndarray
    q_len: np.ndarray
    answer: np.ndarray
    support: list[tuple[int, ...]]
    task: np.ndarray

    @property
    def fact_mask(self) -> np.ndarray:
        """``[B, F]`` bool: which facts are real."""
        return np.arange(self.facts.shape[1])[None, :] < self.n_facts[:, None]

    def __len__(self) -> int:
        return int(self.facts.shape[0])


def make_batch(samples: Sequence[Encoded]) -> Batch:
    """Pad ``samples`` into one :class:`Batch`."""
    b = len(samples)
    nf = max(len(s.facts) for s in samples)
    nw = max(len(f) for s in samples for f in s.facts)
    nq = max(len(s.question) for s in samples)
    facts = np.full((b, nf, nw), PAD_ID, np.int64)
    question = np.full((b, nq), PAD_ID, np.int64)
    for i, s in enumerate(samples):
        for j, f in enumerate(s.facts):
            facts[i, j, :len(f)] = f
        question[i, :len(s.question)] = s.question
    return Batch(facts, np.array([len(s.facts) for s in samples], np.int64), question,
                 np.array([len(s.question) for s in samples], np.int64),
                 np.array([s.answer for s in samples], np.int64),
                 [s.support for s in samples], np.array([s.task for s in samples], np.int64))
