"""Sample data for ``meddl web``: the embedded MNI152 T1 and tissue maps, and copies made from them.

Each sample adds its nodes to the scene in one transaction and returns them; each is small enough (3 mm) for the
four modules' workflows to run on a CPU in under a minute.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["SAMPLES", "addSample"]

SPACING = 3.0  # mm: small enough for CPU training in the browser workflows
_cache: dict = {}


def _tissue():
    if "tissue" not in _cache:
        from DLCommon.sampledata import mni152Tissue

        _cache["tissue"] = mni152Tissue(SPACING)
    return _cache["tissue"]


def _brain(scene) -> list:
    """The T1 and its grey / white matter segmentation (from the probability maps)."""
    from DLCommon import segmentationFromTensor, volumeFromTensor
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES

    image, labels = _tissue()
    volume = volumeFromTensor(image, None, scene, "MNI152 T1")
    return [volume, segmentationFromTensor(labels, volume, scene, TISSUE_NAMES, TISSUE_COLORS,
                                           nodeName="MNI152 tissue")]


def _deformed(scene) -> list:
    """A smoothly deformed copy with a bias field and a contrast change, and its warped tissue labels."""
    from DLCommon import segmentationFromTensor, volumeFromTensor
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, randomCopy

    image, labels = randomCopy(*_tissue(), seed=999, noise=False)  # background stays 0, as in a skull-stripped scan
    volume = volumeFromTensor(image, None, scene, "MNI152 deformed")
    return [volume, segmentationFromTensor(labels, volume, scene, TISSUE_NAMES, TISSUE_COLORS,
                                           nodeName="MNI152 deformed tissue")]


def _thickSlices(scene) -> list:
    """The T1 with 3x thicker axial slices (for super-resolution)."""
    import torch
    from monai.data import MetaTensor

    from DLCommon import volumeFromTensor
    from DLSynthesizeLib.superresolution import degradeAlongAxis

    image, _ = _tissue()
    count = (image.shape[3] - 1) // 3 * 3 + 1
    affine = torch.as_tensor(image.affine).clone()
    affine[:3, 2] *= 3
    thick = degradeAlongAxis(image.as_tensor()[0, :, :, :count], 2, 3)
    return [volumeFromTensor(MetaTensor(thick[None], affine=affine), None, scene, "MNI152 thick slices")]


def _planeSlices(scene) -> list:
    """Three one-slice volumes of the T1 through standard planes (for a 2D plane classifier)."""
    import torch
    from monai.data import MetaTensor

    from DLCommon import volumeFromTensor

    image, _ = _tissue()
    affine = torch.as_tensor(image.affine)
    nodes = []  # (name, tensor axis, RAS axis, RAS position in mm) of the planes in DLClassifyLib.planes
    for name, axis, ras, position in (("MNI152 mid-sagittal slice", 1, 0, 0.0),
                                      ("MNI152 trans-ventricular slice", 3, 2, 18.0),
                                      ("MNI152 trans-thalamic slice", 2, 1, -18.0)):
        index = int(round((position - float(affine[ras, 3])) / float(affine[ras, ras])))
        sliceAffine = affine.clone()
        sliceAffine[ras, 3] += index * affine[ras, ras]
        plane = image.as_tensor().narrow(axis, index, 1)
        nodes.append(volumeFromTensor(MetaTensor(plane, affine=sliceAffine), None, scene, name))
    return nodes


def _probe(scene) -> list:
    """An ultrasound probe pose above the vertex, imaging the coronal plane y = -10 mm (with the brain sample's
    tissue segmentation it makes a B-mode frame)."""
    from DLCommon.geometry import vtkMatrixFromArray
    from DLSynthesizeLib.ultrasound import probePose

    probe = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "ultrasound probe")
    probe.SetMatrixTransformToParent(vtkMatrixFromArray(probePose([0, -10, 75], [0, -10, 0], [0, 1, 0]).numpy()))
    return [probe]


SAMPLES: dict[str, Callable] = {
    "MNI152 brain + tissue segmentation": _brain,
    "MNI152 deformed copy + its tissue": _deformed,
    "MNI152 with thick slices": _thickSlices,
    "MNI152 standard-plane slices": _planeSlices,
    "Ultrasound probe above the MNI152 brain": _probe,
}


def addSample(name: str, scene) -> list:
    """Add sample ``name`` (a key of :data:`SAMPLES`) to ``scene``; all its nodes, or none on failure."""
    from DLCommon.scene import sceneTransaction

    with sceneTransaction(scene):
        return SAMPLES[name](scene)
