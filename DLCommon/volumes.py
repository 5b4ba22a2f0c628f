"""MRML volume <-> torch tensor, with exact geometry.

Tensors are channel-first in MONAI's / ITK's axis order, ``(C, I, J, K)``: ``C`` is the number of scalar
components (1 for a scalar volume), ``I, J, K`` are the volume's voxel axes. They are returned as MONAI
:class:`~monai.data.MetaTensor` whose ``affine`` is the node's IJK-to-RAS matrix (mm, world RAS including
linear parent transforms), so MONAI transforms, inferers and bundles work on them unchanged.

``tensorFromVolume`` is a view of the VTK voxel buffer whenever dtype and device allow (no copy);
``updateVolumeFromTensor`` writes into the existing buffer whenever the shape allows (no reallocation).
"""

from __future__ import annotations

import numpy as np
import torch
import vtk
import vtk.util.numpy_support as vtknp
from monai.data import MetaTensor

import slicer

from .errors import DLError
from .geometry import affinesClose, ijkToRasMatrix, setIJKToRASMatrix
from .scene import sceneTransaction

__all__ = ["tensorFromVolume", "volumeFromTensor", "updateVolumeFromTensor", "volumeArrayView", "checkVolume",
           "checkFinite"]

_SCALAR_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLVectorVolumeNode")


def volumeArrayView(volumeNode) -> np.ndarray:
    """The node's voxels as a NumPy view in VTK order ``(K, J, I)`` or ``(K, J, I, C)`` (no copy)."""
    checkVolume(volumeNode)
    image = volumeNode.GetImageData()
    scalars = image.GetPointData().GetScalars()
    dims = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    return vtknp.vtk_to_numpy(scalars).reshape(shape)


def tensorFromVolume(volumeNode, dtype: torch.dtype | None = torch.float32,
                     device: torch.device | str | None = None) -> MetaTensor:
    """Voxels of a volume node as a ``(C, I, J, K)`` MetaTensor.

    Args:
        volumeNode: scalar, labelmap or vector volume node with image data.
        dtype: the tensor's dtype; ``None`` keeps the voxel type. When it equals the voxel type and
            ``device`` is the CPU, the tensor is a view of the node's memory: write to it, then call
            ``volumeNode.Modified()`` (or use :func:`updateVolumeFromTensor`).
        device: where to put the tensor (default CPU).

    Returns:
        MetaTensor of shape ``(C, I, J, K)``; ``.affine`` (float64, 4x4) maps voxel indices to world RAS
        mm, linear parent transforms included; ``.meta["name"]`` is the node name.

    Raises:
        DLError: not a volume, no voxels, or under a non-linear transform (harden it first).
    """
    array = volumeArrayView(volumeNode)
    affine = ijkToRasMatrix(volumeNode)  # raises for non-linear parents
    if array.dtype == np.uint16 or array.dtype == np.uint32:
        # torch has limited unsigned support; widen once (a copy is needed anyway for these types)
        array = array.astype(np.int32 if array.dtype == np.uint16 else np.int64)
    tensor = _convertOnCpu(torch.from_numpy(array), dtype)
    tensor = tensor.permute(2, 1, 0).unsqueeze(0) if array.ndim == 3 else tensor.permute(3, 2, 1, 0)
    tensor = tensor.to(device=device or "cpu", dtype=dtype or tensor.dtype)
    return MetaTensor(tensor, affine=torch.from_numpy(affine),
                      meta={"name": volumeNode.GetName(), "space": "RAS"})


def volumeFromTensor(tensor: torch.Tensor, referenceVolumeNode, scene, name: str,
                     labelmap: bool = False):
    """Create a new volume node in ``scene`` holding ``tensor``.

    Args:
        tensor: ``(C, I, J, K)`` or ``(I, J, K)``; ``C > 1`` makes a vector volume.
        referenceVolumeNode: defines the geometry (its IJK-to-RAS and parent transform) and must have
            the tensor's spatial shape. ``None``: the tensor must be a MetaTensor; its ``affine`` is used.
        scene: the ``vtkMRMLScene`` to add the node to.
        name: node name.
        labelmap: create a ``vtkMRMLLabelMapVolumeNode`` (values rounded to integers).

    Returns:
        the new node. On error nothing is added to the scene.
    """
    tensor = _asChannelFirst(tensor)
    if labelmap and tensor.shape[0] != 1:
        raise DLError(f"has {tensor.shape[0]} channels; a labelmap needs one", node=f"Tensor for '{name}'",
                      fix="take argmax over channels first")
    className = ("vtkMRMLLabelMapVolumeNode" if labelmap
                 else "vtkMRMLVectorVolumeNode" if tensor.shape[0] > 1 else "vtkMRMLScalarVolumeNode")
    affine = _targetAffine(tensor, referenceVolumeNode, name)
    with sceneTransaction(scene):
        node = scene.AddNewNodeByClass(className, name)
        if referenceVolumeNode is not None:  # same parent transform (None: none), same world position
            node.SetAndObserveTransformNodeID(referenceVolumeNode.GetTransformNodeID())
        _writeVoxels(node, tensor, _labelDtype(tensor) if labelmap else None)
        setIJKToRASMatrix(node, affine)
        node.CreateDefaultDisplayNodes()
    return node


def updateVolumeFromTensor(volumeNode, tensor: torch.Tensor, keepScalarType: bool = False,
                           useTensorGeometry: bool = False) -> None:
    """Write ``tensor`` into an existing volume node.

    Args:
        volumeNode: the node to update; its geometry is kept when the spatial shape is unchanged.
        tensor: ``(C, I, J, K)`` or ``(I, J, K)``, on any device. If the spatial shape differs from the
            node's (or the node is empty) it must be a MetaTensor, whose affine then places the node.
        keepScalarType: cast into the node's current voxel type (like NumPy ``astype``: floats are
            truncated toward zero, so round first if needed) instead of adopting the tensor's dtype.
            Writing into the same type and shape never reallocates the VTK buffer.
        useTensorGeometry: place the node at the MetaTensor's affine even when the shape is unchanged (an
            output node the user picked, which may sit anywhere).
    """
    tensor = _asChannelFirst(tensor)
    _checkVolumeNode(volumeNode)
    image = volumeNode.GetImageData()
    sameShape = (image is not None and image.GetPointData().GetScalars() is not None
                 and tuple(image.GetDimensions()) == tuple(tensor.shape[1:])
                 and image.GetNumberOfScalarComponents() == tensor.shape[0])
    affine = None
    if isinstance(tensor, MetaTensor) and (not sameShape or useTensorGeometry):
        affine = tensor.affine.detach().cpu().numpy()
    elif not sameShape:
        have = "no voxels" if image is None else f"shape {tuple(image.GetDimensions())}"
        raise DLError(f"has {have} but the tensor has shape {tuple(tensor.shape[1:])} and no affine",
                      node=volumeNode, fix="pass a MetaTensor (with .affine) or use volumeFromTensor")
    targetDtype = None
    if keepScalarType and sameShape:
        numpyType = vtknp.get_vtk_to_numpy_typemap()[image.GetScalarType()]
        targetDtype = torch.from_numpy(np.empty(0, dtype=numpyType)).dtype
    elif isinstance(volumeNode, vtk.vtkObject) and volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
        targetDtype = _labelDtype(tensor)
    _writeVoxels(volumeNode, tensor, targetDtype)
    if affine is not None:
        setIJKToRASMatrix(volumeNode, affine)
    # the same notifications as slicer.util.updateVolumeFromArray: views refresh, "Save" marks it modified
    volumeNode.StorableModified()
    volumeNode.Modified()
    volumeNode.InvokeEvent(slicer.vtkMRMLVolumeNode.ImageDataModifiedEvent, volumeNode)


# --- internals -----------------------------------------------------------------------------------------

def _checkVolumeNode(volumeNode) -> None:
    if volumeNode is None:
        raise DLError("No volume was selected", fix="select an input volume")
    if not hasattr(volumeNode, "IsA") or not any(volumeNode.IsA(c) for c in _SCALAR_CLASSES):
        kind = volumeNode.GetClassName() if hasattr(volumeNode, "GetClassName") else type(volumeNode).__name__
        raise DLError(f"is a {kind}, not a scalar, labelmap or vector volume", node=volumeNode,
                      fix="select a scalar volume")


def checkVolume(volumeNode) -> None:
    """Raise :class:`DLError` unless ``volumeNode`` is a scalar / labelmap / vector volume with voxels."""
    _checkVolumeNode(volumeNode)
    image = volumeNode.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise DLError("has no voxels", node=volumeNode, fix="load or compute the volume first")


def checkFinite(image: torch.Tensor, subject) -> None:
    """Refuse images with NaN / infinite voxels (they poison training and inference alike)."""
    if not image.is_floating_point() or bool(torch.isfinite(image.sum())):
        return  # one allocation-free pass: a finite sum means no NaN / infinity (barring float overflow)
    bad = int((~torch.isfinite(image)).sum())
    if bad:
        raise DLError(f"has {bad} NaN or infinite voxel(s)", node=subject,
                      fix="replace them first, e.g. array[~numpy.isfinite(array)] = 0 and "
                          "slicer.util.arrayFromVolumeModified(node)")


def _convertOnCpu(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``tensor.to(dtype)`` into memory from NumPy's allocator.

    NumPy asks for transparent huge pages on large arrays; a fresh torch CPU allocation is faulted in
    4 KiB pages, which made the int16 -> float32 conversion of a 512x512x400 volume 4x slower.
    """
    if dtype is None or dtype == tensor.dtype:
        return tensor
    try:
        numpyDtype = torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:  # no NumPy equivalent (e.g. bfloat16)
        return tensor.to(dtype)
    converted = torch.from_numpy(np.empty(tuple(tensor.shape), dtype=numpyDtype))
    converted.copy_(tensor)
    return converted


def _asChannelFirst(tensor) -> torch.Tensor:
    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(tensor)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4:
        raise ValueError(f"tensor must be (C, I, J, K) or (I, J, K), got shape {tuple(tensor.shape)}.")
    return tensor


def _targetAffine(tensor: torch.Tensor, referenceVolumeNode, name: str) -> np.ndarray:
    if referenceVolumeNode is None:
        if not isinstance(tensor, MetaTensor):
            raise DLError("has no geometry: no reference volume and not a MetaTensor",
                          node=f"Tensor for '{name}'", fix="pass a reference volume or a MetaTensor")
        return tensor.affine.detach().cpu().numpy().astype(np.float64)
    checkVolume(referenceVolumeNode)
    dims = tuple(referenceVolumeNode.GetImageData().GetDimensions())
    if dims != tuple(tensor.shape[1:]):
        raise DLError(f"has shape {dims} but the tensor has {tuple(tensor.shape[1:])}",
                      node=referenceVolumeNode,
                      fix="resample the tensor onto the reference (DLCommon.resampleVolume / inference) "
                          "or pass referenceVolumeNode=None with a MetaTensor")
    affine = ijkToRasMatrix(referenceVolumeNode)
    if isinstance(tensor, MetaTensor) and not affinesClose(tensor.affine.detach().cpu().numpy(), affine):
        raise DLError("has a different position / orientation than the tensor's affine",
                      node=referenceVolumeNode,
                      fix="pass referenceVolumeNode=None to keep the tensor's own affine, or resample")
    return affine


def _labelDtype(tensor: torch.Tensor) -> torch.dtype:
    """Smallest VTK-friendly integer type for label values (VTK rejects int64 volumes for display)."""
    if tensor.dtype == torch.bool or tensor.numel() == 0:
        return torch.uint8
    low, high = (tensor.min().item(), tensor.max().item())
    for dtype in (torch.uint8, torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    raise DLError(f"has label values up to {high}, beyond int32", node="Label tensor",
                  fix="renumber the labels")


def _writeVoxels(volumeNode, tensor: torch.Tensor, dtype: torch.dtype | None) -> None:
    """Copy ``(C, I, J, K)`` into the node's VTK buffer, reallocating only if type or shape changed."""
    if isinstance(tensor, MetaTensor):
        tensor = tensor.as_tensor()  # plain tensor: no metadata bookkeeping in the copy
    dtype = dtype or tensor.dtype
    if dtype == torch.bool:
        dtype = torch.uint8
    if dtype == torch.int64:
        dtype = torch.int32 if _fitsInt32(tensor) else torch.float64
    if not dtype.is_floating_point and tensor.dtype.is_floating_point and volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
        tensor = torch.round(tensor)
    numpyDtype = torch.empty((), dtype=dtype).numpy().dtype
    vtkType = vtknp.get_vtk_array_type(numpyDtype)
    components = int(tensor.shape[0])
    dims = tuple(int(d) for d in tensor.shape[1:])
    image = volumeNode.GetImageData()
    scalars = image.GetPointData().GetScalars() if image is not None else None
    if (scalars is None or tuple(image.GetDimensions()) != dims or image.GetScalarType() != vtkType
            or image.GetNumberOfScalarComponents() != components):
        if image is None:
            image = vtk.vtkImageData()
            volumeNode.SetAndObserveImageData(image)
        image.SetDimensions(dims)
        image.AllocateScalars(vtkType, components)
    view = torch.from_numpy(volumeArrayView(volumeNode))
    # (K, J, I[, C]) memory order; the permuted source of a tensorFromVolume tensor is then contiguous
    source = tensor.permute(3, 2, 1, 0) if components > 1 else tensor[0].permute(2, 1, 0)
    view.copy_(source)
    image.GetPointData().GetScalars().Modified()
    image.Modified()


def _fitsInt32(tensor: torch.Tensor) -> bool:
    if tensor.numel() == 0:
        return True
    info = torch.iinfo(torch.int32)
    return info.min <= tensor.min().item() and tensor.max().item() <= info.max
