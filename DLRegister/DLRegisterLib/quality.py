"""Registration quality: Jacobian determinant, folding, Dice of warped labels."""

from __future__ import annotations

import torch

__all__ = ["jacobianDeterminant", "foldingFraction", "labelDice"]


def jacobianDeterminant(displacement: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``T(x) = x + u(x)``.

    Args:
        displacement: ``(3, I, J, K)`` or ``(1, 3, I, J, K)`` world-mm displacement ``u`` on the grid
            ``affine`` (4x4 voxel -> world).

    Returns:
        ``(I, J, K)`` float32: local volume change; ``<= 0`` where the transform folds. Derivatives are
        central differences (one-sided at the border) in index space, mapped to mm by the grid's matrix.
    """
    u = displacement[0] if displacement.ndim == 5 else displacement
    u = u.float()
    byIndex = []  # du/di, du/dj, du/dk: each (3, I, J, K)
    for axis in range(3):
        if u.shape[1 + axis] > 1:
            byIndex.append(torch.gradient(u, dim=1 + axis)[0])
        else:
            byIndex.append(torch.zeros_like(u))
    gradient = torch.stack(byIndex, dim=1)  # (3 components, 3 index axes, I, J, K)
    indexToWorld = torch.linalg.inv(affine[:3, :3].double()).float().to(u.device)
    # du/dx = du/dijk @ dijk/dx
    jacobian = torch.einsum("ca...,ax->...cx", gradient, indexToWorld) + torch.eye(3, device=u.device)
    return torch.linalg.det(jacobian)


def foldingFraction(determinant: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Fraction (0..1) of voxels (inside ``mask``) where the Jacobian determinant is <= 0."""
    values = determinant[mask.bool()] if mask is not None else determinant
    return float((values <= 0).float().mean()) if values.numel() else 0.0


def labelDice(a: torch.Tensor, b: torch.Tensor, labels) -> list[float]:
    """Dice of integer label maps ``a`` and ``b`` (same shape) for each label value in ``labels``.

    A label absent from both gives ``nan`` (nothing to overlap), not a perfect score.
    """
    scores = []
    for label in labels:
        x, y = a == label, b == label
        total = int(x.sum() + y.sum())
        scores.append(2.0 * int((x & y).sum()) / total if total else float("nan"))
    return scores
