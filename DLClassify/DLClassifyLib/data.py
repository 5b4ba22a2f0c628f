"""Images -> classifier inputs on a fixed grid, and shuffled, augmented training batches.

A classifier sees every image on a canonical grid of ``inputSize`` voxels (its spec's
``options["inputSize"]``): the image's field of view fitted into the grid at one isotropic spacing (aspect
ratio kept, centred, zero padding), smoothed first where the grid is coarser (no aliasing), then z-score
normalised. 3D grids are RAS-aligned; a 2D grid lies in a single-slice volume's own plane (its two in-plane
voxel axes). The grid's affine travels with the tensor, so saliency maps go back onto the input exactly.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from monai.data import MetaTensor

from DLCommon.shardedbatches import ShardedBatches
from DLCommon import DLError
from DLCommon.sampling import sampleAtWorld, worldGrid

__all__ = ["canonicalGrid", "checkImage", "prepareImage", "normaliseImages", "ClassificationBatches", "spatialDimsOf"]


def spatialDimsOf(image: torch.Tensor) -> int:
    """2 for a single-slice ``(C, I, J, K)`` volume (one axis of size 1), else 3."""
    return 2 if sum(1 for n in image.shape[1:] if n == 1) == 1 else 3


def canonicalGrid(affine: torch.Tensor, shape: Sequence[int], inputSize: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    """``(grid affine 4x4, grid shape (3,))`` that holds the field of view of an image ``(I, J, K)`` with
    voxel-to-world ``affine``.

    ``len(inputSize) == 3``: a RAS-aligned grid around the image's bounding box. ``len(inputSize) == 2``:
    the image must have exactly one axis of size 1; the grid spans its two other axes (shape ``(h, w, 1)``).
    """
    affine = torch.as_tensor(affine, dtype=torch.float64)
    shape = [int(n) for n in shape]
    if len(inputSize) == 3:
        corners = torch.tensor([[i, j, k] for i in (-0.5, shape[0] - 0.5) for j in (-0.5, shape[1] - 0.5)
                                for k in (-0.5, shape[2] - 0.5)], dtype=torch.float64)
        world = corners @ affine[:3, :3].T + affine[:3, 3]
        low, high = world.min(0).values, world.max(0).values
        spacing = float(((high - low) / torch.tensor(inputSize, dtype=torch.float64)).max())
        directions = torch.eye(3, dtype=torch.float64)
        centre = (low + high) / 2
        gridShape = list(inputSize)
    else:
        singleton = [axis for axis in range(3) if shape[axis] == 1]
        if len(singleton) != 1:
            raise ValueError(f"a 2D grid needs an image with one axis of size 1, got shape {shape}.")
        inPlane = [axis for axis in range(3) if axis != singleton[0]]
        columns = affine[:3, :3]
        extents = torch.tensor([shape[a] * float(columns[:, a].norm()) for a in inPlane], dtype=torch.float64)
        spacing = float((extents / torch.tensor(inputSize, dtype=torch.float64)).max())
        directions = torch.stack([columns[:, a] / columns[:, a].norm() for a in inPlane]
                                 + [columns[:, singleton[0]] / columns[:, singleton[0]].norm()], dim=1)
        centre = affine[:3, :3] @ torch.tensor([(n - 1) / 2 for n in shape], dtype=torch.float64) + affine[:3, 3]
        gridShape = list(inputSize) + [1]
    gridAffine = torch.eye(4, dtype=torch.float64)
    gridAffine[:3, :3] = directions * spacing
    gridAffine[:3, 3] = centre - gridAffine[:3, :3] @ torch.tensor([(n - 1) / 2 for n in gridShape], dtype=torch.float64)
    return gridAffine, gridShape


def _antiAliased(image: torch.Tensor, affine: torch.Tensor, targetSpacing: float) -> torch.Tensor:
    """Gaussian-smooth ``(C, I, J, K)`` along axes whose voxels are finer than ``targetSpacing`` mm."""
    from monai.transforms import GaussianSmooth

    spacing = torch.linalg.norm(torch.as_tensor(affine, dtype=torch.float64)[:3, :3], dim=0)
    # sigma = 0.4 x the downsampling factor keeps the band below the new Nyquist frequency
    sigma = [0.4 * targetSpacing / float(s) if targetSpacing > 1.25 * float(s) and n > 1 else 0.0
             for s, n in zip(spacing, image.shape[1:])]
    if max(sigma) == 0.0:
        return image
    return GaussianSmooth(sigma=sigma)(torch.as_tensor(image, dtype=torch.float32))


def checkImage(image: torch.Tensor, inputSize: Sequence[int], channels: int | None = None,
               name: str = "image") -> None:
    """Raise :class:`DLError` unless ``image`` ``(C, I, J, K)`` fits a model with ``inputSize`` (2D: a single
    slice; 3D: a volume) and ``channels`` input channels."""
    if not isinstance(image, MetaTensor) or image.ndim != 4:
        raise DLError(f"has shape {tuple(image.shape)}; a (C, I, J, K) volume with geometry is needed",
                      node=f"Input '{name}'", fix="pass a scalar volume (tensorFromVolume)")
    if channels is not None and image.shape[0] != channels:
        raise DLError(f"has {image.shape[0]} components (channels) but the model expects {channels}",
                      node=f"Input '{name}'",
                      fix="pick a scalar volume, or split a 4D / multi-component volume into its frames first")
    wanted = len(inputSize)
    if wanted == 2 and spatialDimsOf(image) != 2:
        raise DLError(f"is a 3D volume of shape {tuple(image.shape[1:])}, but the model classifies 2D images",
                      node=f"Input '{name}'",
                      fix="classify a single slice (the slice view or a one-slice volume), or use a 3D model")
    if wanted == 3 and min(image.shape[1:]) < 2:
        raise DLError(f"is a single slice of shape {tuple(image.shape[1:])}, but the model classifies 3D volumes",
                      node=f"Input '{name}'", fix="classify a 3D volume, or use a 2D model")


def prepareImage(image: torch.Tensor, inputSize: Sequence[int], channels: int | None = None,
                 name: str = "image") -> MetaTensor:
    """A ``(C, I, J, K)`` MetaTensor as classifier input ``(C, *inputSize)``, z-score normalised.

    Returns a MetaTensor whose ``affine`` is the 3D grid's (a 2D input's grid has shape ``(h, w, 1)``).

    Raises:
        DLError: the image's dimensionality or channel count does not fit the model.
    """
    checkImage(image, inputSize, channels, name)
    wanted = len(inputSize)
    gridAffine, gridShape = canonicalGrid(image.affine, image.shape[1:], inputSize)
    spacing = float(torch.linalg.norm(gridAffine[:3, :3], dim=0)[0])
    smooth = _antiAliased(image.as_tensor().float(), image.affine, spacing)
    values, _ = sampleAtWorld(smooth[None], image.affine, worldGrid(gridAffine, gridShape), padding="zeros")
    data = normaliseImages(values[0, ..., 0] if wanted == 2 else values[0], wanted)
    return MetaTensor(data, affine=gridAffine, meta={"name": name})


def normaliseImages(images: torch.Tensor, spatialDims: int) -> torch.Tensor:
    """Z-score every image and channel of ``(..., *spatial)`` over its last ``spatialDims`` axes; a constant
    image becomes 0."""
    images = images.float()
    dims = tuple(range(-spatialDims, 0))
    mean = images.mean(dim=dims, keepdim=True)
    std = images.std(dim=dims, keepdim=True)
    return torch.where(std > 1e-6, (images - mean) / std.clamp(min=1e-6), torch.zeros_like(images))


class ClassificationBatches(ShardedBatches):
    """Re-iterable shuffled batches ``(images (B, C, *S), labels (B,))`` with optional augmentation.

    Each sample's augmentation is seeded by its index and the epoch, so distributed training draws the
    same batches as one process (see :class:`DLCommon.shardedbatches.ShardedBatches`).

    Args:
        images: ``(N, C, *S)`` prepared (normalised) inputs.
        labels: ``(N,)`` class indices.
        batchSize: samples per (global) batch.
        augment: small random rotations / scaling / shifts, contrast (gamma) and noise (MONAI transforms).
        seed: shuffling and augmentation seed; each pass draws new ones.
        shuffle: False keeps the order (validation).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batchSize: int = 32, augment: bool = False,
                 seed: int = 0, shuffle: bool = True):
        self.images, self.labels = images, labels.long()
        self.augment = augment
        self._transform = None
        if augment:
            from monai.transforms import Compose, RandAdjustContrast, RandAffine, RandGaussianNoise

            rank = images.ndim - 2
            self._transform = Compose([
                RandAffine(prob=0.8, rotate_range=[math.radians(8)] * (1 if rank == 2 else 3),
                           scale_range=[0.08] * rank, translate_range=[0.04 * n for n in images.shape[2:]],
                           padding_mode="zeros"),
                RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5)),
                RandGaussianNoise(prob=0.5, std=0.1),
            ])
        super().__init__(self._sample, len(self.labels), max(1, int(batchSize)), seed=seed, shuffle=shuffle,
                         fixed=not shuffle and not augment)

    def _sample(self, index: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self._transform is not None:
            self._transform.set_random_state(seed=seed)
            image = normaliseImages(torch.as_tensor(self._transform(image)).float()[None], image.ndim - 1)[0]
        return image, self.labels[index]
