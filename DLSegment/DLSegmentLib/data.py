"""Training data for segmentation: (image, labels) samples from the scene or files, patches, augmentation.

A sample is an image MetaTensor ``(C, I, J, K)`` and int64 labels ``(I, J, K)`` on the same voxel grid
(0 = background, n = n-th label name). Segmentations drawn on another geometry are rasterised onto the
image's grid (Slicer's own resampling), never silently misaligned.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from DLCommon import DLError, tensorFromSegmentation, tensorFromVolume
from DLCommon.shardedbatches import ShardedBatches
from DLCommon.inference import preprocess
from DLCommon.volumes import checkFinite
from DLCommon.models import ModelSpec

from .config import AUGMENTATIONS  # one list, in the config

__all__ = ["SegmentationSample", "sampleFromNodes", "prepareSample", "PatchBatches",
           "AUGMENTATIONS", "checkFinite"]


@dataclasses.dataclass
class SegmentationSample:
    """An image ``(C, I, J, K)`` MetaTensor with labels ``(I, J, K)`` int64 on its grid."""

    image: MetaTensor
    labels: torch.Tensor
    name: str = ""


def sampleFromNodes(volumeNode, segmentationNode, segmentIds: Sequence[str] | None = None
                    ) -> tuple[SegmentationSample, list[str], list]:
    """A training sample from a volume and its labels: a segmentation (rasterised on the volume's grid) or a
    labelmap volume on the volume's grid (label ``n`` named ``label n``, as Slicer names imported labels).

    Returns ``(sample, names, colors)`` of the segments used (colors None for a labelmap).
    """
    image = tensorFromVolume(volumeNode)
    checkFinite(image, volumeNode)
    if segmentationNode is None:
        raise DLError("No segmentation was given for volume '" + volumeNode.GetName() + "'",
                      fix="select the segmentation that labels it")
    if segmentationNode.IsA("vtkMRMLLabelMapVolumeNode"):
        labels = tensorFromVolume(segmentationNode, dtype=torch.int64)[0]
        if tuple(labels.shape) != tuple(image.shape[1:]) or not torch.allclose(
                labels.affine.double(), image.affine.double(), atol=1e-3):
            raise DLError(f"is not on the voxel grid of volume '{volumeNode.GetName()}'", node=segmentationNode,
                          fix="resample it onto the volume, or import it as a segmentation")
        names, colors = [f"label {i}" for i in range(1, int(labels.max()) + 1)], None
        labels = labels.as_tensor().long()
    else:
        if segmentationNode.GetSegmentation().GetNumberOfSegments() == 0:
            raise DLError("has no segments", node=segmentationNode, fix="draw at least one segment in Segment Editor")
        labels, names, colors = tensorFromSegmentation(segmentationNode, volumeNode, segmentIds)
    if not bool(labels.any()):
        raise DLError(f"is empty on the grid of volume '{volumeNode.GetName()}'", node=segmentationNode,
                      fix="paint the segments, or check that the segmentation overlaps the volume")
    return SegmentationSample(image=image, labels=labels, name=volumeNode.GetName()), names, colors


def prepareSample(sample: SegmentationSample, spec: ModelSpec) -> SegmentationSample:
    """Resample to ``spec.spacing`` (labels: nearest) and normalise, as inference will."""
    from monai.transforms import SpatialResample

    image = preprocess(sample.image, spec)
    labels = sample.labels
    if tuple(image.shape[1:]) != tuple(labels.shape) or not torch.allclose(image.affine, sample.image.affine):
        source = MetaTensor(labels[None].float(), affine=sample.image.affine.clone())
        labels = SpatialResample(mode="nearest", padding_mode="zeros")(
            source, dst_affine=image.affine, spatial_size=image.shape[1:])[0].round().long().as_tensor()
    return SegmentationSample(image=image, labels=labels, name=sample.name)


class PatchBatches(ShardedBatches):
    """Re-iterable batches of random patches ``((B, C, *patch), (B, 1, *patch))`` for the training loop.

    Patch centres are drawn class-balanced (MONAI ``RandCropByLabelClassesd``) so small structures are
    seen; augmentations are MONAI random transforms applied per patch. Each patch is seeded by its own
    index (see :class:`DLCommon.shardedbatches.ShardedBatches`), so distributed training over N processes draws the
    same patches as one process. With ``fixed=True`` every pass yields the same patches (for validation).

    Args:
        samples: prepared samples.
        patchSize: patch size in voxels (2 or 3 values; 2 values use single-slice samples).
        numClasses: number of classes including background.
        batchSize: patches per (global) batch.
        batchesPerEpoch: batches per pass.
        augmentations: subset of :data:`AUGMENTATIONS`.
        seed: random seed.
        fixed: same patches on every pass.
    """

    def __init__(self, samples: Sequence[SegmentationSample], patchSize: Sequence[int], numClasses: int,
                 batchSize: int = 2, batchesPerEpoch: int = 8, augmentations: Sequence[str] = (),
                 seed: int = 0, fixed: bool = False):
        unknown = set(augmentations) - set(AUGMENTATIONS)
        if unknown:
            raise ValueError(f"augmentations must be among {AUGMENTATIONS}, got {sorted(unknown)}.")
        if not samples:
            raise ValueError("PatchBatches needs at least one sample.")
        self.samples = list(samples)
        self.patchSize = tuple(int(p) for p in patchSize)
        self.numClasses = numClasses
        self.batchesPerEpoch = batchesPerEpoch
        self.transform = self._buildTransform(tuple(augmentations))
        super().__init__(self._patch, batchesPerEpoch * batchSize, batchSize, seed=seed, fixed=fixed,
                         what="Training patches")

    def _buildTransform(self, augmentations: tuple[str, ...]):
        from monai.transforms import (Compose, Rand3DElasticd, RandAdjustContrastd, RandAffined, RandBiasFieldd,
                                      RandCropByLabelClassesd, RandGaussianNoised, SpatialPadd)

        keys = ["image", "label"]
        steps = [SpatialPadd(keys=keys, spatial_size=self.patchSize),
                 RandCropByLabelClassesd(keys=keys, label_key="label", spatial_size=self.patchSize,
                                         num_classes=self.numClasses, num_samples=1, allow_smaller=True)]
        if "affine" in augmentations:
            steps.append(RandAffined(keys=keys, prob=0.5, rotate_range=[0.15] * 3, scale_range=[0.1] * 3,
                                     mode=("bilinear", "nearest"), padding_mode="border"))
        if "elastic" in augmentations and len(self.patchSize) == 3:
            steps.append(Rand3DElasticd(keys=keys, prob=0.3, sigma_range=(5, 7), magnitude_range=(20, 60),
                                        mode=("bilinear", "nearest"), padding_mode="border"))
        if "bias" in augmentations:
            # MONAI draws every polynomial coefficient in this range: (0, 0.05) already spans about 0.85x-1.6x
            steps.append(RandBiasFieldd(keys=["image"], prob=0.5, coeff_range=(0.0, 0.05)))
        if "contrast" in augmentations:
            steps.append(RandAdjustContrastd(keys=["image"], prob=0.5, gamma=(0.75, 1.35)))
        if "noise" in augmentations:
            steps.append(RandGaussianNoised(keys=["image"], prob=0.5, std=0.1))
        return Compose(steps)

    def _patch(self, index: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(seed)
        sample = self.samples[int(rng.integers(len(self.samples)))]
        image, label = sample.image, sample.labels[None].float()
        if len(self.patchSize) == 2:  # a 2D model trains on single slices along K
            k = int(rng.integers(image.shape[-1]))
            image, label = image[..., k], label[..., k]
        self.transform.set_random_state(seed=int(rng.integers(2**31)))
        out = self.transform({"image": image.as_tensor() if hasattr(image, "as_tensor") else image, "label": label})[0]
        return torch.as_tensor(out["image"]).float(), torch.as_tensor(out["label"]).round().long()
