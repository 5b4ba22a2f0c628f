"""Checks run after every inference: the output sits on the input's grid, and looks anatomically plausible.

An imported model that reads the axes in another order (e.g. trained on ``(K, J, I)`` NumPy arrays, or on LPS
data) still produces a segmentation of the right size, only in the wrong place. :func:`orientationWarning`
catches the common symptom cheaply: most segmented voxels fall outside the imaged body.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .errors import DLError

__all__ = ["checkOutputGeometry", "foregroundMask", "orientationWarning"]

logger = logging.getLogger(__name__)


def checkOutputGeometry(inputNode, outputNode, tolerance: float = 1e-4) -> None:
    """Raise :class:`DLError` unless ``outputNode`` (a volume, or a segmentation's reference grid) has the
    voxel grid of ``inputNode``: same dimensions and IJK-to-RAS matrix (mm, within ``tolerance``)."""
    from .geometry import ijkToRasMatrix

    if outputNode.IsA("vtkMRMLSegmentationNode"):
        import slicer

        expected = slicer.vtkSegmentationConverter.SerializeImageGeometry(
            _orientedImage(inputNode))
        found = outputNode.GetSegmentation().GetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
        if _geometryNumbers(found) is None or not np.allclose(_geometryNumbers(found), _geometryNumbers(expected),
                                                                atol=tolerance):
            raise DLError(f"is not on the grid of '{inputNode.GetName()}' (reference geometry {found!r})",
                          node=outputNode, fix="report this: MedDL outputs must match their input's geometry")
        return
    dimensions = outputNode.GetImageData().GetDimensions() if outputNode.GetImageData() else None
    if dimensions != inputNode.GetImageData().GetDimensions() or not np.allclose(
            ijkToRasMatrix(outputNode), ijkToRasMatrix(inputNode), atol=tolerance):
        raise DLError(f"is not on the grid of '{inputNode.GetName()}'", node=outputNode,
                      fix="report this: MedDL outputs must match their input's geometry")


def _orientedImage(volumeNode):
    import slicer
    import vtk

    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(volumeNode.GetImageData())
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def _geometryNumbers(text: str | None) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in (text or "").replace(",", ";").split(";") if v.strip()])
    except ValueError:
        return None


def foregroundMask(image: torch.Tensor, maxVoxels: int = 2_000_000) -> tuple[np.ndarray, int]:
    """The imaged body of ``image`` ``(C, I, J, K)`` (or ``(I, J, K)``): voxels above 10 % of the 1-99th
    percentile range of the first channel, enclosed cavities filled; on a strided grid of at most ``maxVoxels``.

    Returns ``(mask (I', J', K') bool, stride)``.
    """
    from scipy.ndimage import binary_fill_holes

    array = image[0] if image.ndim == 4 else image
    array = array.as_tensor() if hasattr(array, "as_tensor") else array
    stride = max(1, int(np.ceil((array.numel() / maxVoxels) ** (1 / 3))))
    sampled = array[::stride, ::stride, ::stride].float().cpu().numpy()
    low, high = np.percentile(sampled, [1, 99])
    return binary_fill_holes(sampled > low + 0.1 * (high - low)), stride


def orientationWarning(labels: torch.Tensor, foreground: tuple[np.ndarray, int], minimumInside: float = 0.5
                       ) -> str | None:
    """A warning when a segmentation ``labels`` ``(I, J, K)`` (0 = background) lies mostly outside the imaged
    body ``foreground`` (from :func:`foregroundMask` of its image, computed before inference frees the image):
    the usual sign of an axis-order or orientation mistake. None when it looks right."""
    body, stride = foreground
    segmented = (labels[::stride, ::stride, ::stride] > 0).cpu().numpy()
    if segmented.shape != body.shape or not segmented.any() or body.all():
        return None
    inside = float(body[segmented].mean())
    if inside >= minimumInside:
        return None
    message = (f"{100 * (1 - inside):.0f}% of the segmented voxels lie outside the imaged body. The model may read "
               "the axes in another order or orientation than this volume (check the orientation / spacing in its "
               "spec), or it was trained on other images.")
    logger.warning(message)
    return message
