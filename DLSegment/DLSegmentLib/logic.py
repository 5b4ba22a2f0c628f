"""DLSegment's node-level API (Qt-free): segment a volume, train from segmentations in the scene.

This is what the Slicer module's logic class exposes in the Python console::

    logic = DLSegmentLogic()
    result = logic.segment(volumeNode, "brain-tissue")            # catalog id, file path or LoadedModel
    model = logic.train([(volumeNode, segmentationNode)], SegmentationTrainingConfig(epochs=20),
                        modelName="my-model")

Long work is also available as :class:`DLCommon.Job` objects (``segmentJob`` / ``trainJob``) that read
their inputs first, compute without touching the scene, and add nodes only on success.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from DLCommon.errors import nodeLabel
from DLCommon import DLError, Job, segmentationFromTensor, tensorFromVolume, volumeFromTensor
from DLCommon.bundles import bundleColors
from DLCommon.jobs import keepHistory
from DLCommon.transfer import withoutNetwork
from DLCommon.scenelogic import SceneLogic
from DLCommon.catalog import defaultCacheDir, resolveModel
from DLCommon.segmentations import labelsFromScores, updateSegmentationFromTensor
from DLCommon.resources import fitOrSwitch, planInference
from DLCommon.selfcheck import checkOutputGeometry, foregroundMask, orientationWarning

from .data import sampleFromNodes
from .segmenter import checkModelInput, entropyMap, predictLabels, predictProbabilities
from .trainer import (SegmentationTrainingConfig, SegmentationTrainingResult, estimateSegmentationTraining,
                      trainSegmentationModel)

__all__ = ["SegmentationLogic", "SegmentResult", "resolveModel"]


@dataclasses.dataclass
class SegmentResult:
    """Nodes created (or updated) by :meth:`SegmentationLogic.segment`."""

    segmentation: object
    probabilities: list = dataclasses.field(default_factory=list)
    entropy: object = None
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. a likely axis-order mistake of the model
    exclusive: bool = True  # the probabilities are of exclusive classes (background = 1 - their sum); False:
    # independent sigmoid channels (a bundle such as brats_mri_segmentation)


class SegmentationLogic(SceneLogic):
    """Segment and train; every method takes nodes and plain values and raises :class:`DLError` on bad input."""

    # --- inference ---------------------------------------------------------------------------------------
    def segmentJob(self, inputVolume, model, outputSegmentation=None, probabilityVolumes: bool = False,
                   entropyVolume: bool = False, device: str = "auto", overlap: float = 0.25,
                   mirror: bool = False, otherInputs: dict | None = None) -> Job:
        """A :class:`Job` that segments ``inputVolume``; its ``apply`` creates / updates the nodes.
        ``mirror``: average with the left-right mirrored prediction (test-time augmentation, twice the time).
        A MONAI bundle runs its own pipeline (:mod:`DLCommon.bundles`): its preprocessing, inferer (with its own
        window overlap, so ``overlap`` is not used) and postprocessing; ``mirror`` is refused for it.
        ``otherInputs``: a bundle's inputs after the first, input name -> volume node (``{"T1": t1Node, ...}``;
        the names: ``resolveModel(model).bundle.volumeNames``), or a list of nodes in that order (the panel's
        Input 2..4; None where empty); the result is on ``inputVolume``'s grid."""
        if inputVolume is None:
            raise DLError("No input volume was selected", fix="select the volume to segment")
        loaded = resolveModel(model)
        bundle = loaded.bundle
        if bundle is not None:
            bundle.checkRunnable()
            if mirror:
                raise DLError("runs its own pipeline, which has no mirror test-time augmentation", node=bundle.label,
                              fix="turn Mirror off")
        otherInputs = _namedInputs(otherInputs, bundle)
        if otherInputs and bundle is None:
            raise DLError(f"takes one input volume; {', '.join(otherInputs)} given besides",
                          node=f"Model '{loaded.spec.name}'", fix="clear the other inputs, or pick a bundle that takes them")
        image = tensorFromVolume(inputVolume)  # read before the job: the worker never touches the scene
        scene = self.scene(inputVolume)
        for name, node in otherInputs.items():
            if self.scene(node) is not scene:
                raise DLError(f"(input '{name}') is not in the input volume's scene", node=node, fix="pick another")
        others = {name: tensorFromVolume(node) for name, node in otherInputs.items()}
        if outputSegmentation is not None and outputSegmentation.GetScene() is not scene:
            raise DLError("is not in the input volume's scene", node=outputSegmentation, fix="pick another output")
        names = loaded.spec.labelNames
        if bundle is not None:  # the bundle checks its inputs (names, channels) itself, before any work
            bundle.inputData(image, others)
        else:
            checkModelInput(loaded, image)
        threeD = not loaded.spec.roiSize or len(loaded.spec.roiSize) == 3
        labelsOnly = not (probabilityVolumes or entropyVolume or mirror)
        subject = nodeLabel(inputVolume)  # the plan runs in the worker: it reads no node
        windowBatchSize, planOverlap = bundle.windowSettings() if bundle is not None else (4, overlap)

        def plan():
            # before any large allocation: refuse, or switch to a smaller window batch / the CPU, with the estimate
            return planInference(loaded.network, inputs["image"], loaded.spec, device, windowBatchSize=windowBatchSize,
                                 overlap=planOverlap, labelsOnly=labelsOnly, node=subject) if threeD else None

        inputs = {"image": image}  # the worker takes it, so the input tensor is freed before apply (memory)
        del image

        def work(context):
            runDevice, batchSize = ((context.plan.device, context.plan.windowBatchSize) if threeD
                                    else (device, windowBatchSize))
            image = inputs.pop("image")
            foreground = foregroundMask(image)  # small and strided: kept while inference frees the image
            warnings = []
            if bundle is not None:  # the bundle's own pipeline; its labels, not an argmax of its probabilities
                output = bundle.run(image, device=runDevice, probabilities=not labelsOnly, windowBatchSize=batchSize,
                                    progress=context.report, others=others)
                warning = orientationWarning(output.labels, foreground)
                return output, output.warnings + ([warning] if warning else [])
            elif not labelsOnly:
                probabilities = predictProbabilities(loaded, image, device=runDevice, overlap=overlap,
                                                     windowBatchSize=batchSize, progress=context.report,
                                                     mirror=mirror)
                labels, classes = probabilities, probabilities.shape[0]
            else:  # labels only: no class-score volume for the whole image (memory)
                labels, classes = predictLabels(loaded, image, device=runDevice, overlap=overlap,
                                                windowBatchSize=batchSize, progress=context.report)
                probabilities = None
            if classes != len(names) + 1 and names:
                raise DLError(f"produced {classes} classes but its spec names {len(names)} labels",
                              node=f"Model '{loaded.spec.name}'", fix="correct the model's spec (labelNames)")
            warning = orientationWarning(labels if labels.ndim == 3 else labelsFromScores(labels), foreground)
            return labels, probabilities, classes, warnings + ([warning] if warning else [])

        def apply(result) -> SegmentResult:
            if bundle is not None:
                output, warnings = result
                labels, probabilities, labelNames = output.labels, output.probabilities, output.names
                colors, exclusive = bundleColors(labelNames, scene), output.exclusive
                channels = list(enumerate(output.probabilityNames))
            else:
                labels, probabilities, classes, warnings = result
                labelNames = names or [f"label {i}" for i in range(1, classes)]
                colors, exclusive = loaded.spec.labelColors or None, True
                channels = [(c + 1, name) for c, name in enumerate(labelNames)]
            baseName = f"{inputVolume.GetName()} {loaded.spec.name}"
            result = SegmentResult(segmentation=None, warnings=list(warnings), exclusive=exclusive)
            if probabilityVolumes:
                result.probabilities = [volumeFromTensor(probabilities[c], inputVolume, scene, f"{baseName} p({name})")
                                        for c, name in channels if name is not None]
            if entropyVolume:
                result.entropy = volumeFromTensor(entropyMap(probabilities, exclusive), inputVolume, scene,
                                                  f"{baseName} entropy")
            if outputSegmentation is None:
                result.segmentation = segmentationFromTensor(labels, inputVolume, scene, labelNames, colors,
                                                             nodeName=f"{baseName} segmentation")
            else:  # overwrite the user's node last, once all else succeeded
                updateSegmentationFromTensor(outputSegmentation, labels, inputVolume, labelNames, colors)
                result.segmentation = outputSegmentation
            checkOutputGeometry(inputVolume, result.segmentation)
            return result

        return Job(work, apply, scene=scene, name=f"Segment {inputVolume.GetName()}", plan=plan)

    def segment(self, inputVolume, model, outputSegmentation=None, probabilityVolumes: bool = False,
                entropyVolume: bool = False, device: str = "auto", overlap: float = 0.25,
                progress: Callable[[float, str], None] | None = None, mirror: bool = False,
                otherInputs: dict | None = None) -> SegmentResult:
        """Segment ``inputVolume`` with ``model`` (catalog id, path or LoadedModel); see :meth:`segmentJob`."""
        job = self.segmentJob(inputVolume, model, outputSegmentation, probabilityVolumes, entropyVolume, device,
                              overlap, mirror, otherInputs)
        return job.run(progress)

    # --- training ----------------------------------------------------------------------------------------
    def trainJob(self, pairs: Sequence[tuple], config: SegmentationTrainingConfig | None = None,
                 modelName: str = "segmentation", validationPairs: Sequence[tuple] = (), baseModel=None,
                 outputDir: str | Path | None = None, addToCatalog: bool = True) -> Job:
        """A :class:`Job` that trains on ``[(volumeNode, segmentationNode), ...]``; it adds no node."""
        if not pairs:
            raise DLError("No training pair was given", fix="add at least one volume with its segmentation")
        samples, names, colors = [], None, None
        for volumeNode, segmentationNode in pairs:
            sample, sampleNames, sampleColors = sampleFromNodes(volumeNode, segmentationNode)
            if names is None:
                names, colors = sampleNames, sampleColors
            elif sampleNames != names:
                raise DLError(f"has segments {sampleNames}, the first pair has {names}", node=segmentationNode,
                              fix="use the same segment names, in the same order, in every training pair")
            samples.append(sample)
        validation = [sampleFromNodes(v, s)[0] for v, s in validationPairs]
        base = resolveModel(baseModel) if baseModel is not None else None
        directory = Path(outputDir) if outputDir else defaultCacheDir() / "trained" / modelName
        config = config or SegmentationTrainingConfig()
        subject = nodeLabel(pairs[0][0])

        def plan():  # refuse, or move to the CPU, when one training step does not fit the device
            return fitOrSwitch(lambda device: estimateSegmentationTraining(
                samples, len(names), dataclasses.replace(config, device=str(device)), base), config.device, subject,
                "train with a smaller patch size or batch size, or at a coarser spacing")

        def work(context) -> SegmentationTrainingResult:
            return trainSegmentationModel(samples, names, colors, dataclasses.replace(config, device=context.plan.device),
                                          directory, modelName, validationSamples=validation or None, baseModel=base,
                                          addToCatalog=addToCatalog, progress=context.report, onEpoch=keepHistory(job))

        job = Job(work, None, name=f"Train {modelName}", plan=plan, transfer=withoutNetwork)
        return job

    def train(self, pairs: Sequence[tuple], config: SegmentationTrainingConfig | None = None,
              modelName: str = "segmentation", validationPairs: Sequence[tuple] = (), baseModel=None,
              outputDir: str | Path | None = None, addToCatalog: bool = True,
              progress: Callable[[float, str], None] | None = None) -> SegmentationTrainingResult:
        """Train (or fine-tune) on scene pairs; returns the model, history and where it was saved."""
        job = self.trainJob(pairs, config, modelName, validationPairs, baseModel, outputDir, addToCatalog)
        return job.run(progress)


def _namedInputs(otherInputs, bundle) -> dict:
    """``otherInputs`` (name -> node, or nodes in the bundle's order after its first input) as name -> node."""
    if not otherInputs:
        return {}
    if isinstance(otherInputs, dict):
        return {name: node for name, node in otherInputs.items() if node is not None}
    names = bundle.volumeNames[1:] if bundle is not None else []
    extra = [f"Input {i + 2}" for i, node in enumerate(otherInputs) if node is not None and i >= len(names)]
    if extra and bundle is not None:
        raise DLError(f"takes {len(names) + 1} input volume(s) ({', '.join(bundle.volumeNames)}); "
                      f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} set too", node=bundle.label,
                      fix="clear the extra input rows")
    if bundle is None:
        return {f"Input {i + 2}": node for i, node in enumerate(otherInputs) if node is not None}
    return {names[i]: node for i, node in enumerate(otherInputs) if node is not None}
