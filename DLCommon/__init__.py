"""DLCommon: the Qt-free foundation shared by MedDL's modules and the ``meddl`` CLI.

MRML nodes <-> torch tensors with exact geometry, device choice, verified model loading, sliding-window
inference, one training loop and cancellable jobs. Functions that create nodes take an explicit
``scene``, so everything runs inside Slicer and on the ``slicer-core`` wheel alike.

Submodules are imported lazily: ``import DLCommon`` costs nothing until a function is used, so a Slicer
module can load before PyTorch is installed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DLError": "errors", "JobCancelled": "errors",
    "tensorFromVolume": "volumes", "volumeFromTensor": "volumes", "updateVolumeFromTensor": "volumes",
    "tensorFromSegmentation": "segmentations", "segmentationFromTensor": "segmentations",
    "updateSegmentationFromTensor": "segmentations",
    "gridTransformFromDisplacement": "transforms", "displacementFromTransform": "transforms",
    "resampleVolume": "transforms",
    "ijkToRasMatrix": "geometry",
    "pickDevice": "devices", "runWithOOMFallback": "devices",
    "ModelSpec": "models", "LoadedModel": "models", "loadModel": "models", "saveCheckpoint": "models",
    "saveTorchScript": "models", "sha256Of": "models",
    "ModelCatalog": "catalog", "CatalogEntry": "catalog",
    "slidingWindowInference": "inference", "preprocess": "inference",
    "TrainingConfig": "training", "trainModel": "training",
    "Job": "jobs", "JobState": "jobs",
    "sceneTransaction": "scene",
    "loadVolume": "storage", "loadSegmentation": "storage", "loadTransform": "storage", "saveNode": "storage",
    "mni152Paths": "sampledata", "loadMNI152": "sampledata",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'DLCommon' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
