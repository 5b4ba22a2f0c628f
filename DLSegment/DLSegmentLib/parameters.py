"""DLSegment's settings, defined once for the Slicer parameter node and the web panel, and the jobs they make.

``p`` below is anything with these settings as attributes: the Slicer parameter node wrapper, or the web
panel's values. Imports neither torch nor qt (the Slicer shell imports it at module level).
"""

from __future__ import annotations

from DLCommon.parameters import Parameter
from DLCommon.settings import defaultOf, parameterOf

from DLSegmentLib.config import SegmentationTrainingConfig as Training  # absolute: the shell check loads this file alone

VOLUME, SEGMENTATION = ("vtkMRMLScalarVolumeNode",), ("vtkMRMLSegmentationNode",)
OTHER_INPUTS = (2, 3, 4)  # a bundle's inputs after the first (brats_mri_segmentation takes four MR sequences)

PARAMETERS = (
    Parameter("inputVolume", "node", label="Input volume", nodeClasses=VOLUME, tooltip="The volume to segment."),
    Parameter("modelId", "str", "", label="Model", tooltip="Catalog id of the segmentation model."),
    *(Parameter(f"inputVolume{n}", "node", label=f"Input {n}", nodeClasses=VOLUME,
                tooltip=f"A model that takes several volumes (a MONAI bundle, e.g. MR sequences or CT phases): its "
                        f"input {n}, in the order the model lists them; empty for a model with one input.")
      for n in OTHER_INPUTS),
    Parameter("outputSegmentation", "node", output=True, label="Output segmentation", nodeClasses=SEGMENTATION,
              tooltip="Segmentation to overwrite; none: a new one."),
    Parameter("probabilityVolumes", "bool", False, label="Probability volumes",
              tooltip="Also create one probability volume per segment."),
    Parameter("entropyVolume", "bool", False, label="Uncertainty (entropy) volume",
              tooltip="Also create a voxel-wise entropy volume: high where the model is unsure."),
    Parameter("mirror", "bool", False, label="Mirror test-time augmentation",
              tooltip="Average with the prediction of the left-right mirrored volume (twice the time)."),
    Parameter("trainingVolume", "node", label="Training volume", nodeClasses=VOLUME, group="train"),
    Parameter("trainingSegmentation", "node", label="Its segmentation", nodeClasses=SEGMENTATION, group="train"),
    Parameter("trainingVolumes", "nodes", label="Training volumes", nodeClasses=VOLUME, group="train"),
    Parameter("trainingSegmentations", "nodes", label="Training segmentations", nodeClasses=SEGMENTATION,
              group="train"),
    parameterOf(Training, "network", group="train"),
    parameterOf(Training, "loss", group="train"),
    parameterOf(Training, "epochs", group="train"),
    # the panel's own: one edge of a cubic patch (the config takes any 2 or 3 sizes), its default the config's
    Parameter("patchSize", "int", defaultOf(Training, "patchSize")[0], label="Patch size", minimum=16, maximum=256,
              tooltip="Edge of the cubic training patch, in voxels.", group="train"),
    Parameter("trainingSpacing", "float", 0.0, label="Spacing (mm)", minimum=0.0, maximum=20.0,
              tooltip="Resample to this isotropic spacing before training; 0: keep the volume's.", group="train"),
    Parameter("modelName", "str", "my-segmentation", label="Model name",
              tooltip="Name of the trained model in the catalog.", group="train"),
    Parameter("fineTune", "bool", False, label="Fine-tune the selected model", group="train"),
)


def applyJob(logic, p, volumeNode=None, outputSegmentation=None, device: str = "auto"):
    """The segmentation job for ``volumeNode`` (default: ``p.inputVolume`` into ``p.outputSegmentation``), with a
    bundle's other inputs ``p.inputVolume2..4`` (or ``p.otherInputs``, name -> node, as ``meddl segment --input
    NAME=FILE`` gives them); ``device``: ``meddl segment --device`` (the panels let MedDL choose)."""
    if volumeNode is None:
        volumeNode, outputSegmentation = p.inputVolume, p.outputSegmentation
    others = getattr(p, "otherInputs", None)
    if others is None:  # the panel's rows, as many as the model names (rows a former model used are ignored)
        count = len(modelInputNames(p.modelId)) or len(OTHER_INPUTS) + 1
        others = [getattr(p, f"inputVolume{n}", None) for n in OTHER_INPUTS[:count - 1]]
    return logic.segmentJob(volumeNode, p.modelId, outputSegmentation, p.probabilityVolumes, p.entropyVolume,
                            device=device, mirror=p.mirror, otherInputs=others if any(others) else None)


def modelInputNames(modelId: str) -> list[str]:
    """The input names of catalog model ``modelId`` when it takes several volumes (a bundle's ``T1c``, ``T1``, ...,
    recorded in its spec at import), else ``[]``; the panels name their input rows with them."""
    from DLCommon.catalog import ModelCatalog  # imports torch: only when a model is chosen

    entry = ModelCatalog().entries.get(modelId) if modelId else None
    bundle = ((entry.spec.get("options") or {}).get("bundle") or {}) if entry is not None else {}
    return [str(name) for name in bundle.get("inputs") or []]


def trainJob(logic, p):
    """The training (or fine-tuning) job on the pairs ``p.trainingVolumes`` / ``p.trainingSegmentations``."""
    config = Training(network=p.network, loss=p.loss, epochs=p.epochs, patchSize=(p.patchSize,) * 3,
                                        spacing=(p.trainingSpacing,) * 3 if p.trainingSpacing > 0 else None)
    return logic.trainJob(list(zip(p.trainingVolumes, p.trainingSegmentations)), config, modelName=p.modelName,
                          baseModel=p.modelId if p.fineTune else None)
