"""Registration networks (DeepReg style) and their input / output contract.

A registration model takes ``(B, 2, I, J, K)``: channel 0 the moving image, channel 1 the fixed image, both
on one *network grid* of fixed shape ``spec.roiSize`` that spans the fixed volume (corner voxels shared, so
it may be anisotropic), each scaled 0..1 between its 0.5 and 99.5 percentiles; the moving image is first
brought onto that grid through a start affine ``A0`` (centres of mass, or the user's initial transform).
It returns a dense displacement ``(B, 3, I, J, K)`` in voxels of the network grid, MONAI's ``Warp``
convention (``warped(p) = moving(p + ddf(p))``, channel ``i`` along axis ``i``), like DeepReg and
``monai.networks.nets.LocalNet``. A TorchScript model that follows this contract can be imported.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.data import MetaTensor

from DLCommon import DLError
from DLCommon.settings import defaultOf

from .config import REGISTRATION_NETWORKS, RegistrationTrainingConfig
from .fields import voxelToWorldVectors
from .optimisation import composeDisplacement
from .space import (centreOfMass, plainTensor, resizeImage, robustNormalise, sampleAtWorld, smoothImage, spacingOf,
                    worldGrid)

__all__ = ["REGISTRATION_NETWORKS", "buildRegistrationNetwork", "networkGrid", "preparePair", "predictDisplacement",
           "centreOfMassAffine"]


def buildRegistrationNetwork(name: str, shape: Sequence[int],
                             features: int = defaultOf(RegistrationTrainingConfig, "features")
                             ) -> tuple[str, dict, torch.nn.Module]:
    """``(monai class name, constructor args, network)`` for ``name`` in :data:`REGISTRATION_NETWORKS`.

    ``localnet`` / ``regunet`` predict a dense field; ``globalnet`` an affine, returned as a dense field.
    The dense heads start at zero (identity transform): MONAI's default random output layer starts from a
    large random field that training on a few pairs does not undo.
    The grid ``shape`` must be divisible by 8 (three down-sampling levels).
    """
    from monai.networks import nets

    if any(int(n) % 8 for n in shape):
        raise DLError(f"is {tuple(shape)}; each axis must be a multiple of 8", node="The network grid",
                      fix="choose e.g. 64, 96 or 128 voxels per axis")
    if name == "localnet":
        args = {"spatial_dims": 3, "in_channels": 2, "num_channel_initial": features, "extract_levels": [0, 1, 2, 3],
                "out_activation": None, "out_channels": 3, "out_kernel_initializer": "zeros"}
        className = "LocalNet"
    elif name == "globalnet":
        args = {"image_size": [int(n) for n in shape], "spatial_dims": 3, "in_channels": 2,
                "num_channel_initial": features, "depth": 3}
        className = "GlobalNet"
    elif name == "regunet":
        args = {"spatial_dims": 3, "in_channels": 2, "num_channel_initial": features, "depth": 3, "out_channels": 3,
                "extract_levels": [3], "out_kernel_initializer": "zeros"}
        className = "RegUNet"
    else:
        raise ValueError(f"network must be one of {REGISTRATION_NETWORKS}, got {name!r}.")
    return className, args, getattr(nets, className)(**args)


def networkGrid(fixedAffine: torch.Tensor, fixedShape: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """Affine of a ``shape`` grid whose corner voxel centres are the fixed volume's."""
    scale = torch.tensor([(n - 1) / max(m - 1, 1) for n, m in zip(fixedShape, shape)], dtype=torch.float64)
    affine = torch.as_tensor(fixedAffine).double().clone()
    affine[:3, :3] = affine[:3, :3] * scale
    return affine


def centreOfMassAffine(fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
    """The translation (4x4, fixed world -> moving world) that aligns the intensity centres of mass."""
    affine = torch.eye(4, dtype=torch.float64)
    normalised = [robustNormalise(plainTensor(t)[None].float()) for t in (fixed, moving)]
    affine[:3, 3] = (centreOfMass(normalised[1], torch.as_tensor(moving.affine).double(), None)
                     - centreOfMass(normalised[0], torch.as_tensor(fixed.affine).double(), None))
    return affine


def preparePair(fixed: MetaTensor, moving: MetaTensor, shape: Sequence[int], initialAffine: torch.Tensor | None = None,
                fixedLabels: torch.Tensor | None = None, movingLabels: torch.Tensor | None = None,
                labelValues: Sequence[int] = ()) -> dict:
    """A pair on the network grid.

    Returns:
        ``{"input": (2, *shape) [moving, fixed], "gridAffine", "initialAffine",
        "labels": (2 * C, *shape) [moving one-hot, fixed one-hot] or None}``.
    """
    fixedAffine, movingAffine = (torch.as_tensor(t.affine).double() for t in (fixed, moving))
    start = centreOfMassAffine(fixed, moving) if initialAffine is None else torch.as_tensor(initialAffine).double()
    gridAffine = networkGrid(fixedAffine, fixed.shape[1:], shape)
    points = composeDisplacement(worldGrid(gridAffine, shape), start, None)
    sigma = [0.4 * max(0.0, float(spacingOf(gridAffine).mean() / s) - 1.0) for s in spacingOf(movingAffine)]
    movingImage = smoothImage(robustNormalise(plainTensor(moving)[None].float()), sigma)
    movingOnGrid = sampleAtWorld(movingImage, movingAffine, points, padding="zeros")[0][0]
    fixedOnGrid = resizeImage(robustNormalise(plainTensor(fixed)[None].float()), shape)[0]
    labels = None
    if fixedLabels is not None and movingLabels is not None:
        movingOneHot = torch.stack([(movingLabels == v).float() for v in labelValues])[None]
        fixedOneHot = torch.stack([(fixedLabels == v).float() for v in labelValues])[None]
        labels = torch.cat([sampleAtWorld(movingOneHot, movingAffine, points, padding="zeros")[0][0],
                            resizeImage(fixedOneHot, shape, antialias=False)[0]])
    return {"input": torch.cat([movingOnGrid, fixedOnGrid]), "gridAffine": gridAffine, "initialAffine": start,
            "labels": labels}


def predictDisplacement(network: torch.nn.Module, fixed: MetaTensor, moving: MetaTensor, shape: Sequence[int],
                        initialAffine: torch.Tensor | None = None, device: torch.device | str = "cpu"
                        ) -> tuple[torch.Tensor, MetaTensor]:
    """One forward pass: ``(A0 (4x4), b)`` with ``b`` a ``(3, *shape)`` world-mm MetaTensor on the network grid.

    The predicted map is ``x -> A0(x + b(x))`` (fixed world -> moving world), the form
    :func:`~DLRegisterLib.optimisation.registerImages` takes as its start (``initialAffine``,
    ``initialDisplacement``) for refinement.
    """
    pair = preparePair(fixed, moving, shape, initialAffine)
    network = network.to(device).eval()
    with torch.no_grad():
        ddf = network(pair["input"][None].to(device)).float().cpu()
    if ddf.shape[1:] != (3,) + tuple(shape):
        raise DLError(f"returned shape {tuple(ddf.shape)}, not a (1, 3, {', '.join(map(str, shape))}) displacement",
                      node="The registration model", fix="use a model that follows the registration contract "
                                                         "(DLRegisterLib.network)")
    displacement = voxelToWorldVectors(ddf, pair["gridAffine"])[0]
    return pair["initialAffine"], MetaTensor(displacement, affine=pair["gridAffine"], meta={"space": "RAS"})
