"""DLSynthesize's node-level API (Qt-free): synthesize volumes from volumes in the scene.

What the Slicer module's logic class exposes in the Python console::

    logic = DLSynthesizeLogic()
    result = logic.superResolve(thickSliceVolume)        # a new volume with thin slices
    frame = logic.simulateUltrasound(segmentation, probeTransform, referenceVolume=volume)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import vtk

from DLCommon.selfcheck import checkOutputGeometry
from DLCommon import DLError, Job, tensorFromVolume
from DLCommon.jobs import keepHistory
from DLCommon.errors import nodeLabel
from DLCommon.transfer import withoutNetwork
from DLCommon.resources import ResourceEstimate, fitOrSwitch
from DLCommon.geometry import affinesClose, arrayFromVTKMatrix
from DLCommon.scene import sceneTransaction
from DLCommon.scenelogic import SceneLogic
from DLCommon.segmentations import tensorFromSegmentation
from DLCommon.transforms import resampleVolume
from DLCommon.volumes import checkVolume, updateVolumeFromTensor, volumeFromTensor

from .denoise import DenoiseConfig, anomalyMap, denoise
from .estimates import (combined, estimateDenoise, estimateImageToImageApply, estimateImageToImageTraining,
                        estimateSuperResolution)
from .imagetoimage import ImageToImageConfig, applyImageToImage, buildNetwork, trainImageToImage
from .pix2pix import Pix2PixConfig, trainPix2Pix
from .superresolution import SuperResolutionConfig, SuperResolutionResult, superResolve, throughPlaneAxis
from .ultrasound import (TISSUES, UltrasoundConfig, probePose, simulateSweep, simulateUltrasound,
                         tissueMapsFromIntensity, tissueMapsFromLabels)

__all__ = ["SynthesisLogic", "SynthesisResult", "probePoseFromNode"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class SynthesisResult:
    """The node a synthesis created (or overwrote), and what the engine reported."""

    volume: object
    details: dict = dataclasses.field(default_factory=dict)


def _writeOutput(tensor, outputVolume, reference, scene, name: str):
    """A new volume ``name`` (geometry from ``reference`` or the MetaTensor), or the user's ``outputVolume``
    overwritten and placed at the tensor's geometry."""
    if outputVolume is None:
        return volumeFromTensor(tensor, reference, scene, name)
    updateVolumeFromTensor(outputVolume, tensor, useTensorGeometry=True)
    return outputVolume


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
        if outputVolume is not None and (outputVolume is inputVolume or outputVolume.GetScene() is not scene):
            raise DLError("cannot be the output (it is the input, or in another scene)", node=outputVolume,
                          fix="pick another output volume, or let a new one be created")
        image = tensorFromVolume(inputVolume)  # read before the job: the worker never touches the scene
        config = config or SuperResolutionConfig()
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
                   anomalyVolume: bool = False) -> Job:
        """A :class:`Job` training a denoising autoencoder on ``inputVolume`` itself and denoising it; with
        ``anomalyVolume`` also the reconstruction error ``|x - AE(x)|`` as a new volume."""
        if inputVolume is None:
            raise DLError("No input volume was selected", fix="select the noisy volume")
        checkVolume(inputVolume)
        scene = self.scene(inputVolume)
        image = tensorFromVolume(inputVolume)
        config = config or DenoiseConfig()
        subject = nodeLabel(inputVolume)

        def plan():
            return fitOrSwitch(lambda device: estimateDenoise(image, dataclasses.replace(config, device=str(device))),
                               config.device, subject, "crop the volume, or train on fewer copies / smaller patches")

        def work(context):
            result = denoise(image, dataclasses.replace(config, device=context.plan.device), progress=context.report,
                             onEpoch=keepHistory(job))
            return result, anomalyMap(result.model, image) if anomalyVolume else None

        def apply(outputs) -> SynthesisResult:
            result, anomaly = outputs
            details = {"noiseLevel": result.noiseLevel}
            if anomaly is not None:
                details["anomaly"] = volumeFromTensor(anomaly, inputVolume, scene, f"{inputVolume.GetName()} anomaly")
            node = _writeOutput(result.image, outputVolume, inputVolume, scene, f"{inputVolume.GetName()} denoised")
            checkOutputGeometry(inputVolume, node)
            return SynthesisResult(volume=node, details=details)

        job = Job(work, apply, scene=scene, name=f"Denoise {inputVolume.GetName()}",  # work keeps its curves
                  plan=plan, transfer=withoutNetwork)
        return job

    # --- paired image-to-image --------------------------------------------------------------------------
    def imageToImageJob(self, pairs, inputVolume, config: ImageToImageConfig | None = None, outputVolume=None,
                        method: str = "unet") -> Job:
        """A :class:`Job` that trains on ``[(sourceVolume, targetVolume), ...]`` and applies the result to
        ``inputVolume``; the training history is kept on ``job.history`` for live curves.

        ``method``: ``"unet"`` (supervised U-Net, ``config`` an :class:`ImageToImageConfig`) or ``"pix2pix"``
        (conditional GAN, ``config`` a :class:`~.pix2pix.Pix2PixConfig`: both players' curves).

        A target on another grid than its source is resampled onto the source first (stated in the details).
        """
        if method not in ("unet", "pix2pix"):
            raise ValueError(f"method must be 'unet' or 'pix2pix', got {method!r}.")
        if not pairs:
            raise DLError("No training pair was given", fix="add at least one (source, target) pair of volumes")
        if inputVolume is None:
            raise DLError("No input volume was selected", fix="select the volume to translate")
        tensors, resampled = [], []
        for source, target in pairs:
            checkVolume(source)
            checkVolume(target)
            sourceTensor, targetTensor = tensorFromVolume(source), tensorFromVolume(target)
            if sourceTensor.shape != targetTensor.shape or not affinesClose(sourceTensor.affine, targetTensor.affine,
                                                                            1e-3):
                targetTensor = resampleVolume(target, source)
                resampled.append(target.GetName())
            tensors.append((sourceTensor, targetTensor))
        image = tensorFromVolume(inputVolume)
        scene = self.scene(inputVolume)
        config = config or (ImageToImageConfig() if method == "unet" else Pix2PixConfig())
        train = trainImageToImage if method == "unet" else trainPix2Pix

        def estimateOn(device) -> ResourceEstimate:
            onDevice = dataclasses.replace(config, device=str(device))
            training = estimateImageToImageTraining([s.shape[1:] for s, _ in tensors], onDevice)
            if method == "pix2pix":
                training.note += " (the generator; pix2pix's discriminator adds about a third)"
            network = buildNetwork(config.dimensions, config.features, config.residual)
            return combined("Image-to-image", training,
                            estimateImageToImageApply(network, onDevice, image.shape[1:], device))

        subject = nodeLabel(inputVolume)

        def plan():
            return fitOrSwitch(estimateOn, config.device, subject, "use smaller patches, or fewer features")

        def work(context):
            model = train(tensors, dataclasses.replace(config, device=context.plan.device),
                          progress=lambda f, m: context.report(0.9 * f, m), onEpoch=keepHistory(job))
            return model, applyImageToImage(model, image)

        def apply(result) -> SynthesisResult:
            model, output = result
            details = {"resampledTargets": resampled, "finalLoss": model.history.trainLoss[-1]}
            node = _writeOutput(output, outputVolume, inputVolume, scene, f"{inputVolume.GetName()} synthesized")
            checkOutputGeometry(inputVolume, node)
            return SynthesisResult(volume=node, details=details)

        job = Job(work, apply, scene=scene, name=f"Image-to-image {inputVolume.GetName()}", plan=plan,
                  transfer=withoutNetwork)
        return job

    # --- ultrasound simulation -------------------------------------------------------------------------
    def simulateUltrasound(self, source, probeTransform, referenceVolume=None,
                           config: UltrasoundConfig | None = None, modality: str = "mr", outputVolume=None
                           ) -> SynthesisResult:
        """A B-mode frame in the plane of ``probeTransform`` (see :mod:`.ultrasound`).

        Args:
            source: a segmentation (tissue from segment names: ``TISSUES`` keys such as "bone", "fat",
                "white matter"; others soft tissue), a labelmap volume (0 background, others soft tissue) or a
                CT / MR scalar volume (``modality``).
            probeTransform: the probe pose: a linear transform (its to-world matrix: +Y = beam direction,
                +X = lateral, origin = transducer centre) or a markups node with the transducer centre, a point
                on the beam and optionally a third point in the image plane (see :func:`probePoseFromNode`).
            referenceVolume: the grid a segmentation is rasterised on (default: the source's own grid).
            config: :class:`UltrasoundConfig`.
            outputVolume: a volume node to overwrite; None creates ``Simulated ultrasound``.
        """
        maps, affine = self._tissueMaps(source, referenceVolume, modality)
        pose = probePoseFromNode(probeTransform)
        frame = simulateUltrasound(maps, affine, pose, config)
        scene = self.scene(source)
        node = _writeOutput(frame, outputVolume, None, scene, "Simulated ultrasound")
        return SynthesisResult(volume=node, details={"probe": probeTransform.GetName()})

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
        maps, affine = self._tissueMaps(source, referenceVolume, modality)
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

    def _tissueMaps(self, source, referenceVolume, modality: str):
        """``(maps (3, I, J, K), affine)`` for a segmentation, labelmap or scalar volume."""
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
            return tissueMapsFromLabels(labels, tissues), tensorFromVolume(reference).affine
        checkVolume(source)
        image = tensorFromVolume(source)
        if source.IsA("vtkMRMLLabelMapVolumeNode"):
            return tissueMapsFromLabels(image[0].round().long(), {0: TISSUES["background"]}), image.affine
        return tissueMapsFromIntensity(image[0], modality), image.affine
