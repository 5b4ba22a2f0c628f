"""Memory and time of the synthesis engines before they run (``meddl --dry-run``, the widget's Estimate).

Each estimate runs the engine's own network once on the chosen device (one training step, one slice batch or
window): see :mod:`DLCommon.resources`. Engines that train on the input itself (super-resolution, denoising)
add their training and their application, holding the larger of the two memories.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from DLCommon.inference import countWindows
from DLCommon.resources import ResourceEstimate, estimateForward, estimateTraining

from .imagetoimage import ImageToImageConfig, buildNetwork
from .superresolution import SuperResolutionConfig, throughPlaneAxis

__all__ = ["estimateImageToImageTraining", "estimateImageToImageApply", "estimateSuperResolution",
           "estimateDenoise", "combined"]


def combined(what: str, *estimates: ResourceEstimate) -> ResourceEstimate:
    """One estimate for steps run one after the other: the largest memory, the summed time."""
    first = estimates[0]
    largest = max(estimates, key=lambda e: e.memoryBytes)
    return ResourceEstimate(what=what, device=first.device, memoryBytes=largest.memoryBytes,
                            availableBytes=first.availableBytes, seconds=sum(e.seconds or 0.0 for e in estimates),
                            windowBatchSize=first.windowBatchSize, note="; ".join(e.note for e in estimates if e.note),
                            hostBytes=max(e.hostBytes for e in estimates), hostAvailableBytes=first.hostAvailableBytes)


def estimateImageToImageTraining(shapes: Sequence[Sequence[int]], config: ImageToImageConfig,
                                 what: str = "Synthesis training") -> ResourceEstimate:
    """Training on (source, target) pairs whose sources have the spatial ``shapes`` (targets alike)."""
    network = buildNetwork(config.dimensions, config.features, config.residual)
    return estimateTraining(network, (1,) + (config.patchSize,) * config.dimensions, config.batchSize, config.steps,
                            config.device, sum(2 * 4 * math.prod(shape) for shape in shapes), what)


def estimateImageToImageApply(network: torch.nn.Module, config: ImageToImageConfig, shape: Sequence[int],
                              device: torch.device | str, passes: int = 1, what: str = "Synthesis") -> ResourceEstimate:
    """Applying ``network`` (as :func:`~.imagetoimage.applyImageToImage`) ``passes`` times to a volume of spatial
    ``shape``: slice batches of 8 (2D) or window batches of 4 (3D), plus the scaled input and the outputs."""
    shape = [int(n) for n in shape]
    volumeBytes = 3 * 4 * math.prod(shape)  # scaled input, output, rescaled output (float32)
    if config.dimensions == 2:
        plane = [-(-n // 4) * 4 for axis, n in enumerate(shape) if axis != config.sliceAxis]  # as applyPadded pads
        return estimateForward(network, (1, *plane), device, 8, passes * math.ceil(shape[config.sliceAxis] / 8),
                               volumeBytes, what, note=f"{shape[config.sliceAxis]} slices")
    windows = countWindows(shape, (config.patchSize,) * 3, 0.25)
    return estimateForward(network, (1,) + (config.patchSize,) * 3, device, 4, passes * math.ceil(windows / 4),
                           volumeBytes, what, note=f"{windows} windows")


def estimateSuperResolution(image, config: SuperResolutionConfig) -> ResourceEstimate:
    """:func:`~.superresolution.superResolve` of ``image`` ``(1, I, J, K)``: training on its in-plane slices,
    then two families of through-plane slices of the upsampled volume."""
    axis, ratio = throughPlaneAxis(torch.as_tensor(image.affine))
    factor = int(config.factor or round(ratio))
    shape = [int(n) for n in image.shape[1:]]
    fine = list(shape)
    fine[axis] = (shape[axis] - 1) * factor + 1
    asTraining = ImageToImageConfig(dimensions=2, patchSize=config.patchSize, batchSize=config.batchSize,
                                    steps=config.steps, features=config.features, residual=True, device=config.device)
    training = estimateImageToImageTraining([shape], asTraining, "Super-resolution training")
    network = buildNetwork(2, config.features, residual=True)
    others = [d for d in range(3) if d != axis]
    applying = [estimateImageToImageApply(network, ImageToImageConfig(dimensions=2, sliceAxis=other), fine,
                                          training.device) for other in others]
    estimate = combined("Super-resolution", training, *applying)
    estimate.note = f"x{factor} along axis {axis}; {config.steps} training steps"
    return estimate


def estimateDenoise(image, config) -> ResourceEstimate:
    """:func:`~.denoise.denoise` of ``image`` ``(1, I, J, K)``: training on ``config.copies`` re-corrupted pairs,
    then ``config.draws`` passes over the volume."""
    shape = [int(n) for n in image.shape[1:]]
    asTraining = ImageToImageConfig(dimensions=config.dimensions, sliceAxis=config.sliceAxis,
                                    patchSize=config.patchSize, batchSize=config.batchSize, steps=config.steps,
                                    features=config.features, residual=True, device=config.device)
    training = estimateImageToImageTraining([shape] * config.copies, asTraining, "Denoising training")
    applying = estimateImageToImageApply(buildNetwork(config.dimensions, config.features, True), asTraining, shape,
                                         training.device, passes=config.draws)
    estimate = combined("Denoising", training, applying)
    estimate.note = f"{config.steps} training steps, {config.draws} draws"
    return estimate
