"""Compute device choice and out-of-memory fallback.

``pickDevice("auto")`` prefers CUDA, then Apple MPS, then the CPU. The environment variable
``MEDDL_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) overrides ``"auto"`` for every module and the
``meddl`` CLI, e.g. to keep the GPU free for something else.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable

import torch

from .errors import DLError

__all__ = ["pickDevice", "OOMReport", "runWithOOMFallback", "isOutOfMemory"]

logger = logging.getLogger(__name__)


def pickDevice(preference: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device to compute on.

    Args:
        preference: ``"auto"`` (or None): ``$MEDDL_DEVICE`` if set, else CUDA, then MPS, then CPU.
            Any other value (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``) is
            checked to exist and returned.

    Raises:
        DLError: the requested device is not available on this machine.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    preference = (preference or "auto").strip().lower()
    if preference == "auto":
        preference = os.environ.get("MEDDL_DEVICE", "").strip().lower() or "auto"
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mpsAvailable():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as exc:
        raise DLError(f"is not a device name ({exc})", node=f"Device '{preference}'",
                      fix="use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DLError("was requested but this PyTorch build or machine has no CUDA GPU",
                          node=f"Device '{preference}'",
                          fix="use auto or cpu, or install a CUDA build of PyTorch (see README)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DLError(f"does not exist: only {torch.cuda.device_count()} CUDA device(s) are visible",
                          node=f"Device '{preference}'", fix="pick a lower index or check CUDA_VISIBLE_DEVICES")
    elif device.type == "mps" and not _mpsAvailable():
        raise DLError("was requested but Apple MPS is not available", node=f"Device '{preference}'",
                      fix="use auto or cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DLError("is not supported", node=f"Device '{preference}'", fix="use auto, cpu, cuda, cuda:N or mps")
    return device


def _mpsAvailable() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def isOutOfMemory(exc: BaseException) -> bool:
    """True for CUDA / MPS out-of-memory errors (the only errors worth retrying smaller)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclasses.dataclass
class OOMReport:
    """What :func:`runWithOOMFallback` had to do: the batch size and device that finally worked."""

    batchSize: int
    device: torch.device
    retries: list[str] = dataclasses.field(default_factory=list)

    @property
    def degraded(self) -> bool:
        return bool(self.retries)

    def __str__(self) -> str:
        if not self.retries:
            return f"ran with batch size {self.batchSize} on {self.device}"
        return "; ".join(self.retries) + f"; finally ran with batch size {self.batchSize} on {self.device}"


def runWithOOMFallback(
    step: Callable[[int, torch.device], Any],
    batchSize: int,
    device: torch.device | str = "auto",
    minBatchSize: int = 1,
    allowCpu: bool = True,
) -> tuple[Any, OOMReport]:
    """Run ``step(batchSize, device)``, retrying after out-of-memory errors.

    On an out-of-memory error the batch (or sliding-window batch) size is halved down to
    ``minBatchSize``; after that the step is retried once on the CPU (if ``allowCpu``). Other errors
    propagate unchanged.

    Args:
        step: callable taking ``(batchSize, device)``; it must move its own data to ``device``.
        batchSize: the size to try first (>= 1).
        device: where to start (``"auto"`` picks with :func:`pickDevice`).
        minBatchSize: do not go below this size on the GPU.
        allowCpu: whether the last resort is the CPU.

    Returns:
        ``(result, report)``; ``report`` says which sizes / devices were tried (also logged).
    """
    if batchSize < 1 or minBatchSize < 1:
        raise ValueError(f"batchSize and minBatchSize must be >= 1, got {batchSize} and {minBatchSize}.")
    device = pickDevice(device) if isinstance(device, str) else device
    report = OOMReport(batchSize=batchSize, device=device)
    while True:
        try:
            result = step(report.batchSize, report.device)
            if report.degraded:
                logger.warning("MedDL: %s", report)
            return result, report
        except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if not isOutOfMemory(exc):
                raise
            _releaseCachedMemory(report.device)
            if report.batchSize > minBatchSize:
                newSize = max(minBatchSize, report.batchSize // 2)
                report.retries.append(f"out of memory on {report.device} with batch size {report.batchSize}, "
                                      f"retried with {newSize}")
                report.batchSize = newSize
            elif report.device.type != "cpu" and allowCpu:
                report.retries.append(f"out of memory on {report.device} with batch size {report.batchSize}, "
                                      "retried on the CPU")
                report.device = torch.device("cpu")
            else:
                raise DLError(f"ran out of memory even with batch size {report.batchSize} on {report.device}",
                              node="The computation",
                              fix="use a smaller window / batch, close other GPU programs, or crop the volume") from exc


def _releaseCachedMemory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
