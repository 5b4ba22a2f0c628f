"""Self-supervised through-plane super-resolution of an anisotropic volume (SMORE-style).

An acquisition with thin in-plane pixels and thick slices (e.g. 1 x 1 x 4 mm) is sharp within each slice and
blurred across slices. The in-plane slices themselves show what detail looks like, so they become the
training data, with no external images: each in-plane slice is degraded along one in-plane axis the way the
scanner degraded the slice axis (Gaussian slice profile of FWHM = slice spacing, sampled at the slice
spacing, cubic interpolation back), and a 2D residual U-Net (``monai.networks.nets.UNet``) learns to undo it.
Applied to the planes that contain the slice axis (both families, averaged), it restores through-plane detail.

Shapes: volumes are MetaTensors ``(1, I, J, K)`` with ``.affine`` (voxel -> world RAS mm); the output has the
in-plane spacing along the slice axis too, on a grid whose first and last slices are the input's
(``(n - 1) * factor + 1`` slices).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from DLCommon import DLError, TrainingConfig, pickDevice, trainModel

from .config import SuperResolutionConfig  # defined there (torch-free, with what the faces show); re-exported
from .imagetoimage import applyPadded, buildNetwork

__all__ = ["SuperResolutionConfig", "SuperResolutionResult", "throughPlaneAxis", "degradeAlongAxis",
           "upsampleAlongAxis", "superResolve", "resampledGeometry"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class SuperResolutionResult:
    image: MetaTensor
    axis: int
    factor: int
    history: object = None


def throughPlaneAxis(affine: torch.Tensor, minimumRatio: float = 1.5) -> tuple[int, float]:
    """``(axis, ratio)``: the voxel axis with the largest spacing and how much larger it is than the others.

    Raises:
        DLError: the volume is (nearly) isotropic, so there is no slice axis to restore.
    """
    spacing = torch.linalg.norm(torch.as_tensor(affine)[:3, :3].double(), dim=0)
    axis = int(spacing.argmax())
    inPlane = float(torch.cat([spacing[:axis], spacing[axis + 1:]]).max())
    ratio = float(spacing[axis]) / inPlane
    if ratio < minimumRatio:
        raise DLError(f"is nearly isotropic (voxel size {[round(float(s), 2) for s in spacing]} mm): there is no "
                      "thick-slice axis to restore", node="The input volume",
                      fix="through-plane super-resolution needs thick slices (slice spacing >= 1.5x the pixel size)")
    return axis, ratio


def _gaussianKernel(fwhmPixels: float) -> torch.Tensor:
    sigma = fwhmPixels / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def upsampleAlongAxis(tensor: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    """Cubic (Catmull-Rom) interpolation of ``tensor`` along ``dim`` onto a grid ``factor`` times finer that
    shares the first and last samples: ``n`` -> ``(n - 1) * factor + 1``.

    Catmull-Rom reproduces linear ramps exactly (PyTorch's bicubic, Keys a = -0.75, does not); beyond the
    ends the samples are extrapolated linearly, which keeps that property up to the edges.
    """
    moved = tensor.movedim(dim, -1)
    count = moved.shape[-1]
    if count < 2:
        return tensor
    moved = torch.cat([2 * moved[..., :1] - moved[..., 1:2], moved, 2 * moved[..., -1:] - moved[..., -2:-1]], -1)
    positions = torch.arange((count - 1) * factor + 1, dtype=torch.float64) / factor
    base = positions.floor().clamp(max=max(count - 2, 0)).long()
    t = (positions - base).to(moved.dtype)
    weights = torch.stack([((-t + 2) * t - 1) * t / 2, (3 * t - 5) * t * t / 2 + 1,
                           ((-3 * t + 4) * t + 1) * t / 2, (t - 1) * t * t / 2])  # Catmull-Rom, samples k-1..k+2
    out = torch.zeros(moved.shape[:-1] + (positions.numel(),), dtype=moved.dtype, device=moved.device)
    for offset, weight in zip(range(-1, 3), weights):
        index = (base + offset + 1).clamp(0, count + 1).to(moved.device)  # +1: the extrapolated first sample
        out = out + moved.index_select(-1, index) * weight.to(moved.device)
    return out.movedim(-1, dim)


def degradeAlongAxis(tensor: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    """Thick-slice acquisition along ``dim``: Gaussian slice profile (FWHM = ``factor`` pixels), keep every
    ``factor``-th sample (starting at 0). Length ``n`` -> ``(n - 1) // factor + 1``."""
    kernel = _gaussianKernel(float(factor)).to(tensor)
    moved = tensor.movedim(dim, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    radius = kernel.numel() // 2
    blurred = F.conv1d(F.pad(flat, (radius, radius), mode="replicate"), kernel.reshape(1, 1, -1))
    sampled = blurred[..., ::factor]
    return sampled.reshape(*shape[:-1], sampled.shape[-1]).movedim(-1, dim)


def resampledGeometry(affine: torch.Tensor, axis: int, factor: int) -> torch.Tensor:
    """Affine of the ``factor`` times finer grid along ``axis`` that keeps the first slice's position."""
    out = torch.as_tensor(affine).double().clone()
    out[:3, axis] = out[:3, axis] / factor
    return out


class _SlicePairs:
    """Random patches ``(degraded-and-reinterpolated, original)`` from in-plane slices, one batch per step."""

    def __init__(self, slices: torch.Tensor, factor: int, patchSize: int, batchSize: int, steps: int, seed: int):
        self.slices, self.factor, self.batch, self.steps = slices, factor, batchSize, steps
        # square patches that fit either orientation of a slice (after the crop in _pair): equal sizes per batch,
        # a multiple of the U-Net's total stride (4)
        fitting = min([patchSize] + [(n - 1) // factor * factor + 1 for n in slices.shape[1:]])
        self.patch = max(4, fitting // 4 * 4)
        self.generator = torch.Generator().manual_seed(seed)

    def _pair(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # crop so that the degraded axis (rows) keeps its first and last samples
        rows = (image.shape[0] - 1) // self.factor * self.factor + 1
        image = image[:rows]
        low = degradeAlongAxis(image, 0, self.factor)
        return upsampleAlongAxis(low, 0, self.factor), image

    def __iter__(self):
        for _ in range(self.steps):
            inputs, targets = [], []
            for _ in range(self.batch):
                index = int(torch.randint(self.slices.shape[0], (1,), generator=self.generator))
                image = self.slices[index]
                if bool(torch.rand(1, generator=self.generator) < 0.5):
                    image = image.T  # degrade either in-plane axis
                degraded, original = self._pair(image)
                r = int(torch.randint(max(1, degraded.shape[0] - self.patch + 1), (1,), generator=self.generator))
                c = int(torch.randint(max(1, degraded.shape[1] - self.patch + 1), (1,), generator=self.generator))
                inputs.append(degraded[r:r + self.patch, c:c + self.patch])
                targets.append(original[r:r + self.patch, c:c + self.patch])
            yield torch.stack(inputs)[:, None], torch.stack(targets)[:, None]

    def __len__(self) -> int:
        return self.steps


def superResolve(image: MetaTensor, config: SuperResolutionConfig | None = None,
                 progress: Progress | None = None, onEpoch: Callable | None = None) -> SuperResolutionResult:
    """Train on ``image``'s own in-plane slices, then restore its through-plane resolution.

    Args:
        image: ``(1, I, J, K)`` MetaTensor with thick slices along one axis.
        config: :class:`SuperResolutionConfig`.
        progress: ``progress(fraction, message)``; may raise to cancel.
        onEpoch: ``onEpoch(history)`` after each training epoch (live curves).

    Returns:
        :class:`SuperResolutionResult` with ``image`` ``(1, ...)`` on the finer grid (``resampledGeometry``).
    """
    config = config or SuperResolutionConfig()
    config.validate()
    report = progress or (lambda fraction, message: None)
    if image.ndim != 4 or image.shape[0] != 1:
        raise DLError(f"has shape {tuple(image.shape)}; super-resolution needs one scalar 3D volume",
                      node="The input volume", fix="pick a scalar volume")
    if not bool(torch.isfinite(image).all()):
        raise DLError("has NaN or infinite voxels", node="The input volume", fix="replace them before super-resolving")
    axis, ratio = throughPlaneAxis(image.affine)
    factor = int(config.factor or round(ratio))
    data = image.as_tensor()[0].float()
    low, high = float(data.min()), float(data.max())
    scale = (high - low) or 1.0
    normalised = (data - low) / scale
    inPlane = normalised.movedim(axis, 0)  # (slices, a, b): every slice is an in-plane image
    device = pickDevice(config.device)
    torch.manual_seed(config.seed)
    network = buildNetwork(2, config.features, residual=True)
    perEpoch = 25  # progress, cancel and the best-state choice happen once per "epoch" of random batches
    batches = _SlicePairs(inPlane, factor, config.patchSize, config.batchSize, perEpoch, config.seed)
    report(0.0, f"super-resolution: training on {inPlane.shape[0]} in-plane slices (x{factor})")
    result = trainModel(network, batches, torch.nn.L1Loss(),
                        TrainingConfig(epochs=max(1, math.ceil(config.steps / perEpoch)),
                                       learningRate=config.learningRate, seed=config.seed, device=config.device,
                                       schedule="cosine"),
                        progress=lambda f, m: report(0.8 * f, f"super-resolution: {m}"), onEpoch=onEpoch)
    network = result.network.eval().to(device)
    report(0.8, "super-resolution: applying across slices")
    fine = upsampleAlongAxis(normalised, axis, factor)
    prediction = torch.zeros_like(fine)
    others = [d for d in range(3) if d != axis]
    with torch.no_grad():
        for family, other in enumerate(others):
            # planes spanned by (slice axis, the other in-plane axis), indexed along ``other``
            stack = fine.movedim((other, axis), (0, 1))  # (n, slice axis, remaining)
            restored = torch.cat([applyPadded(network, stack[i:i + 8, None].to(device)).cpu()[:, 0]
                                  for i in range(0, stack.shape[0], 8)])
            prediction += restored.movedim((0, 1), (other, axis))
            report(0.8 + 0.2 * (family + 1) / 2, "super-resolution: applying across slices")
    output = (prediction / 2.0) * scale + low
    affine = resampledGeometry(image.affine, axis, factor)
    return SuperResolutionResult(image=MetaTensor(output[None], affine=affine, meta={"space": "RAS"}), axis=axis,
                                 factor=factor, history=result.history)
