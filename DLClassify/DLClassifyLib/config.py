"""DLClassify's training settings, defined once (DLCommon.settings): the engine's configs, the Slicer widget's and
the web panel's controls and the ``meddl train-classify`` flags are all made from these fields. Torch-free (the
Slicer shell imports the settings before PyTorch is installed, and ``meddl --help`` imports no engine)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from DLCommon.errors import SettingError
from DLCommon.settings import checkSettings, setting

__all__ = ["ClassificationTrainingConfig", "PlaneTrainingConfig", "ENCODINGS", "ARCHITECTURE_NAMES"]

ENCODINGS = ("nominal", "binary", "ordinal")  # encodings.encodingFor's classes
# the keys of architectures.ARCHITECTURES, in its order (Testing/Python/test_classify.py keeps them equal; that
# module imports torch)
ARCHITECTURE_NAMES = ("tiny", "densenet121", "densenet169", "densenet201", "resnet18", "resnet50", "seresnet50",
                      "efficientnet-b0", "efficientnet-b1", "efficientnet-b2", "vit")


@dataclasses.dataclass
class ClassificationTrainingConfig:
    """Options of :func:`~DLClassifyLib.trainer.trainClassifier` (defaults suit a small CPU run).

    Attributes:
        encoding: ``nominal``, ``binary`` (2 classes) or ``ordinal`` (classes in their order).
        architecture: a name of :data:`ARCHITECTURE_NAMES` (``tiny``, ``densenet121``...).
        inputSize: the network's input grid, 2 sizes (2D) or 3 (3D), voxels.
        epochs, batchSize, weightDecay, patience, seed, device, schedule: training loop options
            (see :class:`DLCommon.TrainingConfig`).
        learningRate: Adam learning rate; None: the architecture's (2e-3 for the CNNs, 3e-4 for the ViT).
        augment: random rotations / scaling / shifts, gamma and noise while training.
        balanceClasses: weight classes by inverse frequency in the loss.
        validationFraction: share of each class held out for best-epoch selection and calibration when no
            validation data is given.
        calibrate: fit a temperature on the validation data.
    """

    encoding: str = setting("nominal", label="Encoding", choices=ENCODINGS,
                            tooltip="nominal: one-hot + softmax; binary: one sigmoid output; ordinal: cumulative "
                                    "thresholds.")
    architecture: str = setting("tiny", label="Architecture", choices=ARCHITECTURE_NAMES, flag="--arch",
                                tooltip="MONAI network (tiny: a small DenseNet that trains on a CPU in seconds).")
    # the panel shows one edge (with its dimensions), the CLI 2 or 3 sizes: both read default and range from here
    inputSize: Sequence[int] = setting((64, 64), label="Input size", unit="voxels", minimum=16, maximum=512,
                                       tooltip="Network input grid (voxels per side).")
    epochs: int = setting(30, label="Epochs", minimum=1, maximum=10000, tooltip="Passes over the training images.")
    batchSize: int = setting(32, label="Batch size", minimum=1, maximum=4096, tooltip="Images per training batch.")
    learningRate: float | None = setting(None, label="Learning rate", minimum=1e-7, maximum=1.0,
                                         tooltip="Adam step size; none: the architecture's (2e-3 for the CNNs, 3e-4 "
                                                 "for the ViT).")
    weightDecay: float = setting(1e-4, label="Weight decay", minimum=0.0, maximum=1.0, tooltip="Adam weight decay.")
    augment: bool = setting(True, label="Augment", flag="--no-augment",
                            tooltip="Augment the training images: random rotations / scaling / shifts, contrast and "
                                    "noise.")
    balanceClasses: bool = setting(True, label="Balance classes",
                                   tooltip="Weight the classes by inverse frequency in the loss.")
    validationFraction: float = setting(0.2, label="Validation fraction", minimum=0.0, maximum=0.95,
                                        tooltip="Share of each class held out to pick the best epoch and to calibrate.")
    calibrate: bool = setting(True, label="Calibrate", tooltip="Fit a temperature on the validation images.")
    patience: int | None = setting(None, label="Patience", minimum=1, maximum=10000,
                                   tooltip="Stop after this many epochs without a better validation metric; none: "
                                           "never.")
    seed: int = setting(0, label="Seed", minimum=0, maximum=2**31 - 1, tooltip="Makes a training reproducible.")
    device: str = setting("auto", label="Device", tooltip="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:1...")
    schedule: str = "cosine"  # DLCommon.TrainingConfig checks it

    def validate(self) -> None:
        """Raise :class:`~DLCommon.errors.SettingError` for a setting outside its range or choices."""
        if len(self.inputSize) not in (2, 3):
            raise SettingError("inputSize", list(self.inputSize), "2 or 3 sizes")
        checkSettings(self)


@dataclasses.dataclass
class PlaneTrainingConfig:
    """How many plane images the standard-plane recogniser trains on
    (:meth:`~DLClassifyLib.logic.ClassificationLogic.trainPlanesJob`)."""

    perClass: int = setting(50, label="Planes per class", minimum=1, maximum=10000, flag="--planes-per-class",
                            tooltip="Training planes of each class drawn from the volume and from each deformed copy.")
    deformedCopies: int = setting(6, label="Deformed copies", minimum=0, maximum=100,
                                  tooltip="Randomly deformed copies of the volume whose planes are added.")

    def validate(self) -> None:
        checkSettings(self)
