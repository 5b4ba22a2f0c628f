"""Paired image-to-image synthesis with a U-Net (the seed's encoder-decoder supervised learning).

Train on ``(source, target)`` volume pairs on the same voxel grid (e.g. T1 -> a second contrast, noisy ->
clean, T1 -> tissue map), 2D slice-wise (fast, any slice count) or 3D patch-wise, with an L1, L2 or L1 +
SSIM loss (``monai.losses.SSIMLoss``); apply to a new source volume: the output keeps its geometry.

Intensities: each source is scaled 0..1 between its 0.5 and 99.5 percentiles; targets are scaled with one
range taken from all training targets, which the model keeps to map its output back (``targetRange``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from DLCommon.shardedbatches import ShardedBatches
from DLCommon import DLError, TrainingConfig, trainModel
from DLCommon.geometry import affinesClose

from .config import LOSSES, ImageToImageConfig  # defined there (torch-free, with what the faces show); re-exported

__all__ = ["ImageToImageConfig", "ImageToImageModel", "trainImageToImage", "applyImageToImage", "percentileRange",
           "LOSSES", "buildNetwork", "applyPadded", "checkPairs",
           "prepareTargets", "PatchPairs",
           "saveImageToImageModel", "imageToImageModelFrom"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class ImageToImageModel:
    """A trained network with what it needs to be applied."""

    network: torch.nn.Module
    config: ImageToImageConfig
    targetRange: tuple[float, float]
    history: object = None
    options: dict = dataclasses.field(default_factory=dict)  # e.g. a denoiser's noise level (see .denoise)


def percentileRange(tensor: torch.Tensor, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles of ``tensor`` (a strided subsample for large volumes)."""
    values = tensor.reshape(-1).float()
    if values.numel() > 2_000_000:
        values = values[:: values.numel() // 1_000_000]
    lo, hi = torch.quantile(values, torch.tensor([low / 100, high / 100]))
    return float(lo), float(hi) if float(hi) > float(lo) else float(lo) + 1.0


def _scaled(tensor: torch.Tensor, valueRange: tuple[float, float]) -> torch.Tensor:
    return (tensor.float() - valueRange[0]) / (valueRange[1] - valueRange[0])


class _Residual(torch.nn.Module):
    """``x + gain * net(x)`` with ``gain`` starting at 0 (ReZero): training starts from the identity."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.gain = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gain * self.network(x)


def buildNetwork(dimensions: int, features: int, residual: bool) -> torch.nn.Module:
    """A MONAI UNet (three levels, residual units), optionally wrapped as ``x + gain * UNet(x)``.

    Batch norm, not MONAI's default instance norm: instance norm removes each image's intensity level, which
    an intensity mapping (one contrast to another) needs.
    """
    from monai.networks.nets import UNet

    network = UNet(spatial_dims=dimensions, in_channels=1, out_channels=1,
                   channels=(features, 2 * features, 4 * features), strides=(2, 2), num_res_units=2, norm="batch")
    return _Residual(network) if residual else network


def lossFunction(name: str, dimensions: int, ssimWeight: float) -> Callable:
    if name == "l1":
        return torch.nn.L1Loss()
    if name == "l2":
        return torch.nn.MSELoss()
    from monai.losses import SSIMLoss

    ssim = SSIMLoss(spatial_dims=dimensions, data_range=1.0, win_size=7)
    l1 = torch.nn.L1Loss()
    return lambda prediction, target: l1(prediction, target) + ssimWeight * ssim(prediction, target)


class PatchPairs(ShardedBatches):
    """``batchesPerEpoch`` random ``(source, target)`` patch batches per iteration, 2D slices or 3D boxes
    (each patch seeded by its index: the same patches for any number of training processes)."""

    def __init__(self, pairs, config: ImageToImageConfig, batchesPerEpoch: int):
        self.pairs, self.config = pairs, config
        super().__init__(self._patch, batchesPerEpoch * config.batchSize, config.batchSize, seed=config.seed,
                         what="Training pairs")

    def _patch(self, index: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        generator = torch.Generator().manual_seed(seed)

        def draw(upper: int) -> int:
            return int(torch.randint(max(1, upper), (1,), generator=generator))

        source, target = self.pairs[draw(len(self.pairs))]
        if c.dimensions == 2:
            index = draw(source.shape[c.sliceAxis])
            source, target = source.select(c.sliceAxis, index), target.select(c.sliceAxis, index)
        corner = [draw(n - c.patchSize + 1) for n in source.shape]
        box = tuple(slice(k, k + c.patchSize) for k in corner)
        return _padTo(source[box], c.patchSize)[None], _padTo(target[box], c.patchSize)[None]


def _padTo(tensor: torch.Tensor, size: int) -> torch.Tensor:
    pad = []
    for n in reversed(tensor.shape):
        pad += [0, max(0, size - n)]
    return F.pad(tensor, pad) if any(pad) else tensor


def checkPairs(pairs: Sequence[tuple[MetaTensor, MetaTensor]]) -> None:
    """Refuse an empty list, a pair on different grids, or non-finite voxels (:class:`DLError`)."""
    if not pairs:
        raise DLError("got no (source, target) pair", node="Training data", fix="add at least one pair of volumes")
    for index, (source, target) in enumerate(pairs, start=1):
        if tuple(source.shape[1:]) != tuple(target.shape[1:]) or not affinesClose(source.affine, target.affine, 1e-3):
            raise DLError(f"has a source of shape {tuple(source.shape[1:])} and a target of shape "
                          f"{tuple(target.shape[1:])} on different grids", node=f"Training pair {index}",
                          fix="resample the target onto the source volume first (e.g. Resample Scalar/Vector/DWI "
                              "Volume), or use volumes from the same acquisition")
        for tensor, what in ((source, "source"), (target, "target")):
            if not bool(torch.isfinite(tensor).all()):
                raise DLError(f"has NaN or infinite voxels in its {what}", node=f"Training pair {index}",
                              fix="replace them before training")


def prepareTargets(pairs: Sequence[tuple[MetaTensor, MetaTensor]]) -> tuple[tuple[float, float], list]:
    """``(targetRange, [(source 0..1, target 0..1) (I, J, K)])``: sources by their own percentiles, targets by
    one range over all targets (kept to map outputs back)."""
    lows, highs = zip(*(percentileRange(target) for _, target in pairs))
    targetRange = (min(lows), max(highs))
    prepared = [(_scaled(s.as_tensor()[0], percentileRange(s)), _scaled(t.as_tensor()[0], targetRange))
                for s, t in pairs]
    return targetRange, prepared


def trainImageToImage(pairs: Sequence[tuple[MetaTensor, MetaTensor]], config: ImageToImageConfig | None = None,
                      progress: Progress | None = None, onEpoch: Callable | None = None) -> ImageToImageModel:
    """Train a U-Net mapping each source ``(1, I, J, K)`` to its target on the same grid.

    Raises:
        DLError: no pair, a pair on different grids, non-finite voxels.
    """
    config = config or ImageToImageConfig()
    config.validate()
    checkPairs(pairs)
    targetRange, prepared = prepareTargets(pairs)
    perEpoch = 25
    torch.manual_seed(config.seed)  # the initial weights too: the seed makes the whole training reproducible
    network = buildNetwork(config.dimensions, config.features, config.residual)
    result = trainModel(network, PatchPairs(prepared, config, perEpoch),
                        lossFunction(config.loss, config.dimensions, config.ssimWeight),
                        TrainingConfig(epochs=max(1, math.ceil(config.steps / perEpoch)),
                                       learningRate=config.learningRate, seed=config.seed, device=config.device,
                                       schedule="cosine"),
                        progress=progress, onEpoch=onEpoch)
    return ImageToImageModel(network=result.network.eval(), config=config, targetRange=targetRange,
                             history=result.history)


def applyImageToImage(model: ImageToImageModel, source: MetaTensor, progress: Progress | None = None) -> MetaTensor:
    """Apply a trained model to ``source`` ``(1, I, J, K)``: the output ``(1, I, J, K)`` has its geometry."""
    if not bool(torch.isfinite(source).all()):
        raise DLError("has NaN or infinite voxels", node="The input volume", fix="replace them first")
    config = model.config
    device = next(model.network.parameters()).device
    scaled = _scaled(source.as_tensor()[0], percentileRange(source))
    with torch.no_grad():
        if config.dimensions == 2:
            slices = scaled.movedim(config.sliceAxis, 0)
            out = []
            for start in range(0, slices.shape[0], 8):
                out.append(applyPadded(model.network, slices[start:start + 8, None].to(device)).cpu()[:, 0])
                if progress:
                    progress(min(1.0, (start + 8) / slices.shape[0]), "applying slice by slice")
            output = torch.cat(out).movedim(0, config.sliceAxis)
        else:
            from monai.inferers import sliding_window_inference

            output = sliding_window_inference(scaled[None, None].to(device), (config.patchSize,) * 3, 4,
                                              model.network, overlap=0.25, mode="gaussian").cpu()[0, 0]
    low, high = model.targetRange
    return MetaTensor((output * (high - low) + low)[None], affine=torch.as_tensor(source.affine).clone(),
                      meta={"space": "RAS"})


def applyPadded(network: torch.nn.Module, batch: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    """Run a U-Net on ``(B, C, H, W)`` of any size: replicate-pad to a multiple of its total stride, crop back."""
    height, width = batch.shape[-2:]
    padH, padW = (-height) % multiple, (-width) % multiple
    padded = F.pad(batch, (0, padW, 0, padH), mode="replicate") if padH or padW else batch
    return network(padded)[..., :height, :width]


def saveImageToImageModel(model: ImageToImageModel, path, name: str, description: str = "") -> Path:
    """Save as TorchScript with its spec (task ``"synthesis"``; ``options`` hold what applying needs)."""
    from DLCommon import ModelSpec, saveTorchScript

    config = model.config
    spec = ModelSpec(name=name, task="synthesis", inputChannels=1, roiSize=[config.patchSize] * config.dimensions,
                     description=description or f"image-to-image {config.dimensions}D U-Net trained by MedDL",
                     options={"dimensions": config.dimensions, "sliceAxis": config.sliceAxis,
                              "patchSize": config.patchSize, "targetRange": list(model.targetRange),
                              **model.options})
    network = model.network.eval().cpu()
    example = torch.zeros((1, 1) + (config.patchSize,) * config.dimensions)
    return saveTorchScript(network, Path(path), spec, example=example)


def imageToImageModelFrom(loaded) -> ImageToImageModel:
    """An :class:`ImageToImageModel` from a loaded synthesis model (:func:`DLCommon.loadModel`)."""
    options = loaded.spec.options or {}
    if loaded.spec.task not in ("synthesis", "other") or "targetRange" not in options:
        raise DLError("is not an image-to-image synthesis model saved by MedDL (no output range in its spec)",
                      node=f"Model '{loaded.spec.name}'", fix="train one with 'meddl train-synthesis'")
    config = ImageToImageConfig(dimensions=int(options.get("dimensions", 2)), sliceAxis=int(options.get("sliceAxis", 2)),
                                patchSize=int(options.get("patchSize", 64)))
    extra = {k: v for k, v in options.items() if k not in ("dimensions", "sliceAxis", "patchSize", "targetRange")}
    return ImageToImageModel(network=loaded.network.eval(), config=config, targetRange=tuple(options["targetRange"]),
                             options=extra)
