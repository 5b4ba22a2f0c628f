"""DLSynthesize's panel for the Slicer widget and the web page: sections, actions, what a finished run shows, and
the sample data its workflows use (thick slices, an ultrasound probe pose)."""

from __future__ import annotations

from DLCommon.frontend import Action, Outcome, Section, When

from . import parameters

ICON = "mdi-auto-fix"
MODEL_TASK = None  # no model selector: every task trains on the scene's data
DESKTOP_ONLY = ("sourceVolume", "targetVolume")  # the Slicer widget's "add pair" pickers


def synthesized(p, out) -> Outcome:
    extra = [node for node in out.details.values() if hasattr(node, "GetID")]
    message = f"'{out.volume.GetName()}' written"
    if out.details.get("finalLoss") is not None:  # the trained tasks: how far the training got
        message += f" (final training loss {out.details['finalLoss']:.4g})"
    return Outcome(message + ".", background=out.volume, settings={"outputVolume": out.volume},
                   saved=[out.volume] + extra, warnings=list(out.warnings))


SECTIONS = (
    Section("Synthesize", "apply", (Action("apply", "Apply", synthesized, ("inputVolume",),
                                           when=When("task", "ultrasound", not_=True)),)),
    Section("Training pairs", "pairs", when=When("task", "image-to-image")),
    Section("Ultrasound", "ultrasound", (Action("ultrasound", "Simulate", synthesized,
                                                ("tissueSegmentation", "probeTransform", "inputVolume"),
                                                immediate=True, run=parameters.simulateUltrasound),),
            when=When("task", "ultrasound")),
)


def thickSlices(scene) -> list:
    """The MNI152 T1 with 3x thicker axial slices (for super-resolution)."""
    import torch
    from monai.data import MetaTensor

    from DLCommon import volumeFromTensor
    from DLCommon.sampledata import sampleTissue

    from .superresolution import degradeAlongAxis

    image, _ = sampleTissue()
    count = (image.shape[3] - 1) // 3 * 3 + 1
    affine = torch.as_tensor(image.affine).clone()
    affine[:3, 2] *= 3
    thick = degradeAlongAxis(image.as_tensor()[0, :, :, :count], 2, 3)
    return [volumeFromTensor(MetaTensor(thick[None], affine=affine), None, scene, "MNI152 thick slices")]


def probe(scene) -> list:
    """An ultrasound probe pose above the vertex, imaging the coronal plane y = -10 mm (with the brain sample's
    tissue segmentation it makes a B-mode frame)."""
    from DLCommon.geometry import vtkMatrixFromArray

    from .ultrasound import probePose

    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "ultrasound probe")
    node.SetMatrixTransformToParent(vtkMatrixFromArray(probePose([0, -10, 75], [0, -10, 0], [0, 1, 0]).numpy()))
    return [node]


SAMPLES = {"MNI152 with thick slices": thickSlices, "Ultrasound probe above the MNI152 brain": probe}
