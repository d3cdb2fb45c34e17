"""The task protocol: what a task plugin implements, and what the CLI hands it.

A task has typed options (dataclasses, see :mod:`pylstm.plugins.options`), trains into a
:class:`pylstm.runs.Run` folder, and rebuilds a plain-Python predictor from it
(:func:`pylstm.load`); the CLI is a thin layer over these methods.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pylstm.errors import PylstmError

if TYPE_CHECKING:
    from pylstm.runs import Run

__all__ = ["EpochProgress", "RunContext", "Task", "TaskError"]


class TaskError(PylstmError, ValueError):
    """A user-facing error raised by a task or a plugin command (bad data, bad option value).

    The CLI prints ``pylstm: error: <message>`` on one line and exits with status 1.
    """


@runtime_checkable
class Task(Protocol):
    """What a task plugin implements. One object per task; register it with ``register_tasks``.

    ``Options`` and ``PredictOptions`` are dataclasses whose fields have defaults and
    ``metadata={"help": ..., "choices": ..., "group": ...}``; the CLI makes
    ``--field-name`` flags of them (:mod:`pylstm.plugins.options`) and ``Options`` is saved in
    ``run.json``. Validate ranges in ``__post_init__`` and raise :class:`TaskError` naming the
    flag (``--epochs: expected an integer >= 1, got 0``).

    ``pylstm train NAME [options] [--resume RUN]``
        ``train(options, run, ctx)`` trains into the :class:`pylstm.runs.Run` folder (weights
        with ``run.save_tensors``; ``pylstm.train.Trainer`` for the loop; with
        ``ctx.resume`` continue from the run's checkpoint) and returns the held-out metrics.
        The CLI then calls ``run.finish(metrics)``.
    ``pylstm.load(RUN)`` / ``pylstm evaluate|predict|export RUN``
        ``load(run)`` rebuilds the trained model as a plain-Python *predictor* (thread-safe
        inference, no argparse); the CLI passes it to ``evaluate(predictor, options, ctx)``
        (metrics), ``predict(predictor, request, ctx)`` (``request`` a ``PredictOptions``;
        JSON-serialisable data back, a dict of equal-length lists prints as a table) and
        ``export_onnx(predictor, path, ctx)`` (an ONNX model onnxruntime runs to the same
        numbers; returns the path).

    Metrics are JSON-serialisable: flat ``{"mae": 0.3}`` or one row per model
    ``{"lstm": {"mae": 0.3}, "naive": {"mae": 0.5}}``. Raise :class:`TaskError` for user errors.
    """

    name: str
    description: str
    Options: type
    PredictOptions: type

    def train(self, options: Any, run: Run, ctx: RunContext) -> dict[str, Any]:
        """Train into ``run``; return the held-out metrics."""
        ...

    def load(self, run: Run) -> Any:
        """The trained run's predictor (what :func:`pylstm.load` returns)."""
        ...

    def evaluate(self, predictor: Any, options: Any, ctx: RunContext) -> dict[str, Any]:
        """Metrics of ``predictor`` on the held-out data described by ``options``."""
        ...

    def predict(self, predictor: Any, request: Any, ctx: RunContext) -> Any:
        """The CLI's ``predict``: JSON-serialisable output for a ``PredictOptions`` request."""
        ...

    def export_onnx(self, predictor: Any, path: Path, ctx: RunContext) -> Path:
        """Write ``predictor`` as ONNX to ``path``; return the path."""
        ...


_NOT_SHOWN = ("step", "seconds", "time_s")  # kept in the history, left out of the line


@dataclass
class EpochProgress:
    """The per-epoch progress callback handed out by :meth:`RunContext.progress`.

    Call it as ``progress(epoch, total, **metrics)`` (the signature of
    ``pylstm.train.Trainer``'s ``progress``); every call is also appended to ``history``. On a
    terminal it drives a rich progress bar; otherwise (a log file, CI, nohup) it writes one
    plain line per epoch.
    """

    total: int | None
    history: list[dict[str, float]]
    stream: Any = None
    bar: Any = None
    task_id: Any = None
    start: float = field(default_factory=time.perf_counter)
    first_epoch: int | None = None  # the epoch this session started after (a resumed run)

    def __call__(self, epoch: int | None = None, total: int | None = None,
                 **metrics: float) -> None:
        epoch = len(self.history) + 1 if epoch is None else int(epoch)
        self.total = int(total) if total else self.total
        if self.first_epoch is None:
            self.first_epoch = epoch - 1
        numbers = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        elapsed = time.perf_counter() - self.start
        self.history.append({"epoch": float(epoch), **numbers, "time_s": elapsed})
        text = "  ".join(f"{k} {v:.4g}" for k, v in numbers.items() if k not in _NOT_SHOWN)
        if self.bar is not None:
            self.bar.update(self.task_id, completed=epoch, total=self.total, metrics=text)
        elif self.stream is not None:
            if self.total:
                done = max(epoch - self.first_epoch, 1)
                eta = elapsed / done * max(self.total - epoch, 0)
                where = f"epoch {epoch}/{self.total}  {text}  {elapsed:.1f}s  eta {eta:.0f}s"
            else:
                where = f"epoch {epoch}  {text}  {elapsed:.1f}s"
            self.stream.write(where + "\n")
            self.stream.flush()

    def update(self, epoch: int | None = None, **metrics: float) -> None:
        """``progress.update(loss=...)``: the same as calling it without ``total``."""
        self(epoch, None, **metrics)


@dataclass
class RunContext:
    """What the CLI hands a task besides its options and the run.

    Attributes:
        out_dir: where ``evaluate``/``predict``/``export`` write extra files (plots): ``--out``
            or the run folder.
        seed: random seed (``--seed``; for a trained run, the run's).
        backend: ``--backend`` value or ``None`` for the default.
        threads: ``--threads`` value or ``None`` for the default.
        quiet: no progress output or tables (``-q``).
        resume: ``train`` only: continue the run from its last checkpoint
            (``pylstm train TASK --resume RUN``).
        history: the rows recorded by :meth:`progress` callbacks.
    """

    out_dir: Path
    seed: int = 0
    backend: str | None = None
    threads: int | None = None
    quiet: bool = False
    resume: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def log(self, message: str) -> None:
        """Print a status line on stderr (suppressed by ``-q``)."""
        if not self.quiet:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    @contextmanager
    def progress(self, total: int | None,
                 description: str = "training") -> Iterator[EpochProgress]:
        """A per-epoch progress callback for ``total`` epochs (see :class:`EpochProgress`)."""
        reporter = EpochProgress(total=total, history=self.history)
        if self.quiet:
            yield reporter
            return
        stream = sys.stderr
        bar_factory = _rich_progress(stream) if _is_terminal(stream) else None
        if bar_factory is None:
            reporter.stream = stream
            yield reporter
            return
        with bar_factory() as bar:
            reporter.bar = bar
            reporter.task_id = bar.add_task(description, total=total, metrics="")
            yield reporter


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _rich_progress(stream: Any) -> Callable[[], Any] | None:
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ImportError:  # rich is optional: plain lines instead
        return None
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("epoch"),
               MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    return lambda: Progress(*columns, console=Console(file=stream), transient=False)
