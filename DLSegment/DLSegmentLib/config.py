"""DLSegment's training settings, defined once (DLCommon.settings): the engine's config, the Slicer widget's and
the web panel's controls and the ``meddl train-segment`` flags are all made from these fields. Torch-free."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from DLCommon.errors import SettingError
from DLCommon.settings import checkSettings, setting

__all__ = ["SegmentationTrainingConfig", "LOSS_NAMES", "NETWORK_NAMES", "NORMS", "AUGMENTATIONS"]

LOSS_NAMES = ("dicece", "ce", "wce", "dice", "dl2")
NETWORK_NAMES = ("unet", "segresnet", "dynunet", "swinunetr")  # networks.NETWORKS (a test keeps them equal)
NORMS = ("batch", "instance", "group")
AUGMENTATIONS = ("affine", "elastic", "bias", "noise", "contrast")


@dataclasses.dataclass
class SegmentationTrainingConfig:
    """Options of :func:`~DLSegmentLib.trainer.trainSegmentationModel` (defaults suit a small CPU run).

    Attributes:
        network: ``unet``, ``segresnet``, ``dynunet`` or ``swinunetr`` (ignored when fine-tuning).
        features: width of the network's first level.
        norm: normalisation layers (see :func:`~DLSegmentLib.networks.buildNetwork`).
        patchSize: training patch (voxels); also the inference window.
        spacing: voxel size (mm) to train at; None: the first image's.
        normalization: intensity normalisation (see :class:`DLCommon.ModelSpec`).
        loss: ``ce``, ``wce``, ``dice``, ``dl2`` (the seed's four) or ``dicece`` (MONAI DiceCELoss).
        augmentations: subset of ``affine``, ``elastic``, ``bias``, ``noise``, ``contrast``.
        epochs, batchesPerEpoch, batchSize, learningRate, patience, seed, device, schedule: training loop
            options (see :class:`DLCommon.TrainingConfig`).
        validationBatches: fixed validation patches per validation (from the validation samples).
    """

    network: str = setting("unet", label="Network", choices=NETWORK_NAMES, tooltip="MONAI network architecture.")
    features: int = setting(16, label="Features", minimum=4, maximum=256, tooltip="Width of the network's first level.")
    norm: str = setting("batch", label="Normalisation", choices=NORMS,
                        tooltip="Normalisation layers (instance / group: independent of how a batch is split over "
                                "torchrun processes on CPU).")
    patchSize: Sequence[int] = (64, 64, 64)
    spacing: Sequence[float] | None = None
    normalization: dict[str, Any] = dataclasses.field(default_factory=lambda: {"type": "zscore", "nonzero": True})
    loss: str = setting("dicece", label="Loss", choices=LOSS_NAMES,
                        tooltip="ce: voxel cross-entropy; wce: weighted cross-entropy; dice: soft Dice; dl2: Dice with "
                                "the background term; dicece: Dice + cross-entropy.")
    augmentations: Sequence[str] = AUGMENTATIONS
    epochs: int = setting(20, label="Epochs", minimum=1, maximum=10000, tooltip="Passes over the training batches.")
    batchesPerEpoch: int = setting(16, label="Batches per epoch", minimum=1, maximum=100000,
                                   tooltip="Training batches in an epoch.")
    batchSize: int = setting(2, label="Batch size", minimum=1, maximum=1024, tooltip="Patches per training batch.")
    learningRate: float = setting(2e-3, label="Learning rate", minimum=1e-7, maximum=1.0, tooltip="Adam step size.")
    patience: int | None = None
    seed: int = setting(0, label="Seed", minimum=0, maximum=2**31 - 1, tooltip="Makes a training reproducible.")
    device: str = setting("auto", label="Device", tooltip="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:1...")
    validationBatches: int = 8
    schedule: str = "cosine"

    def validate(self) -> None:
        """Raises :class:`~DLCommon.errors.SettingError` for a setting out of its range or choices."""
        checkSettings(self)
        if len(self.patchSize) not in (2, 3) or min(self.patchSize) < 8:
            raise SettingError("patchSize", list(self.patchSize), "2 or 3 sizes of at least 8")
