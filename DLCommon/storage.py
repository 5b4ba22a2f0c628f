"""Read and write nodes through Slicer's own MRML storage nodes (works in Slicer and on slicer-core).

NRRD, NIfTI (.nii / .nii.gz), MetaImage... for volumes, ``.seg.nrrd`` for segmentations, ``.h5`` / ``.tfm``
/ ``.txt`` for transforms: the same readers and writers, and the same LPS <-> RAS handling, as Slicer.
"""

from __future__ import annotations

import os
from pathlib import Path

import slicer

from .errors import DLError
from .filechecks import checkBeforeReading, checkNode
from .scene import sceneTransaction

__all__ = ["loadVolume", "loadSegmentation", "loadTransform", "loadFile", "loadLabels", "loadNodeOfClass", "saveNode", "storageClassFor", "fileSuffixFor", "baseNameOf", "volumeFiles", "VOLUME_SUFFIXES"]


def _read(scene, path: str | Path, nodeClass: str, storageClass: str, name: str | None, what: str):
    path = Path(path).expanduser()
    if not path.is_file():
        raise DLError("does not exist", file=path, fix="check the path")
    facts = checkBeforeReading(path)  # the native readers trust the file: its header is checked first
    with sceneTransaction(scene):
        node = scene.AddNewNodeByClass(nodeClass, name or baseNameOf(path))
        storage = scene.AddNewNodeByClass(storageClass)
        storage.SetFileName(str(path))
        if hasattr(storage, "SetSingleFile"):  # one file, one volume: never stack numbered siblings (a1, a2...)
            storage.SetSingleFile(1)
        node.SetAndObserveStorageNodeID(storage.GetID())
        if not storage.ReadData(node):
            raise DLError(f"could not be read as a {what}", file=path,
                          fix="check that the file is complete and in a format Slicer reads")
        checkNode(node, facts, path)
        if hasattr(node, "CreateDefaultDisplayNodes"):
            node.CreateDefaultDisplayNodes()
    return node


def loadVolume(path: str | Path, scene, name: str | None = None, labelmap: bool = False):
    """Load a volume file into a new scalar (or labelmap) volume node."""
    nodeClass = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    return _read(scene, path, nodeClass, "vtkMRMLVolumeArchetypeStorageNode", name, "volume")


def loadSegmentation(path: str | Path, scene, name: str | None = None):
    """Load a ``.seg.nrrd`` (or other segmentation file) into a new segmentation node."""
    return _read(scene, path, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", name, "segmentation")


def loadTransform(path: str | Path, scene, name: str | None = None):
    """Load an ITK transform file (``.h5``, ``.tfm``, ``.txt``) into a new transform node."""
    return _read(scene, path, "vtkMRMLTransformNode", "vtkMRMLTransformStorageNode", name, "transform")


def loadLabels(path: str | Path, scene):
    """A label file as a node: a ``.seg.nrrd`` as a segmentation node, any other (a labelmap saved as a volume
    file) as a labelmap volume node, for the commands that take labels in either form."""
    if str(path).lower().endswith(".seg.nrrd"):
        return loadSegmentation(path, scene)
    return loadVolume(path, scene, labelmap=True)


TRANSFORM_SUFFIXES = (".h5", ".tfm", ".txt")


def loadFile(path: str | Path, scene):
    """Load a volume, ``.seg.nrrd`` segmentation or transform file into a new node (kind from the extension).

    For front ends that take whatever file the user drops; anything else gets a DLError naming the file and the
    formats MedDL reads, before the scene is touched.
    """
    name = Path(path).name.lower()
    if name.endswith(".seg.nrrd"):
        return loadSegmentation(path, scene)
    if name.endswith(TRANSFORM_SUFFIXES):
        return loadTransform(path, scene)
    if name.endswith(VOLUME_SUFFIXES):
        return loadVolume(path, scene)
    raise DLError("is not a file MedDL reads", file=Path(path).name,
                  fix="load a volume (.nrrd, .nii, .nii.gz, .mha, .mhd), a segmentation (.seg.nrrd) or a transform "
                      "(.h5, .tfm, .txt)")


_STORAGE_CLASSES = {
    "vtkMRMLSegmentationNode": "vtkMRMLSegmentationStorageNode",
    "vtkMRMLScalarVolumeNode": "vtkMRMLVolumeArchetypeStorageNode",
    "vtkMRMLLabelMapVolumeNode": "vtkMRMLVolumeArchetypeStorageNode",
    "vtkMRMLVectorVolumeNode": "vtkMRMLVolumeArchetypeStorageNode",
    "vtkMRMLTableNode": "vtkMRMLTableStorageNode",
}


def storageClassFor(node) -> str | None:
    """The storage node class that reads and writes ``node`` (a node or a class name), or None."""
    className = node if isinstance(node, str) else node.GetClassName()
    if className in _STORAGE_CLASSES:
        return _STORAGE_CLASSES[className]
    probe = getattr(slicer, className, None)
    if probe is not None and issubclass(probe, slicer.vtkMRMLTransformNode):
        return "vtkMRMLTransformStorageNode"
    return None


def fileSuffixFor(node) -> str:
    """The file extension MedDL writes ``node`` with: ``.seg.nrrd``, ``.h5`` (transforms), ``.csv`` (tables),
    ``.nrrd`` (volumes)."""
    if node.IsA("vtkMRMLSegmentationNode"):
        return ".seg.nrrd"
    if node.IsA("vtkMRMLTransformNode"):
        return ".h5"
    return ".csv" if node.IsA("vtkMRMLTableNode") else ".nrrd"


def loadNodeOfClass(path: str | Path, scene, className: str, name: str | None = None):
    """Load ``path`` into a new node of exactly ``className`` (e.g. a grid transform, a labelmap, a table)."""
    storageClass = storageClassFor(className)
    if storageClass is None:
        raise DLError(f"cannot be read into a {className}", file=path, fix="use a volume, segmentation, transform "
                                                                           "or table")
    return _read(scene, path, className, storageClass, name, className.replace("vtkMRML", "").replace("Node", ""))


def saveNode(node, path: str | Path, useCompression: bool = True) -> Path:
    """Write a volume, segmentation or transform node to ``path`` (format from the extension).

    A temporary storage node is used and removed again, so the node's own storage settings are kept.
    """
    path = checkWritable(path)
    scene = node.GetScene()
    className = storageClassFor(node)
    if className is None:
        raise DLError("cannot be saved by MedDL", node=node, fix="save it from Slicer's Save dialog")
    storage = getattr(slicer, className)()
    if scene is not None:
        scene.AddNode(storage)
    try:
        storage.SetFileName(str(path))
        if hasattr(storage, "SetUseCompression"):
            storage.SetUseCompression(bool(useCompression))
        if not storage.WriteData(node):
            raise DLError(f"could not be written to {path}", node=node,
                          fix="check the extension (.nrrd, .nii.gz, .seg.nrrd, .h5) and write permission")
    finally:
        if scene is not None:
            scene.RemoveNode(storage)
    return path


def checkWritable(path: str | Path) -> Path:
    """``path`` (expanded) once its folder exists (created if needed) and is writable; else a clear DLError.

    Commands call it for their outputs before computing, so a typo in an output path costs no run.
    """
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DLError(f"could not be written: its folder cannot be created ({exc.strerror})", file=path,
                      fix="choose an output path in a folder you can write to") from None
    if not os.access(path.parent, os.W_OK) or path.is_dir():
        reason = "it is a folder" if path.is_dir() else "its folder is not writable"
        raise DLError(f"could not be written: {reason}", file=path,
                      fix="choose an output path in a folder you can write to")
    return path


def baseNameOf(path: Path) -> str:
    """File name without its (double) extension: ``case1.seg.nrrd`` -> ``case1``, ``t1.nii.gz`` -> ``t1``."""
    name = path.name
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd", ".h5", ".tfm", ".txt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def volumeFiles(path: str | Path) -> list[Path]:
    """``[path]`` for a file; a folder's volume files (``.nrrd``, ``.nii(.gz)``, ``.mha``, ``.mhd``), sorted."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.name.lower().endswith(VOLUME_SUFFIXES)
                   and not p.name.lower().endswith(".seg.nrrd"))
    if not files:
        raise DLError("holds no volume files (.nrrd, .nii, .nii.gz, .mha)", file=path, fix="check the folder")
    return files
