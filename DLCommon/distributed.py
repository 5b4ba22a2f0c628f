"""Several processes, one job: torch.distributed as launched by ``torchrun``.

``torchrun --nproc-per-node N -m meddl train-segment ...`` starts N copies of ``meddl`` with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment (on one workstation, on a
multi-GPU node, or across SLURM / Kubernetes nodes). :func:`initDistributed` joins them into one process
group: NCCL when the processes compute on CUDA GPUs (one GPU each, ``cuda:LOCAL_RANK``), gloo on CPU.

Without torchrun every function here reduces to the single-process case (rank 0 of 1), so the engines call
them unconditionally and behave the same inside Slicer.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import torch

from .devices import pickDevice

__all__ = ["DistributedContext", "launchedByTorchrun", "initDistributed", "distributedContext", "isMainProcess",
           "distributedDevice", "allReduceSums", "averageGradients", "broadcastBuffers", "barrier", "shutdownDistributed",
           "wrapForTraining"]


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job: ``rank`` of ``worldSize``, ``localRank`` on its node."""

    rank: int = 0
    worldSize: int = 1
    localRank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.worldSize > 1

    @property
    def isMain(self) -> bool:
        """Rank 0 writes checkpoints, logs, manifests and the catalog entry; the others only compute."""
        return self.rank == 0


def launchedByTorchrun() -> bool:
    """True in a process that torchrun (or another launcher setting ``WORLD_SIZE`` > 1) started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _initialised() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def initDistributed(device: str = "auto") -> DistributedContext:
    """Join the process group of a torchrun launch (idempotent; a no-op without torchrun).

    Args:
        device: the compute device asked for (``auto``, ``cpu``, ``cuda``...); CUDA selects the NCCL
            backend and binds this process to GPU ``LOCAL_RANK``, anything else uses gloo.
    """
    if not launchedByTorchrun() or _initialised():
        return distributedContext()
    localRank = int(os.environ.get("LOCAL_RANK", "0"))
    useCuda = pickDevice(device).type == "cuda"
    if useCuda:
        torch.cuda.set_device(localRank % torch.cuda.device_count())
    torch.distributed.init_process_group(backend="nccl" if useCuda else "gloo")
    return distributedContext()


def distributedContext() -> DistributedContext:
    """This process's rank, world size and backend (rank 0 of 1 outside a process group)."""
    if not _initialised():
        return DistributedContext()
    dist = torch.distributed
    return DistributedContext(rank=dist.get_rank(), worldSize=dist.get_world_size(),
                              localRank=int(os.environ.get("LOCAL_RANK", "0")), backend=dist.get_backend())


def isMainProcess() -> bool:
    return distributedContext().isMain


def distributedDevice(preference: str = "auto") -> torch.device:
    """The device this process computes on: its own GPU in an NCCL group, else :func:`pickDevice`."""
    context = distributedContext()
    if context.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    device = pickDevice(preference)
    if context.active and device.type == "cuda":  # a gloo group was set up for CPU work
        return torch.device("cpu")
    return device


def allReduceSums(values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over all processes (the values themselves in one process)."""
    if not distributedContext().active:
        return [float(v) for v in values]
    device = distributedDevice("auto")
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def averageGradients(network: torch.nn.Module) -> None:
    """Average the gradients of ``network`` over all processes, for loops that DistributedDataParallel does not
    fit (e.g. a GAN whose discriminator runs several forward passes per backward)."""
    context = distributedContext()
    if not context.active:
        return
    for parameter in network.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= context.worldSize


def broadcastBuffers(network: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (e.g. batch-norm running statistics, which DDP does not average),
    so validation and the saved weights are the same everywhere."""
    if not distributedContext().active:
        return
    for buffer in network.buffers():
        torch.distributed.broadcast(buffer, src=0)


def barrier() -> None:
    if distributedContext().active:
        torch.distributed.barrier()


def shutdownDistributed() -> None:
    if _initialised():
        torch.distributed.destroy_process_group()


def wrapForTraining(network: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``network`` itself in one process; else DistributedDataParallel around it (gradients averaged).

    On NCCL, batch-norm layers become SyncBatchNorm (statistics over the global batch, as in one process);
    PyTorch has no CPU SyncBatchNorm, so on gloo each process normalises with its own share of the batch.
    """
    context = distributedContext()
    if not context.active:
        return network
    from torch.nn.parallel import DistributedDataParallel

    if context.backend == "nccl" and not isinstance(network, torch.jit.ScriptModule):
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
