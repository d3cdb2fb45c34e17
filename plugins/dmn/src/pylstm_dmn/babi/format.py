"""The published bAbI text format: the sample types, the tokenizer, the parser and the writer.

A file holds stories one after another. Every line is ``ID text``; the id restarts at 1 where a
new story begins and otherwise grows by one. A statement line is ``ID sentence``; a question line
is ``ID question<TAB>answer<TAB>support ids``, the answer one word or several joined by ``,``
(tasks 8 and 19) and the support ids the line ids of the statements that justify it, separated
by spaces. The published files put one space between the question mark and the first tab::

    1 Mary moved to the bathroom.
    2 John went to the hallway.
    3 Where is Mary? \tbathroom\t1

Parsing gives one :class:`Story` per question (the usual bAbI preprocessing): the statements of
its story seen so far, and the question. Samples of one story share ``story_id``, so
:func:`format_babi` can put the stories back together. Text is kept as written (case included),
so a file in the published layout reads and writes back byte for byte; :func:`tokenize` gives the
lower-cased tokens a model reads.

The reader is a little more lenient than the writer: it also takes a question line without the
space before the tab, with only ``question<TAB>answer`` (no support), CRLF line ends and blank
lines; the writer always writes the published layout. Statements after a story's last question
justify no answer and are not kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pylstm.plugins import TaskError

__all__ = ["Question", "Story", "format_babi", "parse_babi", "tokenize"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w")
_LINE = re.compile(r"(\d+) (.*)", re.ASCII | re.DOTALL)


def tokenize(sentence: str) -> list[str]:
    """Lower-cased words, each punctuation mark its own token: ``"Where is Mary?"`` ->
    ``["where", "is", "mary", "?"]``."""
    return _TOKEN.findall(sentence.lower())


@dataclass(frozen=True)
class Question:
    """One question of a story.

    ``text`` is the question as written (``"Where is Mary?"``); ``answer`` its words as
    written, several for the list answers of tasks 8 and 19 (the file's ``milk,apple``);
    ``support`` the 0-based indices into :attr:`Story.sentences` of the statements that justify
    the answer, in the file's order; ``line_id`` the question's own line id.
    """

    text: str
    answer: tuple[str, ...]
    support: tuple[int, ...]
    line_id: int

    @property
    def tokens(self) -> list[str]:
        """The question's tokens (:func:`tokenize`)."""
        return tokenize(self.text)

    @property
    def answer_text(self) -> str:
        """The answer as the file writes it: the words joined by ``,``."""
        return ",".join(self.answer)


@dataclass(frozen=True)
class Story:
    """One sample: the statements of a story before a question, and that question.

    ``sentences`` are the statements as written, in story order (questions left out);
    ``sentence_ids`` their line ids in the file; ``story_id`` counts the stories of the file
    from 0, shared by all samples cut from one story; ``task`` the bAbI task number (any
    integer for a user's own stories).
    """

    task: int
    sentences: tuple[str, ...]
    question: Question
    story_id: int = 0
    sentence_ids: tuple[int, ...] = ()

    @property
    def tokens(self) -> list[list[str]]:
        """Each statement's tokens (:func:`tokenize`)."""
        return [tokenize(s) for s in self.sentences]

    @property
    def support_ids(self) -> tuple[int, ...]:
        """The line ids of the supporting statements (what the file writes)."""
        ids = self.sentence_ids or tuple(range(1, len(self.sentences) + 1))
        return tuple(ids[i] for i in self.question.support)


def parse_babi(text: str, task: int, source: str = "<string>") -> list[Story]:
    """Read text in the published format into one :class:`Story` per question.

    ``task`` labels the samples. A malformed line raises :class:`~pylstm.plugins.TaskError`
    naming ``source``, the line number, what was expected and what was found
    (``qa1_train.txt:7: expected line id 7 (or 1 to start a new story), got 9``).
    """
    samples: list[Story] = []
    story_id = -1
    expected = 1
    sentences: list[str] = []
    sentence_ids: list[int] = []
    index_of: dict[int, int] = {}  # statement line id -> its index in ``sentences``
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue

        def fail(message: str, lineno: int = lineno) -> TaskError:
            return TaskError(f"{source}:{lineno}: {message}")

        match = _LINE.fullmatch(line)
        if match is None:
            raise fail(f"expected 'ID text' (a line id, one space, the text), got {line[:40]!r}")
        line_id, rest = int(match.group(1)), match.group(2)
        if line_id == 1:
            story_id += 1
            sentences, sentence_ids, index_of = [], [], {}
        elif story_id < 0 or line_id != expected:
            raise fail(f"expected line id {expected} (or 1 to start a new story), got {line_id}")
        expected = line_id + 1
        if "\t" not in rest:
            sentence = rest.strip()
            if not _WORD.search(sentence):
                raise fail(f"expected a sentence after the line id, got {rest!r}")
            index_of[line_id] = len(sentences)
            sentences.append(sentence)
            sentence_ids.append(line_id)
            continue
        fields = rest.split("\t")
        if len(fields) not in (2, 3):
            raise fail("expected 'question<TAB>answer<TAB>support ids' on a question line, "
                       f"got {len(fields)} tab-separated fields")
        if not sentences:
            raise fail("expected a statement before the first question of a story, "
                       f"got the question {fields[0].strip()!r}")
        question = fields[0].strip()
        if not _WORD.search(question):
            raise fail(f"expected a question before the first tab, got {fields[0]!r}")
        answer = tuple(word.strip() for word in fields[1].split(","))
        if not all(answer):
            raise fail(f"expected an answer (words separated by ','), got {fields[1]!r}")
        support: list[int] = []
        for word in (fields[2] if len(fields) == 3 else "").split():
            if not word.isascii() or not word.isdigit():
                raise fail(f"expected support ids (line ids separated by spaces), got {word!r}")
            if int(word) not in index_of:
                raise fail(f"expected support ids of statements earlier in this story "
                           f"({', '.join(map(str, sorted(index_of)))}), got {word}")
            support.append(index_of[int(word)])
        samples.append(Story(task, tuple(sentences),
                             Question(question, answer, tuple(support), line_id),
                             story_id, tuple(sentence_ids)))
    return samples


def _story_lines(group: Sequence[Story]) -> list[str]:
    """The lines of one story from its samples, numbered 1, 2, ... in the order of their ids."""
    entries: dict[int, str | Story] = {}  # line id -> the statement, or the sample it asks
    for sample in group:
        ids = sample.sentence_ids or tuple(range(1, len(sample.sentences) + 1))
        if len(ids) != len(sample.sentences):
            raise TaskError(f"story {sample.story_id}: expected one line id per statement, got "
                            f"{len(ids)} ids for {len(sample.sentences)} statements")
        for line_id, sentence in zip(ids, sample.sentences, strict=True):
            if entries.setdefault(line_id, sentence) != sentence:
                raise TaskError(f"story {sample.story_id}: expected one line per id, got two "
                                f"different lines with id {line_id}")
        # Without line ids, the question follows its statements.
        q_id = sample.question.line_id if sample.sentence_ids else len(ids) + 1
        if q_id in entries:
            raise TaskError(f"story {sample.story_id}: expected one line per id, got a question "
                            f"and another line with id {q_id}")
        entries[q_id] = sample
    new_id = {old: new for new, old in enumerate(sorted(entries), 1)}
    lines = []
    for old in sorted(entries):
        value = entries[old]
        if isinstance(value, str):
            lines.append(f"{new_id[old]} {value}\n")
            continue
        q = value.question
        support = " ".join(str(new_id[i]) for i in value.support_ids)
        lines.append(f"{new_id[old]} {q.text} \t{q.answer_text}\t{support}\n")
    return lines


def format_babi(stories: Iterable[Story]) -> str:
    """Samples back into the published format: consecutive samples with one ``story_id`` make
    one story. Lines are numbered 1, 2, ... in the order of their ids (the ids themselves where
    nothing was left out), so ``format_babi(parse_babi(text, t)) == text`` for a file in the
    published layout. A sample without ``sentence_ids`` makes a story of its own."""
    groups: list[list[Story]] = []
    for sample in stories:
        if (groups and sample.sentence_ids and groups[-1][-1].sentence_ids
                and groups[-1][-1].story_id == sample.story_id):
            groups[-1].append(sample)
        else:
            groups.append([sample])
    return "".join(line for group in groups for line in _story_lines(group))
