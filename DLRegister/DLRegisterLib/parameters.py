"""DLRegister's settings, defined once for the Slicer parameter node and the web panel, and the jobs they make.

``p`` below is anything with these settings as attributes: the Slicer parameter node wrapper, or the web
panel's values. Imports neither torch nor qt (the Slicer shell imports it at module level).
"""

from __future__ import annotations

from DLCommon.parameters import Parameter

VOLUME, SEGMENTATION = ("vtkMRMLScalarVolumeNode",), ("vtkMRMLSegmentationNode",)

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
    Parameter("similarity", "choice", "lncc", label="Similarity", choices=("lncc", "ssd", "mi"),
              tooltip="lncc: same modality; ssd: same intensities; mi: different modalities."),
    Parameter("fieldModel", "choice", "ddf", label="Field", choices=("ddf", "svf"),
              tooltip="ddf: dense displacement field; svf: stationary velocity field (diffeomorphic)."),
    Parameter("regularisationWeight", "float", -1.0, label="Regularisation (-1: auto)", minimum=-1.0, maximum=500.0,
              tooltip="Bending energy weight (higher is smoother); -1: the similarity's default."),
    Parameter("iterations", "int", 100, label="Iterations", minimum=0, maximum=2000,
              tooltip="Iterations at the coarsest level (finer levels use 0.8x and 0.4x); for a model, "
                      "refinement iterations (0: prediction only)."),
    Parameter("affineOnly", "bool", False, label="Affine only", tooltip="Stop after the affine stage."),
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
    Parameter("network", "choice", "localnet", label="Network", choices=("localnet", "globalnet", "regunet"),
              tooltip="MONAI LocalNet (dense), GlobalNet (affine) or RegUNet.", group="train"),
    Parameter("epochs", "int", 50, label="Epochs", minimum=1, maximum=10000, group="train"),
    Parameter("labelWeight", "float", 1.0, label="Label weight", minimum=0.0, maximum=10.0, group="train",
              tooltip="Weight of the Dice term of warped labels (0: unsupervised)."),
    Parameter("modelName", "str", "my-registration", label="Model name", group="train"),
)


def registrationConfig(p):
    """The :class:`RegistrationConfig` of these settings (a three-level pyramid)."""
    from DLRegisterLib.optimisation import RegistrationConfig

    coarse = max(p.iterations, 1)
    return RegistrationConfig(similarity=p.similarity, fieldModel=p.fieldModel,
                              regularisationWeight=None if p.regularisationWeight < 0 else p.regularisationWeight,
                              iterations=(coarse, max(1, int(0.8 * coarse)), max(1, int(0.4 * coarse))),
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
    from DLRegisterLib.trainer import RegistrationTrainingConfig

    config = RegistrationTrainingConfig(network=p.network, epochs=p.epochs, labelWeight=p.labelWeight,
                                        similarity=p.similarity)
    return logic.trainJob(list(p.trainingVolumes), list(p.trainingSegmentations) or None, config,
                          modelName=p.modelName)
