"""Image similarity terms with masks, built on ``monai.losses``.

All take ``warped`` and ``fixed`` images ``(B, 1, I, J, K)`` with intensities normalised to 0..1 and an
optional ``weight`` ``(B, 1, I, J, K)`` in 0..1 (fixed mask x warped moving mask x inside the moving field
of view). They return a scalar *loss* (lower is more similar):

- ``"lncc"``: negative squared local normalised cross-correlation in a cubic window: the formula of
  ``monai.losses.LocalNormalizedCrossCorrelationLoss`` (rectangular kernel, zero padding; a test checks
  equality), its five window sums computed together as differences of cumulative sums, several times faster on
  the CPU than MONAI's separable ``conv3d``; then a weighted mean. Robust to bias fields and contrast changes
  of one modality. Range -1..0.
- ``"ssd"``: mean squared difference (same modality, same intensity scale). Range 0..1.
- ``"mi"``: negative mutual information of a Parzen-window joint histogram
  (``monai.losses.GlobalMutualInformationLoss``) over a random subset of the voxels with weight > 0.5; for
  different modalities (T1 vs T2, MR vs CT).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from monai.losses import GlobalMutualInformationLoss

from .config import SIMILARITIES

__all__ = ["SIMILARITIES", "similarityFunction", "localNormalisedCrossCorrelation"]


def _weightedMean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def _windowSum(x: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """Sum over a centred window of ``size`` voxels along ``axis`` (zeros outside): a difference of cumulative
    sums, O(1) per voxel whatever the window."""
    radius = size // 2
    pad = [0] * (2 * x.ndim)
    pad[2 * (x.ndim - 1 - axis)], pad[2 * (x.ndim - 1 - axis) + 1] = radius + 1, radius
    cumulative = F.pad(x, pad[: 2 * (x.ndim - 2)]).cumsum(axis)
    length = x.shape[axis]
    return cumulative.narrow(axis, size, length) - cumulative.narrow(axis, 0, length)


def localNormalisedCrossCorrelation(pred: torch.Tensor, target: torch.Tensor, kernelSize: int = 7,
                                    smoothNumerator: float = 0.0, smoothDenominator: float = 1e-3) -> torch.Tensor:
    """Negative squared LNCC per voxel ``(B, 1, I, J, K)``, as MONAI's loss with ``reduction="none"``."""
    channels = torch.cat([target, pred, target * target, pred * pred, target * pred], dim=1)
    volume = float(kernelSize ** 3)
    sums = channels
    for axis in (2, 3, 4):
        sums = _windowSum(sums, axis, kernelSize)
    tSum, pSum, t2Sum, p2Sum, tpSum = sums.split(target.shape[1], dim=1)
    tAvg, pAvg = tSum / volume, pSum / volume
    cross = tpSum - pAvg * tSum
    tVar = torch.clamp(t2Sum - tAvg * tSum, min=smoothDenominator)
    pVar = torch.clamp(p2Sum - pAvg * pSum, min=smoothDenominator)
    return -(cross * cross + smoothNumerator) / (tVar * pVar)


def similarityFunction(name: str, kernelSize: int = 7, bins: int = 32, samples: int = 50_000
                       ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The loss ``f(warped, fixed, weight=None) -> scalar`` for ``name`` in :data:`SIMILARITIES`.

    Args:
        kernelSize: LNCC window edge, voxels (odd).
        bins: MI histogram bins.
        samples: MI voxels per evaluation (a fresh random subset each time; reproducible).
    """
    if name == "lncc":
        def lnccLoss(warped, fixed, weight=None):
            return _weightedMean(localNormalisedCrossCorrelation(warped, fixed, kernelSize), weight)

        return lnccLoss
    if name == "ssd":
        def ssdLoss(warped, fixed, weight=None):
            return _weightedMean((warped - fixed) ** 2, weight)

        return ssdLoss
    if name == "mi":
        mutualInformation = GlobalMutualInformationLoss(num_bins=bins, sigma_ratio=0.5)
        generator = torch.Generator().manual_seed(0)

        def miLoss(warped, fixed, weight=None):
            warped, fixed = warped.reshape(-1), fixed.reshape(-1)
            if weight is not None:
                keep = (weight.expand(-1, 1, *weight.shape[2:]).reshape(-1) > 0.5).nonzero()[:, 0]
                warped, fixed = warped[keep], fixed[keep]
            if warped.numel() > samples:  # a new random subset each call, as elastix's samplers do
                chosen = torch.randint(warped.numel(), (samples,), generator=generator).to(warped.device)
                warped, fixed = warped[chosen], fixed[chosen]
            return mutualInformation(warped.reshape(1, 1, -1), fixed.reshape(1, 1, -1))

        return miLoss
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {name!r}.")
