"""One training loop for every task: :class:`Trainer`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from pylstm.autograd import Tensor, no_grad, record
from pylstm.distributed import GradientSync, World, world
from pylstm.errors import CheckpointError, DTypeError, LstmValueError, ShapeError
from pylstm.nn import Module, Optimizer, ReduceLROnPlateau, clip_grad_norm_
from pylstm.runs import Run
from pylstm.runtime import get_num_threads

from . import state as ckpt
from .options import ROW_KEYS, TrainOptions
from .state import TrainState

__all__ = ["Trainer"]


def _default_world() -> World:
    return world()

Batches = Callable[[int], Iterable[Any]]
LossFn = Callable[[Any], Tensor]
Validate = Callable[[], Mapping[str, float]]
Progress = Callable[..., None]


class _NonFinite(LstmValueError):
    """The loss or the gradient norm became NaN or infinite (training cannot go on)."""


def _token_count(batch: Any) -> int | None:
    """A batch's token count, when it exposes one (``batch.num_tokens`` or
    ``batch["num_tokens"]``), for the tokens/s column."""
    n = batch.get("num_tokens") if isinstance(batch, Mapping) else getattr(
        batch, "num_tokens", None)
    if n is None or isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        return None
    return int(n)


class Trainer:
    """Train ``model`` with ``optimizer``: epochs or a step budget, gradient clipping, a
    schedule, validation after each epoch, the best epoch by ``options.metric``, early
    stopping, a time budget, and with a ``run`` a per-epoch checkpoint that
    :meth:`resume` continues to the very result an uninterrupted run gives.

    Args:
        model: the model (its parameters are what the optimiser updates).
        optimizer: a :mod:`pylstm.nn` optimiser.
        options: :class:`TrainOptions` (defaults when ``None``).
        scheduler: an optional schedule: stepped after each optimiser step (or per epoch, see
            ``options.schedule_every``); a ``ReduceLROnPlateau`` per epoch with the metric.
        run: the :class:`pylstm.runs.Run` to checkpoint into (``None``: nothing is written and
            the best weights are kept in memory).
        progress: called after each epoch's checkpoint as ``progress(epoch, total,
            **row)`` (``total`` is ``options.epochs``; the loop itself never prints).
        seed: the data-order seed: ``batches(epoch)`` must be a pure function of it and the
            epoch (``pylstm.data.batches_by_tokens(..., seed=seed, epoch=epoch)``); saved
            with the checkpoint and checked on resume.
        world: the data-parallel job (default :func:`pylstm.distributed.world`: the MPI
            world under ``mpirun``, else this process alone). With ``K`` ranks each group of
            ``K`` consecutive batches is one global step: rank ``r`` computes the ``r``-th,
            one allreduce averages the gradients, every rank takes the same optimiser step
            (global batch = ranks x per-rank batch: the learning rate is the one-process
            rate for that batch). Rank 0 validates and decides the time budget for all.
        check_every: with several ranks, compare the parameters' checksums every this many
            steps (and after each epoch); a difference is a ``DistributedError``.
    """

    def __init__(self, model: Module, optimizer: Optimizer, *,
                 options: TrainOptions | None = None, scheduler: Any | None = None,
                 run: Run | None = None, progress: Progress | None = None,
                 seed: int = 0, world: World | None = None, check_every: int = 100) -> None:
        if not isinstance(model, Module):
            raise DTypeError(f"model: expected a pylstm.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise DTypeError(f"optimizer: expected a pylstm.nn optimizer, got "
                             f"{type(optimizer).__name__}")
        options = TrainOptions() if options is None else options
        if not isinstance(options, TrainOptions):
            raise DTypeError(f"options: expected a TrainOptions, got {type(options).__name__}")
        if scheduler is not None and not (callable(getattr(scheduler, "step", None)) and
                                          callable(getattr(scheduler, "state_dict", None))):
            raise DTypeError(f"scheduler: expected a pylstm.nn schedule, got "
                             f"{type(scheduler).__name__}")
        if run is not None and not isinstance(run, Run):
            raise DTypeError(f"run: expected a pylstm.runs.Run or None, got "
                             f"{type(run).__name__}")
        if progress is not None and not callable(progress):
            raise DTypeError(f"progress: expected a callable or None, got "
                             f"{type(progress).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise LstmValueError(f"seed: expected an integer >= 0, got {seed!r}")
        self.model = model
        self.optimizer = optimizer
        self.options = options
        self.scheduler = scheduler
        self.run = run
        self.progress = progress
        self.seed = int(seed)
        if world is not None and not isinstance(world, World):
            raise DTypeError(f"world: expected a pylstm.distributed.World or None, got "
                             f"{type(world).__name__}")
        if isinstance(check_every, bool) or not isinstance(check_every, int) or \
                check_every < 1:
            raise LstmValueError(f"check_every: expected an integer >= 1, got {check_every!r}")
        self.world = _default_world() if world is None else world
        self.check_every = check_every
        self._sync = GradientSync(model, self.world) if self.world.distributed else None
        self.state = TrainState()
        self._best_weights: dict[str, np.ndarray] | None = None
        self._last_lr = float(optimizer.param_groups[0]["lr"])

    @property
    def history(self) -> list[dict[str, Any]]:
        """One row per finished epoch: epoch, step, train_loss, the validation metrics, lr,
        seconds, (when batches expose ``num_tokens``) tokens_per_s (every rank's tokens) and,
        with several ranks, allreduce_s (this rank's seconds in the gradient allreduce)."""
        return self.state.history

    # ------------------------------------------------------------------ public
    def fit(self, batches: Batches, loss: LossFn, validate: Validate | None = None, *,
            resume: bool = False) -> dict[str, Any]:
        """Train; returns a summary (epochs, steps, why it stopped, the best epoch and value,
        seconds, the last history row). The model ends holding the best epoch's weights.

        ``batches(epoch)`` gives the batches of epoch ``0, 1, ...``; ``loss(batch)`` returns
        the batch's scalar loss :class:`~pylstm.Tensor` (it runs inside
        :func:`pylstm.record`, so modules called on arrays record); ``validate()`` returns
        ``{name: number}`` (run in eval mode under :func:`pylstm.no_grad`). With ``resume``
        the run's checkpoint is loaded first (see :meth:`resume`).

        On an exception (``KeyboardInterrupt`` included) the epoch in progress is lost, the
        last and best checkpoints stay, the run is marked interrupted or failed, and the
        exception propagates. A NaN or infinite loss or gradient norm stops training with an
        ``LstmValueError`` and the model holds the best weights so far.
        """
        for name, fn in (("batches", batches), ("loss", loss)):
            if not callable(fn):
                raise DTypeError(f"{name}: expected a callable, got {type(fn).__name__}")
        if validate is not None and not callable(validate):
            raise DTypeError(f"validate: expected a callable or None, got "
                             f"{type(validate).__name__}")
        if self.options.metric != "train_loss" and validate is None:
            raise LstmValueError(f"validate: expected a callable returning "
                                 f"{self.options.metric!r} (options.metric), got None; or "
                                 "set metric='train_loss'")
        threads = get_num_threads()
        self.state = TrainState()
        self._best_weights = None
        if self.run is not None:
            if resume and self.run.has_file(ckpt.STATE):
                self.state = ckpt.load_checkpoint(
                    self.run, self.model, self.optimizer, self.scheduler, seed=self.seed,
                    threads=threads, options=self.options.to_dict())
            elif not resume and self.run.has_file(ckpt.STATE):
                raise CheckpointError(f"run: {self.run.path} has a checkpoint already; "
                                      "resume it (Trainer.resume) instead of training again")
            if self.run.status != "running":
                self.run.mark_running()
        elif resume:
            raise LstmValueError("resume: expected a Trainer with a run to resume, got "
                                 "run=None")
        self.model.zero_grad()
        if self._sync is not None:
            self._sync.broadcast_parameters()
        if self.state.stopped is None:
            self._loop(batches, loss, validate, threads)
        self._restore_best()
        return self._summary()

    def resume(self, batches: Batches, loss: LossFn,
               validate: Validate | None = None) -> dict[str, Any]:
        """Continue the run from its last per-epoch checkpoint to the result the
        uninterrupted run gives (same seed, options and thread count; a run interrupted
        before its first checkpoint starts over from the fresh model). The time spent
        before the interruption counts towards ``time_budget``."""
        return self.fit(batches, loss, validate, resume=True)

    # ------------------------------------------------------------------ the loop
    def _loop(self, batches: Batches, loss: LossFn, validate: Validate | None,
              threads: int) -> None:
        opts, st = self.options, self.state
        base = st.elapsed + self._lost_seconds()
        clock = time.perf_counter()

        def elapsed() -> float:
            return base + time.perf_counter() - clock

        try:
            while st.stopped is None:
                if self._agree(opts.time_budget is not None and
                               elapsed() >= opts.time_budget):
                    st.stopped = "time_budget"  # spent before this epoch could start
                    st.elapsed = elapsed()
                    self._save(threads, improved=False)
                    break
                self._epoch(batches, loss, validate, elapsed, threads)
        except KeyboardInterrupt:
            self._record_loss_of_epoch(elapsed())
            if self.run is not None:
                self.run.interrupt(self._where("KeyboardInterrupt"))
            raise
        except BaseException as exc:
            self._record_loss_of_epoch(elapsed())
            if isinstance(exc, _NonFinite):
                self._restore_best()
            if self.run is not None:
                self.run.fail(f"{type(exc).__name__}: {exc}" if isinstance(exc, _NonFinite)
                              else self._where(f"{type(exc).__name__}: {exc}"))
            raise

    def _epoch(self, batches: Batches, loss: LossFn, validate: Validate | None,
               elapsed: Callable[[], float], threads: int) -> None:
        opts, st = self.options, self.state
        index = st.epoch
        self.model.train()
        start = time.perf_counter()
        total, count, tokens, stop = 0.0, 0, 0, None

        def time_up() -> bool:
            return opts.time_budget is not None and elapsed() >= opts.time_budget

        for batch, group in self._shares(batches(index)):
            value, out_of_time = self._step(batch, loss, time_up)
            total += value
            count += 1
            for member in group:
                n_tokens = _token_count(member)
                tokens = -1 if n_tokens is None or tokens < 0 else tokens + n_tokens
            if opts.max_steps is not None and st.step >= opts.max_steps:
                stop = "max_steps"
                break
            if out_of_time:
                stop = "time_budget"
                break
        if count == 0:
            raise LstmValueError(f"batches: expected at least one batch for epoch {index}, "
                                 "got none")
        seconds = time.perf_counter() - start
        if self._sync is not None:
            self._sync.check_in_sync(st.step)
            metrics = self.world.broadcast_json(
                self._validate(validate) if self.world.is_root else None,
                "the validation metrics from rank 0")
        else:
            metrics = self._validate(validate)
        row: dict[str, Any] = {"epoch": index + 1, "step": st.step,
                               "train_loss": total / count, **metrics,
                               "lr": self._last_lr,
                               "seconds": seconds}
        if tokens > 0 and seconds > 0:
            row["tokens_per_s"] = tokens / seconds
        if self._sync is not None:  # the share of the epoch spent waiting for the others
            row["allreduce_s"], self._sync.seconds = self._sync.seconds, 0.0
        if opts.metric not in row:
            raise LstmValueError(f"metric: expected {opts.metric!r} among the epoch's values "
                                 f"{sorted(k for k in row if k not in ('epoch', 'step'))}")
        value = float(row[opts.metric])
        improved = opts.better(value, st.best)
        if improved:
            st.best, st.best_epoch, st.bad_epochs = value, index + 1, 0
            if self.run is None:
                self._best_weights = self.model.state_dict()
        else:
            st.bad_epochs += 1
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(value)
        elif self.scheduler is not None and opts.schedule_every == "epoch":
            self.scheduler.step()
        st.epoch += 1
        st.history.append(row)
        if stop is None and opts.patience is not None and st.bad_epochs >= opts.patience:
            stop = "patience"
        if stop is None and opts.epochs is not None and st.epoch >= opts.epochs:
            stop = "epochs"
        st.stopped = stop
        st.elapsed = elapsed()
        self._save(threads, improved)
        if self.progress is not None:
            self.progress(st.epoch, opts.epochs, **{k: v for k, v in row.items()
                                                    if k != "epoch"})

    def _shares(self, batches: Iterable[Any]) -> Iterable[tuple[Any, list[Any]]]:
        """``(this rank's batch or None, the global step's batches)`` per step: groups of
        ``size`` consecutive batches (one process: each batch alone)."""
        size, rank = self.world.size, self.world.rank
        group: list[Any] = []
        for batch in batches:
            group.append(batch)
            if len(group) == size:
                yield group[rank], group
                group = []
        if group:  # the epoch's short last step: ranks past its end add zero gradients
            yield (group[rank] if rank < len(group) else None), group

    def _agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (its clock decides the time budget)."""
        if self._sync is None:
            return flag
        return bool(self.world.broadcast_json(bool(flag), "the time-budget decision"))

    def _step(self, batch: Any, loss: LossFn,
              time_up: Callable[[], bool]) -> tuple[float, bool]:
        """One optimiser step on ``batch`` (``None``: this rank has none this step); the
        loss value and whether the time budget ran out."""
        st = self.state
        number: float | None = None
        if batch is not None:
            with record():
                value = loss(batch)
            if not isinstance(value, Tensor):
                raise DTypeError(f"loss: expected loss(batch) to return a scalar pylstm.Tensor "
                                 f"(recorded from the model's outputs), got "
                                 f"{type(value).__name__}")
            if value.size != 1:
                raise ShapeError(f"loss: expected a scalar (one-element) tensor, got shape "
                                 f"{value.shape}")
            number = float(value.item())
            if self._sync is None and not math.isfinite(number):
                raise _NonFinite(self._where(f"loss: expected a finite value, got {number}"))
            value.backward()
        if self._sync is not None:  # a NaN on any rank reaches all: all stop together
            totals = self._sync.allreduce(number, time_up())
            number, out_of_time = totals.loss, totals.stop
            if not math.isfinite(number):
                raise _NonFinite(self._where(f"loss: expected a finite value on every rank, "
                                             f"got a mean of {number}"))
        else:
            out_of_time = time_up()
        assert number is not None
        self._last_lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this step uses
        if self.options.clip is not None:
            norm = clip_grad_norm_(self.model, self.options.clip)
            if not math.isfinite(norm):
                raise _NonFinite(self._where(f"gradient norm: expected a finite value, got "
                                             f"{norm}"))
        self.optimizer.step()
        if self.scheduler is not None and self.options.schedule_every == "step" and \
                not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
        self.model.zero_grad()
        st.step += 1
        if self._sync is not None and st.step % self.check_every == 0:
            self._sync.check_in_sync(st.step)
        return number, out_of_time

    def _validate(self, validate: Validate | None) -> dict[str, float]:
        if validate is None:
            return {}
        self.model.eval()
        try:
            with no_grad():
                metrics = validate()
        finally:
            self.model.train()
        if not isinstance(metrics, Mapping):
            raise DTypeError(f"validate: expected a dict of metric names to numbers, got "
                             f"{type(metrics).__name__}")
        out: dict[str, float] = {}
        for key, v in metrics.items():
            if key in ROW_KEYS:
                raise LstmValueError(f"validate: expected metric names other than "
                                     f"{list(ROW_KEYS)}, got {key!r}")
            if isinstance(v, Tensor):
                v = v.item()
            if isinstance(v, (bool, np.bool_)) or not isinstance(
                    v, (int, float, np.integer, np.floating)):
                raise DTypeError(f"validate: {key}: expected a number, got {type(v).__name__}")
            if not math.isfinite(float(v)):
                raise _NonFinite(self._where(f"validate: {key}: expected a finite value, "
                                             f"got {float(v)}"))
            out[str(key)] = float(v)
        return out

    # ------------------------------------------------------------------ bookkeeping
    def _save(self, threads: int, improved: bool) -> None:
        if self.run is not None:
            ckpt.save_checkpoint(self.run, self.state, self.model, self.optimizer,
                                 self.scheduler, seed=self.seed, threads=threads,
                                 options=self.options.to_dict(), improved=improved)

    def _restore_best(self) -> None:
        """The model takes the best epoch's weights (nothing to do before any epoch)."""
        if self.state.best_epoch is None:
            return
        if self.run is not None:
            ckpt.load_best(self.run, self.model)
        elif self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)

    def _lost_seconds(self) -> float:
        """Training time an interruption lost after the last checkpoint (it still counts)."""
        if self.run is None:
            return 0.0
        lost = self.run.info.get("lost_seconds")
        if not isinstance(lost, dict) or lost.get("after_epoch") != self.state.epoch:
            return 0.0
        seconds = lost.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return 0.0
        return float(seconds) if math.isfinite(seconds) and seconds > 0 else 0.0

    def _record_loss_of_epoch(self, now: float) -> None:
        if self.run is not None:
            self.run.set_info(lost_seconds={"after_epoch": self.state.epoch,
                                            "seconds": max(0.0, now - self.state.elapsed)})

    def _where(self, message: str) -> str:
        st = self.state
        keep = "no checkpoint yet" if st.epoch == 0 else (
            f"the checkpoint of epoch {st.epoch} and the best (epoch {st.best_epoch}) are kept")
        return f"{message} (during epoch {st.epoch + 1}, after {st.step} steps; {keep})"

    def _summary(self) -> dict[str, Any]:
        st = self.state
        return {"epochs": st.epoch, "steps": st.step, "stopped": st.stopped,
                "metric": self.options.metric, "best": st.best, "best_epoch": st.best_epoch,
                "seconds": st.elapsed, "last": dict(st.history[-1]) if st.history else {}}
