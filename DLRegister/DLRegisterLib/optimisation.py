"""Instance optimisation: register one fixed / moving pair by gradient descent, no training data needed.

The seed's unsupervised registration: minimise ``similarity(moving o T, fixed) + lambda * regulariser(T)``
(+ an optional label term, the seed's weak supervision) over a transformation ``T`` that maps *fixed*
world points to *moving* world points::

    T(x) = A(x + b(x) + u(x))

``A`` is affine (initialised from a given linear transform or the centres of mass, then optimised), ``b``
an optional fixed start displacement (a non-linear initial transform, or a trained network's prediction)
and ``u`` the optimised dense displacement field (DDF) or exp of a stationary velocity field (SVF), coarse
to fine over a resolution pyramid. Everything happens in world coordinates (RAS mm), so the two volumes may
have any orientation, spacing and size.

The result is the displacement ``d(x) = T(x) - x`` on a working grid that covers the fixed volume (the
fixed grid itself, or a coarser one for large volumes): exactly DLCommon's grid-transform convention
(``TransformFromParent(x) = x + d(x)``), so put the moving volume under it and Slicer shows it aligned.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import torch
from monai.data import MetaTensor
from monai.losses import DiceLoss

from DLCommon import DLError, pickDevice

from .config import DEFAULT_REGULARISATION, RegistrationConfig  # defined in config.py (torch-free); re-exported
from .fields import DeformationField, regularisation
from .quality import foldingFraction, jacobianDeterminant
from .similarity import similarityFunction
from .space import (centreOfMass, levelGeometry, plainTensor, resizeImage, robustNormalise, sampleAtWorld,
                    smoothImage, spacingOf, worldGrid)

__all__ = ["RegistrationConfig", "RegistrationResult", "registerImages", "checkImage", "workingGrid",
           "composeDisplacement", "DEFAULT_REGULARISATION"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class RegistrationResult:
    """What :func:`registerImages` found.

    Attributes:
        displacement: MetaTensor ``(3, I, J, K)`` world mm on the working grid (``.affine``): fixed point
            ``x`` corresponds to moving point ``x + d(x)``.
        affine: ``4x4`` the affine part ``A`` (fixed world -> moving world).
        report: similarity before / after, time, folding, grid, device.
        history: loss per iteration.
    """

    displacement: MetaTensor
    affine: torch.Tensor
    report: dict
    history: list = dataclasses.field(default_factory=list)


def checkImage(image: torch.Tensor, what: str) -> None:
    """Refuse what cannot be registered: not 3D scalar, non-finite or constant voxels."""
    if image.ndim != 4 or image.shape[0] != 1:
        raise DLError(f"has shape {tuple(image.shape)}; registration needs one scalar 3D volume (1, I, J, K)",
                      node=what, fix="pick a scalar volume (for RGB or multi-component, extract one component)")
    if min(image.shape[1:]) < 4:
        raise DLError(f"is {tuple(image.shape[1:])} voxels: too thin for 3D registration (at least 4 per axis)",
                      node=what, fix="register 3D volumes; for a single slice use a 2D tool")
    if not bool(torch.isfinite(image).all()):
        raise DLError("has NaN or infinite voxels", node=what, fix="replace them (e.g. threshold) before registering")
    if float(image.max() - image.min()) == 0.0:
        raise DLError("is constant: there is nothing to align", node=what, fix="check that the right volume is selected")


def workingGrid(affine: torch.Tensor, shape: Sequence[int], maxVoxels: int, spacing: float | None):
    """``(affine, shape)`` of the grid the field is optimised and returned on (covers the fixed volume)."""
    factor = 1.0
    if spacing:
        factor = max(1.0, float(spacing) / float(spacingOf(affine).min()))
    voxels = math.prod(shape)
    while voxels / factor ** 3 > maxVoxels:
        factor *= 1.1
    if factor == 1.0:
        return affine.double(), tuple(shape)
    return levelGeometry(affine, shape, factor)


def estimateRegistration(fixed: torch.Tensor, moving: torch.Tensor, config: "RegistrationConfig", device,
                         timed: bool = False):
    """What a registration of ``fixed`` to ``moving`` (``(1, I, J, K)`` MetaTensors) needs on ``device``.

    Memory: both images as float32 plus about 40 float32 values per working-grid voxel (field, its gradient and
    Adam states, warped images and similarity windows, the pyramid). Time (``timed``, when the memory fits): a
    short real run timed per stage, scaled to the configured iterations (a few seconds; memory alone is instant).
    """
    from DLCommon.resources import makeEstimate

    device = torch.device(device)
    workAffine, shape = workingGrid(torch.as_tensor(fixed.affine), fixed.shape[1:], config.maxVoxels, config.spacing)
    working = math.prod(shape)
    images = 4 * (fixed.numel() + moving.numel())
    estimate = makeEstimate("Registration", device, images + 4 * 40 * working, images, None,
                            note=f"working grid {'x'.join(map(str, shape))}")
    if timed and estimate.fits:
        estimate.seconds = _timeRegistration(fixed, moving, config, device)
    return estimate


def _timeRegistration(fixed, moving, config: "RegistrationConfig", device: torch.device) -> float:
    """Seconds :func:`registerImages` will take: a short real run of 6 iterations per stage, timed per stage
    from its progress reports, scaled to the configured iterations (its setup and final steps counted once)."""
    short = dataclasses.replace(config, affineIterations=6, iterations=[6] * len(config.iterations), device=str(device))
    # the first registration in a process pays one-off costs (thread pools, kernels): a tiny run first
    registerImages(fixed, moving, dataclasses.replace(short, maxVoxels=32**3, spacing=None))
    reached: dict[int, float] = {}

    def record(fraction: float, message: str) -> None:
        if "iteration" in message:  # not the first and last reports (before and after the optimisation)
            reached[round(fraction * total)] = time.perf_counter()

    counts = ([config.affineIterations] * len(config.affineLevels) if config.affine else [])
    counts += list(config.iterations) if config.deformable else []
    total = 6 * len(counts)
    started = time.perf_counter()
    registerImages(fixed, moving, short, progress=record)
    elapsed = time.perf_counter() - started
    # progress is reported after the first and the sixth iteration of every stage
    perIteration = [(reached[6 * j + 6] - reached[6 * j + 1]) / 5 for j in range(len(counts))]
    return max(0.0, elapsed - 6 * sum(perIteration)) + sum(c * n for c, n in zip(perIteration, counts))


def composeDisplacement(points: torch.Tensor, affine: torch.Tensor, displacement: torch.Tensor | None
                        ) -> torch.Tensor:
    """Moving world points ``A(x + d(x))`` for fixed world points ``x`` ``(I, J, K, 3)``, ``d`` ``(1, 3, ...)``."""
    if displacement is not None:
        points = points + displacement[0].permute(1, 2, 3, 0)
    affine = affine.to(points)
    return points @ affine[:3, :3].T + affine[:3, 3]


def _oneHot(labels: torch.Tensor, values: Sequence[int]) -> torch.Tensor:
    return torch.stack([(labels == v).float() for v in values])[None]


class _Pair:
    """Fixed and moving images, masks and labels on the device, normalised to 0..1, at one pyramid level."""

    def __init__(self, fixed, fixedAffine, moving, movingAffine, fixedMask, movingMask, fixedLabels, movingLabels,
                 labelValues, device):
        self.device = device
        self.fixedAffine, self.movingAffine = fixedAffine, movingAffine
        to = lambda t: None if t is None else t.to(device)  # noqa: E731
        self.fixedMask = to(fixedMask)
        self.movingMask = to(movingMask)
        self.fixed = robustNormalise(to(fixed), self.fixedMask)
        self.moving = robustNormalise(to(moving), self.movingMask)
        self.fixedLabels = None if fixedLabels is None else _oneHot(to(fixedLabels), labelValues)
        self.movingLabels = None if movingLabels is None else _oneHot(to(movingLabels), labelValues)
        self._movingLevels: dict = {}

    def level(self, affine: torch.Tensor, shape) -> dict:
        """Fixed data resized to the level grid, moving data smoothed for sampling at its spacing."""
        key = tuple(shape)
        if key not in self._movingLevels:
            levelSpacing = spacingOf(affine).mean()
            sigma = [0.4 * max(0.0, float(levelSpacing / s) - 1.0) for s in spacingOf(self.movingAffine)]
            self._movingLevels = {key: {  # keep one level only: memory
                "moving": smoothImage(self.moving, sigma),
                "movingMask": self.movingMask,
                "movingLabels": None if self.movingLabels is None else smoothImage(self.movingLabels, sigma)}}
        level = dict(self._movingLevels[key])
        level["fixed"] = resizeImage(self.fixed, shape)
        level["fixedMask"] = None if self.fixedMask is None else (resizeImage(self.fixedMask, shape, False) > 0.5).float()
        level["fixedLabels"] = None if self.fixedLabels is None else resizeImage(self.fixedLabels, shape)
        level["points"] = worldGrid(affine, shape, self.device)
        return level


def _warp(pair: _Pair, level: dict, moved: torch.Tensor):
    """Warped moving image, warped labels and the similarity weight at moving points ``moved``."""
    warped, inside = sampleAtWorld(level["moving"], pair.movingAffine, moved)
    weight = inside.float()
    if level["fixedMask"] is not None:
        weight = weight * level["fixedMask"]
    if level["movingMask"] is not None:
        weight = weight * (sampleAtWorld(level["movingMask"], pair.movingAffine, moved, padding="zeros")[0] > 0.5)
    labels = None
    if level["movingLabels"] is not None:
        labels = sampleAtWorld(level["movingLabels"], pair.movingAffine, moved, padding="zeros")[0]
    return warped, labels, weight


def registerImages(fixed: torch.Tensor, moving: torch.Tensor, config: RegistrationConfig | None = None,
                   fixedMask: torch.Tensor | None = None, movingMask: torch.Tensor | None = None,
                   fixedLabels: torch.Tensor | None = None, movingLabels: torch.Tensor | None = None,
                   initialAffine: torch.Tensor | None = None, initialDisplacement: torch.Tensor | None = None,
                   progress: Progress | None = None) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` (see the module docstring for the model).

    Args:
        fixed, moving: MetaTensors ``(1, I, J, K)`` with ``.affine`` (voxel -> world RAS mm), any geometry.
        config: options (:class:`RegistrationConfig`).
        fixedMask, movingMask: optional ``(1, I, J, K)`` masks on each image's grid (non-zero = use).
        fixedLabels, movingLabels: optional integer label maps ``(I, J, K)`` on each grid; with both, the
            Dice of the warped labels is added to the loss (label-driven registration).
        initialAffine: optional ``4x4`` fixed world -> moving world start (replaces the centre-of-mass start).
        initialDisplacement: optional ``(3, I, J, K)`` world-mm MetaTensor ``b`` (any grid covering the fixed
            volume, e.g. a network prediction): optimisation starts from ``x + b(x)``.
        progress: ``progress(fraction, message)``; may raise to cancel.

    Returns:
        :class:`RegistrationResult`.

    Raises:
        DLError: images not 3D / not finite / constant, empty masks, images that do not overlap.
    """
    config = config or RegistrationConfig()
    config.validate()
    checkImage(fixed, "The fixed volume")
    checkImage(moving, "The moving volume")
    for mask, what in ((fixedMask, "The fixed mask"), (movingMask, "The moving mask")):
        if mask is not None and not bool((mask != 0).any()):
            raise DLError("is empty", node=what, fix="paint the region to use, or clear the mask selection")
    started = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    device = pickDevice(config.device)
    if device.type == "mps":  # grid_sample of 5D tensors is not implemented on MPS
        device = torch.device("cpu")
    fixedAffine, movingAffine = (torch.as_tensor(t.affine).double() for t in (fixed, moving))
    labelValues = None
    if fixedLabels is not None and movingLabels is not None:
        labelValues = sorted(set(torch.unique(fixedLabels).tolist()) | set(torch.unique(movingLabels).tolist()))
    pair = _Pair(plainTensor(fixed)[None].float(), fixedAffine, plainTensor(moving)[None].float(), movingAffine,
                 None if fixedMask is None else (plainTensor(fixedMask)[None] != 0).float(),
                 None if movingMask is None else (plainTensor(movingMask)[None] != 0).float(),
                 None if labelValues is None else plainTensor(fixedLabels).long(),
                 None if labelValues is None else plainTensor(movingLabels).long(), labelValues or [], device)
    workAffine, workShape = workingGrid(fixedAffine, fixed.shape[1:], config.maxVoxels, config.spacing)
    similarity = similarityFunction(config.similarity, config.kernelSize)
    regularisationWeight = (DEFAULT_REGULARISATION[config.similarity] if config.regularisationWeight is None
                            else config.regularisationWeight)
    base = None
    if initialDisplacement is not None:
        base = plainTensor(initialDisplacement).float().to(device)
        base = base[None] if base.ndim == 4 else base

    if initialAffine is not None:
        affine = torch.as_tensor(initialAffine, dtype=torch.float64)
    elif config.initialisation == "centre":
        affine = torch.eye(4, dtype=torch.float64)
        affine[:3, 3] = (centreOfMass(pair.moving, movingAffine, pair.movingMask).cpu()
                         - centreOfMass(pair.fixed, fixedAffine, pair.fixedMask).cpu())
    else:
        affine = torch.eye(4, dtype=torch.float64)
    affine = affine.to(device)
    centre = centreOfMass(pair.fixed, fixedAffine, pair.fixedMask).to(device)

    stages = ([("affine", f, config.affineIterations) for f in config.affineLevels] if config.affine else [])
    stages += [("deformable", f, n) for f, n in zip(config.levels, config.iterations)] if config.deformable else []
    total = max(1, sum(n for _, _, n in stages))
    history: list[float] = []
    done = 0

    def measure(linear, displacement) -> float:
        level = pair.level(workAffine, workShape)
        with torch.no_grad():
            moved = composeDisplacement(level["points"], linear, _resized(displacement, workShape))
            warped, _, weight = _warp(pair, level, moved)
            if float(weight.sum()) == 0:
                raise DLError("do not overlap (no fixed voxel maps inside the moving volume and masks)",
                              node="The fixed and moving volumes",
                              fix="give an initial transform that roughly aligns them, or check the masks")
            return float(similarity(warped, level["fixed"], weight))

    report(0.0, "registration: initialising")
    before = measure(torch.eye(4, dtype=torch.float64), None)
    field = None
    fieldParameter = None
    for stage, factor, iterations in stages:
        levelAffine, levelShape = levelGeometry(workAffine, workShape, factor)
        level = pair.level(levelAffine, levelShape)
        levelBase = _resized(base, levelShape)
        regulariserAffine = levelAffine
        if stage == "affine":
            linear = torch.zeros(3, 3, dtype=torch.float64, device=device, requires_grad=True)
            shift = torch.zeros(3, dtype=torch.float64, device=device, requires_grad=True)
            step = float(spacingOf(levelAffine).mean())
            optimiser = torch.optim.Adam([{"params": [shift], "lr": 0.05 * step}, {"params": [linear], "lr": 5e-3}])
        else:
            field = DeformationField(levelAffine, levelShape, config.fieldModel, initial=fieldParameter).to(device)
            step = config.learningRate * float(spacingOf(levelAffine).mean())
            optimiser = torch.optim.Adam(field.parameters(), lr=step)
        for iteration in range(iterations):
            optimiser.zero_grad(set_to_none=True)
            if stage == "affine":
                local = torch.eye(4, dtype=torch.float64, device=device).clone()
                local[:3, :3] = local[:3, :3] + linear
                local[:3, 3] = centre - (torch.eye(3, dtype=torch.float64, device=device) + linear) @ centre + shift
                current = affine @ local
                moved = composeDisplacement(level["points"], current, levelBase)
                penalty = 0.0
            else:
                displacement = field()
                moved = composeDisplacement(level["points"], affine,
                                            displacement if levelBase is None else displacement + levelBase)
                penalty = regularisationWeight * regularisation(displacement, regulariserAffine, config.regulariser)
            warped, warpedLabels, weight = _warp(pair, level, moved)
            loss = similarity(warped, level["fixed"], weight) + penalty
            if warpedLabels is not None and config.labelWeight > 0:
                loss = loss + config.labelWeight * DiceLoss(reduction="mean")(warpedLabels[:, 1:],
                                                                              level["fixedLabels"][:, 1:])
            loss.backward()
            optimiser.step()
            history.append(loss.item())
            done += 1
            if iteration % 5 == 0 or iteration == iterations - 1:
                report(done / total, f"registration: {stage} level 1/{factor:g}, iteration {iteration + 1}/"
                                     f"{iterations}, loss {history[-1]:.4f}")
        if stage == "affine":
            with torch.no_grad():
                affine = current.detach()
        else:
            fieldParameter = field.parameter.detach()

    # the final displacement d(x) = A(x + b(x) + u(x)) - x on the working grid
    points = worldGrid(workAffine, workShape, device)
    with torch.no_grad():
        total = _resized(base, workShape)
        if field is not None:
            fieldOnWork = DeformationField(workAffine, workShape, config.fieldModel, initial=fieldParameter).to(device)
            deformation = fieldOnWork()
            total = deformation if total is None else total + deformation
        afterAffine = measure(affine, base)
        displacement = composeDisplacement(points, affine, total) - points
        displacement = displacement.permute(3, 0, 1, 2)[None]
        determinant = jacobianDeterminant(displacement[0], workAffine)
        after = _measureFinal(pair, similarity, workAffine, workShape, displacement, points)
    sign = -1.0 if config.similarity in ("lncc", "mi") else 1.0  # report similarity, not loss
    name = {"lncc": "LNCC", "ssd": "SSD", "mi": "MI"}[config.similarity]
    result = RegistrationResult(
        displacement=MetaTensor(displacement[0].cpu(), affine=workAffine.clone(), meta={"space": "RAS"}),
        affine=affine.cpu(),
        report={"similarity": name, "before": sign * before, "afterAffine": sign * afterAffine, "after": sign * after,
                "seconds": round(time.perf_counter() - started, 2),
                "foldingPercent": 100.0 * foldingFraction(determinant),
                "minJacobian": float(determinant.min()), "workingGrid": list(workShape),
                "workingSpacing": [round(float(s), 3) for s in spacingOf(workAffine)],
                "fieldModel": config.fieldModel if config.deformable else "affine", "device": str(device),
                "iterations": done},
        history=history)
    report(1.0, f"registration: {name} {result.report['before']:.3f} -> {result.report['after']:.3f}")
    return result


def _measureFinal(pair, similarity, workAffine, workShape, displacement, points) -> float:
    level = pair.level(workAffine, workShape)
    moved = points + displacement[0].permute(1, 2, 3, 0)
    warped, _, weight = _warp(pair, level, moved)
    return float(similarity(warped, level["fixed"], weight))


def _resized(displacement: torch.Tensor | None, shape) -> torch.Tensor | None:
    if displacement is None:
        return None
    return resizeImage(displacement, shape, antialias=False)
