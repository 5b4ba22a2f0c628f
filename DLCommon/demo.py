"""The foundation part of ``meddl demo``: MNI152 through DLCommon and back, with files to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

__all__ = ["runFoundationDemo"]


def runFoundationDemo(output: Path, progress: Callable[[float, str], None]) -> tuple[dict, object]:
    """Load the MNI152 T1 + GM/WM maps, round-trip them through DLCommon, write NRRD / PNG / summary.

    Returns ``(summary, scene)``; the scene holds the loaded nodes for the module demos that follow.
    """
    import slicer

    from .geometry import ijkToRasMatrix
    from .montage import saveMontage
    from .sampledata import TISSUE_COLORS, TISSUE_NAMES, loadMNI152, tissueLabels
    from .segmentations import segmentationFromTensor, tensorFromSegmentation
    from .storage import loadSegmentation, saveNode
    from .volumes import tensorFromVolume, volumeFromTensor

    scene = slicer.vtkMRMLScene()
    progress(0.05, "loading MNI152")
    nodes = loadMNI152(scene)
    t1 = nodes["t1"]

    progress(0.3, "volume round trip")
    tensor = tensorFromVolume(t1)
    copy = volumeFromTensor(tensor, t1, scene, "MNI152_T1_roundtrip")
    roundTripError = float(np.abs(slicer.util.arrayFromVolume(copy).astype(np.float64)
                                  - slicer.util.arrayFromVolume(t1)).max())
    geometryError = float(np.abs(ijkToRasMatrix(copy) - ijkToRasMatrix(t1)).max())

    progress(0.5, "tissue segmentation from GM/WM maps")
    tissue = tissueLabels(tensorFromVolume(nodes["gm"])[0], tensorFromVolume(nodes["wm"])[0])
    names, colors = TISSUE_NAMES, TISSUE_COLORS
    segmentation = segmentationFromTensor(tissue, t1, scene, names, colors, nodeName="MNI152_tissue")
    labels, readNames, readColors = tensorFromSegmentation(segmentation, t1)
    segmentationRoundTrip = bool(torch.equal(labels, tissue) and readNames == names)

    progress(0.7, "writing NRRD and .seg.nrrd")
    saveNode(copy, output / "MNI152_T1.nrrd")
    saveNode(segmentation, output / "MNI152_tissue.seg.nrrd")
    reread = loadSegmentation(output / "MNI152_tissue.seg.nrrd", scene)
    rereadLabels, rereadNames, _ = tensorFromSegmentation(reread, t1)
    fileRoundTrip = bool(torch.equal(rereadLabels, labels) and rereadNames == names)

    progress(0.85, "rendering montage")
    saveMontage(output / "MNI152_montage.png", tensor[0], labels, colors,
                title="MNI152 T1 with grey (orange) / white (blue) matter from DLCommon")
    voxelVolumeMl = float(abs(np.linalg.det(ijkToRasMatrix(t1)[:3, :3]))) / 1000.0
    summary = {
        "volume": {"name": t1.GetName(), "shape": list(tensor.shape[1:]),
                   "spacing_mm": [float(s) for s in t1.GetSpacing()],
                   "roundTripMaxError": roundTripError, "geometryMaxError_mm": geometryError},
        "segmentation": {"names": names, "roundTripExact": segmentationRoundTrip, "fileRoundTripExact": fileRoundTrip,
                         "volumes_ml": {name: round(float((labels == i + 1).sum()) * voxelVolumeMl, 1)
                                        for i, name in enumerate(names)}},
        "files": ["MNI152_T1.nrrd", "MNI152_tissue.seg.nrrd", "MNI152_montage.png"],
    }
    progress(1.0, "foundation demo done")
    return summary, scene
