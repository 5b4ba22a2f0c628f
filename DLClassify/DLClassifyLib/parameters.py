"""DLClassify's settings, defined once for the Slicer parameter node and the web panel, and the jobs they make.

``p`` below is anything with these settings as attributes: the Slicer parameter node wrapper, or the web
panel's values. Imports neither torch nor qt (the Slicer shell imports it at module level).
"""

from __future__ import annotations

from DLCommon.parameters import Parameter

# Keep in sync with DLClassifyLib.architectures.ARCHITECTURES (a test checks it; that module imports torch)
ARCHITECTURE_NAMES = ("tiny", "densenet121", "densenet169", "densenet201", "resnet18", "resnet50", "seresnet50",
                      "efficientnet-b0", "efficientnet-b1", "efficientnet-b2", "vit")

VOLUME, TABLE = ("vtkMRMLScalarVolumeNode",), ("vtkMRMLTableNode",)

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
    Parameter("encoding", "choice", "nominal", label="Encoding", choices=("nominal", "binary", "ordinal"),
              group="train",
              tooltip="nominal: one-hot + softmax; binary: one sigmoid output; ordinal: cumulative thresholds."),
    Parameter("architecture", "choice", "tiny", label="Architecture", choices=ARCHITECTURE_NAMES, group="train",
              tooltip="MONAI network (tiny: a small DenseNet that trains on a CPU in seconds)."),
    Parameter("dimensions", "choice", "3D", label="Dimensions", choices=("3D", "2D"), group="train",
              tooltip="3D: volumes; 2D: single-slice volumes and slice views."),
    Parameter("inputSize", "int", 64, label="Input size", minimum=16, maximum=512, group="train",
              tooltip="Network input grid (voxels per side)."),
    Parameter("epochs", "int", 30, label="Epochs", minimum=1, maximum=10000, group="train"),
    Parameter("modelName", "str", "my-classifier", label="Model name", group="train",
              tooltip="Catalog id of the trained model."),
)


def applyJob(logic, p, volumeNode=None, outputTable=None):
    """The classification job for ``volumeNode`` (default: ``p.inputVolume`` into ``p.outputTable``)."""
    if volumeNode is None:
        volumeNode, outputTable = p.inputVolume, p.outputTable
    return logic.classifyJob([volumeNode], p.modelId, outputTable, p.saliency)


def trainJob(logic, p):
    """Training on ``p.trainingTable`` (labelled volumes) or on planes of ``p.inputVolume`` (standard planes)."""
    from DLClassifyLib.trainer import ClassificationTrainingConfig

    dimensions = 2 if p.dimensions == "2D" else 3
    config = ClassificationTrainingConfig(encoding=p.encoding, architecture=p.architecture, epochs=p.epochs,
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
