"""MRML segmentation <-> label tensor.

A segmentation becomes a label map on the voxel grid of a reference volume: background 0, the n-th
requested segment n (1-based). Where segments overlap, the later segment wins (Slicer's merge order).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import vtk
import vtk.util.numpy_support as vtknp

import slicer

from .errors import DLError
from .geometry import ijkToRasMatrix, vtkMatrixFromArray
from .scene import sceneTransaction
from .volumes import checkVolume

__all__ = ["tensorFromSegmentation", "segmentationFromTensor", "updateSegmentationFromTensor", "DEFAULT_COLORS",
           "labelsFromScores"]

# Distinct, colour-blind-friendly defaults (Okabe-Ito), RGB in 0..1
DEFAULT_COLORS = [(0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26),
                  (0.0, 0.45, 0.70), (0.84, 0.37, 0.0), (0.80, 0.47, 0.65), (0.6, 0.6, 0.6)]


def tensorFromSegmentation(segmentationNode, referenceVolumeNode,
                           segmentIds: Sequence[str] | None = None
                           ) -> tuple[torch.Tensor, list[str], list[tuple[float, float, float]]]:
    """Rasterise segments onto the reference volume's voxel grid.

    Args:
        segmentationNode: ``vtkMRMLSegmentationNode``.
        referenceVolumeNode: the volume whose grid ``(I, J, K)`` the labels are on (parent transforms of
            both nodes are applied, as Slicer displays them).
        segmentIds: which segments, in label order; default all, in the segmentation's order.

    Returns:
        ``(labels, names, colors)``: ``labels`` int64 ``(I, J, K)`` with 0 = background and ``n`` = the
        n-th segment; ``names[n-1]`` and ``colors[n-1]`` (RGB 0..1) describe label ``n``.
    """
    if segmentationNode is None or not segmentationNode.IsA("vtkMRMLSegmentationNode"):
        raise DLError("is not a segmentation", node=segmentationNode if segmentationNode else "Input",
                      fix="select a segmentation node")
    checkVolume(referenceVolumeNode)
    segmentation = segmentationNode.GetSegmentation()
    allIds = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    ids = list(allIds if segmentIds is None else segmentIds)
    missing = [s for s in ids if s not in allIds]
    if missing:
        raise DLError(f"has no segment(s) {missing}; it has {allIds}", node=segmentationNode,
                      fix="pass existing segment IDs (segmentation.GetSegmentIdBySegmentName(name))")
    dims = referenceVolumeNode.GetImageData().GetDimensions()
    names = [segmentation.GetSegment(s).GetName() for s in ids]
    colors = [tuple(float(c) for c in segmentation.GetSegment(s).GetColor()) for s in ids]
    if not ids:
        return torch.zeros(tuple(dims), dtype=torch.int64), names, colors
    segmentationNode.GetSegmentation().CreateRepresentation(
        slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName())
    idArray = vtk.vtkStringArray()
    for s in ids:
        idArray.InsertNextValue(s)
    labelValues = vtk.vtkIntArray()
    for value in range(1, len(ids) + 1):
        labelValues.InsertNextValue(value)
    merged = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GenerateMergedLabelmapInReferenceGeometry(
        segmentationNode, referenceVolumeNode, idArray, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
        merged, labelValues)
    extent = merged.GetExtent()
    if merged.GetPointData().GetScalars() is None or tuple(extent[1::2]) != tuple(d - 1 for d in dims) \
            or tuple(extent[0::2]) != (0, 0, 0):
        raise DLError("could not be rasterised onto the reference grid", node=segmentationNode,
                      fix=f"check that it overlaps volume '{referenceVolumeNode.GetName()}'")
    array = vtknp.vtk_to_numpy(merged.GetPointData().GetScalars()).reshape(dims[::-1])
    labels = torch.from_numpy(array.astype(np.int64)).permute(2, 1, 0).contiguous()
    return labels, names, colors


def segmentationFromTensor(labelsOrProbabilities: torch.Tensor, referenceVolumeNode, scene,
                           names: Sequence[str], colors: Sequence[Sequence[float]] | None = None,
                           nodeName: str = "Segmentation"):
    """Create a segmentation node from labels or class probabilities on the reference grid.

    Args:
        labelsOrProbabilities: int labels ``(I, J, K)`` (or ``(1, I, J, K)``), 0 = background, ``n`` =
            ``names[n-1]``; or float probabilities / logits ``(C, I, J, K)`` with channel 0 = background
            and ``C = len(names) + 1`` (argmax is taken).
        referenceVolumeNode: the volume whose grid the tensor is on; the segmentation gets its geometry
            and parent transform.
        scene: scene to add the node to.
        names: segment names, one per foreground label (empty segments are kept, so names round-trip).
        colors: RGB 0..1 per segment; defaults to :data:`DEFAULT_COLORS`.
        nodeName: name of the new node.

    Returns:
        the new ``vtkMRMLSegmentationNode``; nothing is added on error.
    """
    labelImage, colors = _labelImage(labelsOrProbabilities, referenceVolumeNode, names, colors)
    with sceneTransaction(scene):
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", nodeName)
        _fillSegmentation(node, labelImage, referenceVolumeNode, names, colors)
        node.CreateDefaultDisplayNodes()
    return node


def updateSegmentationFromTensor(segmentationNode, labelsOrProbabilities: torch.Tensor, referenceVolumeNode,
                                 names: Sequence[str], colors: Sequence[Sequence[float]] | None = None) -> None:
    """Replace all segments of an existing segmentation node (same arguments as :func:`segmentationFromTensor`).

    The input is validated before the node is touched, so on error the node keeps its segments.
    """
    if segmentationNode is None or not segmentationNode.IsA("vtkMRMLSegmentationNode"):
        raise DLError("is not a segmentation", node=segmentationNode if segmentationNode else "Output",
                      fix="select a segmentation node as output")
    labelImage, colors = _labelImage(labelsOrProbabilities, referenceVolumeNode, names, colors)
    segmentationNode.GetSegmentation().RemoveAllSegments()
    _fillSegmentation(segmentationNode, labelImage, referenceVolumeNode, names, colors)
    if segmentationNode.GetScene() is not None and segmentationNode.GetDisplayNode() is None:
        segmentationNode.CreateDefaultDisplayNodes()


def labelsFromScores(scores: torch.Tensor) -> torch.Tensor:
    """``argmax`` over the channels of ``(C, ...)`` class scores as uint8 labels (ties: the lower class).

    A channel-by-channel comparison: ``torch.argmax`` over the outermost axis of a large CPU tensor is several
    times slower (and makes an int64 result).
    """
    best = scores[0].clone()
    labels = torch.zeros(scores.shape[1:], dtype=torch.uint8, device=scores.device)
    for channel in range(1, scores.shape[0]):
        better = scores[channel] > best
        labels[better] = channel
        torch.maximum(best, scores[channel], out=best)
    return labels


def _labelImage(labelsOrProbabilities, referenceVolumeNode, names, colors):
    """Validate and rasterise into a ``vtkOrientedImageData`` label image on the reference grid."""
    checkVolume(referenceVolumeNode)
    labels = _labelsFrom(labelsOrProbabilities, len(names))  # probabilities stay (C, I, J, K) here
    dims = tuple(referenceVolumeNode.GetImageData().GetDimensions())
    if tuple(labels.shape[-3:]) != dims or labels.ndim not in (3, 4):
        raise DLError(f"has shape {dims} but the labels have {tuple(labels.shape[-3:])}", node=referenceVolumeNode,
                      fix="resample the labels onto the reference volume first")
    high = len(names) if labels.ndim == 4 else (int(labels.max()) if labels.numel() else 0)
    if labels.ndim == 3 and (high > len(names) or (labels.numel() and int(labels.min()) < 0)):
        raise DLError(f"contain label {high} but only {len(names)} names were given",
                      node="The labels", fix="pass one name per foreground label")
    colors = list(colors) if colors is not None else [DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
                                                      for i in range(len(names))]
    if len(colors) != len(names):
        raise ValueError(f"colors must have one entry per name ({len(names)}), got {len(colors)}.")
    labelImage = slicer.vtkOrientedImageData()
    labelImage.SetDimensions(dims)
    labelImage.AllocateScalars(vtk.VTK_SHORT if high < 32768 else vtk.VTK_INT, 1)
    view = torch.from_numpy(vtknp.vtk_to_numpy(labelImage.GetPointData().GetScalars()).reshape(dims[::-1]))
    if labels.ndim == 3:
        view.copy_(labels.permute(2, 1, 0))
    else:  # argmax slab by slab: a full int64 label volume would cost 8 bytes per voxel at once
        step = max(1, (1 << 24) // max(1, dims[0] * dims[1]))
        for k in range(0, dims[2], step):
            view[k:k + step].copy_(labelsFromScores(labels[..., k:k + step]).permute(2, 1, 0))
    ijkToRas = ijkToRasMatrix(referenceVolumeNode, world=False)  # the node shares the reference's parent
    labelImage.SetImageToWorldMatrix(vtkMatrixFromArray(ijkToRas))
    return labelImage, colors


def _fillSegmentation(node, labelImage, referenceVolumeNode, names, colors) -> None:
    node.SetAndObserveTransformNodeID(referenceVolumeNode.GetTransformNodeID())  # None: no parent
    node.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
    representation = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    segmentation = node.GetSegmentation()
    segmentation.SetSourceRepresentationName(representation)
    for value, (name, color) in enumerate(zip(names, colors), start=1):
        segment = slicer.vtkSegment()
        segment.SetName(str(name))
        segment.SetColor(*[float(c) for c in color[:3]])
        segment.SetLabelValue(value)
        # all segments share one label image (Slicer's shared labelmap), so no per-segment copy
        segment.AddRepresentation(representation, labelImage)
        segmentation.AddSegment(segment)


def _labelsFrom(tensor: torch.Tensor, numberOfNames: int) -> torch.Tensor:
    """Integer labels ``(I, J, K)``, or float probabilities ``(C, I, J, K)`` checked against the names."""
    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(tensor)
    tensor = tensor.detach()
    if hasattr(tensor, "as_tensor"):
        tensor = tensor.as_tensor()
    tensor = tensor.cpu()
    if tensor.is_floating_point():
        if tensor.ndim != 4:
            raise ValueError(f"probabilities must be (C, I, J, K), got shape {tuple(tensor.shape)}.")
        if tensor.shape[0] != numberOfNames + 1:
            raise DLError(f"have {tensor.shape[0]} channels but {numberOfNames} names were given",
                          node="The probabilities", fix="give one name per channel except background (channel 0)")
        return tensor  # argmax is taken slab by slab when rasterising
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3:
        raise ValueError(f"labels must be (I, J, K), got shape {tuple(tensor.shape)}.")
    # any integer type is copied straight into the label image: widening to int64 would cost 8 bytes a voxel
    return tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor
