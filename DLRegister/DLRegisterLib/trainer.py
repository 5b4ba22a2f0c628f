"""Train a registration network (DeepReg style): unsupervised (image similarity) and label-driven (Dice).

Training pairs are all ordered pairs of the given images (inter-subject), or explicit ``(fixed, moving)``
pairs (e.g. longitudinal). The loss on a predicted displacement ``ddf`` (voxels of the network grid) is::

    similarity(Warp(moving, ddf), fixed) + regularisationWeight * bending(ddf) + labelWeight * Dice loss

with ``monai.networks.blocks.Warp`` and the MONAI losses, through DLCommon's training loop (progress,
cancel, best checkpoint, early stopping, AMP on CUDA). The model is saved as a checkpoint + spec (task
``"registration"``, ``roiSize`` = network grid) and optionally imported into the model catalog.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from monai.losses import BendingEnergyLoss, DiceLoss
from monai.networks.blocks import Warp

from DLCommon.shardedbatches import ShardedBatches
from DLCommon import DLError, ModelSpec, TrainingConfig, trainModel
from DLCommon.models import LoadedModel
from DLCommon.training import TrainingHistory, saveTrainedModel

from .config import RegistrationTrainingConfig  # defined in config.py (torch-free); re-exported
from .network import buildRegistrationNetwork, preparePair
from .optimisation import checkImage
from .similarity import similarityFunction

__all__ = ["RegistrationTrainingConfig", "RegistrationTrainingResult", "trainRegistrationModel", "registrationLoss",
           "estimateRegistrationTraining"]


@dataclasses.dataclass
class RegistrationTrainingResult:
    model: LoadedModel
    history: TrainingHistory
    modelPath: Path
    catalogId: str | None = None


def registrationLoss(similarity: str, kernelSize: int, regularisationWeight: float, labelWeight: float,
                     labelChannels: int, imageWeight: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(ddf (B, 3, ...), target (B, 2 + 2C, ...))``; target = [moving, fixed, moving one-hot, fixed one-hot]."""
    image = similarityFunction(similarity, kernelSize)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample")
        warp = Warp(mode="bilinear", padding_mode="zeros")
    bending = BendingEnergyLoss()
    dice = DiceLoss(reduction="mean")

    def loss(ddf: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ddf = ddf.float()
        moving, fixed = target[:, :1], target[:, 1:2]
        value = imageWeight * image(warp(moving, ddf), fixed) if imageWeight else ddf.sum() * 0.0
        with warnings.catch_warnings():  # MONAI 1.6 indexes with a list (deprecated in torch >= 2.9)
            warnings.filterwarnings("ignore", message=".*non-tuple sequence")
            value = value + regularisationWeight * bending(ddf)
        if labelChannels and labelWeight > 0:
            movingLabels = target[:, 2:2 + labelChannels]
            fixedLabels = target[:, 2 + labelChannels:2 + 2 * labelChannels]
            value = value + labelWeight * dice(warp(movingLabels, ddf)[:, 1:], fixedLabels[:, 1:])
        return value

    return loss


class PairBatches(ShardedBatches):
    """Re-iterable batches ``(inputs (B, 2, ...), targets (B, 2 + 2C, ...))`` in a new random order per epoch
    (the same order whatever the number of training processes)."""

    def __init__(self, pairs: list[dict], batchSize: int, seed: int, shuffle: bool = True):
        self.pairs = pairs
        super().__init__(self._pair, len(pairs), max(1, batchSize), seed=seed, shuffle=shuffle, fixed=not shuffle,
                         what="Training pairs")

    def _pair(self, index: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        return pair["input"], pair["input"] if pair["labels"] is None else torch.cat([pair["input"], pair["labels"]])


def estimateRegistrationTraining(images: Sequence, config: RegistrationTrainingConfig):
    """Memory and time of :func:`trainRegistrationModel` on all ordered pairs of ``images`` (one real step)."""
    from DLCommon.resources import estimateTraining

    pairs = len(images) * (len(images) - 1)
    estimate = estimateTraining(buildRegistrationNetwork(config.network, config.shape, config.features)[2],
                                (2, *config.shape), config.batchSize, config.epochs * -(-pairs // config.batchSize),
                                config.device, sum(4 * i.numel() for i in images), "Registration training")
    estimate.note += f"; {pairs} pairs"
    return estimate


def trainRegistrationModel(images: Sequence, config: RegistrationTrainingConfig, outputDir: str | Path,
                           modelName: str = "registration", labels: Sequence | None = None,
                           pairs: Sequence[tuple[int, int]] | None = None,
                           validationPairs: Sequence[tuple[int, int]] | None = None, addToCatalog: bool = False,
                           progress: Callable[[float, str], None] | None = None,
                           onEpoch: Callable[[TrainingHistory], None] | None = None) -> RegistrationTrainingResult:
    """Train a registration network on ``images`` and save it to ``outputDir``.

    Args:
        images: MetaTensors ``(1, I, J, K)`` with affines, any geometry.
        config: :class:`RegistrationTrainingConfig`.
        labels: optional integer label maps ``(I, J, K)``, one per image (same label values): label-driven.
        pairs: ``(fixed index, moving index)`` pairs; default all ordered pairs of different images.
        validationPairs: pairs held out for best-epoch selection (default: the training pairs).
        addToCatalog: import the model into the catalog under ``modelName``.
        progress / onEpoch: as in :func:`DLCommon.trainModel`.
    """
    config.validate()
    if len(images) < 2 and not pairs:
        raise DLError(f"got {len(images)} image(s); registration training needs at least two", node="Training data",
                      fix="add more volumes (pairs are formed between them)")
    for index, image in enumerate(images):
        checkImage(image, f"Training image {index + 1}")
    if labels is not None and len(labels) != len(images):
        raise DLError(f"got {len(labels)} label maps for {len(images)} images", node="Training labels",
                      fix="give one label map per image, or none")
    pairs = list(pairs or [p for p in itertools.permutations(range(len(images)), 2)])
    labelValues = []
    if labels is not None and config.labelWeight > 0:
        labelValues = sorted(set().union(*(set(torch.unique(t).tolist()) for t in labels)) | {0})

    def prepared(which):
        return [preparePair(images[f], images[m], config.shape,
                            fixedLabels=labels[f] if labelValues else None,
                            movingLabels=labels[m] if labelValues else None, labelValues=labelValues)
                for f, m in which]

    training = prepared(pairs)
    validation = prepared(validationPairs) if validationPairs else training
    from monai.utils import set_determinism

    set_determinism(seed=config.seed)  # the initial weights follow the seed too, not the RNG's history
    className, args, network = buildRegistrationNetwork(config.network, config.shape, config.features)
    lossFunction = registrationLoss(config.similarity, config.kernelSize, config.regularisationWeight,
                                    config.labelWeight, len(labelValues))
    metric = None
    if labelValues:
        diceTerm = registrationLoss(config.similarity, config.kernelSize, 0.0, 1.0, len(labelValues), imageWeight=0.0)

        def metric(ddf, target):  # soft Dice of the warped labels (foreground mean)
            return 1.0 - float(diceTerm(ddf, target))

    outputDir = Path(outputDir)
    result = trainModel(network, PairBatches(training, config.batchSize, config.seed),
                        lossFunction,
                        TrainingConfig(epochs=config.epochs, learningRate=config.learningRate, patience=config.patience,
                                       seed=config.seed, device=config.device,
                                       checkpointPath=outputDir / f".{modelName}.best.pt"),
                        validationBatches=PairBatches(validation, config.batchSize, config.seed, shuffle=False),
                        metric=metric, metricMode="max" if metric else "min", progress=progress, onEpoch=onEpoch)
    network = result.network.eval().cpu()
    spec = ModelSpec(name=modelName, task="registration", inputChannels=2, roiSize=[int(n) for n in config.shape],
                     labelNames=[f"label {v}" for v in labelValues[1:]],
                     description=f"{config.network} registration network trained by MedDL ({config.similarity}"
                                 f"{', label-driven' if labelValues else ', unsupervised'})")
    modelPath, catalogId = saveTrainedModel(network, outputDir, modelName, spec, {"name": className, "args": args},
                                            dataclasses.asdict(result.history), addToCatalog)
    loaded = LoadedModel(network=network, spec=spec, format="checkpoint", path=modelPath,
                         networkDef={"name": className, "args": args})
    return RegistrationTrainingResult(model=loaded, history=result.history, modelPath=modelPath, catalogId=catalogId)
