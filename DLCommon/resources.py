"""Memory and time a run needs, estimated before it starts, against what its device has free.

The estimate of a sliding-window inference adds the whole-volume buffers (input, its resampled copy, the
output: labels only, or class scores) to the activations of one window batch, measured by running one real
window through the network on the chosen device (forward hooks count every layer's output; on CUDA the
allocator's peak is used). That same window gives the time per window, so the time estimate is
``windows / windowBatch x seconds per batch``. :func:`planInference` then keeps the run as asked, moves it to a
smaller window batch or to the CPU when that fits, or refuses it with the estimate, before anything large is
allocated.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import torch

from .errors import DLError
from .jobs import formatSeconds

__all__ = ["ResourceEstimate", "availableMemory", "formatBytes", "estimateForward", "estimateSlidingWindow",
           "estimateTraining", "planInference", "printEstimate"]


def formatBytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1024 or unit == "TB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TB"


def availableMemory(device: torch.device | str) -> int | None:
    """Bytes free for a new run on ``device`` (CUDA: the driver's free memory; CPU / MPS: the system's
    available memory), or None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


@dataclasses.dataclass
class ResourceEstimate:
    """What a run needs (``memoryBytes`` peak, ``seconds``) on ``device``, and what is free there."""

    what: str
    device: str
    memoryBytes: int
    availableBytes: int | None
    seconds: float | None
    windowBatchSize: int | None = None
    note: str = ""

    @property
    def fits(self) -> bool:
        return self.availableBytes is None or self.memoryBytes <= 0.9 * self.availableBytes

    def describe(self) -> str:
        free = f"{formatBytes(self.availableBytes)} free" if self.availableBytes is not None else "free memory unknown"
        text = f"{self.what}: needs about {formatBytes(self.memoryBytes)} on {self.device} ({free})"
        if self.seconds is not None:
            text += f", about {formatSeconds(self.seconds)}"
        return text + (f"; {self.note}" if self.note else "")

    def toDict(self) -> dict:
        return dict(dataclasses.asdict(self), fits=self.fits, text=self.describe())


def _windowCost(network: torch.nn.Module, channels: int, roi: tuple[int, ...], device: torch.device
                ) -> tuple[int, float]:
    """``(activation bytes, seconds)`` of one window through ``network`` on ``device`` (measured)."""
    sizes: list[int] = []

    def record(module, inputs, output):
        if isinstance(output, torch.Tensor) and not list(module.children()):
            sizes.append(output.numel() * output.element_size())

    handles = [m.register_forward_hook(record) for m in network.modules() if not list(m.children())]
    window = torch.zeros((1, channels) + roi, device=device)
    network.eval()
    try:
        with torch.no_grad():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            started = time.perf_counter()
            network(window)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            peak = (torch.cuda.max_memory_allocated(device) - base) if device.type == "cuda" else sum(sizes) // 2
    finally:
        for handle in handles:
            handle.remove()
    # the skip connections of a U-Net keep about half of all layer outputs alive at the deepest point
    return int(peak), seconds


def estimateForward(network: torch.nn.Module, inputShape: tuple[int, ...], device: torch.device | str,
                    batchSize: int = 1, calls: int = 1, volumeBytes: int = 0, what: str = "Inference",
                    note: str = "") -> ResourceEstimate:
    """Memory and time of ``calls`` forward passes of batches of ``batchSize`` inputs ``(C, *S)`` (2D or 3D),
    plus ``volumeBytes`` of whole-volume buffers the run holds (input, output copies)."""
    from .devices import pickDevice

    device = pickDevice(device) if isinstance(device, str) else device
    activations, seconds = _windowCost(network.to(device), int(inputShape[0]), tuple(int(n) for n in inputShape[1:]),
                                       device)
    memory = volumeBytes + batchSize * activations + sum(p.numel() * p.element_size() for p in network.parameters())
    return ResourceEstimate(what=what, device=str(device), memoryBytes=int(memory),
                            availableBytes=availableMemory(device),
                            seconds=seconds * calls * batchSize * (0.6 + 0.4 / max(1, batchSize)),
                            windowBatchSize=batchSize, note=note)


def estimateTraining(network: torch.nn.Module, inputShape: tuple[int, ...], batchSize: int, steps: int,
                     device: torch.device | str, dataBytes: int = 0, what: str = "Training") -> ResourceEstimate:
    """Memory and time of ``steps`` training steps on batches of ``batchSize`` inputs ``(C, *S)``, measured by
    running one real step (forward, backward, Adam) on ``device``; ``dataBytes``: the training data held."""
    from .devices import pickDevice

    device = pickDevice(device) if isinstance(device, str) else device
    network = network.to(device).train()
    activations, _ = _windowCost(network, int(inputShape[0]), tuple(int(n) for n in inputShape[1:]), device)
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-6)
    batch = torch.zeros((batchSize,) + tuple(int(n) for n in inputShape), device=device)
    times = []
    for _ in range(2):  # the first step pays one-off costs (allocations, kernel choice): time the second
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        output = network(batch)
        output = output[0] if isinstance(output, (tuple, list)) else output
        output.float().mean().backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    parameters = sum(p.numel() * p.element_size() for p in network.parameters())
    # weights, gradients and two Adam moments; every layer output kept for backward, and its gradient
    memory = dataBytes + 4 * parameters + 2 * 2 * batchSize * activations
    return ResourceEstimate(what=what, device=str(device), memoryBytes=int(memory),
                            availableBytes=availableMemory(device), seconds=times[-1] * steps, windowBatchSize=batchSize,
                            note=f"{steps} steps of {batchSize} x {'x'.join(map(str, inputShape[1:]))}")


def printEstimate(estimate: ResourceEstimate, **fields) -> bool:
    """``meddl --dry-run``: one JSON line per estimate (with ``fields``, e.g. the input); True if it fits."""
    import json

    print(json.dumps({**fields, **estimate.toDict()}))
    return estimate.fits


def estimateSlidingWindow(network: torch.nn.Module, image, spec, device: torch.device, windowBatchSize: int = 4,
                          overlap: float = 0.25, labelsOnly: bool = True, what: str = "Inference"
                          ) -> ResourceEstimate:
    """Memory and time of :func:`~DLCommon.inference.slidingWindowInference` of ``image`` ``(C, I, J, K)``."""
    from .inference import countWindows

    spacing = [float(s) for s in torch.linalg.norm(torch.as_tensor(image.affine, dtype=torch.float64)[:3, :3], dim=0)]
    shape = [int(n) for n in image.shape[1:]]
    if spec.spacing:  # the grid the network sees
        shape = [max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, spec.spacing)]
    roi = tuple(int(r) for r in spec.roiSize) if spec.roiSize else tuple(shape)
    channels = int(image.shape[0])
    voxels, inputVoxels = math.prod(shape), math.prod(int(n) for n in image.shape[1:])
    classes = max(2, len(spec.labelNames or []) + 1)
    memory = 4 * channels * (inputVoxels + voxels)  # the input and its resampled / normalised copy
    memory += inputVoxels if labelsOnly else 4 * 2 * classes * voxels  # labels (uint8) or scores + weights
    from .devices import isOutOfMemory

    try:
        activations, seconds = _windowCost(network.to(device), channels, roi, device)
    except RuntimeError as exc:  # one window does not even fit: this device cannot run it as asked
        if not isOutOfMemory(exc):
            raise
        return ResourceEstimate(what=what, device=str(device), memoryBytes=2**62, availableBytes=availableMemory(device),
                                seconds=None, windowBatchSize=windowBatchSize, note="one window ran out of memory")
    memory += windowBatchSize * activations + sum(p.numel() * p.element_size() for p in network.parameters())
    windows = countWindows(shape, roi, overlap)
    total = seconds * windows * (0.6 + 0.4 / max(1, windowBatchSize))  # batching windows amortises overheads
    return ResourceEstimate(what=what, device=str(device), memoryBytes=int(memory),
                            availableBytes=availableMemory(device), seconds=total, windowBatchSize=windowBatchSize,
                            note=f"{windows} windows of {'x'.join(map(str, roi))}")


def planInference(network: torch.nn.Module, image, spec, device: torch.device | str, windowBatchSize: int = 4,
                  overlap: float = 0.25, labelsOnly: bool = True, node=None) -> ResourceEstimate:
    """The estimate of the run as asked, or of the first smaller setting that fits (window batch 1, then the
    CPU), with the reason in ``note``.

    Raises:
        DLError: nothing fits; the message gives the estimate (memory needed, memory free) and how to fix it.
    """
    from .devices import pickDevice

    device = pickDevice(device) if isinstance(device, str) else device
    asked = estimateSlidingWindow(network, image, spec, device, windowBatchSize, overlap, labelsOnly)
    if asked.fits:
        return asked
    options = [(device, 1)] if windowBatchSize > 1 else []
    if device.type != "cpu":
        options.append((torch.device("cpu"), 1))
    for candidate, batch in options:
        estimate = estimateSlidingWindow(network, image, spec, candidate, batch, overlap, labelsOnly)
        if estimate.fits:
            estimate.note = (f"switched from {device} with {windowBatchSize} windows per batch, which needs about "
                             f"{formatBytes(asked.memoryBytes)} of {formatBytes(asked.availableBytes)} free")
            return estimate
    raise DLError(f"is too large for this machine: running the model on it needs about {formatBytes(asked.memoryBytes)} of "
                  f"memory but only {formatBytes(asked.availableBytes)} is free on {device}"
                  + (" (and on the CPU)" if device.type != "cpu" else ""),
                  node=node if node is not None else "The input volume",
                  fix="crop the volume to the region of interest, resample it to a coarser spacing, or use a "
                      "machine with more memory")
