"""The 20 bAbI tasks: generating them, writing and reading their files, and loading them.

``generate(task, size, split, seed)`` simulates stories until it has the split's number of
questions: ``"1k"`` or ``"10k"`` training questions, and 1000 test questions whatever the size
(so test sets compare across sizes). A split is a pure function of (task, split, seed): the 1k
training set is the first 1000 questions of the 10k one, train and test draw from different
random streams, and nothing depends on ``PYTHONHASHSEED``.

Files use the published names (``qa1_single-supporting-fact_train.txt``); :func:`load_tasks`
reads a user's folder of them (the published ``en/`` or ``en-10k/`` subfolder is found by
itself) or generates the tasks, keeping them in a cache folder when given one.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pylstm.plugins import TaskError
from pylstm_dmn.babi import tasks_actors, tasks_logic, tasks_people
from pylstm_dmn.babi.format import Story, format_babi, parse_babi
from pylstm_dmn.babi.world import Balancer, StoryWriter, task_rng

__all__ = [
    "GENERATOR_VERSION", "SIZES", "TASK_NAMES", "TEST_QUESTIONS", "TaskData", "generate",
    "load_tasks", "read_task_file", "task_file_name", "write_tasks",
]

Size = Literal["1k", "10k"]
Split = Literal["train", "test"]
# Bump when the generated text changes, so caches made by older code are not reused.
GENERATOR_VERSION = 1
SIZES: dict[str, int] = {"1k": 1000, "10k": 10000}
TEST_QUESTIONS = 1000
TASK_NAMES: dict[int, str] = {
    1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts",
    4: "two-arg-relations", 5: "three-arg-relations", 6: "yes-no-questions", 7: "counting",
    8: "lists-sets", 9: "simple-negation", 10: "indefinite-knowledge",
    11: "basic-coreference", 12: "conjunction", 13: "compound-coreference",
    14: "time-reasoning", 15: "basic-deduction", 16: "basic-induction",
    17: "positional-reasoning", 18: "size-reasoning", 19: "path-finding",
    20: "agents-motivations",
}
StoryFn = Callable[[random.Random, StoryWriter, Balancer], None]
_STORIES: dict[int, StoryFn] = {
    1: tasks_actors.story_1, 2: tasks_actors.story_2, 3: tasks_actors.story_3,
    4: tasks_logic.story_4, 5: tasks_actors.story_5, 6: tasks_actors.story_6,
    7: tasks_actors.story_7, 8: tasks_actors.story_8, 9: tasks_people.story_9,
    10: tasks_people.story_10, 11: tasks_people.story_11, 12: tasks_people.story_12,
    13: tasks_people.story_13, 14: tasks_people.story_14, 15: tasks_logic.story_15,
    16: tasks_logic.story_16, 17: tasks_logic.story_17, 18: tasks_logic.story_18,
    19: tasks_logic.story_19, 20: tasks_actors.story_20,
}


@dataclass(frozen=True)
class TaskData:
    """One task's samples: ``train`` and ``test`` (one :class:`Story` per question)."""

    task: int
    name: str
    train: list[Story]
    test: list[Story]


def _check_task(task: object) -> int:
    if isinstance(task, bool) or not isinstance(task, int) or task not in TASK_NAMES:
        raise TaskError(f"task: expected a bAbI task number 1-20, got {task!r}")
    return task


def _check_size(size: object) -> Size:
    if size not in SIZES:
        raise TaskError(f"size: expected '1k' or '10k', got {size!r}")
    return size  # type: ignore[return-value]


def _question_count(size: Size | int, split: str) -> int:
    if split not in ("train", "test"):
        raise TaskError(f"split: expected 'train' or 'test', got {split!r}")
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 1:
            raise TaskError(f"size: expected a number of questions >= 1, got {size}")
        return size
    count = SIZES[_check_size(size)]
    return count if split == "train" else TEST_QUESTIONS


def generate(task: int, size: Size | int = "1k", split: Split = "train",
             seed: int = 0) -> list[Story]:
    """The samples of one split of one task, one :class:`Story` per question.

    ``size`` is ``"1k"`` or ``"10k"`` (training questions; the test split always has 1000) or
    an exact number of questions. The last story is cut after the last question that fits.
    """
    _check_task(task)
    count = _question_count(size, split)
    rng = task_rng(task, split, seed)
    balancer = Balancer()
    story = _STORIES[task]
    samples: list[Story] = []
    story_id = 0
    while len(samples) < count:
        writer = StoryWriter(task, story_id)
        story(rng, writer, balancer)
        if writer.samples:
            samples.extend(writer.samples)
            story_id += 1
    return samples[:count]


def task_file_name(task: int, split: Split) -> str:
    """The published file name: ``qa1_single-supporting-fact_train.txt``."""
    return f"qa{_check_task(task)}_{TASK_NAMES[task]}_{split}.txt"


def _write_atomic(path: Path, text: str) -> None:
    # A killed run leaves the old file or none, never half of one (a cache must not lie).
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tasks(folder: Path | str, tasks: Iterable[int], size: Size = "1k",
                seed: int = 0) -> list[Path]:
    """Generate the tasks and write their train and test files into ``folder`` (created if
    needed) under the published names; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in tasks:
        for split in ("train", "test"):
            path = folder / task_file_name(task, split)
            _write_atomic(path, format_babi(generate(task, size, split, seed)))
            paths.append(path)
    return paths


def read_task_file(path: Path | str, task: int) -> list[Story]:
    """Parse one file in the published format; errors name the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskError(f"{path}: expected UTF-8 text, got a byte that is not ({e.reason} at "
                        f"byte {e.start})") from None
    return parse_babi(text, task, source=str(path))


def _find_file(folder: Path, task: int, split: Split) -> Path:
    exact = folder / task_file_name(task, split)
    if exact.is_file():
        return exact
    matches = sorted(folder.glob(f"qa{task}_*_{split}.txt"))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise TaskError(f"{folder}: expected one task {task} {split} file, got "
                        f"{len(matches)}: " + ", ".join(p.name for p in matches))
    present = sorted(p.name for p in folder.glob("qa*_*.txt"))
    found = ", ".join(present[:6]) + (", ..." if len(present) > 6 else "") or "none"
    raise TaskError(f"{exact}: expected the task {task} {split} file, got no such file "
                    f"(qa*_*.txt files there: {found})")


def _data_folder(data_dir: Path, size: Size) -> Path:
    """The folder holding the files: ``data_dir`` or its published ``en``/``en-10k`` part."""
    if not data_dir.is_dir():
        raise TaskError(f"{data_dir}: expected a folder of bAbI task files, got "
                        f"{'a file' if data_dir.exists() else 'nothing there'}")
    sub = data_dir / ("en" if size == "1k" else "en-10k")
    return sub if sub.is_dir() else data_dir


def load_tasks(tasks: list[int], size: Size = "1k", data_dir: Path | str | None = None,
               cache_dir: Path | str | None = None, seed: int = 0) -> dict[int, TaskData]:
    """The train and test samples of ``tasks``, by task number.

    With ``data_dir``, read the user's files there (``qaN_<name>_train.txt`` and ``_test.txt``
    or any ``qaN_*_train.txt``; a published ``en/`` or ``en-10k/`` subfolder is used for
    ``size``). Otherwise generate them; with ``cache_dir``, the files are written there on
    first use and read back afterwards (a folder per generator version, size and seed).
    """
    checked = [_check_task(t) for t in tasks]
    _check_size(size)
    if data_dir is not None:
        folder = _data_folder(Path(data_dir), size)
        return {t: TaskData(t, TASK_NAMES[t], read_task_file(_find_file(folder, t, "train"), t),
                            read_task_file(_find_file(folder, t, "test"), t)) for t in checked}
    out = {}
    cache = (Path(cache_dir) / f"babi-v{GENERATOR_VERSION}-{size}-seed{seed}"
             if cache_dir is not None else None)
    for t in checked:
        splits = {}
        for split in ("train", "test"):
            if cache is None:
                splits[split] = generate(t, size, split, seed)
                continue
            path = cache / task_file_name(t, split)
            if not path.is_file():
                cache.mkdir(parents=True, exist_ok=True)
                _write_atomic(path, format_babi(generate(t, size, split, seed)))
            splits[split] = read_task_file(path, t)
        out[t] = TaskData(t, TASK_NAMES[t], splits["train"], splits["test"])
    return out
