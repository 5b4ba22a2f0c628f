"""The seed's segmentation losses (UCL MPHY0041, "segmentation losses"), as training losses.

Notation: ``p`` are predicted probabilities and ``r`` the one-hot reference, both ``(B, C, *spatial)``
(``C = 1``: binary, ``p`` = foreground probability; ``C > 1``: channel 0 is background, ``p`` sums to 1
over channels). ``N`` is the number of voxels, summed over the batch. All losses return a scalar tensor,
are differentiable in ``p`` and are minimal at ``p = r``.

=====================  ========================================================================
voxelCrossEntropy      binary: ``-1/N sum_n [r_n log p_n + (1 - r_n) log(1 - p_n)]``;
                       categorical: ``-1/N sum_n sum_c r_nc log p_nc``
weightedCrossEntropy   binary: ``-1/N sum_n [w r_n log p_n + (1 - r_n) log(1 - p_n)]``;
                       categorical: ``-1/N sum_n sum_c w_c r_nc log p_nc``; default ``w`` = inverse
                       class frequency (binary: background / foreground voxel ratio)
diceLoss               ``1 - (2 sum p r + eps) / (sum p + sum r + eps)`` per foreground class, averaged
                       (identical to ``monai.losses.DiceLoss(batch=True, smooth_nr=eps, smooth_dr=eps)``,
                       which computes it)
dl2Loss                ``1 - (sum p r + eps) / (sum (p + r) + eps)
                       - (sum (1 - p)(1 - r) + eps) / (sum (2 - p - r) + eps)`` per foreground class,
                       averaged: Dice with the background term
=====================  ========================================================================

Logarithms use ``p`` clamped to ``[eps, 1 - eps]`` (``eps = 1e-7``), so ``0 log 0`` counts as 0.

Example::

    probabilities = torch.softmax(network(image), dim=1)          # (B, C, H, W, D)
    reference = one_hot(labels, num_classes=C)                    # (B, C, H, W, D)
    loss = dl2Loss(probabilities, reference)
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.losses import DiceLoss

__all__ = ["voxelCrossEntropy", "weightedCrossEntropy", "diceLoss", "dl2Loss", "inverseFrequencyWeights",
           "LOSSES"]

LOG_EPS = 1e-7


def _check(p: torch.Tensor, r: torch.Tensor) -> None:
    if p.shape != r.shape:
        raise ValueError(f"p and r must have the same shape (B, C, ...), got {tuple(p.shape)} and {tuple(r.shape)}.")
    if p.ndim < 3:
        raise ValueError(f"p must be (B, C, *spatial) with at least one spatial axis, got {tuple(p.shape)}.")


def _log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp(LOG_EPS, 1.0 - LOG_EPS))


def voxelCrossEntropy(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Mean voxel-wise cross-entropy (binary for ``C = 1``, categorical for ``C > 1``)."""
    _check(p, r)
    r = r.to(p.dtype)
    if p.shape[1] == 1:
        return -(r * _log(p) + (1 - r) * _log(1 - p)).mean()
    return -(r * _log(p)).sum(dim=1).mean()


def inverseFrequencyWeights(r: torch.Tensor) -> torch.Tensor:
    """Default weights: binary ``w = N_background / N_foreground``; categorical ``w_c = N / (C N_c)``.

    Classes absent from ``r`` get weight 0 (they contribute nothing to the loss anyway).
    """
    r = r.detach().to(torch.float64)
    if r.shape[1] == 1:
        foreground = r.sum()
        return (r.numel() - foreground) / foreground.clamp(min=1.0)
    counts = r.transpose(0, 1).reshape(r.shape[1], -1).sum(dim=1)
    total = counts.sum()
    return torch.where(counts > 0, total / (r.shape[1] * counts.clamp(min=1.0)), torch.zeros_like(counts))


def weightedCrossEntropy(p: torch.Tensor, r: torch.Tensor,
                         w: float | Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with the foreground (binary) or each class (categorical) weighted by ``w``.

    Args:
        p, r: ``(B, C, ...)`` probabilities and one-hot reference.
        w: binary: a scalar foreground weight; categorical: ``C`` class weights. Default:
            :func:`inverseFrequencyWeights` of ``r`` (so rare structures are not drowned by background).
    """
    _check(p, r)
    r = r.to(p.dtype)
    weights = inverseFrequencyWeights(r) if w is None else torch.as_tensor(w, dtype=torch.float64)
    weights = weights.to(device=p.device, dtype=p.dtype)
    if p.shape[1] == 1:
        if weights.numel() != 1:
            raise ValueError(f"binary weightedCrossEntropy takes one foreground weight, got {weights.numel()}.")
        return -(weights * r * _log(p) + (1 - r) * _log(1 - p)).mean()
    if weights.numel() != p.shape[1]:
        raise ValueError(f"w must have one weight per class ({p.shape[1]}), got {weights.numel()}.")
    shape = (1, -1) + (1,) * (p.ndim - 2)
    return -(weights.reshape(shape) * r * _log(p)).sum(dim=1).mean()


def diceLoss(p: torch.Tensor, r: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``1 -`` soft Dice per foreground class (over batch and voxels), averaged over classes."""
    _check(p, r)
    loss = DiceLoss(include_background=p.shape[1] == 1, batch=True, smooth_nr=eps, smooth_dr=eps)
    return loss(p, r.to(p.dtype))


def dl2Loss(p: torch.Tensor, r: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The seed's DL2: Dice loss with the background term, per foreground class, averaged."""
    _check(p, r)
    r = r.to(p.dtype)
    if p.shape[1] > 1:  # foreground channels; each is a binary problem against the rest
        p, r = p[:, 1:], r[:, 1:]
    axes = [0] + list(range(2, p.ndim))
    foreground = (torch.sum(p * r, axes) + eps) / (torch.sum(p + r, axes) + eps)
    background = (torch.sum((1 - p) * (1 - r), axes) + eps) / (torch.sum(2 - p - r, axes) + eps)
    return (1 - foreground - background).mean()


LOSSES = {"ce": voxelCrossEntropy, "wce": weightedCrossEntropy, "dice": diceLoss, "dl2": dl2Loss}
