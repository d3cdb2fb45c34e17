"""The trainer's per-epoch checkpoint inside a run folder, saved as one atomic commit::

    checkpoint/last.safetensors       the model after the last finished epoch
    checkpoint/optimizer.safetensors  the optimiser's arrays (moments, momentum buffers)
    checkpoint/best.safetensors       the model of the best epoch so far
    checkpoint/state.json             epoch, global step, the data-order seed, the thread
                                      count, best metric, history, elapsed time, options, the
                                      optimiser's and schedule's scalars, every generator state
    history.json                      the history rows (for people and plots)

Loading checks every file's digest (recorded in run.json) and validates every value before
anything is assigned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pylstm.errors import CheckpointError
from pylstm.nn import Module, Optimizer
from pylstm.nn.checkpoint import (
    capture_state,
    dump_json,
    parse_json,
    parse_tensors,
    restore_state,
    tensors_writer,
)
from pylstm.runs import Run

__all__ = ["STATE", "TrainState", "load_checkpoint", "load_best", "save_checkpoint"]

FORMAT = "pylstm.train.state"
VERSION = 1
LAST = "checkpoint/last.safetensors"
BEST = "checkpoint/best.safetensors"
OPTIMIZER = "checkpoint/optimizer.safetensors"
STATE = "checkpoint/state.json"
HISTORY = "history.json"
STOP_REASONS = (None, "epochs", "max_steps", "time_budget", "patience")
_KEYS = {"format", "version", "seed", "threads", "options", "epoch", "step", "best",
         "best_epoch", "bad_epochs", "elapsed", "stopped", "history", "rng_states", "optimizer"}


@dataclass
class TrainState:
    """Where training stands after ``epoch`` finished epochs (what a resume continues)."""

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    elapsed: float = 0.0
    stopped: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The scalar part of ``state.json``."""
        return {"epoch": self.epoch, "step": self.step, "best": self.best,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "elapsed": self.elapsed, "stopped": self.stopped, "history": self.history}


def save_checkpoint(run: Run, state: TrainState, model: Module, optimizer: Optimizer,
                    scheduler: Any, *, seed: int, threads: int, options: dict[str, Any],
                    improved: bool) -> None:
    """Write the checkpoint of ``state`` (and the best model when ``improved``), one commit."""
    arrays, meta = capture_state(model, optimizer, scheduler)
    doc = {"format": FORMAT, "version": VERSION, "seed": seed, "threads": threads,
           "options": options, **state.to_json(), **meta}
    state_raw = dump_json(doc, str(run.file(STATE)), allow_nan=True)
    history_raw = dump_json(state.history, str(run.file(HISTORY)))
    writes = {
        LAST: tensors_writer(arrays["model"], str(run.file(LAST))),
        OPTIMIZER: tensors_writer(arrays["optimizer"], str(run.file(OPTIMIZER))),
        STATE: lambda p: p.write_bytes(state_raw),
        HISTORY: lambda p: p.write_bytes(history_raw),
    }
    if improved:
        writes[BEST] = tensors_writer(arrays["model"], str(run.file(BEST)))
    run.write_files(writes)


def _fail(key: str, expected: str, value: Any, where: str) -> None:
    text = repr(value)
    raise CheckpointError(f"{where}: {key}: expected {expected}, got {type(value).__name__} "
                          f"{text if len(text) < 60 else text[:60] + '...'}")


def _count(doc: dict[str, Any], key: str, where: str, *, minimum: int = 0,
           optional: bool = False) -> None:
    v = doc.get(key)
    if optional and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        _fail(key, f"an integer >= {minimum}" + (" or null" if optional else ""), v, where)


def _state_from_json(doc: Any, where: str) -> TrainState:
    if not isinstance(doc, dict):
        _fail("state", "a JSON object", doc, where)
    if doc.get("format") != FORMAT:
        _fail("format", repr(FORMAT), doc.get("format"), where)
    if doc.get("version") != VERSION:
        _fail("version", str(VERSION), doc.get("version"), where)
    missing, unexpected = sorted(_KEYS - set(doc)), sorted(set(doc) - _KEYS - {"scheduler"})
    if missing or unexpected:
        raise CheckpointError(f"{where}: expected the keys {sorted(_KEYS)} (and optionally "
                              f"['scheduler']), got missing {missing} and unexpected "
                              f"{unexpected}")
    _count(doc, "epoch", where)
    _count(doc, "step", where)
    _count(doc, "bad_epochs", where)
    _count(doc, "best_epoch", where, minimum=1, optional=True)
    _count(doc, "seed", where)
    _count(doc, "threads", where, minimum=1)
    best = doc.get("best")
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))
                             or not math.isfinite(best)):
        _fail("best", "a finite number or null", best, where)
    if (best is None) != (doc.get("best_epoch") is None):
        _fail("best_epoch", "null exactly when best is null", doc.get("best_epoch"), where)
    elapsed = doc.get("elapsed")
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not elapsed >= 0:
        _fail("elapsed", "a number of seconds >= 0", elapsed, where)
    if doc.get("stopped") not in STOP_REASONS:
        _fail("stopped", f"one of {list(STOP_REASONS)}", doc.get("stopped"), where)
    history = doc.get("history")
    if not isinstance(history, list) or len(history) != doc["epoch"] or not all(
            isinstance(row, dict) for row in history):
        _fail("history", f"a list of {doc['epoch']} objects (one per epoch)", history, where)
    if not isinstance(doc.get("options"), dict):
        _fail("options", "an object", doc.get("options"), where)
    return TrainState(epoch=doc["epoch"], step=doc["step"], best=best,
                      best_epoch=doc.get("best_epoch"), bad_epochs=doc["bad_epochs"],
                      elapsed=float(elapsed), stopped=doc["stopped"], history=history)


def load_checkpoint(run: Run, model: Module, optimizer: Optimizer, scheduler: Any, *,
                    seed: int, threads: int, options: dict[str, Any]) -> TrainState:
    """Restore the checkpoint into model, optimiser and schedule; returns the state.

    Refuses (before changing anything) a checkpoint made with another data-order seed,
    thread count or training options: continuing would not give the uninterrupted result."""
    where = str(run.file(STATE))
    doc = parse_json(run.read_bytes(STATE), where)
    state = _state_from_json(doc, where)
    if doc["seed"] != seed:
        raise CheckpointError(f"{where}: seed: expected {seed} (the trainer's), got "
                              f"{doc['seed']}: resume with the run's seed")
    if doc["threads"] != threads:
        raise CheckpointError(f"{where}: threads: expected {threads} (pylstm.get_num_threads()"
                              f"), got {doc['threads']}: resume with the thread count the run "
                              f"used (pylstm.set_num_threads({doc['threads']}) or --threads)")
    if doc["options"] != options:
        changed = sorted(k for k in set(options) | set(doc["options"])
                         if options.get(k) != doc["options"].get(k))
        raise CheckpointError(f"{where}: options: expected the trainer's options, got "
                              f"different {changed}: "
                              + ", ".join(f"{k}={doc['options'].get(k)!r} (now "
                                          f"{options.get(k)!r})" for k in changed))
    tensors = parse_tensors(run.read_bytes(LAST), str(run.file(LAST)))
    opt_arrays = parse_tensors(run.read_bytes(OPTIMIZER), str(run.file(OPTIMIZER)))
    if state.best_epoch is not None:
        run.read_bytes(BEST)  # the best model must be there and intact too
    restore_state(model, tensors, doc, optimizer=optimizer, optimizer_arrays=opt_arrays,
                  scheduler=scheduler, where=where)
    return state


def load_best(run: Run, model: Module) -> None:
    """Load the best epoch's weights (digest checked) into ``model``."""
    model.load_state_dict(parse_tensors(run.read_bytes(BEST), str(run.file(BEST))))
