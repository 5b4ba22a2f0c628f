"""DLSynthesize's node-level API (Qt-free): synthesize volumes from volumes in the scene.

What the Slicer module's logic class exposes in the Python console::

    logic = DLSynthesizeLogic()
    result = logic.superResolve(thickSliceVolume)        # a new volume with thin slices
    frame = logic.simulateUltrasound(segmentation, probeTransform, referenceVolume=volume)
    restored = logic.synthesize(volume, "my-model")      # a trained image-to-image model applied

Every task is a :class:`~DLCommon.jobs.Job` made by a ``...Job`` method (``superResolveJob``, ``denoiseJob``,
``imageToImageJob``, ``synthesizeJob``, ``simulateUltrasoundJob``): the Slicer widget, the web panel and the
``meddl`` commands run these same jobs (one path per job).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch
import vtk

from DLCommon.selfcheck import checkOutputGeometry
from DLCommon import DLError, Job, tensorFromVolume
from DLCommon.jobs import keepHistory
from DLCommon.errors import SettingError, nodeLabel
from DLCommon.transfer import withoutNetwork
from DLCommon.resources import ResourceEstimate, fitOrSwitch
from DLCommon.geometry import affinesClose, arrayFromVTKMatrix
from DLCommon.scene import sceneTransaction
from DLCommon.scenelogic import SceneLogic
from DLCommon.segmentations import tensorFromSegmentation
from DLCommon.transforms import resampleVolume
from DLCommon.volumes import checkVolume, updateVolumeFromTensor, volumeFromTensor

from .config import (MODALITIES, PAIRED_METHODS, DenoiseConfig, ImageToImageConfig, Pix2PixConfig,
                     SuperResolutionConfig, UltrasoundConfig)
from .denoise import anomalyMap, applyDenoiser, denoise
from .estimates import (combined, estimateDenoise, estimateImageToImageApply, estimateImageToImageTraining,
                        estimateSuperResolution, estimateUltrasound)
from .imagetoimage import (ImageToImageModel, applyImageToImage, buildNetwork, imageToImageModelFrom,
                           saveImageToImageModel, trainImageToImage)
from .pix2pix import trainPix2Pix
from .qualitytransfer import applyQualityTransfer, finerGrid, trainQualityTransfer
from .superresolution import SuperResolutionResult, superResolve, throughPlaneAxis
from .ultrasound import (TISSUES, probePose, simulateSweep, simulateUltrasound, tissueMapsFromIntensity,
                         tissueMapsFromLabels)

__all__ = ["SynthesisLogic", "SynthesisResult", "probePoseFromNode"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class SynthesisResult:
    """The node a synthesis created (or overwrote), and what the engine reported.

    ``volume`` is None for a training job that only saves its model (``imageToImageJob`` without an input volume);
    ``modelPath`` / ``catalogId``: the model a training job saved (``outputDir``) / added to the catalog;
    ``history``: its training curves; ``warnings``: things to check in the result (e.g. a resampled target).
    """

    volume: object
    details: dict = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    modelPath: str | None = None
    catalogId: str | None = None
    history: object = None


def _writeOutput(tensor, outputVolume, reference, scene, name: str):
    """A new volume ``name`` (geometry from ``reference`` or the MetaTensor), or the user's ``outputVolume``
    overwritten and placed at the tensor's geometry."""
    if outputVolume is None:
        return volumeFromTensor(tensor, reference, scene, name)
    updateVolumeFromTensor(outputVolume, tensor, useTensorGeometry=True)
    return outputVolume


def _checkOutput(outputVolume, inputVolume, scene) -> None:
    if outputVolume is not None and (outputVolume is inputVolume or outputVolume.GetScene() is not scene):
        raise DLError("cannot be the output (it is the input, or in another scene)", node=outputVolume,
                      fix="pick another output volume, or let a new one be created")


def _saveModel(model: ImageToImageModel, outputDir, modelName: str, description: str,
               addToCatalog: bool) -> tuple[str | None, str | None]:
    """``(path, catalog id)`` of ``model`` saved as ``outputDir/<modelName>.ts`` (TorchScript with its spec) and
    added to the catalog if asked; under torchrun only rank 0 writes (``(None, None)`` elsewhere)."""
    from DLCommon import ModelCatalog
    from DLCommon.distributed import isMainProcess

    if outputDir is None or not isMainProcess():
        return None, None
    path = saveImageToImageModel(model, Path(outputDir) / f"{modelName}.ts", modelName, description)
    catalogId = ModelCatalog().importFile(path, modelId=modelName, title=modelName).id if addToCatalog else None
    return str(path), catalogId


def probePoseFromNode(node) -> torch.Tensor:
    """Probe-to-world 4x4 from a linear transform node or a markups node (control points in world RAS:
    1 = transducer centre, 2 = a point on the beam axis, 3 (optional) = a point in the image plane; without it
    the plane contains the beam and the superior-inferior or anterior-posterior axis)."""
    if node is not None and node.IsA("vtkMRMLTransformNode") and node.IsTransformToWorldLinear():
        matrix = vtk.vtkMatrix4x4()
        node.GetMatrixTransformToWorld(matrix)
        return torch.from_numpy(arrayFromVTKMatrix(matrix))
    if node is not None and hasattr(node, "GetNumberOfControlPoints"):
        count = node.GetNumberOfControlPoints()
        if count < 2:
            raise DLError(f"has {count} point(s); the probe needs the transducer centre and a point on the beam",
                          node=node, fix="place two points (a third point sets the image plane)")
        points = []
        for index in range(min(count, 3)):
            position = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(index, position)
            points.append(torch.tensor(position, dtype=torch.float64))
        beam = points[1] - points[0]
        if count >= 3:
            normal = torch.linalg.cross(beam, points[2] - points[0])
        else:  # a plane containing the beam and the S (or, for a vertical beam, the A) axis
            up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
            if float(torch.linalg.cross(beam, up).norm()) < 1e-6 * float(beam.norm()):
                up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
            normal = torch.linalg.cross(beam, up)
        return probePose(points[0].tolist(), points[1].tolist(), normal.tolist())
    raise DLError("is neither a linear transform nor a markups node with points", node=node or "The probe pose",
                  fix="select a linear transform that places the probe, or markups with the probe and target points")


class SynthesisLogic(SceneLogic):
    """Synthesis tasks; methods take nodes and plain values and raise :class:`DLError` on bad input."""

    def superResolveJob(self, inputVolume, config: SuperResolutionConfig | None = None, outputVolume=None) -> Job:
        """A :class:`Job` restoring the through-plane resolution of a thick-slice volume.

        Args:
            inputVolume: scalar volume with one axis of thicker slices (>= 1.5x the pixel size).
            config: :class:`SuperResolutionConfig` (training steps, factor...).
            outputVolume: a volume node to overwrite; None creates ``<input> super-resolved``.
        """
        if inputVolume is None:
            raise DLError("No input volume was selected", fix="select the thick-slice volume to super-resolve")
        checkVolume(inputVolume)
        scene = self.scene(inputVolume)
        _checkOutput(outputVolume, inputVolume, scene)
        config = config or SuperResolutionConfig()
        config.validate()
        image = tensorFromVolume(inputVolume)  # read before the job: the worker never touches the scene
        throughPlaneAxis(image.affine)  # refuse isotropic input now, not after the job started
        subject = nodeLabel(inputVolume)

        def plan():
            return fitOrSwitch(lambda device: estimateSuperResolution(image, dataclasses.replace(config, device=str(device))),
                               config.device, subject, "crop the volume, or use fewer features / a smaller patch")

        def work(context) -> SuperResolutionResult:
            return superResolve(image, dataclasses.replace(config, device=context.plan.device), progress=context.report,
                                onEpoch=keepHistory(job))

        def apply(result: SuperResolutionResult) -> SynthesisResult:
            details = {"axis": "IJK"[result.axis], "factor": result.factor,
                       "finalLoss": result.history.trainLoss[-1] if result.history else None}
            node = _writeOutput(result.image, outputVolume, None, scene, f"{inputVolume.GetName()} super-resolved")
            return SynthesisResult(volume=node, details=details)

        job = Job(work, apply, scene=scene, name=f"Super-resolve {inputVolume.GetName()}",  # work keeps its curves
                  plan=plan, transfer=withoutNetwork)
        return job

    def superResolve(self, inputVolume, config: SuperResolutionConfig | None = None, outputVolume=None,
                     progress: Progress | None = None) -> SynthesisResult:
        """Restore the through-plane resolution of ``inputVolume`` (see :meth:`superResolveJob`)."""
        return self.superResolveJob(inputVolume, config, outputVolume).run(progress)

    # --- denoising autoencoder -------------------------------------------------------------------------
    def denoiseJob(self, inputVolume, config: DenoiseConfig | None = None, outputVolume=None,
                   anomalyVolume: bool = False, outputDir: str | Path | None = None, modelName: str = "denoiser",
                   addToCatalog: bool = False) -> Job:
        """A :class:`Job` training a denoising autoencoder on ``inputVolume`` itself and denoising it; with
        ``anomalyVolume`` also the reconstruction error ``|x - AE(x)|`` as a new volume; with ``outputDir`` the
        denoiser is also saved there as ``<modelName>.ts`` (and added to the catalog with ``addToCatalog``), to be
        applied to other volumes with :meth:`synthesizeJob`."""
        if inputVolume is None:
            raise DLError("No input volume was selected", fix="select the noisy volume")
        checkVolume(inputVolume)
        scene = self.scene(inputVolume)
        config = config or DenoiseConfig()
        config.validate()
        image = tensorFromVolume(inputVolume)
        subject = nodeLabel(inputVolume)

        def plan():
            return fitOrSwitch(lambda device: estimateDenoise(image, dataclasses.replace(config, device=str(device))),
                               config.device, subject, "crop the volume, or train on fewer copies / smaller patches")

        def work(context):
            result = denoise(image, dataclasses.replace(config, device=context.plan.device), progress=context.report,
                             onEpoch=keepHistory(job))
            saved = _saveModel(result.model, outputDir, modelName,
                               f"self-supervised denoiser (noise level {result.noiseLevel:.3g})", addToCatalog)
            return result, anomalyMap(result.model, image) if anomalyVolume else None, saved

        def apply(outputs) -> SynthesisResult:
            result, anomaly, (modelPath, catalogId) = outputs
            details = {"noiseLevel": result.noiseLevel}
            if anomaly is not None:
                details["anomaly"] = volumeFromTensor(anomaly, inputVolume, scene, f"{inputVolume.GetName()} anomaly")
            node = _writeOutput(result.image, outputVolume, inputVolume, scene, f"{inputVolume.GetName()} denoised")
            checkOutputGeometry(inputVolume, node)
            return SynthesisResult(volume=node, details=details, modelPath=modelPath, catalogId=catalogId,
                                   history=result.model.history)

        job = Job(work, apply, scene=scene, name=f"Denoise {inputVolume.GetName()}",  # work keeps its curves
                  plan=plan, transfer=withoutNetwork)
        return job

    # --- paired image-to-image --------------------------------------------------------------------------
    def imageToImageJob(self, pairs, inputVolume, config: ImageToImageConfig | None = None, outputVolume=None,
                        method: str = "unet", outputDir: str | Path | None = None, modelName: str = "synthesis",
                        addToCatalog: bool = False) -> Job:
        """A :class:`Job` that trains on ``[(sourceVolume, targetVolume), ...]`` and applies the result to
        ``inputVolume``; the training history is kept on ``job.history`` for live curves.

        ``method``: ``"unet"`` (supervised U-Net, ``config`` an :class:`ImageToImageConfig`), ``"pix2pix"``
        (conditional GAN, 2D, ``config`` a :class:`~.config.Pix2PixConfig`: both players' curves) or ``"iqt"``
        (image-quality transfer: each low-resolution source is resampled onto its high-resolution target's grid,
        a residual 3D U-Net learns the detail; see :mod:`.qualitytransfer`).

        ``outputDir``: also save the trained model there as ``<modelName>.ts`` (``addToCatalog``: and add it to the
        catalog); ``inputVolume`` may then be None (train only: ``result.volume`` is None).

        For ``unet`` / ``pix2pix`` a target on another grid than its source is resampled onto the source first
        (stated in the details and the warnings).
        """
        if method not in PAIRED_METHODS:
            raise ValueError(f"method must be one of {', '.join(PAIRED_METHODS)}, got {method!r}.")
        if not pairs:
            raise DLError("No training pair was given", fix="add at least one (source, target) pair of volumes")
        if inputVolume is None and outputDir is None:
            raise DLError("No input volume was selected", fix="select the volume to translate")
        tensors, resampled = [], []
        for source, target in pairs:
            checkVolume(source)
            checkVolume(target)
            sourceTensor, targetTensor = tensorFromVolume(source), tensorFromVolume(target)
            if method != "iqt" and (sourceTensor.shape != targetTensor.shape
                                    or not affinesClose(sourceTensor.affine, targetTensor.affine, 1e-3)):
                targetTensor = resampleVolume(target, source)
                resampled.append(target.GetName())
            tensors.append((sourceTensor, targetTensor))
        warnings = [f"target '{name}' is on another grid than its source: it was resampled onto the source"
                    for name in resampled]
        image = tensorFromVolume(inputVolume) if inputVolume is not None else None
        scene = self.scene(inputVolume if inputVolume is not None else pairs[0][0])
        config = config or (Pix2PixConfig() if method == "pix2pix" else ImageToImageConfig.forDimensions(
            3 if method == "iqt" else None))
        if method == "pix2pix":  # a 2D GAN whatever was asked (as trainPix2Pix trains it): estimated as such
            config = dataclasses.replace(config, dimensions=2)
        elif method == "iqt":  # a residual U-Net (as trainQualityTransfer trains it)
            config = dataclasses.replace(config, residual=True)
        config.validate()
        train = {"unet": trainImageToImage, "pix2pix": trainPix2Pix, "iqt": trainQualityTransfer}[method]
        trainedShapes = [(t if method == "iqt" else s).shape[1:] for s, t in tensors]  # IQT trains on the targets'
        if method == "iqt" and image is not None:
            spacing = torch.linalg.norm(torch.as_tensor(tensors[0][1].affine)[:3, :3].double(), dim=0)
            appliedShape = finerGrid(image.affine, image.shape[1:], spacing.tolist())[1]
        else:
            appliedShape = image.shape[1:] if image is not None else None
        name = inputVolume.GetName() if inputVolume is not None else modelName

        def estimateOn(device) -> ResourceEstimate:
            onDevice = dataclasses.replace(config, device=str(device))
            training = estimateImageToImageTraining(trainedShapes, onDevice, f"Synthesis training ({method})")
            if method == "pix2pix":
                training.note += " (the generator; pix2pix's discriminator adds about a third)"
            if appliedShape is None:
                return training
            network = buildNetwork(config.dimensions, config.features, config.residual)
            return combined("Image-to-image", training,
                            estimateImageToImageApply(network, onDevice, appliedShape, device))

        subject = nodeLabel(inputVolume) if inputVolume is not None else nodeLabel(pairs[0][0])

        def plan():
            return fitOrSwitch(estimateOn, config.device, subject, "use smaller patches, or fewer features")

        def work(context):
            share = 0.9 if image is not None else 1.0
            model = train(tensors, dataclasses.replace(config, device=context.plan.device),
                          progress=lambda f, m: context.report(share * f, m), onEpoch=keepHistory(job))
            saved = _saveModel(model, outputDir, modelName, f"{method} trained by MedDL on {len(tensors)} pair(s)",
                               addToCatalog)
            if image is None:
                return model, None, saved
            output = applyQualityTransfer(model, image) if method == "iqt" else applyImageToImage(model, image)
            return model, output, saved

        def apply(result) -> SynthesisResult:
            model, output, (modelPath, catalogId) = result
            details = {"resampledTargets": resampled, "finalLoss": model.history.trainLoss[-1]}
            node = None
            if output is not None:  # IQT's output is on a finer grid: placed by its own geometry
                node = _writeOutput(output, outputVolume, None if method == "iqt" else inputVolume, scene,
                                    f"{inputVolume.GetName()} synthesized")
                if method != "iqt":
                    checkOutputGeometry(inputVolume, node)
            return SynthesisResult(volume=node, details=details, warnings=list(warnings), modelPath=modelPath,
                                   catalogId=catalogId, history=model.history)

        job = Job(work, apply, scene=scene, name=f"Image-to-image {name}", plan=plan, transfer=withoutNetwork)
        return job

    # --- a trained model applied -----------------------------------------------------------------------
    def synthesizeJob(self, inputVolume, model, outputVolume=None, device: str = "auto") -> Job:
        """A :class:`Job` applying a trained synthesis model (``meddl train-synthesis``, or a job's ``outputDir``)
        to ``inputVolume``: an image-to-image U-Net or pix2pix generator (output on the input's grid), a denoiser
        (the mean over its re-corrupted draws) or an image-quality-transfer model (output on a grid with the
        training targets' voxel size over the same field of view).

        Args:
            inputVolume: scalar volume.
            model: catalog id, model file, :class:`~DLCommon.models.LoadedModel` or
                :class:`~.imagetoimage.ImageToImageModel` (its network is moved to the run's device).
            outputVolume: a volume node to overwrite; None creates ``<input> synthesized``.
            device: ``"auto"`` or a torch device name (a run that does not fit moves to the CPU).
        """
        from DLCommon.catalog import resolveModel

        if inputVolume is None:
            raise DLError("No input volume was selected", fix="select the volume to apply the model to")
        checkVolume(inputVolume)
        scene = self.scene(inputVolume)
        _checkOutput(outputVolume, inputVolume, scene)
        trained = model if isinstance(model, ImageToImageModel) else imageToImageModelFrom(
            resolveModel(model, task="synthesis"))
        image = tensorFromVolume(inputVolume)
        denoiser, transfer = trained.options.get("denoise"), trained.options.get("qualityTransfer")
        shape = list(image.shape[1:])
        if transfer:
            shape = list(finerGrid(image.affine, shape, transfer["spacing"])[1])
        passes = int(denoiser["draws"]) if denoiser else 1
        subject = nodeLabel(inputVolume)

        def plan():
            return fitOrSwitch(lambda onDevice: estimateImageToImageApply(trained.network, trained.config, shape,
                                                                          onDevice, passes),
                               device, subject, "crop the volume, or run it on another machine")

        def work(context):
            trained.network.to(context.plan.device)
            if denoiser:
                return applyDenoiser(trained, image, progress=context.report)
            if transfer:
                return applyQualityTransfer(trained, image, progress=context.report)
            return applyImageToImage(trained, image, progress=context.report)

        def apply(output) -> SynthesisResult:
            node = _writeOutput(output, outputVolume, None if transfer else inputVolume, scene,
                                f"{inputVolume.GetName()} synthesized")
            if not transfer:
                checkOutputGeometry(inputVolume, node)
            kind = "denoiser" if denoiser else "quality transfer" if transfer else "image-to-image"
            return SynthesisResult(volume=node, details={"model": kind})

        return Job(work, apply, scene=scene, name=f"Synthesize {inputVolume.GetName()}", plan=plan)

    def synthesize(self, inputVolume, model, outputVolume=None, device: str = "auto",
                   progress: Progress | None = None) -> SynthesisResult:
        """Apply a trained synthesis model to ``inputVolume`` (see :meth:`synthesizeJob`)."""
        return self.synthesizeJob(inputVolume, model, outputVolume, device).run(progress)

    # --- ultrasound simulation -------------------------------------------------------------------------
    def simulateUltrasoundJob(self, source, probeTransform, referenceVolume=None,
                              config: UltrasoundConfig | None = None, modality: str = "mr", outputVolume=None) -> Job:
        """A :class:`Job` simulating a B-mode frame in the plane of ``probeTransform`` (see :mod:`.ultrasound`);
        a frame takes about a second, so the panels run it at once (:meth:`Job.run`).

        Args:
            source: a segmentation (tissue from segment names: ``TISSUES`` keys such as "bone", "fat",
                "white matter"; others soft tissue), a labelmap volume (0 background, others soft tissue) or a
                CT / MR scalar volume (``modality``: one of ``MODALITIES``).
            probeTransform: the probe pose: a linear transform (its to-world matrix: +Y = beam direction,
                +X = lateral, origin = transducer centre) or a markups node with the transducer centre, a point
                on the beam and optionally a third point in the image plane (see :func:`probePoseFromNode`).
            referenceVolume: the grid a segmentation is rasterised on (default: the source's own grid).
            config: :class:`UltrasoundConfig`.
            outputVolume: a volume node to overwrite; None creates ``Simulated ultrasound``.
        """
        config = config or UltrasoundConfig()
        config.validate()
        if modality not in MODALITIES:
            raise SettingError("modality", modality, f"one of {', '.join(MODALITIES)}")
        makeMaps, affine, shape = self._tissueSource(source, referenceVolume, modality)  # reads the nodes now
        pose = probePoseFromNode(probeTransform)
        scene = self.scene(source)
        probeName = probeTransform.GetName()

        def work(context):
            context.report(0.0, "ultrasound: tissue properties")
            maps = makeMaps()
            context.report(0.5, "ultrasound: beams, speckle, echoes")
            return simulateUltrasound(maps, affine, pose, config)

        def apply(frame) -> SynthesisResult:
            node = _writeOutput(frame, outputVolume, None, scene, "Simulated ultrasound")
            return SynthesisResult(volume=node, details={"probe": probeName})

        # the plan (memory) is cheap; the Estimate buttons and --dry-run also time a frame on a small phantom
        return Job(work, apply, scene=scene, name="Simulate ultrasound",
                   plan=lambda: estimateUltrasound(shape, config, measure=False),
                   estimate=lambda: estimateUltrasound(shape, config))

    def simulateUltrasound(self, source, probeTransform, referenceVolume=None,
                           config: UltrasoundConfig | None = None, modality: str = "mr", outputVolume=None,
                           progress: Progress | None = None) -> SynthesisResult:
        """A B-mode frame in the plane of ``probeTransform`` (see :meth:`simulateUltrasoundJob`)."""
        return self.simulateUltrasoundJob(source, probeTransform, referenceVolume, config, modality,
                                          outputVolume).run(progress)

    def simulateSweep(self, source, probePoses, referenceVolume=None, config: UltrasoundConfig | None = None,
                      modality: str = "mr") -> SynthesisResult:
        """Frames along a sweep: ``probePoses`` is a list of probe nodes (transforms / markups, in sweep order).

        Parallel, evenly spaced poses (a probe slid across the skin) give one stacked volume
        (``result.volume``); a free-hand sweep gives one volume per frame, each in its own plane
        (``result.details["frames"]``). All nodes are added together, or none.
        """
        poses = [probePoseFromNode(node) for node in probePoses or []]
        if len(poses) < 2:
            raise DLError(f"has {len(poses)} pose(s)", node="The sweep", fix="give at least two probe poses")
        makeMaps, affine, _ = self._tissueSource(source, referenceVolume, modality)
        maps = makeMaps()
        config = config or UltrasoundConfig()
        scene = self.scene(source)
        try:
            stack = simulateSweep(maps, affine, poses, config)
        except DLError:  # not a parallel sweep: free-hand frames
            frames = [simulateUltrasound(maps, affine, pose, dataclasses.replace(config, seed=config.seed + index))
                      for index, pose in enumerate(poses)]
            with sceneTransaction(scene):
                nodes = [volumeFromTensor(frame, None, scene, f"Simulated ultrasound {index + 1}")
                         for index, frame in enumerate(frames)]
            return SynthesisResult(volume=None, details={"frames": nodes, "freehand": True})
        node = volumeFromTensor(stack, None, scene, "Simulated ultrasound sweep")
        return SynthesisResult(volume=node, details={"frames": [], "freehand": False})

    def _tissueSource(self, source, referenceVolume, modality: str):
        """``(makeMaps, affine, shape)`` of a segmentation, labelmap or scalar volume: the voxels are read now (the
        prepare phase), ``makeMaps() -> (3, I, J, K)`` tissue maps computes (the work) without reading a node."""
        if source is None:
            raise DLError("No tissue source was selected", fix="select a segmentation, labelmap or CT / MR volume")
        if source.IsA("vtkMRMLSegmentationNode"):
            reference = referenceVolume
            if reference is None:
                raise DLError("needs a reference volume to be rasterised on", node=source,
                              fix="select the volume the segmentation was drawn on")
            labels, names, _ = tensorFromSegmentation(source, reference)
            tissues = {0: TISSUES["background"]}
            for index, name in enumerate(names, start=1):
                tissues[index] = TISSUES.get(name.strip().lower(), TISSUES["soft tissue"])
            return (lambda: tissueMapsFromLabels(labels, tissues)), tensorFromVolume(reference).affine, \
                tuple(labels.shape[-3:])
        checkVolume(source)
        image = tensorFromVolume(source)
        if source.IsA("vtkMRMLLabelMapVolumeNode"):
            return (lambda: tissueMapsFromLabels(image[0].round().long(), {0: TISSUES["background"]})), \
                image.affine, tuple(image.shape[1:])
        return (lambda: tissueMapsFromIntensity(image[0], modality)), image.affine, tuple(image.shape[1:])
