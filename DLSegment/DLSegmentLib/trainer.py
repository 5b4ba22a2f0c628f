"""Train or fine-tune a segmentation network on (image, labels) samples, and export it as a model.

Uses DLCommon's training loop (progress, cancel, early stopping, best checkpoint, AMP on CUDA) with
class-balanced augmented patches; the result is saved as weights + spec (labels, names, colors, spacing,
normalisation, patch size) and, optionally, imported into the model catalog (SHA-256 recorded).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import torch
from monai.networks.utils import one_hot

from DLCommon import DLError, ModelSpec, TrainingConfig, trainModel
from DLCommon.models import LoadedModel
from DLCommon.training import TrainingHistory, saveTrainedModel

from .config import LOSS_NAMES, SegmentationTrainingConfig
from .data import PatchBatches, SegmentationSample, prepareSample
from .losses import LOSSES
from .networks import buildNetwork
from .segmenter import dicePerLabel

__all__ = ["SegmentationTrainingConfig", "SegmentationTrainingResult", "trainSegmentationModel", "lossFunction",
           "meanForegroundDice", "estimateSegmentationTraining", "LOSS_NAMES"]

@dataclasses.dataclass
class SegmentationTrainingResult:
    model: LoadedModel
    history: TrainingHistory
    modelPath: Path
    catalogId: str | None = None


def lossFunction(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(logits (B, C, ...), labels (B, 1, ...))`` for a loss name (softmax + one-hot inside)."""
    if name == "dicece":
        from monai.losses import DiceCELoss

        return DiceCELoss(to_onehot_y=True, softmax=True)
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSS_NAMES}, got {name!r}.")
    seedLoss = LOSSES[name]

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return seedLoss(torch.softmax(logits.float(), dim=1), one_hot(labels, num_classes=logits.shape[1]))

    return loss


def meanForegroundDice(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean Dice of the argmax prediction over foreground classes present in prediction or reference."""
    scores = [s for s in dicePerLabel(logits.argmax(1), labels[:, 0], logits.shape[1] - 1, absent=None)
              if s is not None]
    return sum(scores) / len(scores) if scores else 1.0


def estimateSegmentationTraining(samples: Sequence[SegmentationSample], numLabels: int,
                                 config: SegmentationTrainingConfig, baseModel: LoadedModel | None = None):
    """Memory and time of :func:`trainSegmentationModel` (one real step of the network on ``config.device``)."""
    from DLCommon.resources import estimateTraining

    channels = int(samples[0].image.shape[0])
    network = baseModel.network if baseModel else buildNetwork(config.network, channels, numLabels + 1, config.patchSize,
                                                               config.features, config.norm)[2]
    return estimateTraining(network, (channels, *config.patchSize), config.batchSize,
                            config.epochs * config.batchesPerEpoch, config.device,
                            sum(4 * s.image.numel() + 8 * s.labels.numel() for s in samples), "Segmentation training")


def trainSegmentationModel(samples: Sequence[SegmentationSample], labelNames: Sequence[str],
                           labelColors: Sequence[Sequence[float]] | None, config: SegmentationTrainingConfig,
                           outputDir: str | Path, modelName: str = "segmentation",
                           validationSamples: Sequence[SegmentationSample] | None = None,
                           baseModel: LoadedModel | None = None, addToCatalog: bool = False,
                           progress: Callable[[float, str], None] | None = None,
                           onEpoch: Callable[[TrainingHistory], None] | None = None) -> SegmentationTrainingResult:
    """Train (or fine-tune ``baseModel``) and save the model to ``outputDir``.

    Args:
        samples: training samples (any geometry; resampled to the model spacing here).
        labelNames / labelColors: foreground labels 1..n.
        config: :class:`SegmentationTrainingConfig`.
        outputDir: where ``<modelName>.pt`` + ``.json`` (or ``.ts`` when fine-tuning a TorchScript / bundle
            model) are written.
        validationSamples: held-out samples for best-epoch selection / early stopping (Dice); default:
            fixed patches of the training samples.
        baseModel: a loaded model to fine-tune; it must have ``len(labelNames) + 1`` outputs.
        addToCatalog: import the result into the model catalog under ``modelName``.
        progress: ``progress(fraction, message)``; may raise ``JobCancelled``.
        onEpoch: ``onEpoch(history)`` after each epoch (live loss curves).
    """
    config.validate()
    if not samples:
        raise DLError("got no training sample", node="Training", fix="add at least one volume with a segmentation")
    numClasses = len(labelNames) + 1
    channels = int(samples[0].image.shape[0])
    if any(int(s.image.shape[0]) != channels for s in samples):
        raise DLError("mixes images with different numbers of channels", node="Training data",
                      fix="use volumes of the same kind (all scalar, or all with the same components)")
    if baseModel is not None and int(baseModel.spec.inputChannels) != channels:
        raise DLError(f"expects {baseModel.spec.inputChannels} input channel(s) but the training images have {channels}",
                      node=f"Model '{baseModel.spec.name}'", fix="fine-tune on images of the kind it was trained on")
    if baseModel is not None and baseModel.spec.labelNames and len(baseModel.spec.labelNames) != len(labelNames):
        raise DLError(f"has {len(baseModel.spec.labelNames)} labels but the training data has {len(labelNames)}",
                      node=f"Model '{baseModel.spec.name}'",
                      fix="fine-tune with the same segments, or train a new model")
    spacing = list(config.spacing) if config.spacing else [float(s) for s in
                                                           torch.linalg.norm(samples[0].image.affine[:3, :3], dim=0)]
    if baseModel is not None:
        spec = dataclasses.replace(baseModel.spec, name=modelName, labelNames=list(labelNames),
                                   labelColors=[list(c) for c in labelColors] if labelColors else baseModel.spec.labelColors)
    else:
        spec = ModelSpec(name=modelName, task="segmentation", inputChannels=channels,
                         spacing=spacing if len(config.patchSize) == 3 else None,
                         orientation="RAS" if len(config.patchSize) == 3 else None,  # any input orientation works
                         normalization=dict(config.normalization), roiSize=list(config.patchSize),
                         labelNames=list(labelNames), labelColors=[list(c) for c in labelColors] if labelColors else [],
                         description=f"{config.network} trained by MedDL with the {config.loss} loss")
    prepared = [prepareSample(s, spec) for s in samples]
    validationPrepared = [prepareSample(s, spec) for s in validationSamples] if validationSamples else prepared
    trainBatches = PatchBatches(prepared, spec.roiSize or config.patchSize, numClasses, config.batchSize,
                                config.batchesPerEpoch, config.augmentations, seed=config.seed)
    validationBatches = PatchBatches(validationPrepared, spec.roiSize or config.patchSize, numClasses,
                                     config.batchSize, config.validationBatches, (), seed=config.seed + 1, fixed=True)
    if baseModel is not None:
        network, className, args = baseModel.network, None, None
        network.train()
    else:
        from monai.utils import set_determinism

        set_determinism(seed=config.seed)  # the initial weights follow the seed too, not the RNG's history
        className, args, network = buildNetwork(config.network, channels, numClasses, config.patchSize, config.features,
                                                  config.norm)
    outputDir = Path(outputDir)
    result = trainModel(network, trainBatches, lossFunction(config.loss),
                        TrainingConfig(epochs=config.epochs, learningRate=config.learningRate,
                                       patience=config.patience, seed=config.seed, device=config.device,
                                       schedule=config.schedule,
                                       checkpointPath=outputDir / f".{modelName}.best.pt"),
                        validationBatches=validationBatches, metric=meanForegroundDice, metricMode="max",
                        progress=progress, onEpoch=onEpoch)
    network = result.network.eval().cpu()
    if className is None and baseModel.networkDef:
        className, args = baseModel.networkDef["name"], baseModel.networkDef.get("args", {})
    networkDef = {"name": className, "args": args} if className is not None else None
    # a fine-tuned TorchScript / bundle network stays self-contained as TorchScript
    modelPath, catalogId = saveTrainedModel(network, outputDir, modelName, spec, networkDef,
                                            dataclasses.asdict(result.history), addToCatalog,
                                            example=torch.zeros((1, channels) + tuple(spec.roiSize or config.patchSize)))
    loaded = LoadedModel(network=network, spec=spec, format="checkpoint" if className else "torchscript",
                         path=modelPath, networkDef=networkDef)
    return SegmentationTrainingResult(model=loaded, history=result.history, modelPath=modelPath, catalogId=catalogId)
