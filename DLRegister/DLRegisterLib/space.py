"""Images in physical space: world grids, resolution pyramids and sampling a volume at world points.

Every image here is a ``(1, C, I, J, K)`` tensor with a 4x4 ``affine`` (voxel index -> world RAS mm, as
:func:`DLCommon.tensorFromVolume` returns it). Fixed and moving images may have any geometry (oblique,
different spacing and size): the moving image is always sampled at world points, never index to index.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from DLCommon.sampling import sampleAtWorld, worldGrid  # noqa: F401 (re-exported)

__all__ = ["worldGrid", "levelGeometry", "resizeImage", "sampleAtWorld", "robustNormalise", "smoothImage",
           "spacingOf", "centreOfMass", "plainTensor"]


def spacingOf(affine: torch.Tensor) -> torch.Tensor:
    """Voxel size (mm) along each index axis, shape ``(3,)``."""
    return torch.linalg.norm(affine[:3, :3].double(), dim=0)


def levelGeometry(affine: torch.Tensor, shape: Sequence[int], factor: float) -> tuple[torch.Tensor, tuple]:
    """Geometry of a coarser grid covering the same field of view as ``(affine, shape)``.

    The coarse grid has about ``shape / factor`` points and shares the corner voxel centres with the fine
    grid (``align_corners`` semantics), so trilinear resizing between levels is exact for linear fields.

    Returns:
        ``(affine, shape)`` of the coarse grid.
    """
    coarse = tuple(max(2, math.ceil((n - 1) / factor) + 1) if n > 1 else 1 for n in shape)
    scale = torch.tensor([(n - 1) / max(m - 1, 1) for n, m in zip(shape, coarse)], dtype=torch.float64)
    out = affine.double().clone()
    out[:3, :3] = out[:3, :3] * scale
    return out, coarse


def smoothImage(image: torch.Tensor, sigmaVoxels: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(B, C, I, J, K)`` with per-axis sigma in voxels (0: no smoothing)."""
    for axis, sigma in enumerate(sigmaVoxels):
        if sigma <= 0.3:
            continue
        radius = max(1, int(math.ceil(3 * sigma)))
        x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel = kernel / kernel.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        padding = [0, 0, 0]
        padding[axis] = radius
        channels = image.shape[1]
        weight = kernel.reshape(shape).repeat(channels, 1, 1, 1, 1)
        # replicate padding keeps the image edges at their value instead of fading to zero
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        image = F.conv3d(F.pad(image, pad, mode="replicate"), weight, groups=channels)
    return image


def resizeImage(image: torch.Tensor, shape: Sequence[int], antialias: bool = True) -> torch.Tensor:
    """Trilinear resize of ``(B, C, I, J, K)`` to ``shape`` (align-corners grids, see :func:`levelGeometry`).

    When shrinking, the image is first smoothed (Gaussian, sigma = half the shrink factor) so the coarse
    level is not aliased.
    """
    if tuple(image.shape[2:]) == tuple(shape):
        return image
    if antialias:
        sigmas = [0.5 * (n - 1) / max(m - 1, 1) if m < n else 0.0 for n, m in zip(image.shape[2:], shape)]
        image = smoothImage(image, sigmas)
    return F.interpolate(image, size=tuple(shape), mode="trilinear", align_corners=True)


def robustNormalise(image: torch.Tensor, mask: torch.Tensor | None = None, low: float = 0.5,
                    high: float = 99.5) -> torch.Tensor:
    """Map the ``low``-``high`` percentile range of ``image`` (inside ``mask``) to 0..1, clipped.

    Mutual information bins intensities on 0..1 and SSD compares raw values, so both images are brought to
    the same range; percentiles ignore a few outlier voxels.
    """
    values = image[mask.expand_as(image) > 0] if mask is not None else image.reshape(-1)
    if values.numel() > 2_000_000:  # a strided subsample estimates the percentiles just as well
        values = values[:: values.numel() // 1_000_000]
    lo, hi = torch.quantile(values.float(), torch.tensor([low / 100, high / 100], device=values.device))
    if float(hi - lo) <= 0:
        return torch.zeros_like(image)
    return ((image - lo) / (hi - lo)).clamp(0.0, 1.0)


def centreOfMass(image: torch.Tensor, affine: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """World position (mm, ``(3,)`` float64) of the intensity centre of mass of ``(1, 1, I, J, K)`` (negatives as 0)."""
    weight = image[0, 0].clamp(min=0)
    if mask is not None:
        weight = weight * mask[0, 0]
    total = weight.sum()
    if float(total) <= 0:
        weight, total = torch.ones_like(weight), float(weight.numel())
    ijk = [torch.arange(n, dtype=torch.float64, device=image.device) for n in weight.shape]
    centre = torch.stack([(weight.double().sum(dim=tuple(d for d in range(3) if d != axis)) * ijk[axis]).sum()
                          for axis in range(3)]) / float(total)
    return affine[:3, :3].to(centre) @ centre + affine[:3, 3].to(centre)


def plainTensor(tensor) -> torch.Tensor:
    """A plain ``torch.Tensor`` view of a MetaTensor (or anything ``torch.as_tensor`` takes)."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else torch.as_tensor(tensor)
