"""DLRegister's node-level API (Qt-free): register two volumes in the scene, warp volumes and segmentations.

What the Slicer module's logic class exposes in the Python console::

    logic = DLRegisterLogic()
    result = logic.register(fixedVolume, movingVolume)                  # affine + deformable, LNCC
    result.transform        # vtkMRMLGridTransformNode: put movingVolume under it to see it aligned
    result.report           # similarity before / after, seconds, folding %

Direction convention (Slicer's): the output transform's *from parent* transform maps a fixed-space point
``x`` to the moving-space point ``x + d(x)``; Slicer resamples a transformed volume that way, so a moving
volume (or segmentation) placed under the transform node is displayed aligned with the fixed volume, and a
point ``y`` of the moving image is shown at the ``x`` with ``x + d(x) = y`` (the *to parent* direction).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import torch
import vtk
from monai.data import MetaTensor

from DLCommon.selfcheck import checkOutputGeometry
from DLCommon import DLError, Job, pickDevice, tensorFromVolume
from DLCommon.jobs import keepHistory
from DLCommon.transfer import withoutNetwork
from DLCommon.errors import nodeLabel
from DLCommon.resources import fitOrSwitch
from DLCommon.scenelogic import SceneLogic
from DLCommon.catalog import defaultCacheDir, resolveModel
from DLCommon.geometry import arrayFromVTKMatrix
from DLCommon.segmentations import segmentationFromTensor, tensorFromSegmentation
from DLCommon.transforms import (displacementFromTransform, gridTransformFromDisplacement, resampleVolume,
                                 updateGridTransformFromDisplacement)
from DLCommon.volumes import checkVolume, updateVolumeFromTensor, volumeFromTensor

from .config import RegistrationConfig, RegistrationTrainingConfig
from .network import predictDisplacement
from .optimisation import RegistrationResult, checkImage, estimateRegistration, registerImages
from .trainer import RegistrationTrainingResult, estimateRegistrationTraining, trainRegistrationModel
from .quality import jacobianDeterminant
from .warping import denseDisplacement, warpImage, warpLabels

__all__ = ["RegistrationLogic", "RegisterResult", "formatReport"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class RegisterResult:
    """Nodes created or updated by :meth:`RegistrationLogic.register`, and the run's report."""

    transform: object
    warpedVolume: object = None
    warpedSegmentation: object = None
    jacobian: object = None
    report: dict = dataclasses.field(default_factory=dict)
    engineResult: RegistrationResult | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. a folding transform


# above this share of folded voxels (Jacobian determinant <= 0) a transform is not physical: the result warns
FOLDING_WARNING_PERCENT = 1.0


def resultWarnings(report: dict) -> list[str]:
    """What to check in a registration's result (from its report), e.g. a transform that folds."""
    warnings = []
    if report.get("foldingPercent", 0.0) > FOLDING_WARNING_PERCENT:
        warnings.append(f"the transform folds {report['foldingPercent']:.2f}% of the voxels (Jacobian determinant "
                        f"<= 0): raise the regularisation weight, or use the svf field (diffeomorphic)")
    return warnings


def maskFromNode(node, referenceVolume, what: str) -> torch.Tensor | None:
    """A ``(1, I, J, K)`` mask on ``referenceVolume``'s grid from a segmentation or a (labelmap) volume."""
    if node is None:
        return None
    if node.IsA("vtkMRMLSegmentationNode"):
        labels = tensorFromSegmentation(node, referenceVolume)[0]
        mask = (labels > 0)[None]
    elif node.IsA("vtkMRMLVolumeNode"):
        mask = resampleVolume(node, referenceVolume, interpolation="nearest").as_tensor()[:1] != 0
    else:
        raise DLError("is neither a segmentation nor a volume", node=node, fix=f"select a mask for {what}")
    if not bool(mask.any()):
        raise DLError(f"is empty on the grid of '{referenceVolume.GetName()}'", node=node,
                      fix=f"paint the region of {what} to use, check that it overlaps the volume, or clear it")
    return mask


def labelsFromNode(node, referenceVolume) -> tuple[torch.Tensor, list[str], list]:
    """``(labels (I, J, K), names, colors)`` of a segmentation or labelmap volume on ``referenceVolume``'s grid."""
    if node.IsA("vtkMRMLSegmentationNode"):
        if node.GetSegmentation().GetNumberOfSegments() == 0:
            raise DLError("has no segments", node=node, fix="select a segmentation with segments to warp")
        return tensorFromSegmentation(node, referenceVolume)
    if node.IsA("vtkMRMLVolumeNode"):
        labels = resampleVolume(node, referenceVolume, interpolation="nearest").as_tensor()[0].round().long()
        values = [int(v) for v in torch.unique(labels) if v > 0]
        remapped = torch.zeros_like(labels)
        for index, value in enumerate(values, start=1):
            remapped[labels == value] = index
        return remapped, [f"label {v}" for v in values], None
    raise DLError("is neither a segmentation nor a labelmap volume", node=node, fix="select labels to warp")


def _initialTransform(transformNode, fixedVolume):
    """``(affine 4x4 or None, displacement or None)``: the fixed -> moving start from any MRML transform."""
    if transformNode is None:
        return None, None
    if not transformNode.IsA("vtkMRMLTransformNode"):
        raise DLError("is not a transform", node=transformNode, fix="select a transform node as initial transform")
    if transformNode.IsTransformToWorldLinear():
        matrix = vtk.vtkMatrix4x4()
        transformNode.GetMatrixTransformFromWorld(matrix)
        return torch.from_numpy(arrayFromVTKMatrix(matrix)), None
    return None, displacementFromTransform(transformNode, fixedVolume)


def _onFixedGrid(tensor, fixed):
    """``tensor`` as a MetaTensor on the fixed volume's grid (so an output node gets that geometry)."""
    return MetaTensor(tensor, affine=fixed.affine.clone())


class RegistrationLogic(SceneLogic):
    """Register volumes; methods take nodes and plain values and raise :class:`DLError` on bad input."""

    def registerJob(self, fixedVolume, movingVolume, config: RegistrationConfig | None = None,
                    fixedMask=None, movingMask=None, initialTransform=None, fixedLabels=None, movingLabels=None,
                    outputTransform=None, warpedVolume: bool | object = True, warpSegmentation=None,
                    jacobianVolume: bool | object = False, applyToMoving: bool = False, model=None) -> Job:
        """A :class:`Job` registering ``movingVolume`` to ``fixedVolume``; its ``apply`` creates the outputs.

        Args:
            fixedVolume, movingVolume: scalar volumes, any geometry.
            config: :class:`RegistrationConfig` (similarity, stages, field model, weights, iterations).
            fixedMask, movingMask: segmentation or labelmap nodes limiting where similarity is measured.
            initialTransform: any transform node mapping fixed space to moving space (linear: the affine
                start; non-linear: a start displacement).
            fixedLabels, movingLabels: segmentations (same segment names) or labelmaps: adds the Dice term
                (label-driven / weakly supervised registration).
            outputTransform: a transform node to overwrite; None creates a grid transform node.
            warpedVolume: True creates the warped moving volume on the fixed grid; a volume node is
                overwritten; False skips it.
            warpSegmentation: a segmentation (or labelmap) on the moving image to warp onto the fixed grid
                (atlas-based segmentation); the result is a new segmentation node.
            jacobianVolume: True creates the Jacobian-determinant volume (a volume node is overwritten).
            applyToMoving: put the moving volume (the top of its transform chain) under the result.
            model: a trained registration model (catalog id, file or LoadedModel): its one-pass prediction
                replaces the affine stage and starts the deformable stage (``config.deformable=False``:
                the prediction alone).
        """
        for node, what in ((fixedVolume, "fixed"), (movingVolume, "moving")):
            if node is None:
                raise DLError(f"No {what} volume was selected", fix=f"select the {what} volume")
            checkVolume(node)
        if fixedVolume is movingVolume:
            raise DLError("is both the fixed and the moving volume", node=fixedVolume, fix="select two volumes")
        scene = self.scene(fixedVolume)
        for node in (outputTransform, warpedVolume, jacobianVolume):
            if hasattr(node, "GetScene") and node.GetScene() is not scene:
                raise DLError("is not in the fixed volume's scene", node=node, fix="pick another output node")
        config = config or RegistrationConfig()
        config.validate()  # a setting out of range is refused now, not in the job
        # read every input before the job: the worker never touches the scene
        fixed, moving = tensorFromVolume(fixedVolume), tensorFromVolume(movingVolume)
        checkImage(fixed, f"The fixed volume '{fixedVolume.GetName()}'")  # refused now, with its name, not in the job
        checkImage(moving, f"The moving volume '{movingVolume.GetName()}'")
        masks = maskFromNode(fixedMask, fixedVolume, "the fixed volume"), maskFromNode(movingMask, movingVolume,
                                                                                       "the moving volume")
        initialAffine, initialDisplacement = _initialTransform(initialTransform, fixedVolume)
        labels = (None, None)
        if fixedLabels is not None and movingLabels is not None:
            fixedLabelMap, fixedNames, _ = labelsFromNode(fixedLabels, fixedVolume)
            movingLabelMap, movingNames, _ = labelsFromNode(movingLabels, movingVolume)
            if fixedLabels.IsA("vtkMRMLSegmentationNode") and fixedNames != movingNames:
                raise DLError(f"has segments {movingNames}, the fixed labels have {fixedNames}", node=movingLabels,
                              fix="use the same segment names in the same order for both")
            labels = fixedLabelMap, movingLabelMap
        toWarp = labelsFromNode(warpSegmentation, movingVolume) if warpSegmentation is not None else None
        loaded = resolveModel(model, task="registration") if model is not None else None

        subject = nodeLabel(movingVolume)

        def plan():  # refused (or moved to the CPU) before anything large is allocated
            return fitOrSwitch(lambda device: estimateRegistration(fixed, moving, config, device), config.device,
                               subject, "register on a coarser working grid (config.spacing / maxVoxels) or on a "
                                        "machine with more memory")

        def estimate():  # the time too, measured by a short real run: only for the Estimate buttons
            return estimateRegistration(fixed, moving, config, plan().device, timed=True)

        def work(context) -> dict:
            runConfig = dataclasses.replace(config, device=context.plan.device)  # the plan's, not the timed estimate
            start, base = initialAffine, initialDisplacement
            if loaded is not None:
                context.report(0.0, f"registration: predicting with {loaded.spec.name}")
                start, base = predictDisplacement(loaded.network, fixed, moving, loaded.spec.roiSize, initialAffine,
                                                  device=pickDevice(runConfig.device))
                runConfig = dataclasses.replace(runConfig, affine=False)
            result = registerImages(fixed, moving, runConfig, masks[0], masks[1], labels[0], labels[1], start, base,
                                    progress=lambda f, m: context.report(0.95 * f, m))
            if loaded is not None:
                result.report["model"] = loaded.spec.name
            context.report(0.96, "registration: warping outputs")
            dense = denseDisplacement(result.displacement, fixed.affine, fixed.shape[1:])
            outputs = {"result": result}
            if warpedVolume is not False:
                outputs["warped"] = warpImage(moving, dense)
            if toWarp is not None:
                outputs["warpedLabels"] = warpLabels(toWarp[0], moving.affine, dense)
            if jacobianVolume is not False:
                outputs["jacobian"] = jacobianDeterminant(dense, dense.affine)[None]
            return outputs

        def apply(outputs: dict) -> RegisterResult:
            result = outputs["result"]
            baseName = f"{movingVolume.GetName()} to {fixedVolume.GetName()}"
            out = RegisterResult(transform=None, report=dict(result.report), engineResult=result,
                                 warnings=resultWarnings(result.report))
            # new nodes first, the user's nodes last: a failure cannot leave them half-written
            if "warpedLabels" in outputs:
                names, colors = toWarp[1], toWarp[2]
                out.warpedSegmentation = segmentationFromTensor(outputs["warpedLabels"], fixedVolume, scene, names,
                                                                colors, nodeName=f"{baseName} segmentation")
            if outputTransform is None:
                out.transform = gridTransformFromDisplacement(result.displacement, None, scene, f"{baseName} transform")
            if "warped" in outputs and warpedVolume is True:
                out.warpedVolume = volumeFromTensor(outputs["warped"], fixedVolume, scene, f"{baseName} warped")
            if "jacobian" in outputs and jacobianVolume is True:
                out.jacobian = volumeFromTensor(outputs["jacobian"], fixedVolume, scene, f"{baseName} Jacobian")
            if outputTransform is not None:
                updateGridTransformFromDisplacement(outputTransform, result.displacement)
                out.transform = outputTransform
            if "warped" in outputs and warpedVolume is not True:
                updateVolumeFromTensor(warpedVolume, outputs["warped"], useTensorGeometry=True)
                out.warpedVolume = warpedVolume
            if "jacobian" in outputs and jacobianVolume is not True:
                updateVolumeFromTensor(jacobianVolume, _onFixedGrid(outputs["jacobian"], fixed),
                                       useTensorGeometry=True)
                out.jacobian = jacobianVolume
            for node in (out.warpedVolume, out.jacobian, out.warpedSegmentation):
                if node is not None:  # every image output lies on the fixed volume's grid
                    checkOutputGeometry(fixedVolume, node)
            if applyToMoving:
                top = movingVolume
                while top.GetParentTransformNode() is not None and top.GetParentTransformNode() is not out.transform:
                    top = top.GetParentTransformNode()
                top.SetAndObserveTransformNodeID(out.transform.GetID())
            return out

        job = Job(work, apply, scene=scene, name=f"Register {movingVolume.GetName()}", plan=plan, estimate=estimate)
        return job

    def register(self, fixedVolume, movingVolume, config: RegistrationConfig | None = None, *,
                 progress: Progress | None = None, **options) -> RegisterResult:
        """Register ``movingVolume`` to ``fixedVolume``; see :meth:`registerJob` for the options."""
        return self.registerJob(fixedVolume, movingVolume, config, **options).run(progress)

    # --- training ----------------------------------------------------------------------------------------
    def trainJob(self, volumes: Sequence, segmentations: Sequence | None = None,
                 config: RegistrationTrainingConfig | None = None, modelName: str = "registration",
                 outputDir: str | Path | None = None, addToCatalog: bool = True) -> Job:
        """A :class:`Job` training a registration network on all ordered pairs of ``volumes``; it adds no node.

        ``segmentations`` (one per volume, same segment names; or labelmap volumes) make the training
        label-driven. The model is saved in ``outputDir`` (default: the cache's ``trained/<modelName>``) and, with
        ``addToCatalog``, added to the model catalog as ``modelName`` (the panel's default; ``meddl
        train-register`` adds it only with ``--add-to-catalog``).
        """
        volumes = list(volumes or [])
        if len(volumes) < 2:
            raise DLError(f"got {len(volumes)} volume(s); training needs at least two", node="Training volumes",
                          fix="add more volumes of the same kind (pairs are formed between them)")
        for node in volumes:
            checkVolume(node)
        images = [tensorFromVolume(v) for v in volumes]
        labels = None
        if segmentations:
            if len(segmentations) != len(volumes):
                raise DLError(f"got {len(segmentations)} segmentations for {len(volumes)} volumes",
                              node="Training segmentations", fix="give one segmentation per volume, or none")
            read = [labelsFromNode(s, v) for s, v in zip(segmentations, volumes)]
            for (_, names, _), node in zip(read, segmentations):
                if names != read[0][1]:
                    raise DLError(f"has segments {names}, the first has {read[0][1]}", node=node,
                                  fix="use the same segment names in the same order")
            labels = [r[0] for r in read]
        config = config or RegistrationTrainingConfig()
        config.validate()
        subject = nodeLabel(volumes[0])
        directory = Path(outputDir) if outputDir else defaultCacheDir() / "trained" / modelName

        def plan():
            return fitOrSwitch(lambda device: estimateRegistrationTraining(
                images, dataclasses.replace(config, device=str(device))), config.device, subject,
                "train on a smaller network grid (config.shape) or batch, or on a machine with more memory")

        def work(context) -> RegistrationTrainingResult:
            return trainRegistrationModel(images, dataclasses.replace(config, device=context.plan.device), directory,
                                          modelName, labels=labels, addToCatalog=addToCatalog, progress=context.report,
                                          onEpoch=keepHistory(job))

        job = Job(work, None, name=f"Train {modelName}", plan=plan, transfer=withoutNetwork)
        return job

    def train(self, volumes: Sequence, segmentations: Sequence | None = None,
              config: RegistrationTrainingConfig | None = None, modelName: str = "registration",
              outputDir: str | Path | None = None, addToCatalog: bool = True,
              progress: Progress | None = None) -> RegistrationTrainingResult:
        """Train a registration network on the volumes (see :meth:`trainJob`)."""
        return self.trainJob(volumes, segmentations, config, modelName, outputDir, addToCatalog).run(progress)


def formatReport(report: dict) -> str:
    """One line per fact of a registration report, for the widget and the web panel."""
    name = report.get("similarity", "similarity")
    lines = [f"{name}: {report['before']:.3f} before, {report['afterAffine']:.3f} after affine, "
             f"{report['after']:.3f} after",
             f"Folding: {report['foldingPercent']:.3f}% of voxels (min Jacobian {report['minJacobian']:.2f})",
             f"Time: {report['seconds']:.1f} s on {report['device']}"]
    if "model" in report:
        lines.append(f"Model: {report['model']}")
    return "\n".join(lines)
