"""DLClassify's panel for the Slicer widget and the web page: sections, actions, what a finished run shows, and
the sample data its workflow uses (standard-plane slices)."""

from __future__ import annotations

from DLCommon.frontend import Action, Outcome, Section, trainedOutcome

ICON = "mdi-tag-multiple"
MODEL_TASK = "classification"
DESKTOP_ONLY = ("liveClassify",)  # the web page classifies the slice view on request


def classified(p, out) -> Outcome:
    name, probability, _ = out.predictions[0]
    table = out.table
    columns = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    rows = [{column: table.GetTable().GetValueByName(row, column).ToString() for column in columns}
            for row in range(table.GetTable().GetNumberOfRows())]
    saliency = out.saliency[0] if out.saliency else None
    return Outcome(f"{p.inputVolume.GetName()}: {name} ({100 * probability:.0f}%)", background=p.inputVolume,
                   foreground=saliency, foregroundColors="vtkMRMLColorTableNodeRainbow", table=table, rows=rows,
                   saved=list(out.saliency), settings={"outputTable": table})


def trained(p, result) -> Outcome:
    outcome = trainedOutcome(p, result)
    report = result.report
    outcome.message += (f" Validation: accuracy {report['accuracy']:.3f}, balanced {report['balancedAccuracy']:.3f},"
                        f" MAE {report['mae']:.2f}; calibration error {report['eceBefore']:.3f} -> "
                        f"{report['eceAfter']:.3f}.")
    return outcome


def classifySlice(logic, p):
    """The class of the plane the ``p.sliceView`` slice view shows (immediate: well under a second)."""
    scene = p.inputVolume.GetScene() if p.inputVolume is not None else None
    collection = scene.GetNodesByClass("vtkMRMLSliceNode") if scene is not None else None
    nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())] if collection else []
    sliceNode = next((n for n in nodes if n.GetLayoutName() == p.sliceView), None)
    return logic.classifySlice(sliceNode, p.inputVolume, p.modelId)


def sliceClassified(p, out) -> Outcome:
    name, probability, _ = out
    return Outcome(f"{p.sliceView} slice view: {name} ({100 * probability:.0f}%)")


SECTIONS = (
    Section("Classify", "apply", (Action("apply", "Apply", classified, ("inputVolume", "modelId")),
                                  Action("slice", "Classify slice view", sliceClassified, ("inputVolume", "modelId"),
                                         immediate=True, run=classifySlice))),
    Section("Train", "train", (Action("train", "Train", trained, ("modelName",)),)),
)


def planeSlices(scene) -> list:
    """Three one-slice volumes of the MNI152 T1 through standard planes (for a 2D plane classifier)."""
    import torch
    from monai.data import MetaTensor

    from DLCommon import volumeFromTensor
    from DLCommon.sampledata import sampleTissue

    image, _ = sampleTissue()
    affine = torch.as_tensor(image.affine)
    nodes = []  # (name, tensor axis, RAS axis, RAS position in mm) of the planes in .planes
    for name, axis, ras, position in (("MNI152 mid-sagittal slice", 1, 0, 0.0),
                                      ("MNI152 trans-ventricular slice", 3, 2, 18.0),
                                      ("MNI152 trans-thalamic slice", 2, 1, -18.0)):
        index = int(round((position - float(affine[ras, 3])) / float(affine[ras, ras])))
        sliceAffine = affine.clone()
        sliceAffine[ras, 3] += index * affine[ras, ras]
        plane = image.as_tensor().narrow(axis, index, 1)
        nodes.append(volumeFromTensor(MetaTensor(plane, affine=sliceAffine), None, scene, name))
    return nodes


SAMPLES = {"MNI152 standard-plane slices": planeSlices}
