"""Image-quality transfer (IQT, Alexander et al. 2017): learn low -> high resolution from paired acquisitions.

When some subjects have both a low-resolution (or low-quality) and a high-resolution volume, a 3D patch
regression learns the mapping: each low-resolution volume is resampled (trilinear, in world space) onto its
high-resolution partner's grid, and a residual 3D U-Net (:mod:`.imagetoimage`) learns the missing detail.
A new low-resolution volume is resampled onto a grid with the training targets' voxel size covering its field
of view, then restored. Unlike :mod:`.superresolution`, this needs paired data but restores every axis.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
from monai.data import MetaTensor

from DLCommon import DLError
from DLCommon.sampling import sampleAtWorld, worldGrid

from .config import ImageToImageConfig
from .imagetoimage import ImageToImageModel, applyImageToImage, trainImageToImage

__all__ = ["trainQualityTransfer", "applyQualityTransfer", "resampleOnto", "finerGrid"]


def resampleOnto(image: MetaTensor, affine: torch.Tensor, shape: Sequence[int]) -> MetaTensor:
    """``image`` ``(1, ...)`` resampled (trilinear, edges repeated) at the voxel centres of ``(affine, shape)``:
    ``(1, *shape)``."""
    points = worldGrid(torch.as_tensor(affine), shape)
    values = sampleAtWorld(image.as_tensor()[None].float(), torch.as_tensor(image.affine), points)[0][0]
    return MetaTensor(values, affine=torch.as_tensor(affine).double().clone(), meta={"space": "RAS"})


def finerGrid(affine: torch.Tensor, shape: Sequence[int], spacing: Sequence[float]) -> tuple[torch.Tensor, tuple]:
    """A grid with voxel size ``spacing`` (mm, per axis) and the same directions over the same field of view
    (from the first voxel centre to the last)."""
    affine = torch.as_tensor(affine).double()
    current = torch.linalg.norm(affine[:3, :3], dim=0)
    target = torch.as_tensor(spacing, dtype=torch.float64)
    newShape = tuple(int(math.floor((n - 1) * float(c) / float(t) + 1e-6)) + 1 for n, c, t in zip(shape, current, target))
    out = affine.clone()
    out[:3, :3] = affine[:3, :3] / current * target
    return out, newShape


def trainQualityTransfer(pairs: Sequence[tuple[MetaTensor, MetaTensor]], config: ImageToImageConfig | None = None,
                         progress: Callable[[float, str], None] | None = None,
                         onEpoch: Callable | None = None) -> ImageToImageModel:
    """Train on ``[(lowResolution, highResolution), ...]`` (each ``(1, ...)`` with its own grid);
    ``onEpoch(history)`` after each training epoch (live curves)."""
    if not pairs:
        raise DLError("got no (low, high resolution) pair", node="Training data", fix="add at least one pair")
    config = dataclasses.replace(config or ImageToImageConfig.forDimensions(3, batchSize=4),
                                 residual=True)
    upsampled = [(resampleOnto(low, high.affine, high.shape[1:]), high) for low, high in pairs]
    model = trainImageToImage(upsampled, config, progress=progress, onEpoch=onEpoch)
    spacing = torch.linalg.norm(torch.as_tensor(pairs[0][1].affine)[:3, :3].double(), dim=0)
    model.options["qualityTransfer"] = {"spacing": [float(s) for s in spacing]}
    return model


def applyQualityTransfer(model: ImageToImageModel, low: MetaTensor,
                         progress: Callable[[float, str], None] | None = None) -> MetaTensor:
    """Restore ``low`` ``(1, ...)`` onto a grid with the training targets' voxel size."""
    settings = model.options.get("qualityTransfer")
    if not settings:
        raise DLError("is not an image-quality-transfer model", node="The model",
                      fix="train one with trainQualityTransfer on (low, high resolution) pairs")
    affine, shape = finerGrid(low.affine, low.shape[1:], settings["spacing"])
    return applyImageToImage(model, resampleOnto(low, affine, shape), progress=progress)
