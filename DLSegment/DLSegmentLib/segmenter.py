"""Apply a segmentation model to an image tensor: probabilities, labels and uncertainty on the input grid."""

from __future__ import annotations

from typing import Callable

import torch
from monai.data import MetaTensor

from DLCommon import DLError, slidingWindowInference
from DLCommon.models import LoadedModel
from DLCommon.segmentations import labelsFromScores

from .data import checkFinite

__all__ = ["predictProbabilities", "predictLabels", "entropyMap", "dicePerLabel"]


def checkModelInput(model: LoadedModel, image: MetaTensor) -> None:
    """Refuse, before any work, what ``model`` cannot segment: NaN / infinite voxels, another number of
    channels, a single slice for a 3D model (:class:`DLError` naming the input)."""
    name = image.meta.get("name", "image")
    checkFinite(image, f"Input '{name}'")
    spec = model.spec
    if image.ndim == 4 and spec.inputChannels and image.shape[0] != spec.inputChannels:
        raise DLError(f"has {image.shape[0]} channel(s) but model '{spec.name}' expects {spec.inputChannels}",
                      node=f"Input '{name}'", fix="pick a volume with the right number of components, or another model")
    if spec.roiSize and len(spec.roiSize) == 3 and image.ndim == 4 and any(s == 1 for s in image.shape[1:]):
        raise DLError(f"is a single slice {tuple(image.shape[1:])} but model '{spec.name}' is 3D",
                      node=f"Volume '{name}'", fix="use a 2D model, or a 3D volume")


def predictProbabilities(model: LoadedModel, image: MetaTensor, device: torch.device | str = "auto",
                         overlap: float = 0.25, windowBatchSize: int = 4,
                         progress: Callable[[float, str], None] | None = None,
                         asProbabilities: bool = True, mirror: bool = False) -> MetaTensor:
    """Class probabilities ``(C, I, J, K)`` (channel 0 = background) on ``image``'s grid.

    The model's spec decides spacing, normalisation and window; a single-channel output is read as a
    sigmoid foreground probability. Probabilities are resampled (linearly) back to the input grid
    before any argmax, so labels follow the smooth boundary rather than the coarse model grid.
    ``asProbabilities=False`` returns the network's scores unnormalised (same argmax, one pass less
    over the volume when only labels are wanted). ``mirror``: test-time augmentation, the probabilities
    averaged with those of the left-right mirrored image (twice the time; for roughly symmetric anatomy).
    """
    checkModelInput(model, image)
    spec = model.spec
    if spec.roiSize and len(spec.roiSize) == 2:
        return _predictSlices(model, image, device, overlap, windowBatchSize, progress)
    logits = slidingWindowInference(model.network, image, spec, device=device, overlap=overlap,
                                    windowBatchSize=windowBatchSize, progress=progress, outputInterpolation="bilinear")
    if mirror:  # test-time augmentation: average with the prediction of the left-right mirrored image
        axis = 1 + int(torch.as_tensor(image.affine)[0, :3].abs().argmax())  # the voxel axis closest to L-R
        mirrored = MetaTensor(image.as_tensor().flip(axis), affine=image.affine, meta=dict(image.meta))
        other = slidingWindowInference(model.network, mirrored, spec, device=device, overlap=overlap,
                                       windowBatchSize=windowBatchSize, outputInterpolation="bilinear")
        probabilities = _toProbabilities(logits)
        probabilities.as_tensor().add_(_toProbabilities(other).as_tensor().flip(axis)).mul_(0.5)
        return probabilities
    return _toProbabilities(logits) if asProbabilities or logits.shape[0] == 1 else logits


def predictLabels(model: LoadedModel, image: MetaTensor, device: torch.device | str = "auto",
                  overlap: float = 0.25, windowBatchSize: int = 4,
                  progress: Callable[[float, str], None] | None = None) -> tuple[MetaTensor, int]:
    """Labels ``(I, J, K)`` uint8 (0 = background) on ``image``'s grid, and the number of classes the model
    produced.

    The argmax is taken slab by slab inside the sliding window, so no class-score volume is ever held for the
    whole image (see :func:`DLCommon.slidingWindowInference`); the labels equal the argmax of
    :func:`predictProbabilities`, up to window seams.
    """
    if model.spec.roiSize and len(model.spec.roiSize) == 2:
        probabilities = predictProbabilities(model, image, device, overlap, windowBatchSize, progress)
        return MetaTensor(probabilities.argmax(0).to(torch.uint8), affine=probabilities.affine), probabilities.shape[0]
    checkModelInput(model, image)
    classes = {}

    def toLabels(scores: torch.Tensor) -> torch.Tensor:
        classes["count"] = max(2, scores.shape[0])
        return (scores[0] > 0).to(torch.uint8) if scores.shape[0] == 1 else labelsFromScores(scores)  # 1: sigmoid

    labels = slidingWindowInference(model.network, image, model.spec, device=device, overlap=overlap,
                                    windowBatchSize=windowBatchSize, progress=progress, reduce=toLabels)
    return labels, classes["count"]


def _toProbabilities(logits: MetaTensor) -> MetaTensor:
    """Softmax over channels, in place (the logits are ours; a full-size copy would double peak memory)."""
    if logits.shape[0] == 1:
        foreground = torch.sigmoid(logits.as_tensor())
        return MetaTensor(torch.cat([1 - foreground, foreground]), affine=logits.affine)
    values = logits.as_tensor()
    values -= values.amax(dim=0, keepdim=True)
    values.exp_()
    values /= values.sum(dim=0, keepdim=True)
    return MetaTensor(values, affine=logits.affine)


def _predictSlices(model, image, device, overlap, windowBatchSize, progress) -> MetaTensor:
    """A 2D model applied slice by slice along K (the spec's spacing is not used for 2D models)."""
    import dataclasses

    slices = []
    spec2d = dataclasses.replace(model.spec, spacing=None)
    for k in range(image.shape[-1]):
        sliceImage = MetaTensor(image.as_tensor()[..., k:k + 1], affine=image.affine)
        logits = slidingWindowInference(_SliceNetwork(model.network), sliceImage,
                                        dataclasses.replace(spec2d, roiSize=list(spec2d.roiSize) + [1]),
                                        device=device, overlap=overlap, windowBatchSize=windowBatchSize)
        slices.append(logits.as_tensor())
        if progress:
            progress((k + 1) / image.shape[-1], f"slice {k + 1}/{image.shape[-1]}")
    return _toProbabilities(MetaTensor(torch.cat(slices, dim=-1), affine=image.affine))


class _SliceNetwork(torch.nn.Module):
    """Runs a 2D network on ``(B, C, H, W, 1)`` windows."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x[..., 0])[..., None]


def entropyMap(probabilities: torch.Tensor, exclusive: bool = True) -> torch.Tensor:
    """Voxel-wise predictive entropy (nats), ``(I, J, K)``; 0 = certain. ``probabilities`` ``(C, I, J, K)``:
    exclusive classes (they sum to 1): ``-sum_c p_c log p_c``; independent (sigmoid) channels: the sum of each
    channel's binary entropy."""
    p = probabilities.as_tensor() if hasattr(probabilities, "as_tensor") else probabilities

    def plogp(q):
        return q * torch.log(q.clamp_min(1e-12))

    return -(plogp(p).sum(0) if exclusive else (plogp(p) + plogp(1 - p)).sum(0))


def dicePerLabel(labels: torch.Tensor, reference: torch.Tensor, numLabels: int,
                 absent: float | None = 1.0) -> list[float | None]:
    """Dice of each foreground label 1..numLabels between two label maps of the same shape.

    ``absent`` is reported for a label found in neither map (1.0: both agree it is not there).
    """
    scores = []
    for value in range(1, numLabels + 1):
        a, b = labels == value, reference == value
        total = int(a.sum() + b.sum())
        scores.append(2.0 * int((a & b).sum()) / total if total else absent)
    return scores
