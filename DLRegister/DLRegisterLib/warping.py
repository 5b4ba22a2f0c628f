"""Apply a registration result: resample images and label maps through a displacement field.

The displacement ``d`` is world mm on a grid covering the fixed volume (:class:`RegistrationResult`):
fixed point ``x`` takes the moving value at ``x + d(x)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.data import MetaTensor

from .space import resizeImage, sampleAtWorld, worldGrid

__all__ = ["denseDisplacement", "warpImage", "warpLabels"]


def denseDisplacement(displacement: MetaTensor, fixedAffine, fixedShape: Sequence[int]) -> MetaTensor:
    """The displacement ``(3, I, J, K)`` on the fixed grid.

    ``displacement`` lives on the fixed grid or on a coarser grid with the same corner voxels
    (:func:`~DLRegisterLib.space.levelGeometry`); trilinear upsampling then equals the linear interpolation
    Slicer's grid transform uses between its grid points.
    """
    field = displacement.as_tensor() if hasattr(displacement, "as_tensor") else displacement
    if tuple(field.shape[1:]) != tuple(fixedShape):
        field = resizeImage(field[None].float(), fixedShape, antialias=False)[0]
    return MetaTensor(field, affine=torch.as_tensor(fixedAffine).double(), meta={"space": "RAS"})


def warpImage(moving: MetaTensor, displacement: MetaTensor, padValue: float = 0.0) -> MetaTensor:
    """Moving image ``(C, I', J', K')`` resampled (trilinear) on the displacement's grid: ``(C, I, J, K)``."""
    points = worldGrid(displacement.affine, displacement.shape[1:]) + displacement.as_tensor().permute(1, 2, 3, 0)
    data = moving.as_tensor().float()[None] - padValue
    warped = sampleAtWorld(data, torch.as_tensor(moving.affine), points, padding="zeros")[0][0] + padValue
    return MetaTensor(warped, affine=displacement.affine.clone(), meta={"space": "RAS"})


def warpLabels(labels: torch.Tensor, movingAffine, displacement: MetaTensor) -> torch.Tensor:
    """Integer labels ``(I', J', K')`` on the moving grid -> ``(I, J, K)`` on the displacement's grid.

    Each label's indicator is interpolated trilinearly and the largest wins (smoother borders than nearest
    neighbour); one label at a time, so memory does not grow with the number of labels.
    """
    points = worldGrid(displacement.affine, displacement.shape[1:]) + displacement.as_tensor().permute(1, 2, 3, 0)
    affine = torch.as_tensor(movingAffine)
    best = torch.full(tuple(displacement.shape[1:]), 0.5)  # background wins unless a label is above 1/2
    out = torch.zeros(tuple(displacement.shape[1:]), dtype=torch.int64)
    for value in torch.unique(labels).tolist():
        if value == 0:
            continue
        indicator = (labels == value).float()[None, None]
        weight = sampleAtWorld(indicator, affine, points, padding="zeros")[0][0, 0]
        better = weight > best
        best = torch.where(better, weight, best)
        out[better] = int(value)
    return out
