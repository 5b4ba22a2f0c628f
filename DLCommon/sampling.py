"""Sampling images at world points: the one place where voxel grids meet physical space.

Images are ``(B, C, I, J, K)`` tensors with a 4x4 ``affine`` (voxel index -> world RAS mm); points are
``(..., 3)`` world RAS mm. Used by registration (warping) and synthesis (ultrasound beams, resampling).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["worldGrid", "sampleAtWorld"]


def worldGrid(affine: torch.Tensor, shape: Sequence[int], device=None) -> torch.Tensor:
    """World RAS coordinates (mm) of every voxel centre, ``(I, J, K, 3)`` float32."""
    affine = affine.double()
    axes = [torch.arange(n, dtype=torch.float64) for n in shape]
    ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).float().to(device)


def sampleAtWorld(image: torch.Tensor, affine: torch.Tensor, points: torch.Tensor, mode: str = "bilinear",
                  padding: str = "border") -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` ``(1, C, I', J', K')`` at world points ``(I, J, K, 3)`` mm (any 3 leading dims).

    Args:
        image: the volume to sample, with its voxel-to-world ``affine``.
        points: where to sample, world RAS mm.
        mode: ``"bilinear"`` (trilinear) or ``"nearest"``.
        padding: outside the image, ``"border"`` repeats the edge value, ``"zeros"`` gives 0.

    Returns:
        ``(values (1, C, I, J, K), inside (1, 1, I, J, K) bool)``: ``inside`` marks points within the
        image's field of view (similarity terms ignore the others). An axis of one voxel (a single slice) is
        extruded: every point samples that slice.
    """
    worldToIndex = torch.linalg.inv(torch.as_tensor(affine).double()).to(points.device, torch.float32)
    ijk = points @ worldToIndex[:3, :3].T + worldToIndex[:3, 3]
    sizes = torch.tensor(image.shape[2:], dtype=torch.float32, device=points.device)
    normalised = torch.where(sizes > 1, 2.0 * ijk / torch.clamp(sizes - 1, min=1) - 1.0, torch.zeros_like(ijk))
    inside = (normalised.abs() <= 1.0 + 1e-4).all(dim=-1)[None, None]
    # grid_sample's last axis is (x, y, z) = (K, J, I)
    grid = normalised.flip(-1)[None]
    values = F.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=True)
    return values, inside
