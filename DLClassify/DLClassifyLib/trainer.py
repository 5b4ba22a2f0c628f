"""Train a classifier (any encoding, any architecture) on prepared images, calibrate it, save it as a model.

Uses DLCommon's training loop (progress, cancel, best epoch on validation, AMP on CUDA); after training the
temperature is fitted on the validation images and the expected calibration error is reported before and
after. The model is saved as weights + JSON spec (``monai.networks.nets`` class, classes, encoding, input
size, temperature), loadable with :func:`DLCommon.loadModel` and importable into the catalog.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from DLCommon import DLError, ModelSpec, TrainingConfig, trainModel
from DLCommon.models import LoadedModel
from DLCommon.training import TrainingHistory, saveTrainedModel

from .architectures import buildClassifier, defaultLearningRate
from .calibration import expectedCalibrationError, fitTemperature
from .classifier import predictLogits
from .config import ClassificationTrainingConfig  # defined there (torch-free); re-exported for old imports
from .data import ClassificationBatches
from .encodings import encodingFor
from .metrics import balancedAccuracy, classificationReport, meanAbsoluteError

__all__ = ["ClassificationTrainingConfig", "ClassificationTrainingResult", "trainClassifier", "splitValidation",
           "checkLabels", "estimateClassifierTraining"]


@dataclasses.dataclass
class ClassificationTrainingResult:
    """The trained model, its curves, where it was saved, and validation metrics (``report``: accuracy,
    balancedAccuracy, mae, confusion, eceBefore, eceAfter, temperature, validationSamples)."""

    model: LoadedModel
    history: TrainingHistory
    modelPath: Path
    report: dict[str, Any]
    catalogId: str | None = None


def checkLabels(labels: torch.Tensor, classNames: Sequence[str], what: str = "Training data") -> None:
    """Refuse labels outside ``0..K-1`` and training data with fewer than two classes."""
    if labels.numel() == 0:
        raise DLError("has no sample", node=what, fix="add labelled volumes")
    if int(labels.min()) < 0 or int(labels.max()) >= len(classNames):
        raise DLError(f"has labels outside 0..{len(classNames) - 1}", node=what, fix="use the listed classes only")
    present = sorted(set(labels.tolist()))
    if len(present) < 2:
        raise DLError(f"has samples of one class only ('{classNames[present[0]]}'); a classifier needs at least two",
                      node=what, fix="add samples of at least one other class")


def splitValidation(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified ``(train indices, validation indices)``: ``fraction`` of each class with >= 2 samples."""
    generator = torch.Generator().manual_seed(seed)
    train, validation = [], []
    for label in sorted(set(labels.tolist())):
        index = torch.nonzero(labels == label).reshape(-1)
        index = index[torch.randperm(len(index), generator=generator)]
        count = int(round(fraction * len(index))) if len(index) >= 2 else 0
        count = min(max(count, 1 if fraction > 0 and len(index) >= 2 else 0), len(index) - 1)
        validation.append(index[:count])
        train.append(index[count:])
    return torch.cat(train).sort().values, torch.cat(validation).sort().values


def estimateClassifierTraining(count: int, channels: int, numClasses: int, config: ClassificationTrainingConfig,
                               dataBytes: int = 0):
    """Memory and time of :func:`trainClassifier` on ``count`` images of ``channels`` channels (one real step)."""
    from DLCommon.resources import estimateTraining

    network = buildClassifier(config.architecture, len(config.inputSize), channels,
                              encodingFor(config.encoding, numClasses).outputs, config.inputSize)[2]
    batch = max(1, min(config.batchSize, count))
    prepared = 4 * count * channels * math.prod(config.inputSize)
    return estimateTraining(network, (channels, *config.inputSize), batch, config.epochs * -(-count // batch),
                            config.device, dataBytes + prepared, "Classification training")


def trainClassifier(images: torch.Tensor, labels: torch.Tensor, classNames: Sequence[str],
                    config: ClassificationTrainingConfig, outputDir: str | Path, modelName: str = "classifier",
                    validationImages: torch.Tensor | None = None, validationLabels: torch.Tensor | None = None,
                    addToCatalog: bool = False, options: dict[str, Any] | None = None, description: str = "",
                    progress: Callable[[float, str], None] | None = None,
                    onEpoch: Callable[[TrainingHistory], None] | None = None) -> ClassificationTrainingResult:
    """Train, calibrate and save a classifier.

    Args:
        images: ``(N, C, *inputSize)`` prepared inputs (:func:`~.data.prepareImage` or plane images,
            z-score normalised).
        labels: ``(N,)`` class indices into ``classNames`` (ordinal: in increasing order).
        config: :class:`ClassificationTrainingConfig`.
        outputDir: where ``<modelName>.pt`` + ``.json`` and ``<modelName>.history.json`` are written.
        validationImages / validationLabels: held-out data; default: a stratified split of the training data.
        addToCatalog: import the model into the catalog under ``modelName``.
        options: extra entries of the spec's ``options`` (e.g. how plane images are sampled).
        progress: ``progress(fraction, message)``; may raise ``JobCancelled``.
        onEpoch: ``onEpoch(history)`` after each epoch (live curves).
    """
    config.validate()
    labels = labels.long()
    checkLabels(labels, classNames)
    if config.encoding == "binary" and len(classNames) != 2:
        raise DLError(f"has {len(classNames)} classes; the binary encoding needs exactly 2", node="Training data",
                      fix="use the nominal or ordinal encoding")
    if tuple(images.shape[2:]) != tuple(config.inputSize):
        raise ValueError(f"images must be (N, C, {list(config.inputSize)}), got {tuple(images.shape)}.")
    if validationImages is None:
        trainIndex, validationIndex = splitValidation(labels, config.validationFraction, config.seed)
        validationImages, validationLabels = images[validationIndex], labels[validationIndex]
        images, labels = images[trainIndex], labels[trainIndex]
    validationLabels = validationLabels.long()
    if len(validationLabels) == 0:  # too few samples to hold any out: select on the training data
        validationImages, validationLabels = images, labels
    counts = torch.bincount(labels, minlength=len(classNames)).float()
    weights = None
    if config.balanceClasses:
        weights = torch.where(counts > 0, counts.sum() / (len(classNames) * counts.clamp(min=1)), torch.zeros_like(counts))
    encoding = encodingFor(config.encoding, len(classNames), weights)
    from monai.utils import set_determinism

    set_determinism(seed=config.seed)  # the initial weights too, not only the training loop, follow the seed
    channels, spatialDims = int(images.shape[1]), len(config.inputSize)
    className, args, network = buildClassifier(config.architecture, spatialDims, channels, encoding.outputs,
                                               config.inputSize)
    ordinal = config.encoding == "ordinal"

    def metric(output, target) -> float:  # best epoch: lowest grade error (ordinal), else balanced accuracy
        predicted = encoding.predict(output)
        return meanAbsoluteError(predicted, target) if ordinal else balancedAccuracy(predicted, target, len(classNames))

    outputDir = Path(outputDir)
    result = trainModel(network, ClassificationBatches(images, labels, config.batchSize, config.augment, config.seed),
                        encoding.loss,
                        TrainingConfig(epochs=config.epochs,
                                       learningRate=config.learningRate or defaultLearningRate(config.architecture),
                                       weightDecay=config.weightDecay, patience=config.patience, seed=config.seed,
                                       device=config.device, schedule=config.schedule,
                                       checkpointPath=outputDir / f".{modelName}.best.pt"),
                        validationBatches=ClassificationBatches(validationImages, validationLabels,
                                                                max(config.batchSize, 64), shuffle=False),
                        metric=metric, metricMode="min" if ordinal else "max", progress=progress, onEpoch=onEpoch)
    network = result.network.eval()
    logits = predictLogits(network, validationImages, result.device)
    network = network.cpu()
    temperature = fitTemperature(logits, validationLabels, encoding) if config.calibrate else 1.0
    report = classificationReport(encoding.predict(logits, temperature), validationLabels, len(classNames))
    report.update(eceBefore=expectedCalibrationError(encoding.probabilities(logits), validationLabels),
                  eceAfter=expectedCalibrationError(encoding.probabilities(logits, temperature), validationLabels),
                  temperature=temperature, validationSamples=int(len(validationLabels)))
    spec = ModelSpec(name=modelName, task="classification", inputChannels=channels,
                     normalization={"type": "zscore"}, labelNames=list(classNames),
                     description=description or f"{config.architecture} ({config.encoding} encoding) trained by MedDL",
                     options={"encoding": config.encoding, "architecture": config.architecture,
                              "inputSize": list(config.inputSize), "temperature": temperature, **(options or {})})
    modelPath, catalogId = saveTrainedModel(network, outputDir, modelName, spec, {"name": className, "args": args},
                                            {"history": dataclasses.asdict(result.history), "validation": report},
                                            addToCatalog)
    loaded = LoadedModel(network=network, spec=spec, format="checkpoint", path=modelPath,
                         networkDef={"name": className, "args": args})
    return ClassificationTrainingResult(model=loaded, history=result.history, modelPath=modelPath, report=report,
                                        catalogId=catalogId)
