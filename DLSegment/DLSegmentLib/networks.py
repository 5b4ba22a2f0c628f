"""The MONAI segmentation networks DLSegment offers, built from a name and a patch size.

Each builder returns ``(network, args)``: ``args`` are the keyword arguments of the
``monai.networks.nets`` class, stored in the checkpoint spec so :func:`DLCommon.loadModel` rebuilds it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["NETWORKS", "buildNetwork"]

NETWORKS = {"unet": "UNet", "segresnet": "SegResNet", "dynunet": "DynUNet", "swinunetr": "SwinUNETR"}


def _levels(patchSize: Sequence[int], maxLevels: int) -> int:
    """How many 2x down-samplings the patch allows (each level needs an even size)."""
    levels, size = 0, min(patchSize)
    while levels < maxLevels and size % 2 == 0 and size // 2 >= 4:
        size //= 2
        levels += 1
    return max(levels, 1)


def buildNetwork(name: str, inChannels: int, outChannels: int, patchSize: Sequence[int],
                 features: int = 16, norm: str = "batch") -> tuple[str, dict[str, Any], torch.nn.Module]:
    """Build a 2D or 3D segmentation network.

    Args:
        name: ``unet``, ``segresnet``, ``dynunet`` or ``swinunetr``.
        inChannels / outChannels: ``C`` of the input and number of classes including background.
        patchSize: training patch in voxels (2 or 3 values; decides 2D / 3D and the depth).
        features: width of the first level (doubled per level).
        norm: ``"batch"`` (default: keeps absolute intensity, which tells tissues apart in small patches),
            ``"instance"`` or ``"group"``. Per-patch norms discard a patch's mean intensity, so two
            structures that differ only in brightness become indistinguishable in a patch holding one.

    Returns:
        ``(className, args, network)``.
    """
    key = name.lower()
    if norm not in ("batch", "instance", "group"):
        raise ValueError(f"norm must be 'batch', 'instance' or 'group', got {norm!r}.")
    if key not in NETWORKS:
        raise ValueError(f"network must be one of {sorted(NETWORKS)}, got {name!r}.")
    dims = len(patchSize)
    if dims not in (2, 3):
        raise ValueError(f"patchSize must have 2 or 3 values, got {patchSize}.")
    levels = _levels(patchSize, 4)
    if key == "unet":
        args = {"spatial_dims": dims, "in_channels": inChannels, "out_channels": outChannels,
                "channels": [features * 2 ** i for i in range(levels + 1)], "strides": [2] * levels,
                "num_res_units": 2, "norm": norm}
    elif key == "segresnet":
        args = {"spatial_dims": dims, "in_channels": inChannels, "out_channels": outChannels,
                "init_filters": features, "blocks_down": [1, 2, 2, 4][:levels + 1],
                "blocks_up": [1, 1, 1][:levels], "norm": ["GROUP", {"num_groups": 8}] if norm == "group" else norm}
    elif key == "dynunet":
        args = {"spatial_dims": dims, "in_channels": inChannels, "out_channels": outChannels,
                "kernel_size": [3] * (levels + 1), "strides": [1] + [2] * levels,
                "upsample_kernel_size": [2] * levels, "filters": [features * 2 ** i for i in range(levels + 1)],
                "norm_name": norm}
    else:
        if any(s % 32 or s < 64 for s in patchSize):
            raise ValueError(f"swinunetr needs a patch size of at least 64 and divisible by 32, got {list(patchSize)}.")
        args = {"spatial_dims": dims, "in_channels": inChannels, "out_channels": outChannels,
                "feature_size": max(12, (features // 12) * 12), "depths": [2, 2, 2, 2], "num_heads": [3, 6, 12, 24],
                "norm_name": norm}
    import monai.networks.nets as nets

    className = NETWORKS[key]
    return className, args, getattr(nets, className)(**args)
