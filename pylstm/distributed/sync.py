"""Keeping the ranks' models identical: one fused allreduce of the gradients per step, the
parameters broadcast from rank 0 at the start, and a checksum that catches drift."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np

from pylstm.nn import Module

from .world import DistributedError, World

__all__ = ["GradientSync", "StepTotals"]


@dataclass(frozen=True)
class StepTotals:
    """What one step's allreduce tells every rank."""

    loss: float       #: the mean loss over the ranks that had a batch
    batches: int      #: how many ranks had a batch this step
    stop: bool        #: rank 0 asked to stop after this step (its time budget)


class GradientSync:
    """The data-parallel bookkeeping of one model on one :class:`World`.

    Each step every rank adds its gradient (zeros when it had no batch in the epoch's last,
    short group), its loss and a count into one float64 buffer; a single allreduce sums them
    and every rank divides by the number of batches, so all hold the gradient of the global
    batch's mean loss: the gradient one process gets from the same examples in one batch,
    when the per-rank batches are of equal size.
    """

    def __init__(self, model: Module, world: World) -> None:
        self.world = world
        self.params = list(model.parameters())
        self.sizes = [p.data.size for p in self.params]
        self.buffer = np.zeros(sum(self.sizes) + 3, np.float64)
        self.seconds = 0.0  #: time spent in the gradient allreduce (for the step-time share)

    def broadcast_parameters(self) -> None:
        """Every rank takes rank 0's parameter values (after seeding or resuming)."""
        if not self.world.distributed:
            return
        flat = np.concatenate([p.data.ravel().astype(np.float64) for p in self.params])
        self.world.broadcast_(flat, "the parameters from rank 0")
        self._scatter(flat, [p.data for p in self.params])
        for p in self.params:
            p.version += 1  # packed copies rebuild

    def allreduce(self, loss: float | None, stop: bool) -> StepTotals:
        """Average the gradients over the ranks in place; ``loss`` is ``None`` on a rank
        without a batch this step (its gradients must be zero)."""
        buf = self.buffer
        at = 0
        for p, n in zip(self.params, self.sizes, strict=True):
            buf[at:at + n] = 0.0 if p.grad is None else p.grad.ravel()
            at += n
        buf[at] = 0.0 if loss is None else loss
        buf[at + 1] = 0.0 if loss is None else 1.0
        buf[at + 2] = 1.0 if (stop and self.world.is_root) else 0.0
        start = time.perf_counter()
        self.world.allreduce_(buf, "the gradient allreduce")
        self.seconds += time.perf_counter() - start
        count = int(round(buf[at + 1]))
        if count == 0:
            raise DistributedError("gradient allreduce: no rank had a batch this step")
        buf[:at] /= count
        for p in self.params:
            if p.grad is None:
                p.grad = np.zeros_like(p.data)
        self._scatter(buf[:at], [p.grad for p in self.params])  # type: ignore[misc]
        return StepTotals(float(buf[at] / count), count, bool(buf[at + 2] > 0))

    def check_in_sync(self, step: int) -> None:
        """Raise :class:`DistributedError` unless every rank holds bit-identical parameters."""
        if not self.world.distributed:
            return
        crc = 0
        for p in self.params:
            crc = zlib.crc32(np.ascontiguousarray(p.data).tobytes(), crc)
        sums = np.zeros(self.world.size, np.float64)
        sums[self.world.rank] = crc
        self.world.allreduce_(sums, "the parameter checksum")
        if len(set(sums.tolist())) > 1:
            raise DistributedError(
                f"parameters: expected every rank to hold the same values after step {step}, "
                f"got {len(set(sums.tolist()))} different checksums over {self.world.size} "
                "ranks (a rank computed differently: same pylstm build and thread count on "
                "every rank?)")

    def _scatter(self, flat: np.ndarray, targets: list[np.ndarray]) -> None:
        at = 0
        for arr, n in zip(targets, self.sizes, strict=True):
            arr[...] = flat[at:at + n].reshape(arr.shape)
            at += n
