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
import weakref
from typing import Callable

import torch

from .devices import isOutOfMemory, pickDevice
from .errors import DLError
from .jobs import formatSeconds

TOO_LARGE = 2**62  # memoryBytes of a run whose single window / step already ran out of memory on the device

__all__ = ["ResourceEstimate", "availableMemory", "formatBytes", "makeEstimate", "estimateForward", "estimateSlidingWindow",
           "estimateTraining", "fitOrSwitch", "planInference", "printEstimate"]


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
    """What a run needs on ``device`` (``memoryBytes`` peak, ``seconds``), and what is free there.

    On a GPU the whole-volume buffers stay in system memory: ``hostBytes`` of ``hostAvailableBytes`` free.
    On the CPU both are one pool, counted in ``memoryBytes`` (``hostBytes`` is 0).
    """

    what: str
    device: str
    memoryBytes: int
    availableBytes: int | None
    seconds: float | None
    windowBatchSize: int | None = None
    note: str = ""
    hostBytes: int = 0
    hostAvailableBytes: int | None = None

    @property
    def fits(self) -> bool:
        return self.deviceFits and self.hostFits

    @property
    def deviceFits(self) -> bool:
        return _within(self.memoryBytes, self.availableBytes)

    @property
    def hostFits(self) -> bool:
        return _within(self.hostBytes, self.hostAvailableBytes)

    def describe(self) -> str:
        def amount(needed, where, free):
            return (f"{formatBytes(needed)} {where} "
                    f"({formatBytes(free) + ' free' if free is not None else 'free memory unknown'})")

        if self.memoryBytes >= TOO_LARGE:
            return f"{self.what}: does not fit on {self.device} ({self.note})"
        text = f"{self.what}: needs about {amount(self.memoryBytes, 'on ' + self.device, self.availableBytes)}"
        if self.hostBytes:
            text += f" and {amount(self.hostBytes, 'of system memory', self.hostAvailableBytes)}"
        if self.seconds is not None:
            text += f", about {formatSeconds(self.seconds)}"
        return text + (f"; {self.note}" if self.note else "")

    def toDict(self) -> dict:
        return dict(dataclasses.asdict(self), fits=self.fits, text=self.describe())


def _within(needed: int, free: int | None) -> bool:
    """A run fits when it needs at most 90 % of what is free (or when what is free is unknown)."""
    return free is None or needed <= 0.9 * free


def _outOfMemory(what: str, device: torch.device, hostBytes: int, note: str, **fields) -> ResourceEstimate:
    """The estimate of a run that cannot even start on ``device`` (one window or step ran out of memory)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return makeEstimate(what, device, TOO_LARGE, hostBytes, None, note=note, **fields)


def makeEstimate(what: str, device: torch.device | str, deviceBytes: int, hostBytes: int, seconds: float | None,
                 **fields) -> ResourceEstimate:
    """A :class:`ResourceEstimate` of a run that holds ``deviceBytes`` on ``device`` and ``hostBytes`` in system
    memory (one pool when ``device`` is the CPU), with the free memory of each read now."""
    device = torch.device(device)
    if device.type == "cpu":
        return ResourceEstimate(what=what, device=str(device), memoryBytes=int(deviceBytes + hostBytes),
                                availableBytes=availableMemory(device), seconds=seconds, **fields)
    return ResourceEstimate(what=what, device=str(device), memoryBytes=int(deviceBytes),
                            availableBytes=availableMemory(device), seconds=seconds, hostBytes=int(hostBytes),
                            hostAvailableBytes=availableMemory("cpu"), **fields)


def _windowCost(network: torch.nn.Module, channels: int, roi: tuple[int, ...], device: torch.device
                ) -> tuple[int, float]:
    """``(activation bytes, seconds)`` of one window through ``network`` on ``device`` (on CUDA measured: the
    allocator's peak, on the second call, as the first pays one-off costs such as cuDNN's kernel choice; elsewhere
    from a probe window, see :func:`_cpuWindowCost`). Remembered per network, input channels, window and device: a
    cohort or a second run of the same model measures nothing again."""
    key = (int(channels), tuple(int(r) for r in roi), str(device))
    known = _WINDOW_COSTS.setdefault(network, {})
    if key in known:
        return known[key]
    network.eval()
    if device.type != "cuda":
        known[key] = _cpuWindowCost(network, channels, roi, device)
        return known[key]
    window = torch.zeros((1, channels) + roi, device=device)
    with torch.no_grad():
        network(window)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        started = time.perf_counter()
        network(window)
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
    known[key] = (int(torch.cuda.max_memory_allocated(device) - base), seconds)
    return known[key]


_WINDOW_COSTS: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def _cpuWindowCost(network: torch.nn.Module, channels: int, roi: tuple[int, ...], device: torch.device
                   ) -> tuple[int, float]:
    """One window's ``(activation bytes, seconds)`` on a device without a peak counter, without running a window
    (a plan must not cost as much as the run it plans: a bundle's image often fits one window).

    The layer outputs and the floating-point operations come from a probe window (:func:`_probeCost`); the time is
    the operations at this machine's measured convolution speed plus the layer outputs written and read at its
    measured copy speed: an estimate (measured on 2 CPU cores: 0.6x the time of a renalStructures SegResNet window,
    0.3x that of a small U-Net, whose thin layers convolve below that speed). A network the probe does not fit, or
    one whose window takes under :data:`CHEAP_WINDOW_SECONDS`, is timed on one real window."""
    probed = _probeCost(network, channels, roi, device)
    if probed is not None:
        activations, flops = probed
        seconds = flops / _flopsPerSecond(device) + 4 * activations / _bytesPerSecond(device)
        if seconds > CHEAP_WINDOW_SECONDS:
            return activations, seconds
    window = torch.zeros((1, channels) + roi, device=device)
    started = time.perf_counter()
    measured = _cpuActivations(network, window)
    return (probed[0] if probed is not None else measured), time.perf_counter() - started


CHEAP_WINDOW_SECONDS = 0.05  # below this a real window costs nothing worth saving, and is exact


def _probeCost(network: torch.nn.Module, channels: int, roi: tuple[int, ...], device: torch.device
               ) -> tuple[int, int] | None:
    """``(activation bytes, floating-point operations)`` of one window, from a probe window of 16 (or 32) voxels a
    side scaled by the voxel count: exact for convolutional networks, whose every layer output scales with the
    window when its edges divide by the probe's (a meta-device pass would need no arithmetic, but its batch-norm
    decomposition imports TorchDynamo: 1.4 s on the first plan). None where the probe does not fit (edges that do
    not divide, a network whose output is not window-shaped, TorchScript)."""
    if isinstance(network, torch.jit.ScriptModule):
        return None
    for edge in (16, 32):
        if any(r % edge for r in roi):
            return None
        probe = torch.zeros((1, channels) + (edge,) * len(roi), device=device)
        try:
            outputs, flops, shape = _layerCosts(network, probe)
        except Exception as exc:  # noqa: BLE001 - e.g. SwinUNETR's ValueError below 32 voxels a side
            if isOutOfMemory(exc):
                raise
            continue
        if tuple(shape[2:]) != tuple(probe.shape[2:]):
            return None
        scale = math.prod(roi) / edge ** len(roi)
        return int(outputs * scale) // 2, int(flops * scale)  # activations as _cpuActivations counts them
    return None


def _flopsPerSecond(device: torch.device) -> float:
    """This machine's speed of a 3D convolution on ``device`` (FLOP/s), measured once per process (~0.05 s)."""
    key = str(device)
    if key not in _FLOP_RATES:
        convolution = torch.nn.Conv3d(32, 32, 3, padding=1).to(device).eval()
        volume = torch.zeros((1, 32, 32, 32, 32), device=device)
        with torch.no_grad():
            convolution(volume)  # the first call pays one-off costs
            started = time.perf_counter()
            convolution(volume)
            seconds = max(time.perf_counter() - started, 1e-6)
        _FLOP_RATES[key] = 2 * 32 * 32 * 27 * 32 ** 3 / seconds
    return _FLOP_RATES[key]


def _bytesPerSecond(device: torch.device) -> float:
    """This machine's copy speed on ``device`` (bytes read and written per second), measured once per process."""
    key = str(device)
    if key not in _COPY_RATES:
        source, target = torch.ones(1 << 22, device=device), torch.empty(1 << 22, device=device)
        target.copy_(source)
        started = time.perf_counter()
        target.copy_(source)
        _COPY_RATES[key] = 2 * 4 * (1 << 22) / max(time.perf_counter() - started, 1e-6)
    return _COPY_RATES[key]


_FLOP_RATES: dict[str, float] = {}
_COPY_RATES: dict[str, float] = {}


def _layerCosts(network: torch.nn.Module, window: torch.Tensor) -> tuple[int, int, tuple]:
    """``(bytes of all leaf layers' outputs, floating-point operations of its convolutions and linear layers, the
    output's shape)`` of one forward pass of ``window`` (forward hooks). Counted by hand: ``torch.utils.flop_counter``
    imports TorchDynamo, 1.6 s on the first plan."""
    sizes, flops = [0], [0]

    def record(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            return
        sizes[0] += output.numel() * output.element_size()
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            kernel = math.prod(module.kernel_size) * module.in_channels // module.groups
            if module.transposed:  # each input voxel spreads over a kernel of every output channel
                flops[0] += 2 * inputs[0].numel() * math.prod(module.kernel_size) * module.out_channels // module.groups
            else:
                flops[0] += 2 * output.numel() * kernel
        elif isinstance(module, torch.nn.Linear):
            flops[0] += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(record) for m in network.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            output = network(window)
    finally:
        for handle in handles:
            handle.remove()
    return sizes[0], flops[0], tuple(output.shape) if isinstance(output, torch.Tensor) else ()


def _cpuActivations(network: torch.nn.Module, window: torch.Tensor) -> int:
    """Bytes of layer outputs alive at the peak of one forward pass on the CPU (which has no peak counter).

    The skip connections of a U-Net keep about half of all layer outputs alive at its deepest point: half the sum
    of every leaf layer's output (forward hooks). TorchScript modules take no hooks: there the tensors autograd
    would save for backward are counted (about 3/4 of the layer outputs of the same U-Net), two thirds of them.
    """
    if not isinstance(network, torch.jit.ScriptModule):
        return _layerCosts(network, window)[0] // 2
    saved: dict[int, int] = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        network(window.clone().requires_grad_(True))
    return 2 * sum(saved.values()) // 3


def estimateForward(network: torch.nn.Module, inputShape: tuple[int, ...], device: torch.device | str,
                    batchSize: int = 1, calls: int = 1, volumeBytes: int = 0, what: str = "Inference",
                    note: str = "") -> ResourceEstimate:
    """Memory and time of ``calls`` forward passes of batches of ``batchSize`` inputs ``(C, *S)`` (2D or 3D),
    plus ``volumeBytes`` of whole-volume buffers the run holds (input, output copies)."""
    device = pickDevice(device) if isinstance(device, str) else device
    try:
        activations, seconds = _windowCost(network.to(device), int(inputShape[0]),
                                           tuple(int(n) for n in inputShape[1:]), device)
    except RuntimeError as exc:
        if not isOutOfMemory(exc):
            raise
        return _outOfMemory(what, device, volumeBytes, "one batch ran out of memory", windowBatchSize=batchSize)
    onDevice = batchSize * activations + sum(p.numel() * p.element_size() for p in network.parameters())
    return makeEstimate(what, device, onDevice, volumeBytes,
                        seconds * calls * batchSize * (0.6 + 0.4 / max(1, batchSize)), windowBatchSize=batchSize,
                        note=note)


def estimateTraining(network: torch.nn.Module, inputShape: tuple[int, ...], batchSize: int, steps: int,
                     device: torch.device | str, dataBytes: int = 0, what: str = "Training") -> ResourceEstimate:
    """Memory and time of ``steps`` training steps on batches of ``batchSize`` inputs ``(C, *S)``, measured by
    running one real step (forward, backward, Adam) on ``device``; ``dataBytes``: the training data held."""
    device = pickDevice(device) if isinstance(device, str) else device
    # the step changes weights and batch-norm statistics: a model being fine-tuned gets them back afterwards,
    # on the device it was on (a copy kept in system memory: the device may be the one that is full)
    original = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
    home = next((p.device for p in network.parameters()), torch.device("cpu"))
    wasTraining = network.training
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    try:
        return _estimateTraining(network, inputShape, batchSize, steps, device, dataBytes, what, base)
    except RuntimeError as exc:
        if not isOutOfMemory(exc):
            raise
        return _outOfMemory(what, device, dataBytes, "one training step ran out of memory", windowBatchSize=batchSize)
    finally:
        network.to(home).load_state_dict(original)
        network.train(wasTraining)


def _estimateTraining(network, inputShape, batchSize, steps, device, dataBytes, what, base) -> ResourceEstimate:
    network = network.to(device).train()
    activations, _ = _windowCost(network, int(inputShape[0]), tuple(int(n) for n in inputShape[1:]), device)
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-6)
    batch = torch.zeros((batchSize,) + tuple(int(n) for n in inputShape), device=device)
    times = []
    for _ in range(2):  # the first step pays one-off costs (allocations, kernel choice): time the second
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        output = network(batch)
        output = output[0] if isinstance(output, (tuple, list)) else output
        output.float().mean().backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    if device.type == "cuda":  # the allocator's peak of the real step: weights, gradients, Adam, activations
        memory = torch.cuda.max_memory_allocated(device) - base
    else:  # weights, gradients and two Adam moments; every layer output kept for backward, and its gradient
        memory = 4 * sum(p.numel() * p.element_size() for p in network.parameters()) + 2 * 2 * batchSize * activations
    return makeEstimate(what, device, memory, dataBytes, times[-1] * steps, windowBatchSize=batchSize,
                        note=f"{steps} steps of {batchSize} x {'x'.join(map(str, inputShape[1:]))}")


def printEstimate(estimate: ResourceEstimate, **fields) -> bool:
    """``meddl --dry-run``: one JSON line per estimate (with ``fields``, e.g. the input); True if it fits."""
    import json

    print(json.dumps({**fields, **estimate.toDict()}))
    return estimate.fits


def estimateSlidingWindow(network: torch.nn.Module, image, spec, device: torch.device, windowBatchSize: int = 4,
                          overlap: float = 0.25, labelsOnly: bool = True, what: str = "Inference"
                          ) -> ResourceEstimate:
    """Memory and time of :func:`~DLCommon.inference.slidingWindowInference` of ``image`` ``(C, I, J, K)``.

    The device holds the window batch's activations and the weights (and the whole normalised input when the
    volume is too thin to be processed slab by slab); system memory holds the input, its resampled copy and
    the output.
    """
    from .inference import SLAB_MIN_WINDOWS, countWindows

    spacing = [float(s) for s in torch.linalg.norm(torch.as_tensor(image.affine, dtype=torch.float64)[:3, :3], dim=0)]
    inputShape = [int(n) for n in image.shape[1:]]
    shape = list(inputShape)
    if spec.spacing:  # the grid the network sees
        shape = [max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, spec.spacing)]
    roi = tuple(int(r) for r in spec.roiSize) if spec.roiSize else tuple(shape)
    channels = int(spec.inputChannels or image.shape[0])  # a bundle's network may take several volumes as channels
    voxels, inputVoxels = math.prod(shape), math.prod(inputShape)
    classes = max(2, len(spec.labelNames or []) + 1)
    host = 4 * channels * (inputVoxels + voxels)  # the input and its resampled / normalised copy
    host += inputVoxels if labelsOnly else 4 * 2 * classes * voxels  # labels (uint8) or scores + weights
    slabs = shape == inputShape and shape[2] >= SLAB_MIN_WINDOWS * roi[2] and all(s >= r for s, r in zip(shape, roi))
    try:
        activations, seconds = _windowCost(network.to(device), channels, roi, device)
    except RuntimeError as exc:  # one window does not even fit: this device cannot run it as asked
        if not isOutOfMemory(exc):
            raise
        return _outOfMemory(what, device, host, "one window ran out of memory", windowBatchSize=windowBatchSize)
    onDevice = windowBatchSize * activations + sum(p.numel() * p.element_size() for p in network.parameters())
    if not slabs and device.type != "cpu":
        onDevice += 4 * channels * voxels  # MONAI's sliding window reads the whole input from the device
    windows = countWindows(shape, roi, overlap)
    total = seconds * windows * (0.6 + 0.4 / max(1, windowBatchSize))  # batching windows amortises overheads
    if slabs:  # each window's output also travels to system memory and is added into the slab there
        total += windows * _accumulationSeconds(channels, classes, roi, device)
    return makeEstimate(what, device, onDevice, host, total, windowBatchSize=windowBatchSize,
                        note=f"{windows} windows of {'x'.join(map(str, roi))}")


def _accumulationSeconds(inputChannels: int, channels: int, roi: tuple[int, ...], device: torch.device) -> float:
    """Seconds of the slab path's work per window besides the network (measured the way
    :func:`~DLCommon.inference._rollingWindowInference` does it): normalising the cut ``(inputChannels, *roi)``
    window and sending it to the device, copying its ``(channels, *roi)`` output back to system memory and adding
    it and its weights into the slab's ring buffer, in two runs along K."""
    cut = torch.rand((inputChannels,) + roi)
    output = torch.rand((channels,) + roi, device=device)
    weight = torch.rand(roi)
    rows, split = tuple(2 * r for r in roi[:2]), roi[2] // 3
    scores, counts = torch.zeros((channels,) + rows + roi[2:]), torch.zeros((1,) + rows + roi[2:])
    window = (slice(None), slice(roi[0] // 2, roi[0] // 2 + roi[0]), slice(roi[1] // 2, roi[1] // 2 + roi[1]))

    def accumulate():
        ((cut.clone() - 0.5) / 0.25).to(device)
        patch = output.cpu()
        for target, source in ((slice(split, None), slice(0, roi[2] - split)), (slice(0, split),
                                                                                  slice(roi[2] - split, None))):
            scores[window + (target,)] += patch[..., source]
            counts[window + (target,)] += weight[..., source]

    accumulate()  # warm-up
    started = time.perf_counter()
    for _ in range(3):
        accumulate()
    return (time.perf_counter() - started) / 3


def _need(estimate: ResourceEstimate) -> str:
    """What does not fit, e.g. ``about 9.1 GB but only 4.0 GB is free on cuda:0``."""
    if not estimate.hostFits:
        needed, free, where = estimate.hostBytes, estimate.hostAvailableBytes, "in system memory"
    else:
        needed, free, where = estimate.memoryBytes, estimate.availableBytes, f"on {estimate.device}"
    if needed >= TOO_LARGE:
        return f"more than the {formatBytes(free or 0)} free {where} ({estimate.note})"
    return f"about {formatBytes(needed)} but only {formatBytes(free or 0)} is free {where}"


def fitOrSwitch(estimateOn: Callable[[torch.device], ResourceEstimate], device: torch.device | str, node,
                fix: str) -> ResourceEstimate:
    """``estimateOn(device)`` if it fits; else the CPU's estimate if that fits (noted); else a :class:`DLError`
    naming ``node``, what does not fit and ``fix``."""
    device = pickDevice(device) if isinstance(device, str) else torch.device(device)
    asked = estimateOn(device)
    if asked.fits:
        return asked
    if device.type != "cpu":
        onCpu = estimateOn(torch.device("cpu"))
        if onCpu.fits:
            onCpu.note = "; ".join(filter(None, [onCpu.note, f"switched from {device}, which needs {_need(asked)}"]))
            return onCpu
    raise _tooLarge(asked, device, node, fix)


def _tooLarge(asked: ResourceEstimate, device: torch.device, node, fix: str, what: str | None = None) -> DLError:
    """The refusal of a run that fits nowhere: what it needs, what is free, and how to fix it."""
    return DLError(f"is too large for this machine: {what or asked.what.lower()} needs {_need(asked)}"
                   + (" (and does not fit on the CPU either)" if device.type != "cpu" else ""), node=node, fix=fix)


def planInference(network: torch.nn.Module, image, spec, device: torch.device | str, windowBatchSize: int = 4,
                  overlap: float = 0.25, labelsOnly: bool = True, node=None) -> ResourceEstimate:
    """The estimate of the run as asked, or of the first smaller setting that fits (window batch 1, then the
    CPU), with the reason in ``note``.

    Raises:
        DLError: nothing fits; the message gives the estimate (memory needed, memory free) and how to fix it.
    """
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
            estimate.note = f"switched from {device} with {windowBatchSize} windows per batch, which needs {_need(asked)}"
            return estimate
    raise _tooLarge(asked, device, node if node is not None else "The input volume",
                    "crop the volume to the region of interest, resample it to a coarser spacing, or use a machine "
                    "with more memory", what="running the model on it")
