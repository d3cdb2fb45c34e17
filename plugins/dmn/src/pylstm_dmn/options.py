"""The dmn task's options: ``pylstm train dmn --...`` and ``pylstm predict RUN --...``.

Each field is one flag (``max_facts`` -> ``--max-facts``); the values are saved in the run's
``run.json`` and checked again when the run is opened.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pylstm.plugins import TaskError
from pylstm_dmn.babi import TASK_NAMES

__all__ = ["AnswerRequest", "DMNOptions", "parse_tasks"]

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def parse_tasks(text: str) -> list[int]:
    """``"all"`` -> 1..20; ``"1,2,5-7"`` -> ``[1, 2, 5, 6, 7]`` (sorted, once each)."""
    if not isinstance(text, str):
        raise TaskError(f"--tasks: expected task numbers such as 1,2,3 or 'all', got {text!r}")
    if text.strip().lower() == "all":
        return sorted(TASK_NAMES)
    out: set[int] = set()
    for part in text.split(","):
        m = _RANGE.fullmatch(part.strip())
        if m is None:
            raise TaskError(f"--tasks: expected task numbers such as 1,2,3 or 1-20 or 'all', "
                            f"got {text!r}")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        for t in range(lo, hi + 1):
            if t not in TASK_NAMES:
                raise TaskError(f"--tasks: expected bAbI task numbers 1-20, got {t}")
            out.add(t)
        if hi < lo:
            raise TaskError(f"--tasks: expected a range low-high, got {part.strip()!r}")
    return sorted(out)


def _help(text: str, group: str, **extra: object) -> dict[str, object]:
    return {"help": text, "group": group, **extra}


@dataclass
class DMNOptions:
    """The bAbI data, the networks, their training and the evaluation."""

    # data
    tasks: str = field(default="all", metadata=_help(
        "bAbI tasks: numbers and ranges (1,2,3 or 1-20) or all", "data"))
    size: Literal["1k", "10k"] = field(default="1k", metadata=_help(
        "training questions per task (the test split has 1000 either way)", "data"))
    data_dir: Path | None = field(default=None, metadata=_help(
        "read the published files (qaN_*_train.txt, qaN_*_test.txt; an en/ or en-10k/ "
        "subfolder is found) instead of generating them", "data"))
    cache_dir: Path | None = field(default=None, metadata=_help(
        "where generated tasks are kept (default $PYLSTM_CACHE/dmn or ~/.cache/pylstm/dmn)",
        "data"))
    joint: bool = field(default=False, metadata=_help(
        "one model for all the tasks (else one model per task)", "data"))
    valid_share: float = field(default=0.1, metadata=_help(
        "share of the training stories held out for validation", "data"))
    max_facts: int = field(default=50, metadata=_help(
        "the memory reads a story's last this many statements", "data"))
    # model
    dim: int = field(default=80, metadata=_help("DMN+ hidden size", "model"))
    passes: int = field(default=3, metadata=_help("episodic memory passes", "model"))
    dropout: float = field(default=0.1, metadata=_help("dropout", "model"))
    supervise_facts: bool = field(default=False, metadata=_help(
        "add the cross-entropy of each pass's attention against the supporting fact "
        "(strong supervision; default: answers only)", "model"))
    fact_weight: float = field(default=1.0, metadata=_help(
        "weight of the supporting-fact loss", "model"))
    baseline: bool = field(default=True, metadata=_help(
        "also train the LSTM baseline (story and question as one sequence)", "model"))
    baseline_hidden: int = field(default=100, metadata=_help("baseline LSTM size", "model"))
    # training
    epochs: int = field(default=100, metadata=_help("epochs at most", "training"))
    batch_size: int = field(default=32, metadata=_help("questions per batch", "training"))
    lr: float = field(default=3e-3, metadata=_help("Adam learning rate", "training"))
    clip: float = field(default=5.0, metadata=_help("gradient-norm clip (0: off)", "training"))
    patience: int = field(default=10, metadata=_help(
        "stop after this many epochs without a better validation accuracy (0: never)",
        "training"))
    lr_patience: int = field(default=4, metadata=_help(
        "halve the learning rate after this many epochs without a better validation accuracy "
        "(0: never)", "training"))
    time_budget: float = field(default=300.0, metadata=_help(
        "seconds of training per model (0: no limit)", "training"))
    restarts: int = field(default=1, metadata=_help(
        "DMN+ trainings per model at most, from successive seeds inside the one time budget "
        "(each gets what the earlier ones left), the best on validation kept; stops at a "
        "perfect validation score", "training"))
    # evaluation
    samples: int = field(default=4, metadata=_help(
        "sample stories in attention.png", "evaluation"))

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str, value: object) -> None:
            if not ok:
                raise TaskError(f"--{name.replace('_', '-')}: expected {what}, got {value}")

        self.task_list  # noqa: B018 (validates --tasks)
        need(self.size in ("1k", "10k"), "size", "1k or 10k", repr(self.size))
        for name in ("max_facts", "dim", "passes", "baseline_hidden", "epochs", "batch_size",
                     "restarts"):
            need(getattr(self, name) >= 1, name, "an integer >= 1", getattr(self, name))
        for name in ("patience", "lr_patience", "samples"):
            need(getattr(self, name) >= 0, name, "an integer >= 0", getattr(self, name))
        need(math.isfinite(self.valid_share) and 0 < self.valid_share < 1, "valid_share",
             "a number in (0, 1)", self.valid_share)
        need(math.isfinite(self.dropout) and 0 <= self.dropout < 1, "dropout",
             "a number in [0, 1)", self.dropout)
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "a positive number", self.lr)
        for name in ("clip", "time_budget", "fact_weight"):
            v = getattr(self, name)
            need(math.isfinite(v) and v >= 0, name, "a number >= 0", v)

    @property
    def task_list(self) -> list[int]:
        """``--tasks`` as task numbers."""
        return parse_tasks(self.tasks)


@dataclass
class AnswerRequest:
    """``pylstm predict RUN``: answer a question about a story."""

    story: Path | None = field(default=None, metadata={
        "help": "the story: one statement per line (bAbI line ids allowed)"})
    text: str | None = field(default=None, metadata={
        "help": "the story as text instead of a file (statements separated by newlines or "
                "'. ')"})
    question: str | None = field(default=None, metadata={"help": "the question"})
    task: int = field(default=0, metadata={
        "help": "the task whose model answers (0: the joint or only model, else the first "
                "task whose vocabulary knows every word)"})
    top: int = field(default=2, metadata={"help": "facts shown per pass"})

    def __post_init__(self) -> None:
        if (self.story is None) == (self.text is None):
            raise TaskError("predict: expected exactly one of --story FILE or --text STORY")
        if self.question is None or not self.question.strip():
            raise TaskError("--question: expected a question, got nothing")
        if self.task != 0 and self.task not in TASK_NAMES:
            raise TaskError(f"--task: expected a bAbI task number 1-20 (or 0), got {self.task}")
        if self.top < 1:
            raise TaskError(f"--top: expected an integer >= 1, got {self.top}")
