"""Data-parallel training on MPI (``mpirun -n K pylstm train ...``; see the README).

:func:`world` says which process of the job this is; :class:`GradientSync` keeps the ranks'
models identical (one fused allreduce of the gradients per step). ``pylstm.train.Trainer``
uses both, so every task on the shared training loop trains data-parallel unchanged.
"""

from .sync import GradientSync, StepTotals
from .world import DistributedError, World, launched_by_mpi, world

__all__ = ["DistributedError", "GradientSync", "StepTotals", "World", "launched_by_mpi",
           "world"]
