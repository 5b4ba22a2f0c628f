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


def _resampled(image: MetaTensor, spec: ModelSpec) -> MetaTensor:
    """Step 1: ``(C, I, J, K)`` reoriented / resampled to the spec, float32 (no copy when nothing changes)."""
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
    return data


def preprocess(image: MetaTensor, spec: ModelSpec) -> MetaTensor:
    """Resample ``(C, I, J, K)`` to ``spec.spacing`` (mm) and normalise; returns float32 MetaTensor."""
    return _normalised(_resampled(image, spec), image, spec)


def _normalised(data: MetaTensor, image: MetaTensor, spec: ModelSpec) -> MetaTensor:
    """Step 2 on the resampled ``data`` (a copy when ``data`` still shares ``image``'s memory)."""
    norm = dict(spec.normalization or {"type": "none"})
    kind = norm.pop("type", "none")
    if kind == "zscore":
        if data.untyped_storage().data_ptr() == image.untyped_storage().data_ptr():
            # NormalizeIntensity works in place, and ``image`` may be a view of a node's voxels
            data = data.clone()
        data = NormalizeIntensity(nonzero=bool(norm.get("nonzero", False)), channel_wise=True)(data)
    elif kind == "range":
        data = _rangeScaler(norm)(data)
    return data


def _rangeScaler(norm: dict) -> ScaleIntensityRange:
    """MONAI ``ScaleIntensityRange`` for a spec's ``{"type": "range", "aMin", "aMax", ...}`` normalisation."""
    return ScaleIntensityRange(a_min=norm["aMin"], a_max=norm["aMax"], b_min=norm.get("bMin", 0.0),
                               b_max=norm.get("bMax", 1.0), clip=bool(norm.get("clip", True)))


def _patchNormaliser(data: torch.Tensor, spec: ModelSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    """``normalise(patches)`` for ``(B, C, ...)`` patches of ``data`` ``(C, I, J, K)``: the spec's normalisation
    with statistics of the *whole* image (as :func:`preprocess`), applied to a copy of the patches."""
    norm = dict(spec.normalization or {"type": "none"})
    kind = norm.pop("type", "none")
    if kind == "zscore":
        nonzero = bool(norm.get("nonzero", False))
        means, stds = [], []
        for channel in data:  # per channel, over all (or the nonzero) voxels, like NormalizeIntensity
            count, total, squares = 0, 0.0, 0.0
            for start in range(0, channel.shape[-1], 8):  # in float64, 8 slices at a time: no full-size copy
                values = channel[..., start:start + 8].double()
                values = values[values != 0] if nonzero else values
                count, total, squares = count + values.numel(), total + float(values.sum()), squares + float(
                    (values * values).sum())
            mean = total / count if count else 0.0
            std = max(squares / count - mean * mean, 0.0) ** 0.5 if count else 1.0
            means.append(mean)
            stds.append(std if std > 0 else 1.0)

        def zscore(patches: torch.Tensor) -> torch.Tensor:
            out = patches.clone()
            for c in range(out.shape[1]):
                channel = out[:, c]
                normalised = (channel - means[c]) / stds[c]
                out[:, c] = torch.where(channel != 0, normalised, channel) if nonzero else normalised
            return out
        return zscore
    if kind == "range":
        scale = _rangeScaler(norm)
        return lambda region: torch.as_tensor(scale(region.clone()))
    return lambda region: region.clone()


def countWindows(imageShape, roiSize, overlap: float) -> int:
    """How many patches the sliding window visits for a ``(I, J, K)`` image (after padding to the ROI)."""
    size = [max(int(s), int(r)) for s, r in zip(imageShape, roiSize)]
    interval = _get_scan_interval(size, list(roiSize), len(size), [overlap] * len(size))
    return len(dense_patch_slices(size, list(roiSize), interval))


SLAB_MIN_WINDOWS = 4  # volumes at least this many windows deep along K are accumulated slab by slab


def _rollingWindowInference(data: torch.Tensor, roi: tuple, overlap: float, blendMode: str,
                            batchSize: int, device: torch.device, normalise: Callable, reduce: Callable | None,
                            predictor: Callable) -> torch.Tensor:
    """MONAI's sliding window (the same windows, Gaussian weights and division by the summed weights) on
    ``data`` ``(C, I, J, K)``, accumulated in a buffer one window deep that moves along K: slices behind the
    current row of windows are final, so they are divided, reduced and stored, and the buffer moves on. Peak
    memory: the (reduced) output plus a window-deep buffer, instead of full-size output and count maps."""
    from monai.data.utils import compute_importance_map

    spatial = tuple(int(n) for n in data.shape[1:])
    windows = dense_patch_slices(spatial, list(roi), _get_scan_interval(spatial, list(roi), 3, [overlap] * 3))
    weight = compute_importance_map(roi, mode=blendMode, sigma_scale=0.125, device=device, dtype=torch.float32)
    rows = {}
    for window in windows:
        rows.setdefault(window[2].start, []).append(window)
    depth = roi[2]  # a ring buffer along K: slice z lives at z % depth; a window's slices never collide
    result, done, scores, counts = None, 0, None, None

    def flush(until: int) -> None:  # slices [done, until) are final: divide, reduce, store, clear
        nonlocal result, done
        if until <= done or scores is None:
            return
        for first in range(done, until, 8):  # 8 slices at a time keeps the temporaries small
            last = min(until, first + 8)
            ring = torch.arange(first, last) % depth
            final = scores[..., ring] / counts[..., ring]
            final = reduce(final) if reduce is not None else final
            if result is None:
                result = torch.empty(tuple(final.shape[:-1]) + (spatial[2],), dtype=final.dtype)
            result[..., first:last] = final
            scores[..., ring] = 0.0
            counts[..., ring] = 0.0
        done = until

    cpuWeight = weight.cpu()
    for start in sorted(rows):
        flush(start)
        row = rows[start]
        for first in range(0, len(row), batchSize):
            batch = row[first:first + batchSize]
            patches = normalise(torch.stack([data[(slice(None),) + window] for window in batch])).to(device)
            output = (predictor(patches).float() * weight).cpu()
            if scores is None:
                scores = torch.zeros((output.shape[1],) + spatial[:2] + (depth,), dtype=torch.float32)
                counts = torch.zeros((1,) + spatial[:2] + (depth,), dtype=torch.float32)
            split = start % depth  # the ring holds the window's slices as two contiguous runs
            for patch, window in zip(output, batch):
                for target, source in ((slice(split, depth), slice(0, depth - split)), (slice(0, split),
                                                                                         slice(depth - split, depth))):
                    if target.start != target.stop:
                        scores[:, window[0], window[1], target] += patch[..., source]
                        counts[:, window[0], window[1], target] += cpuWeight[..., source]
    flush(spatial[2])
    return result


def slidingWindowInference(network: torch.nn.Module, image: MetaTensor, spec: ModelSpec,
                           device: torch.device | str = "auto", overlap: float = 0.25, windowBatchSize: int = 4,
                           blendMode: str = "gaussian", outputInterpolation: str = "bilinear",
                           progress: ProgressCallback | None = None,
                           reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> MetaTensor:
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
        reduce: ``reduce(output (C', I, J, k)) -> (C'', I, J, k)`` applied voxel-wise to the output on the input
            grid, e.g. an argmax to labels: only the reduced result is ever held for the whole volume.

    Returns:
        MetaTensor ``(C', I, J, K)`` float32 (or ``reduce``'s output) on the CPU with ``image``'s affine.

    Memory: a volume at least :data:`SLAB_MIN_WINDOWS` windows deep along K that needs no resampling is
    accumulated in a window-deep buffer that moves along K (the same windows and weights as MONAI's
    sliding window), its patches normalised as they are cut with whole-image statistics: the output (or the
    reduced one) is then the only whole-volume buffer besides the input.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    if outputInterpolation not in ("bilinear", "nearest"):
        raise ValueError(f"outputInterpolation must be 'bilinear' or 'nearest', got {outputInterpolation!r}.")
    resampled = _resampled(image, spec)
    spatial = tuple(int(s) for s in resampled.shape[1:])
    roi = tuple(int(r) for r in spec.roiSize) if spec.roiSize else spatial
    sameGrid = spatial == tuple(image.shape[1:]) and torch.allclose(
        torch.as_tensor(resampled.affine, dtype=torch.float64), torch.as_tensor(image.affine, dtype=torch.float64))
    rolling = sameGrid and spatial[2] >= SLAB_MIN_WINDOWS * roi[2] and all(s >= r for s, r in zip(spatial, roi))
    if rolling:  # no whole-volume normalised copy: patches are normalised as they are cut
        data, normalise = resampled, _patchNormaliser(resampled, spec)
    else:
        data = _normalised(resampled, image, spec)
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

        with torch.no_grad():
            if rolling:
                return _rollingWindowInference(data.as_tensor(), roi, overlap, blendMode, batchSize,
                                               stepDevice, normalise, reduce, predictor)
            inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=batchSize, overlap=overlap, mode=blendMode,
                                           device=torch.device("cpu"), sw_device=stepDevice)
            return inferer(data.as_tensor().unsqueeze(0).to(stepDevice), predictor)[0].float().cpu()

    output, _ = runWithOOMFallback(step, windowBatchSize, pickDevice(device) if isinstance(device, str) else device)
    affine = torch.as_tensor(image.affine, dtype=torch.float64).clone()
    meta = {"name": image.meta.get("name", "output"), "space": "RAS"}
    if rolling:
        return MetaTensor(output, affine=affine, meta=meta)
    output = MetaTensor(output, affine=data.affine.clone(), meta={"space": "RAS"})
    if not sameGrid:
        output = SpatialResample(mode=outputInterpolation, padding_mode="border", dtype=torch.float32)(
            output, dst_affine=affine, spatial_size=image.shape[1:])
    values = output.as_tensor().float()
    return MetaTensor(reduce(values) if reduce is not None else values, affine=affine, meta=meta)
