"""Data-parallel training over MPI (mpi4py).

Every rank holds the whole model. ``init()`` reads the rank and world size from MPI's world
communicator; ``gn.compile(model, loss, optimizer, distributed=True)`` broadcasts parameters and
model buffers from rank 0, so every rank starts identical, and makes each ``step`` compute the
gradients of the rank's own shard of the batch (a compiled entry writing them into the flat
step-gradient buffer), average that buffer across ranks with one in-place ``Allreduce``
(weighted by each shard's size, so shards of unequal size give the gradient of the whole batch),
apply the compiled SGD update over the flat buffers and broadcast the model buffers
(BatchNorm's running statistics) from rank 0. The batch statistics BatchNorm normalises with are
each rank's own, as in PyTorch's DistributedDataParallel without SyncBatchNorm; the loss a step
returns is the mean over the whole batch. An exception on one rank aborts the whole job with a
message naming the rank, instead of leaving the others waiting in a collective.

Run with ``mpiexec -n 2 python train.py`` (``--allow-run-as-root`` when running as root).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Context:
    comm: Any
    rank: int
    size: int


_context: Context | None = None


def init() -> Context:
    """Join the MPI job (once per process): the communicator, this rank and the world size."""
    global _context
    if _context is None:
        try:
            from mpi4py import MPI
        except ImportError as error:
            raise ImportError("graphnn.distributed needs mpi4py and an MPI: pip install 'graphnn[mpi]'") from error
        comm = MPI.COMM_WORLD
        _context = Context(comm, comm.Get_rank(), comm.Get_size())
    return _context


def rank() -> int:
    return init().rank


def world_size() -> int:
    return init().size


def abort(error: BaseException) -> None:
    """End every rank of the job: a rank that failed alone would leave the others waiting."""
    context = init()
    sys.stderr.write(f"graphnn.distributed: rank {context.rank} of {context.size} failed, aborting the job: "
                     f"{type(error).__name__}: {error}\n")
    sys.stderr.flush()
    context.comm.Abort(1)


def broadcast_state(model: Any, optimizer: Any) -> None:
    """Make every rank's parameters (optimised or not), optimizer state and model buffers rank 0's."""
    arrays = [optimizer.flat_params.array]
    optimised = {id(p) for p in optimizer.params}
    arrays += [p.array for p in model.parameters() if id(p) not in optimised]
    arrays += optimizer.state_arrays()
    _broadcast(arrays + list(model.buffers()))


def broadcast_buffers(model: Any) -> None:
    _broadcast(list(model.buffers()))


def _broadcast(arrays: list) -> None:
    """Bcast each array from rank 0, through ``flat.host_access`` (a device may hold the newest
    values on the sender, and must take the received ones on the others)."""
    from graphnn import flat

    comm = init().comm
    for array in arrays:
        flat.host_access(array)
        comm.Bcast(array, root=0)


def average_gradients(gradients: np.ndarray, loss: float, count: int) -> tuple[float, int]:
    """Sum ``gradients * count`` over ranks in place (one Allreduce of the whole flat buffer) and
    divide by the total count (a second, two-number Allreduce carries the counts and losses);
    returns (the loss averaged the same way, the total count)."""
    from mpi4py import MPI

    comm = init().comm
    gradients *= count
    comm.Allreduce(MPI.IN_PLACE, gradients, op=MPI.SUM)
    totals = np.array([loss * count, count], np.float64)
    comm.Allreduce(MPI.IN_PLACE, totals, op=MPI.SUM)
    total = int(totals[1])
    if total == 0:
        raise ValueError("every rank's shard of this batch is empty: no gradient to average")
    gradients /= total
    return float(totals[0] / total), total


__all__ = ["init", "rank", "world_size", "abort", "broadcast_state", "broadcast_buffers", "average_gradients"]
