"""DLRegister's settings, defined once for the Slicer parameter node and the web panel, and the jobs they make.

``p`` below is anything with these settings as attributes: the Slicer parameter node wrapper, or the web
panel's values. Imports neither torch nor qt (the Slicer shell imports it at module level).
"""

from __future__ import annotations

from DLCommon.parameters import Parameter
from DLCommon.settings import defaultOf, parameterOf, settingOf

# absolute: the shell check loads this file alone
from DLRegisterLib.config import RegistrationConfig as Registration
from DLRegisterLib.config import RegistrationTrainingConfig as Training

VOLUME, SEGMENTATION = ("vtkMRMLScalarVolumeNode",), ("vtkMRMLSegmentationNode",)

_ITERATIONS = tuple(defaultOf(Registration, "iterations"))  # per level, coarse to fine
_RATIOS = tuple(n / _ITERATIONS[0] for n in _ITERATIONS)  # (1, 0.8, 0.4)


def _orAuto(weight) -> float:
    return -1.0 if weight is None else float(weight)


PARAMETERS = (
    Parameter("fixedVolume", "node", label="Fixed volume", nodeClasses=VOLUME,
              tooltip="Reference volume: the result lives on its grid."),
    Parameter("movingVolume", "node", label="Moving volume", nodeClasses=VOLUME,
              tooltip="Volume to align to the fixed volume (any geometry)."),
    Parameter("fixedMask", "node", label="Fixed mask", nodeClasses=SEGMENTATION,
              tooltip="Optional: similarity is measured only inside this segmentation."),
    Parameter("movingMask", "node", label="Moving mask", nodeClasses=SEGMENTATION,
              tooltip="Optional: region of the moving volume to use."),
    Parameter("initialTransform", "node", label="Initial transform", nodeClasses=("vtkMRMLTransformNode",),
              tooltip="Optional: any transform that roughly aligns moving to fixed (default: centres of mass)."),
    Parameter("movingSegmentation", "node", label="Moving segmentation", nodeClasses=SEGMENTATION,
              tooltip="Optional: a segmentation of the moving volume to warp onto the fixed volume."),
    Parameter("method", "choice", "optimisation", label="Method", choices=("optimisation", "model"),
              tooltip="optimisation: instance optimisation on this pair (no training data); model: one forward "
                      "pass of a trained network (+ optional refinement)."),
    Parameter("modelId", "str", "", label="Model", tooltip="Registration model from the catalog."),
    parameterOf(Registration, "similarity"),
    parameterOf(Registration, "fieldModel"),
    # the panel's own: -1 for the config's None (the similarity's default weight); the range is the config's
    Parameter("regularisationWeight", "float", _orAuto(defaultOf(Registration, "regularisationWeight")),
              label="Regularisation (-1: auto)", minimum=-1.0,
              maximum=settingOf(Registration, "regularisationWeight")["maximum"],
              tooltip=settingOf(Registration, "regularisationWeight")["tooltip"]),
    # the panel's own: one number for the coarsest level, the finer levels in the config default's proportions
    Parameter("iterations", "int", _ITERATIONS[0], label="Iterations",
              minimum=settingOf(Registration, "iterations")["minimum"],
              maximum=settingOf(Registration, "iterations")["maximum"],
              tooltip=f"Iterations at the coarsest level (finer levels use "
                      f"{' and '.join(f'{r:g}x' for r in _RATIOS[1:])}); for a model, refinement iterations "
                      f"(0: prediction only)."),
    Parameter("affineOnly", "bool", not defaultOf(Registration, "deformable"), label="Affine only",
              tooltip="Stop after the affine stage."),
    Parameter("outputTransform", "node", output=True, label="Output transform", nodeClasses=("vtkMRMLGridTransformNode",),
              tooltip="Grid transform to write (none: a new one)."),
    Parameter("outputVolume", "node", output=True, label="Warped volume", nodeClasses=VOLUME,
              tooltip="Moving volume resampled on the fixed grid (none: a new one)."),
    Parameter("createJacobian", "bool", False, label="Jacobian volume",
              tooltip="Also create the Jacobian-determinant volume (values <= 0 mark folding)."),
    Parameter("applyToMoving", "bool", True, label="Apply to moving",
              tooltip="Put the moving volume under the result transform."),
    Parameter("trainingVolume", "node", label="Training volume", nodeClasses=VOLUME, group="train"),
    Parameter("trainingSegmentation", "node", label="Its labels", nodeClasses=SEGMENTATION, group="train"),
    Parameter("trainingVolumes", "nodes", label="Training volumes", nodeClasses=VOLUME, group="train",
              tooltip="Pairs are formed between all of them."),
    Parameter("trainingSegmentations", "nodes", label="Training labels", nodeClasses=SEGMENTATION, group="train"),
    parameterOf(Training, "network", group="train"),
    parameterOf(Training, "epochs", group="train"),
    parameterOf(Training, "labelWeight", group="train"),
    Parameter("modelName", "str", "my-registration", label="Model name", group="train"),
)


def registrationConfig(p) -> Registration:
    """The :class:`RegistrationConfig` of these settings: the config's pyramid, its iterations scaled to
    ``p.iterations`` at the coarsest level; ``p.regularisationWeight`` < 0: the similarity's default weight."""
    coarse = max(p.iterations, 1)
    return Registration(similarity=p.similarity, fieldModel=p.fieldModel,
                        regularisationWeight=None if p.regularisationWeight < 0 else p.regularisationWeight,
                        iterations=tuple(max(1, int(r * coarse)) for r in _RATIOS),
                        deformable=not p.affineOnly and p.iterations > 0)


def applyJob(logic, p, movingVolume=None):
    """Register ``p.movingVolume`` into the chosen outputs, or one more ``movingVolume`` into new nodes."""
    model = p.modelId if p.method == "model" else None
    if movingVolume is not None:
        return logic.registerJob(p.fixedVolume, movingVolume, registrationConfig(p), fixedMask=p.fixedMask,
                                 initialTransform=p.initialTransform, warpedVolume=True,
                                 jacobianVolume=p.createJacobian, model=model)
    return logic.registerJob(
        p.fixedVolume, p.movingVolume, registrationConfig(p), fixedMask=p.fixedMask, movingMask=p.movingMask,
        initialTransform=p.initialTransform, outputTransform=p.outputTransform,
        warpedVolume=p.outputVolume or True, warpSegmentation=p.movingSegmentation,
        jacobianVolume=p.createJacobian, applyToMoving=p.applyToMoving, model=model)


def trainJob(logic, p):
    """Training a registration network on all ordered pairs of ``p.trainingVolumes`` (+ their labels)."""
    config = Training(network=p.network, epochs=p.epochs, labelWeight=p.labelWeight, similarity=p.similarity)
    return logic.trainJob(list(p.trainingVolumes), list(p.trainingSegmentations) or None, config,
                          modelName=p.modelName)
