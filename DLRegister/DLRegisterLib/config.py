"""DLRegister's settings, defined once (DLCommon.settings): the engines' configs, the Slicer widget's and the web
panel's controls and the ``meddl register`` / ``meddl train-register`` flags are all made from these fields.

Torch-free: the Slicer shell imports ``parameters.py`` (and so this file) before PyTorch is installed, and
``meddl --help`` stays fast. The engines take their choice lists from here (one copy).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from DLCommon.errors import SettingError
from DLCommon.settings import checkSettings, setting

__all__ = ["RegistrationConfig", "RegistrationTrainingConfig", "SIMILARITIES", "FIELD_MODELS", "REGULARISERS",
           "REGISTRATION_NETWORKS", "INITIALISATIONS", "DEFAULT_REGULARISATION"]

SIMILARITIES = ("lncc", "ssd", "mi")  # similarity.similarityFunction
FIELD_MODELS = ("ddf", "svf")  # fields.DeformationField
REGULARISERS = ("bending", "diffusion")  # fields.regularisation
REGISTRATION_NETWORKS = ("localnet", "globalnet", "regunet")  # network.buildRegistrationNetwork
INITIALISATIONS = ("centre", "none")

# bending-energy weights (1/mm^2 units, see fields.regularisation) tuned on MNI152 pairs (bench_register.py)
DEFAULT_REGULARISATION = {"lncc": 5.0, "ssd": 5.0, "mi": 80.0}
_AUTO = ", ".join(f"{weight:g} for {name}" for name, weight in DEFAULT_REGULARISATION.items())
_LEVELS = (4, 2, 1)  # the deformable pyramid: factors of the working grid's voxel size, coarse to fine
_MAX_VOXELS = 2_000_000


def _similarity():
    """The similarity setting, one definition for both engines (the panel's one control sets both)."""
    return setting("lncc", label="Similarity", choices=SIMILARITIES,
                   tooltip="lncc: same modality; ssd: same intensities; mi: different modalities.")


def _labelWeight(tooltip: str):
    """The weight of the Dice term of warped labels (weak supervision), in both engines."""
    return setting(1.0, label="Label weight", minimum=0.0, maximum=10.0, tooltip=tooltip)


def _device():
    return setting("auto", label="Device", tooltip="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:1...")


@dataclasses.dataclass
class RegistrationConfig:
    """Options of :func:`~DLRegisterLib.optimisation.registerImages` (defaults suit brain MR at 1-2 mm).

    Attributes:
        similarity: ``"lncc"`` (one modality), ``"ssd"`` (same intensities), ``"mi"`` (multi-modal).
        kernelSize: LNCC window edge (voxels of each level).
        initialisation: ``"centre"`` (align centres of mass), ``"none"`` (identity, or the initial transform).
        affine: optimise an affine transform before the deformable stage.
        affineLevels / affineIterations: pyramid factors and iterations per level of the affine stage.
        deformable: optimise a dense field after the affine stage.
        fieldModel: ``"ddf"`` or ``"svf"`` (diffeomorphic, scaling and squaring).
        regulariser: ``"bending"`` or ``"diffusion"``; ``regularisationWeight`` its weight, None: the
            default for the similarity (:data:`DEFAULT_REGULARISATION`; MI's noisier gradients need more).
        labelWeight: weight of the Dice term when fixed and moving labels are given (weak supervision).
        levels / iterations: deformable pyramid factors (relative to the working grid) and iterations, coarse to
            fine; the panel's one "iterations" number scales ``iterations``' proportions.
        learningRate: Adam step of the field per iteration, as a fraction of the level's voxel size.
        maxVoxels: the working grid is coarsened until it has at most this many voxels.
        spacing: working grid voxel size (mm); None: the fixed grid, coarsened only for ``maxVoxels``.
        device: ``"auto"`` (CUDA, MPS, CPU), or a torch device name.
    """

    similarity: str = _similarity()
    kernelSize: int = 7
    initialisation: str = setting("centre", label="Initialisation", choices=INITIALISATIONS,
                                  tooltip="centre: align the centres of mass; none: the identity (or the initial "
                                          "transform).")
    affine: bool = setting(True, label="Affine stage", flag="--no-affine",
                           tooltip="Affine stage before the deformable one; --no-affine skips it.")
    affineLevels: Sequence[float] = (4, 2)
    affineIterations: int = setting(60, label="Affine iterations", minimum=0, maximum=10000,
                                    tooltip="Iterations of the affine stage per pyramid level.")
    deformable: bool = setting(True, label="Deformable stage", flag="--affine-only",
                               tooltip="Deformable stage after the affine one; --affine-only skips it.")
    fieldModel: str = setting("ddf", label="Field", choices=FIELD_MODELS, flag="--field",
                              tooltip="ddf: dense displacement field; svf: stationary velocity field (diffeomorphic).")
    regulariser: str = setting("bending", label="Regulariser", choices=REGULARISERS,
                               tooltip="bending: bending energy (second derivatives); diffusion: gradient energy.")
    regularisationWeight: float | None = setting(
        None, label="Regularisation weight", minimum=0.0, maximum=500.0,
        tooltip=f"Weight of the regulariser: higher is smoother (less folding); auto: {_AUTO}.")
    labelWeight: float = _labelWeight("Weight of the Dice term of warped labels (fixed and moving labels given).")
    levels: Sequence[float] = _LEVELS
    iterations: Sequence[int] = setting((100, 80, 40), label="Iterations", minimum=0, maximum=2000,
                                        tooltip=f"Deformable iterations per level, coarse to fine (grids "
                                                f"{', '.join(f'{f:g}' for f in _LEVELS)} times coarser than the "
                                                f"working grid).")
    learningRate: float = 0.1
    maxVoxels: int = _MAX_VOXELS
    spacing: float | None = setting(None, label="Working spacing", unit="mm", minimum=0.1, maximum=100.0,
                                    tooltip=f"Optimise on a grid of this voxel size; auto: the fixed volume's grid "
                                            f"(coarsened above {_MAX_VOXELS:,} voxels).")
    device: str = _device()

    def validate(self) -> None:
        """Raises :class:`~DLCommon.errors.SettingError` for a setting out of its range or choices."""
        checkSettings(self)
        if len(self.levels) != len(self.iterations):
            raise SettingError("iterations", self.iterations, f"one count per level ({len(self.levels)})")
        if self.kernelSize < 3 or self.kernelSize % 2 != 1:
            raise SettingError("kernelSize", self.kernelSize, "odd and at least 3")


@dataclasses.dataclass
class RegistrationTrainingConfig:
    """Options of :func:`~DLRegisterLib.trainer.trainRegistrationModel`.

    Attributes:
        network: ``"localnet"``, ``"globalnet"`` (affine) or ``"regunet"``.
        shape: network grid (voxels per axis, multiples of 8).
        features: channels of the first level.
        similarity / kernelSize: image term (``"lncc"``, ``"ssd"``, ``"mi"``).
        regularisationWeight: bending energy weight (displacement in network-grid voxels).
        labelWeight: Dice term weight when labels are given (label-driven training); 0: unsupervised.
        epochs / batchSize / learningRate / patience / seed / device: training loop options (the seed also sets
            the initial weights).
    """

    network: str = setting("localnet", label="Network", choices=REGISTRATION_NETWORKS,
                           tooltip="MONAI LocalNet (dense), GlobalNet (affine) or RegUNet.")
    shape: Sequence[int] = setting((64, 64, 64), label="Network grid", unit="voxels", minimum=8, maximum=512,
                                   tooltip="Voxels per axis of the grid the network sees (multiples of 8).")
    features: int = setting(16, label="Features", minimum=2, maximum=256,
                            tooltip="Channels of the network's first level.")
    similarity: str = _similarity()
    kernelSize: int = 7
    regularisationWeight: float = setting(1.0, label="Regularisation weight", minimum=0.0, maximum=500.0,
                                          tooltip="Bending energy weight of the predicted field (higher is "
                                                  "smoother).")
    labelWeight: float = _labelWeight("Weight of the Dice term of warped labels (0: unsupervised).")
    epochs: int = setting(50, label="Epochs", minimum=1, maximum=10000, tooltip="Passes over the training pairs.")
    batchSize: int = setting(2, label="Batch size", minimum=1, maximum=1024, tooltip="Pairs per training batch.")
    learningRate: float = setting(1e-3, label="Learning rate", minimum=1e-7, maximum=1.0, tooltip="Adam step size.")
    patience: int | None = None
    seed: int = setting(0, label="Seed", minimum=0, maximum=2**31 - 1,
                        tooltip="Makes a training reproducible (initial weights and pair order).")
    device: str = _device()

    def validate(self) -> None:
        """Raises :class:`~DLCommon.errors.SettingError` for a setting out of its range or choices."""
        checkSettings(self)
        if len(self.shape) != 3 or any(int(n) % 8 for n in self.shape):
            raise SettingError("shape", tuple(self.shape), "3 sizes, each a multiple of 8 (e.g. 64 64 64)")
        if self.kernelSize < 3 or self.kernelSize % 2 != 1:
            raise SettingError("kernelSize", self.kernelSize, "odd and at least 3")
