"""Sample data for ``meddl web``: the embedded MNI152 T1 and tissue maps, a deformed copy, and what each registered
module adds for its workflows (``ModuleDescription.samples``: thick slices, standard-plane slices, a probe pose).

Each sample adds its nodes to the scene in one transaction and returns them; each is small enough (3 mm,
``DLCommon.sampledata.SAMPLE_SPACING``) for the modules' workflows to run on a CPU in under a minute.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["samples", "addSample"]


def _brain(scene) -> list:
    """The T1 and its grey / white matter segmentation (from the probability maps)."""
    from DLCommon import segmentationFromTensor, volumeFromTensor
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, sampleTissue

    image, labels = sampleTissue()
    volume = volumeFromTensor(image, None, scene, "MNI152 T1")
    return [volume, segmentationFromTensor(labels, volume, scene, TISSUE_NAMES, TISSUE_COLORS,
                                           nodeName="MNI152 tissue")]


def _deformed(scene) -> list:
    """A smoothly deformed copy with a bias field and a contrast change, and its warped tissue labels."""
    from DLCommon import segmentationFromTensor, volumeFromTensor
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, randomCopy, sampleTissue

    image, labels = randomCopy(*sampleTissue(), seed=999, noise=False)  # background stays 0, as in a skull-stripped scan
    volume = volumeFromTensor(image, None, scene, "MNI152 deformed")
    return [volume, segmentationFromTensor(labels, volume, scene, TISSUE_NAMES, TISSUE_COLORS,
                                           nodeName="MNI152 deformed tissue")]


def samples() -> dict[str, Callable]:
    """Every sample by name: the brain and its deformed copy, then each registered module's, in module order."""
    from DLCommon.modules import registeredModules

    found: dict[str, Callable] = {"MNI152 brain + tissue segmentation": _brain,
                                  "MNI152 deformed copy + its tissue": _deformed}
    for module in registeredModules():
        found.update(module.samples)
    return found


def addSample(name: str, scene) -> list:
    """Add sample ``name`` (a key of :func:`samples`) to ``scene``; all its nodes, or none on failure."""
    from DLCommon.scene import sceneTransaction

    with sceneTransaction(scene):
        return samples()[name](scene)
