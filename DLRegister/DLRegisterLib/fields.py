"""The seed's transformation model: a dense displacement field (DDF), optionally a stationary velocity field.

A field lives on a grid ``(affine, shape)`` and holds world-space vectors (RAS mm) per voxel, channel first
``(1, 3, I, J, K)``. ``"ddf"`` optimises the displacement directly; ``"svf"`` optimises a velocity ``v``
and returns ``exp(v)`` integrated by scaling and squaring (``monai.networks.blocks.DVF2DDF``), which is
diffeomorphic (no folding) for smooth ``v``.

Regularisers are the physical (mm-based) forms of ``monai.losses.BendingEnergyLoss`` (1/mm^2) and
``DiffusionLoss`` (dimensionless), so one weight means the same at every pyramid level.
"""

from __future__ import annotations

import warnings

import torch
from monai.losses import BendingEnergyLoss, DiffusionLoss
from monai.networks.blocks import DVF2DDF

from .config import FIELD_MODELS, REGULARISERS
from .space import resizeImage, spacingOf

__all__ = ["DeformationField", "FIELD_MODELS", "REGULARISERS", "regularisation", "worldToVoxelVectors",
           "voxelToWorldVectors"]


def worldToVoxelVectors(field: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """World-mm vectors ``(B, 3, ...)`` -> index-space vectors of the grid ``affine``."""
    inverse = torch.linalg.inv(affine[:3, :3].double()).to(field)
    return torch.einsum("ij,bj...->bi...", inverse, field)


def voxelToWorldVectors(field: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """Index-space vectors ``(B, 3, ...)`` -> world mm."""
    return torch.einsum("ij,bj...->bi...", affine[:3, :3].to(field), field)


class DeformationField(torch.nn.Module):
    """A trainable displacement on one grid.

    Args:
        affine: ``4x4`` voxel -> world of the grid the field lives on.
        shape: ``(I, J, K)``.
        model: ``"ddf"`` or ``"svf"``.
        initial: optional ``(1, 3, ...)`` world-mm start value (any grid size: resized).
        steps: scaling-and-squaring steps for ``"svf"`` (``2**steps`` sub-steps).
    """

    def __init__(self, affine: torch.Tensor, shape, model: str = "ddf", initial: torch.Tensor | None = None,
                 steps: int = 7):
        super().__init__()
        if model not in FIELD_MODELS:
            raise ValueError(f"model must be one of {FIELD_MODELS}, got {model!r}.")
        self.model = model
        self.register_buffer("affine", affine.double().clone(), persistent=False)
        start = torch.zeros((1, 3) + tuple(shape))
        if initial is not None:
            start = resizeImage(initial.float(), shape, antialias=False)
        self.parameter = torch.nn.Parameter(start)
        self.integrate = None
        if model == "svf":
            with warnings.catch_warnings():  # MONAI announces its grid_sample backend on every construction
                warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample")
                self.integrate = DVF2DDF(num_steps=steps, mode="bilinear", padding_mode="border")

    def forward(self) -> torch.Tensor:
        """The displacement, ``(1, 3, I, J, K)`` world mm."""
        if self.integrate is None:
            return self.parameter
        velocity = worldToVoxelVectors(self.parameter, self.affine)
        return voxelToWorldVectors(self.integrate(velocity), self.affine)

    def resizedParameter(self, shape) -> torch.Tensor:
        """The optimised parameter (displacement or velocity) resized to a finer grid, for the next level."""
        return resizeImage(self.parameter.detach(), shape, antialias=False)


def regularisation(displacement: torch.Tensor, affine: torch.Tensor, kind: str = "bending") -> torch.Tensor:
    """Smoothness penalty of a world-mm displacement ``(1, 3, I, J, K)`` on the grid ``affine``.

    ``"bending"``: mean squared second derivatives (1/mm^2); ``"diffusion"``: mean squared first
    derivatives (dimensionless). Grids with an axis of 2 voxels or fewer return 0 (nothing to penalise).
    """
    if min(displacement.shape[2:]) <= 2:
        return displacement.sum() * 0.0
    spacing = float(spacingOf(affine).prod() ** (1.0 / 3.0))
    with warnings.catch_warnings():  # MONAI 1.6 indexes with a list, which torch >= 2.9 flags as deprecated
        warnings.filterwarnings("ignore", message=".*non-tuple sequence for multidimensional indexing")
        if kind == "bending":
            return BendingEnergyLoss()(displacement) / spacing ** 4
        if kind == "diffusion":
            return DiffusionLoss()(displacement) / spacing ** 2
    raise ValueError(f"regulariser must be one of {REGULARISERS}, got {kind!r}.")
