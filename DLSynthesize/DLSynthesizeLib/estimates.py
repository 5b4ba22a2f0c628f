"""Memory and time of the synthesis engines before they run (``meddl --dry-run``, the widget's Estimate).

Each estimate runs the engine's own network once on the chosen device (one training step, one slice batch or
window): see :mod:`DLCommon.resources`. Engines that train on the input itself (super-resolution, denoising)
add their training and their application, holding the larger of the two memories. The ultrasound simulation
(no network) is timed on a small phantom.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import torch

from DLCommon.inference import countWindows
from DLCommon.resources import ResourceEstimate, estimateForward, estimateTraining, makeEstimate

from .config import ImageToImageConfig, SuperResolutionConfig, UltrasoundConfig
from .imagetoimage import buildNetwork
from .superresolution import throughPlaneAxis

__all__ = ["estimateImageToImageTraining", "estimateImageToImageApply", "estimateSuperResolution",
           "estimateDenoise", "estimateUltrasound", "combined"]


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


def estimateUltrasound(shape: Sequence[int], config: UltrasoundConfig, measure: bool = True) -> ResourceEstimate:
    """:func:`~.ultrasound.simulateUltrasound` from tissue on a grid of spatial ``shape`` (on the CPU): the tissue
    maps and the beam and image arrays; with ``measure``, the time of one frame on a small phantom plus building
    the maps, scaled to the volume (without: no time, nothing run)."""
    from .ultrasound import TISSUES, probePose, simulateUltrasound, tissueMapsFromLabels

    voxels = math.prod(int(n) for n in shape)
    samples = config.beams * math.ceil(config.depth / config.axialStep)
    halfWidth = config.depth * math.sin(math.radians(config.angle / 2)) if config.geometry == "sector" \
        else config.width / 2
    pixels = (math.ceil(2 * halfWidth / config.pixelSize) + 1) * (math.ceil(config.depth / config.pixelSize) + 1)
    # labels (int64) + maps and their sampled copy (2 x 3 float32) + masks; ~24 float32 arrays per beam sample
    # (points, complex speckle, PSF passes, reflections, gains); ~10 per image pixel (scan conversion)
    memory = 33 * voxels + 4 * 24 * samples + 4 * 10 * pixels
    seconds = None
    if measure:
        block = (16, 16, 16)
        labels = torch.ones(block, dtype=torch.int64)
        start = time.perf_counter()
        maps = tissueMapsFromLabels(labels, {1: TISSUES["soft tissue"]})
        perVoxel = (time.perf_counter() - start) / math.prod(block)
        spacing = config.depth / 8  # the block spans twice the depth: the whole field of view inside it
        affine = torch.diag(torch.tensor([spacing, spacing, spacing, 1.0], dtype=torch.float64))
        centre = 7.5 * spacing
        pose = probePose([centre, centre, 15 * spacing], [centre, centre, 0.0], [0.0, 1.0, 0.0])
        start = time.perf_counter()
        simulateUltrasound(maps, affine, pose, config)
        seconds = time.perf_counter() - start + perVoxel * voxels
    return makeEstimate("Ultrasound simulation", "cpu", 0, memory, seconds,
                        note=f"{config.geometry} probe, {config.depth:g} mm deep, {config.beams} beams")
