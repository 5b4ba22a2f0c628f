"""Sliding-window inference with a model spec's preprocessing and the exact inverse onto the input grid.

Pipeline for an input MetaTensor ``(C, I, J, K)`` (from :func:`~DLCommon.volumes.tensorFromVolume`):

1. reorient to the spec's axis codes (MONAI ``Orientation``, if the spec names them), resample to the spec's
   voxel spacing (MONAI ``Spacing``; skipped when the spec has none or it equals
   the input's),
2. normalise intensities (MONAI ``NormalizeIntensity`` / ``ScaleIntensityRange``),
3. MONAI ``SlidingWindowInferer`` over ``spec.roiSize`` patches (OOM: smaller window batch, then CPU),
4. resample the output back onto the *input* grid (MONAI ``SpatialResample`` with the input's affine and
   shape), so the result has exactly the input's geometry and can be written to a node with the input
   volume as reference. Without a spacing change, step 4 is the identity (no interpolation at all).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.inferers.utils import _get_scan_interval, dense_patch_slices
from monai.transforms import NormalizeIntensity, Orientation, ScaleIntensityRange, Spacing, SpatialResample

from .devices import pickDevice, runWithOOMFallback
from .errors import DLError
from .models import ModelSpec

__all__ = ["preprocess", "slidingWindowInference", "countWindows"]

ProgressCallback = Callable[[float, str], None]


def _spacingOf(affine: torch.Tensor) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def preprocess(image: MetaTensor, spec: ModelSpec) -> MetaTensor:
    """Resample ``(C, I, J, K)`` to ``spec.spacing`` (mm) and normalise; returns float32 MetaTensor."""
    if not isinstance(image, MetaTensor):
        raise TypeError("image must be a MetaTensor with an affine (use tensorFromVolume).")
    if image.ndim != 4:
        raise ValueError(f"image must be (C, I, J, K), got shape {tuple(image.shape)}.")
    if image.shape[0] != spec.inputChannels:
        raise DLError(f"has {image.shape[0]} channel(s) but model '{spec.name}' expects {spec.inputChannels}",
                      node=f"Input '{image.meta.get('name', 'image')}'",
                      fix="pick a volume with the right number of components, or another model")
    data = image.to(torch.float32)
    if spec.orientation:
        data = Orientation(axcodes=spec.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))(data)  # RAS affines
    if spec.spacing is not None and not np.allclose(_spacingOf(data.affine), spec.spacing, atol=1e-4):
        data = Spacing(pixdim=tuple(spec.spacing), mode="bilinear", dtype=np.float32)(data)
    norm = dict(spec.normalization or {"type": "none"})
    kind = norm.pop("type", "none")
    if kind == "zscore":
        if data.untyped_storage().data_ptr() == image.untyped_storage().data_ptr():
            # NormalizeIntensity works in place, and ``image`` may be a view of a node's voxels
            data = data.clone()
        data = NormalizeIntensity(nonzero=bool(norm.get("nonzero", False)), channel_wise=True)(data)
    elif kind == "range":
        data = ScaleIntensityRange(a_min=norm["aMin"], a_max=norm["aMax"], b_min=norm.get("bMin", 0.0),
                                   b_max=norm.get("bMax", 1.0), clip=bool(norm.get("clip", True)))(data)
    return data


def countWindows(imageShape, roiSize, overlap: float) -> int:
    """How many patches the sliding window visits for a ``(I, J, K)`` image (after padding to the ROI)."""
    size = [max(int(s), int(r)) for s, r in zip(imageShape, roiSize)]
    interval = _get_scan_interval(size, list(roiSize), len(size), [overlap] * len(size))
    return len(dense_patch_slices(size, list(roiSize), interval))


def slidingWindowInference(network: torch.nn.Module, image: MetaTensor, spec: ModelSpec,
                           device: torch.device | str = "auto", overlap: float = 0.25, windowBatchSize: int = 4,
                           blendMode: str = "gaussian", outputInterpolation: str = "bilinear",
                           progress: ProgressCallback | None = None) -> MetaTensor:
    """Run ``network`` on ``image`` and return its output on the input's grid.

    Args:
        network: maps ``(B, C, *roi)`` to ``(B, C', *roi)``.
        image: ``(C, I, J, K)`` MetaTensor (affine = IJK-to-RAS).
        spec: preprocessing and ``roiSize`` (None: the whole preprocessed image in one pass).
        device: compute device (``"auto"``: CUDA, MPS, CPU).
        overlap: window overlap fraction 0..1.
        windowBatchSize: windows per network call; halved on out-of-memory, then the CPU is used.
        blendMode: ``"gaussian"`` or ``"constant"`` weighting of overlapping windows.
        outputInterpolation: ``"bilinear"`` for probabilities / images, ``"nearest"`` for labels; only used
            when a spacing change has to be undone.
        progress: ``progress(fraction, message)``, may raise ``JobCancelled``.

    Returns:
        MetaTensor ``(C', I, J, K)`` float32 on the CPU with ``image``'s affine.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    if outputInterpolation not in ("bilinear", "nearest"):
        raise ValueError(f"outputInterpolation must be 'bilinear' or 'nearest', got {outputInterpolation!r}.")
    data = preprocess(image, spec)
    spatial = tuple(int(s) for s in data.shape[1:])
    roi = tuple(int(r) for r in spec.roiSize) if spec.roiSize else spatial
    totalWindows = countWindows(spatial, roi, overlap)
    report = progress or (lambda fraction, message: None)
    network.eval()

    def step(batchSize: int, stepDevice: torch.device) -> torch.Tensor:
        network.to(stepDevice)
        calls = {"windows": 0}

        def predictor(patches: torch.Tensor) -> torch.Tensor:
            output = network(patches)
            calls["windows"] += patches.shape[0]
            report(min(1.0, calls["windows"] / totalWindows),
                   f"window {min(calls['windows'], totalWindows)}/{totalWindows} on {stepDevice}")
            return output

        inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=batchSize, overlap=overlap, mode=blendMode,
                                       device=torch.device("cpu"), sw_device=stepDevice)
        with torch.no_grad():
            batch = data.as_tensor().unsqueeze(0).to(stepDevice)
            return inferer(batch, predictor)[0].float().cpu()

    output, _ = runWithOOMFallback(step, windowBatchSize, pickDevice(device) if isinstance(device, str) else device)
    output = MetaTensor(output, affine=data.affine.clone(), meta={"space": "RAS"})
    if tuple(output.shape[1:]) != tuple(image.shape[1:]) or not torch.allclose(
            torch.as_tensor(data.affine, dtype=torch.float64), torch.as_tensor(image.affine, dtype=torch.float64)):
        output = SpatialResample(mode=outputInterpolation, padding_mode="border", dtype=torch.float32)(
            output, dst_affine=torch.as_tensor(image.affine, dtype=torch.float64), spatial_size=image.shape[1:])
    result = MetaTensor(output.as_tensor().float(), affine=torch.as_tensor(image.affine, dtype=torch.float64).clone(),
                        meta={"name": image.meta.get("name", "output"), "space": "RAS"})
    return result
