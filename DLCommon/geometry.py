"""IJK-to-RAS geometry of MRML nodes, including their parent transforms.

MedDL's rule for parent transforms: a *linear* parent transform is folded into the world affine (as if
hardened, without touching the node); a *non-linear* parent transform is refused with an error that says
how to harden it, because a tensor on a regular grid cannot represent it. Nothing is silently ignored.
"""

from __future__ import annotations

import numpy as np
import vtk

from .errors import DLError

__all__ = ["ijkToRasMatrix", "setIJKToRASMatrix", "worldToLocalMatrix", "parentToWorldMatrix", "affinesClose",
           "arrayFromVTKMatrix", "vtkMatrixFromArray"]


def arrayFromVTKMatrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """4x4 float64 NumPy copy of a ``vtkMatrix4x4`` (as ``slicer.util.arrayFromVTKMatrix``, without the app)."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def vtkMatrixFromArray(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A new ``vtkMatrix4x4`` holding a 4x4 array."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def parentToWorldMatrix(node) -> np.ndarray:
    """4x4 matrix from the node's local frame to world RAS (identity without a parent transform).

    Raises:
        DLError: the parent transform is not linear.
    """
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise DLError(f"is under the non-linear transform '{parent.GetName()}'", node=node,
                      fix="harden the transform first (Data module: right-click > Harden transform, "
                          "or slicer.vtkSlicerTransformLogic().hardenTransform(node)), or remove it")
    matrix = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(matrix)
    return arrayFromVTKMatrix(matrix)


def ijkToRasMatrix(volumeNode, world: bool = True) -> np.ndarray:
    """The volume's 4x4 IJK-to-RAS matrix (float64, voxel index -> mm).

    Args:
        volumeNode: a ``vtkMRMLVolumeNode``.
        world: include the node's linear parent transforms (the position as displayed in Slicer).
    """
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    local = arrayFromVTKMatrix(matrix)
    return parentToWorldMatrix(volumeNode) @ local if world else local


def worldToLocalMatrix(node) -> np.ndarray:
    """Inverse of :func:`parentToWorldMatrix`: world RAS -> the node's local frame."""
    return np.linalg.inv(parentToWorldMatrix(node))


def setIJKToRASMatrix(volumeNode, ijkToRasWorld: np.ndarray) -> None:
    """Place the volume so that its voxels land at ``ijkToRasWorld`` in world RAS.

    The node keeps its parent transform (if linear); its local matrix absorbs the difference.
    """
    local = worldToLocalMatrix(volumeNode) @ np.asarray(ijkToRasWorld, dtype=np.float64)
    volumeNode.SetIJKToRASMatrix(vtkMatrixFromArray(local))


def affinesClose(a, b, tolerance: float = 1e-4) -> bool:
    """True when two 4x4 affines agree to ``tolerance`` (mm for translations)."""
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=tolerance))
