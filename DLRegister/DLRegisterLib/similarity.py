"""Image similarity terms with masks, built on ``monai.losses``.

All take ``warped`` and ``fixed`` images ``(B, 1, I, J, K)`` with intensities normalised to 0..1 and an
optional ``weight`` ``(B, 1, I, J, K)`` in 0..1 (fixed mask x warped moving mask x inside the moving field
of view). They return a scalar *loss* (lower is more similar):

- ``"lncc"``: negative squared local normalised cross-correlation in a cubic window
  (``monai.losses.LocalNormalizedCrossCorrelationLoss`` with ``reduction="none"``, then a weighted mean).
  Robust to bias fields and contrast changes of one modality. Range -1..0.
- ``"ssd"``: mean squared difference (same modality, same intensity scale). Range 0..1.
- ``"mi"``: negative mutual information of a Parzen-window joint histogram
  (``monai.losses.GlobalMutualInformationLoss``) over the voxels with weight > 0.5; for different
  modalities (T1 vs T2, MR vs CT).
"""

from __future__ import annotations

from typing import Callable

import torch
from monai.losses import GlobalMutualInformationLoss, LocalNormalizedCrossCorrelationLoss

__all__ = ["SIMILARITIES", "similarityFunction"]

SIMILARITIES = ("lncc", "ssd", "mi")


def _weightedMean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def similarityFunction(name: str, kernelSize: int = 7, bins: int = 32
                       ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The loss ``f(warped, fixed, weight=None) -> scalar`` for ``name`` in :data:`SIMILARITIES`.

    Args:
        kernelSize: LNCC window edge, voxels (odd).
        bins: MI histogram bins.
    """
    if name == "lncc":
        lncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=kernelSize, reduction="none",
                                                   smooth_dr=1e-3)

        def lnccLoss(warped, fixed, weight=None):
            return _weightedMean(lncc(warped, fixed), weight)

        return lnccLoss
    if name == "ssd":
        def ssdLoss(warped, fixed, weight=None):
            return _weightedMean((warped - fixed) ** 2, weight)

        return ssdLoss
    if name == "mi":
        mutualInformation = GlobalMutualInformationLoss(num_bins=bins, sigma_ratio=0.5)

        def miLoss(warped, fixed, weight=None):
            if weight is not None:
                keep = weight.expand_as(warped) > 0.5
                warped, fixed = warped[keep], fixed[keep]
            warped, fixed = warped.reshape(1, 1, -1), fixed.reshape(1, 1, -1)
            if warped.shape[-1] > 400_000:  # a regular subsample: same optimum, far less memory
                step = warped.shape[-1] // 200_000
                warped, fixed = warped[..., ::step], fixed[..., ::step]
            return mutualInformation(warped, fixed)

        return miLoss
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {name!r}.")
