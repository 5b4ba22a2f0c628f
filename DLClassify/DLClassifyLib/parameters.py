"""DLClassify's settings, defined once for the Slicer parameter node and the web panel, and the jobs they make.

``p`` below is anything with these settings as attributes: the Slicer parameter node wrapper, or the web
panel's values. Imports neither torch nor qt (the Slicer shell imports it at module level).
"""

from __future__ import annotations

from DLCommon.parameters import Parameter
from DLCommon.settings import defaultOf, parameterOf, settingOf

# absolute: the shell check loads this file alone; ARCHITECTURE_NAMES re-exported for old imports
from DLClassifyLib.config import ARCHITECTURE_NAMES, ClassificationTrainingConfig as Training  # noqa: F401

VOLUME, TABLE = ("vtkMRMLScalarVolumeNode",), ("vtkMRMLTableNode",)
_INPUT_SIZE = settingOf(Training, "inputSize")

PARAMETERS = (
    Parameter("inputVolume", "node", label="Input volume", nodeClasses=VOLUME,
              tooltip="Volume (3D model) or single-slice volume (2D model) to classify."),
    Parameter("modelId", "str", "", label="Model", tooltip="Classifier from the verified catalog."),
    Parameter("outputTable", "node", output=True, label="Output table", nodeClasses=TABLE,
              tooltip="Table to overwrite with class and calibrated probabilities; none: a new table."),
    Parameter("saliency", "bool", False, label="Saliency map",
              tooltip="Where the classifier looked (Grad-CAM; occlusion sensitivity for a ViT), as a volume."),
    Parameter("sliceView", "choice", "Red", label="Slice view", choices=("Red", "Yellow", "Green"),
              tooltip="The slice view whose plane is classified (2D models)."),
    Parameter("liveClassify", "bool", False, label="Live", tooltip="Re-classify the slice view's plane when it moves."),
    Parameter("trainingData", "choice", "labelled volumes", label="Training data",
              choices=("labelled volumes", "standard planes"), group="train",
              tooltip="labelled volumes: a table with columns 'volume' and 'label'; standard planes: planes of "
                      "the input volume (a brain in MNI152 space) and deformed copies of it."),
    Parameter("trainingTable", "node", label="Training table", nodeClasses=TABLE, group="train",
              tooltip="Table with columns 'volume' (node name or ID) and 'label' (class)."),
    Parameter("classNames", "str", "", label="Class names", group="train",
              tooltip="Optional, comma-separated (ordinal: lowest first). Empty: the labels in the table."),
    parameterOf(Training, "encoding", group="train"),
    parameterOf(Training, "architecture", group="train"),
    # the panel's own: the config's inputSize is 2 or 3 sizes; the panel picks 2D / 3D and one edge for all axes
    Parameter("dimensions", "choice", "3D", label="Dimensions", choices=("3D", "2D"), group="train",
              tooltip="3D: volumes; 2D: single-slice volumes and slice views."),
    Parameter("inputSize", "int", defaultOf(Training, "inputSize")[0], label=_INPUT_SIZE["label"],
              minimum=_INPUT_SIZE["minimum"], maximum=_INPUT_SIZE["maximum"], tooltip=_INPUT_SIZE["tooltip"],
              group="train"),
    parameterOf(Training, "epochs", group="train"),
    Parameter("modelName", "str", "my-classifier", label="Model name", group="train",
              tooltip="Catalog id of the trained model."),
)


def applyJob(logic, p, volumeNode=None, outputTable=None, device: str = "auto"):
    """The classification job for ``volumeNode`` (default: ``p.inputVolume`` into ``p.outputTable``);
    ``device``: ``meddl classify --device`` (the panels let MedDL choose)."""
    if volumeNode is None:
        volumeNode, outputTable = p.inputVolume, p.outputTable
    return logic.classifyJob([volumeNode], p.modelId, outputTable, p.saliency, device=device)


def trainJob(logic, p):
    """Training on ``p.trainingTable`` (labelled volumes) or on planes of ``p.inputVolume`` (standard planes)."""
    dimensions = 2 if p.dimensions == "2D" else 3
    config = Training(encoding=p.encoding, architecture=p.architecture, epochs=p.epochs,
                      inputSize=(p.inputSize,) * dimensions)
    if p.trainingData == "standard planes":
        return logic.trainPlanesJob(p.inputVolume, config, modelName=p.modelName)
    classes = [c.strip() for c in p.classNames.split(",") if c.strip()] or None
    return logic.trainJob(p.trainingTable, classes, config, modelName=p.modelName)


def carriedNodes(p, action: str) -> list:
    """The volumes a training table names (a child process loads them with the table)."""
    if action != "train" or p.trainingData != "labelled volumes" or p.trainingTable is None:
        return []
    from DLClassifyLib.logic import ClassificationLogic

    return [volume for volume, _ in ClassificationLogic(p.trainingTable.GetScene()).samplesFromTable(p.trainingTable)]
