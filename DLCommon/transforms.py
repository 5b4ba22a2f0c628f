"""Dense displacement fields <-> MRML transforms, and resampling in physical space.

Convention (the one Slicer uses to resample a transformed volume, and the seed's ``warped(x) =
moving(x + u(x))``): a displacement field ``u`` of shape ``(3, I, J, K)`` in RAS mm is defined at the
voxel centres ``x`` of a reference (fixed) volume and points to where the moving image is sampled.
It is the transform node's *from parent* transform: ``TransformFromParent(x) = x + u(x)``.
Put a moving volume under that transform node and Slicer shows it warped onto the fixed volume.
"""

from __future__ import annotations

import numpy as np
import torch
import vtk
import vtk.util.numpy_support as vtknp
from monai.data import MetaTensor

import slicer

from .errors import DLError
from .geometry import arrayFromVTKMatrix, vtkMatrixFromArray, ijkToRasMatrix
from .sampling import sampleAtWorld
from .scene import sceneTransaction
from .volumes import checkVolume, volumeArrayView

__all__ = ["gridTransformFromDisplacement", "updateGridTransformFromDisplacement", "displacementFromTransform",
           "resampleVolume", "worldPointsOfVolume"]


def worldPointsOfVolume(referenceVolumeNode) -> np.ndarray:
    """World RAS positions (mm) of all voxel centres, shape ``(I*J*K, 3)`` in C order of ``(I, J, K)``."""
    checkVolume(referenceVolumeNode)
    dims = referenceVolumeNode.GetImageData().GetDimensions()
    affine = ijkToRasMatrix(referenceVolumeNode)
    axes = [np.arange(d, dtype=np.float64) for d in dims]
    # x = A[:, :3] @ ijk + t, built axis by axis to avoid a (N, 3) index array
    points = np.empty(tuple(dims) + (3,), dtype=np.float64)
    points[...] = affine[:3, 3]
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = dims[axis]
        points += axes[axis].reshape(shape)[..., None] * affine[:3, axis]
    return points.reshape(-1, 3)


def gridTransformFromDisplacement(ddf: torch.Tensor, referenceVolumeNode, scene,
                                  name: str = "Displacement"):
    """Create a ``vtkMRMLGridTransformNode`` from a dense displacement field.

    Args:
        ddf: ``(3, I, J, K)`` displacement in RAS mm on the reference volume's voxel grid (see module
            docstring for the direction convention).
        referenceVolumeNode: fixed volume: defines the grid (its world geometry, linear parents included).
            ``None``: ``ddf`` must be a MetaTensor; its ``affine`` defines the grid (e.g. a coarser grid
            over the fixed volume, which keeps the node small).
        scene: scene to add the node to.
        name: node name.

    Returns:
        the new grid transform node (linear interpolation between grid points, as vtkGridTransform).
    """
    gridTransform = _orientedGridTransform(ddf, referenceVolumeNode)
    with sceneTransaction(scene):
        node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
        node.SetAndObserveTransformFromParent(gridTransform)
        node.CreateDefaultDisplayNodes()
    return node


def updateGridTransformFromDisplacement(transformNode, ddf: torch.Tensor, referenceVolumeNode=None) -> None:
    """Replace what ``transformNode`` holds by the grid transform of ``ddf`` (see
    :func:`gridTransformFromDisplacement` for the arguments); the node keeps its ID, name and children."""
    if transformNode is None or not transformNode.IsA("vtkMRMLTransformNode"):
        raise DLError("is not a transform node", node=transformNode if transformNode else "The output transform",
                      fix="select a transform node, or let a new one be created")
    transformNode.SetAndObserveTransformFromParent(_orientedGridTransform(ddf, referenceVolumeNode))


def _orientedGridTransform(ddf, referenceVolumeNode):
    if isinstance(ddf, np.ndarray):
        ddf = torch.from_numpy(ddf)
    if referenceVolumeNode is None:
        if not hasattr(ddf, "affine"):
            raise DLError("has no geometry", node="The displacement field",
                          fix="pass a reference volume or a MetaTensor with an affine")
        affine = np.asarray(ddf.affine, dtype=np.float64)
        dims = tuple(int(n) for n in ddf.shape[1:])
        gridName = "the displacement's grid"
    else:
        checkVolume(referenceVolumeNode)
        affine = ijkToRasMatrix(referenceVolumeNode)
        dims = tuple(referenceVolumeNode.GetImageData().GetDimensions())
        gridName = f"the grid of '{referenceVolumeNode.GetName()}'"
    if hasattr(ddf, "as_tensor"):
        ddf = ddf.as_tensor()
    if ddf.ndim != 4 or ddf.shape[0] != 3 or tuple(ddf.shape[1:]) != dims:
        raise DLError(f"must have shape (3, {dims[0]}, {dims[1]}, {dims[2]}) but has {tuple(ddf.shape)}",
                      node="The displacement field", fix=f"compute it on {gridName}")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise DLError("has a sheared voxel grid, which a grid transform cannot represent",
                      node=referenceVolumeNode or "The displacement field",
                      fix="resample the reference to an orthogonal grid first")
    grid = vtk.vtkImageData()
    grid.SetOrigin(*affine[:3, 3])
    grid.SetSpacing(*spacing)
    grid.SetDimensions(dims)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    view = torch.from_numpy(vtknp.vtk_to_numpy(grid.GetPointData().GetScalars()).reshape(dims[::-1] + (3,)))
    view.copy_(ddf.detach().cpu().permute(3, 2, 1, 0))
    directionMatrix = np.eye(4)
    directionMatrix[:3, :3] = direction
    gridTransform = slicer.vtkOrientedGridTransform()
    gridTransform.SetDisplacementGridData(grid)
    gridTransform.SetGridDirectionMatrix(vtkMatrixFromArray(directionMatrix))
    gridTransform.SetInterpolationModeToLinear()
    return gridTransform


def displacementFromTransform(transformNode, referenceVolumeNode) -> MetaTensor:
    """Sample any MRML transform (linear, grid, b-spline, composite, with parents) as a displacement field.

    Args:
        transformNode: ``vtkMRMLTransformNode``; its full *from world* transform is used.
        referenceVolumeNode: defines the grid (world geometry).

    Returns:
        MetaTensor ``(3, I, J, K)`` float32, RAS mm, ``u(x) = T_fromWorld(x) - x``, with the reference's
        affine. ``gridTransformFromDisplacement(displacementFromTransform(t, ref), ref, scene)`` reproduces
        ``t`` at the voxel centres.
    """
    if transformNode is None or not transformNode.IsA("vtkMRMLTransformNode"):
        raise DLError("is not a transform", node=transformNode if transformNode else "Input",
                      fix="select a transform node")
    points = worldPointsOfVolume(referenceVolumeNode)
    mapped = _transformFromWorld(transformNode, points)
    dims = tuple(referenceVolumeNode.GetImageData().GetDimensions())
    ddf = torch.from_numpy((mapped - points).astype(np.float32)).reshape(dims + (3,)).permute(3, 0, 1, 2)
    return MetaTensor(ddf.contiguous(), affine=torch.from_numpy(ijkToRasMatrix(referenceVolumeNode)),
                      meta={"name": transformNode.GetName(), "space": "RAS"})


def resampleVolume(movingNode, referenceNode, transformNode=None, interpolation: str = "linear",
                   dtype: torch.dtype = torch.float32, padValue: float = 0.0) -> MetaTensor:
    """Resample a volume onto the reference grid in physical (world RAS) space.

    The value at reference voxel ``x`` is the moving volume at ``T_fromWorld(x)`` (``T`` = transformNode,
    identity if None), where the moving volume sits as displayed, i.e. with its own parent transforms
    (linear or not).

    Args:
        movingNode: volume to sample.
        referenceNode: volume defining the output grid.
        transformNode: optional extra transform (e.g. a registration result).
        interpolation: ``"linear"`` or ``"nearest"`` (use nearest for labelmaps).
        dtype: output dtype.
        padValue: value outside the moving volume.

    Returns:
        MetaTensor ``(C, I, J, K)`` on the reference grid with the reference's affine.
    """
    if interpolation not in ("linear", "nearest"):
        raise ValueError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}.")
    checkVolume(movingNode)
    points = worldPointsOfVolume(referenceNode)
    if transformNode is not None:
        points = _transformFromWorld(transformNode, points)
    parent = movingNode.GetParentTransformNode()
    if parent is not None:
        points = _transformFromWorld(parent, points)
    # tensorFromVolume refuses non-linear parents; here they were applied above, so read local voxels
    array = volumeArrayView(movingNode)
    moving = torch.from_numpy(array)
    moving = moving.permute(2, 1, 0).unsqueeze(0) if array.ndim == 3 else moving.permute(3, 2, 1, 0)
    dims = tuple(referenceNode.GetImageData().GetDimensions())
    grid = torch.from_numpy(points.astype(np.float32)).reshape(dims + (3,))
    values, _ = sampleAtWorld((moving.float() - padValue)[None], torch.from_numpy(ijkToRasMatrix(movingNode, world=False)),
                              grid, mode="bilinear" if interpolation == "linear" else "nearest", padding="zeros")
    sampled = values[0] + padValue
    return MetaTensor(sampled.to(dtype), affine=torch.from_numpy(ijkToRasMatrix(referenceNode)),
                      meta={"name": movingNode.GetName(), "space": "RAS"})


def _transformFromWorld(transformNode, points: np.ndarray) -> np.ndarray:
    """Apply the node's world -> local transform to ``(N, 3)`` points (mm)."""
    if transformNode.IsTransformToWorldLinear():
        matrix = vtk.vtkMatrix4x4()
        transformNode.GetMatrixTransformFromWorld(matrix)
        m = arrayFromVTKMatrix(matrix)
        return points @ m[:3, :3].T + m[:3, 3]
    general = vtk.vtkGeneralTransform()
    transformNode.GetTransformFromWorld(general)
    source = vtk.vtkPoints()
    source.SetData(vtknp.numpy_to_vtk(np.ascontiguousarray(points), deep=False))
    target = vtk.vtkPoints()
    general.TransformPoints(source, target)
    return vtknp.vtk_to_numpy(target.GetData()).astype(np.float64).reshape(-1, 3)
