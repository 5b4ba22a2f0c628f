"""DLSynthesize's settings, defined once (DLCommon.settings): the engines' configs, the Slicer widget's and the web
panel's controls and the ``meddl super-resolve | train-synthesis | synthesize | simulate-us`` flags are all made
from these fields and tuples. Torch-free (the Slicer shell imports it through ``parameters.py`` before PyTorch is
installed, and ``meddl --help`` imports no engine).

The engines re-export their config (``from .superresolution import SuperResolutionConfig`` keeps working).
"""

from __future__ import annotations

import dataclasses

from DLCommon.errors import SettingError
from DLCommon.settings import checkSettings, defaultOf, setting

__all__ = ["SuperResolutionConfig", "DenoiseConfig", "ImageToImageConfig", "Pix2PixConfig", "UltrasoundConfig",
           "TASKS", "SELF_SUPERVISED", "NETWORKS", "TRAINING_MODES", "PAIRED_METHODS",
           "DIMENSIONS", "LOSSES", "PROBE_GEOMETRIES", "MODALITIES", "PATCH_SIZE_3D"]

# --- choices --------------------------------------------------------------------------------------------------
TASKS = ("super-resolution", "denoise", "image-to-image", "ultrasound")  # the panel's tasks (the first: its default)
SELF_SUPERVISED = ("super-resolution", "denoise")  # each trains on the volume it processes
NETWORKS = {"U-Net": "unet", "pix2pix": "pix2pix"}  # the panel's image-to-image networks -> the logic's method
PAIRED_METHODS = ("unet", "pix2pix", "iqt")  # SynthesisLogic.imageToImageJob(method=...): trained on pairs
TRAINING_MODES = ("unet", "pix2pix", "autoencoder", "iqt")  # meddl train-synthesis --mode (the first: default)
DIMENSIONS = (2, 3)  # slice-wise or patch-wise (the panel shows "2D" / "3D")
LOSSES = ("l1", "l2", "l1ssim")
PROBE_GEOMETRIES = ("sector", "linear")
MODALITIES = ("mr", "ct")  # a CT / MR volume's intensities -> tissue (ultrasound); the first: default
PATCH_SIZE_3D = 32  # the 3D patch edge the faces train with (a 64^3 patch: 8x the memory and time of 32^3)

# --- shared field definitions (one per meaning; each config keeps its own default) ---------------------------
_STEPS = dict(label="Training steps", minimum=10, maximum=100000,
              tooltip="Training iterations, each a batch of patches (fewer than 25 still run one epoch of 25).")
_DEVICE = dict(default="auto", label="Device", tooltip="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:1...")
_SEED = dict(default=0, label="Seed", minimum=0, maximum=2**31 - 1, tooltip="Makes the training reproducible.")
_FEATURES = dict(label="Features", minimum=4, maximum=256, tooltip="Channels of the U-Net's first level.")
_BATCH = dict(label="Batch size", minimum=1, maximum=1024, tooltip="Patches per training step.")
_PATCH = dict(label="Patch size", unit="voxels", minimum=8, maximum=512, tooltip="Edge of a training patch.")


@dataclasses.dataclass
class SuperResolutionConfig:
    """Options of :func:`~.superresolution.superResolve`.

    Attributes:
        factor: slice spacing / in-plane spacing; None: from the volume's geometry (rounded).
        steps: training iterations (batches of 2D patches).
        patchSize: training patch edge (pixels, in-plane).
        batchSize: patches per step.
        features: channels of the U-Net's first level.
        learningRate: Adam step.
        device: ``"auto"`` or a torch device name.
        seed: makes training reproducible.
    """

    factor: int | None = setting(None, label="Factor", minimum=2, maximum=32,
                                 tooltip="Slice spacing / pixel size; none: from the volume's geometry.")
    steps: int = setting(600, **_STEPS)  # also the panel's "trainingSteps" default (parameters.py)
    patchSize: int = setting(64, **_PATCH)
    batchSize: int = setting(16, **_BATCH)
    features: int = setting(32, **_FEATURES)
    learningRate: float = setting(1e-3, label="Learning rate", minimum=1e-7, maximum=1.0, tooltip="Adam step size.")
    device: str = setting(**_DEVICE)
    seed: int = setting(**_SEED)

    def validate(self) -> None:
        checkSettings(self)


@dataclasses.dataclass
class DenoiseConfig:
    """Options of :func:`~.denoise.denoise`: ``noiseLevel`` (standard deviation, image units; None: estimated),
    ``alpha`` (re-corruption strength), ``copies`` (re-corrupted training pairs), ``draws`` (averaged at
    inference) and the U-Net training options.

    ``steps``: 1200 here (the engine's tuned default, see :mod:`.denoise`); the panel's shared "trainingSteps" and
    ``meddl train-synthesis --mode autoencoder --steps`` start from 600, the other tasks' default.
    """

    noiseLevel: float | None = None
    alpha: float = 1.0
    copies: int = 8
    draws: int = 4
    steps: int = setting(1200, **_STEPS)
    patchSize: int = setting(64, **_PATCH)
    batchSize: int = setting(16, **_BATCH)
    features: int = setting(32, **_FEATURES)
    sliceAxis: int = 2
    dimensions: int = 2
    seed: int = setting(**_SEED)
    device: str = setting(**_DEVICE)

    def validate(self) -> None:
        checkSettings(self)


@dataclasses.dataclass
class ImageToImageConfig:
    """Options of :func:`~.imagetoimage.trainImageToImage`.

    Attributes:
        dimensions: 2 (slice-wise along ``sliceAxis``) or 3 (patch-wise).
        sliceAxis: voxel axis the 2D slices are taken across (2D only).
        patchSize: training patch edge (voxels).
        batchSize / steps / learningRate / features / seed / device: training options.
        loss: ``"l1"``, ``"l2"`` or ``"l1ssim"`` (L1 + ``ssimWeight`` x (1 - SSIM)).
        residual: predict ``source + correction`` (denoising, artefact removal) instead of a new image.
    """

    dimensions: int = setting(2, label="Dimensions", minimum=min(DIMENSIONS), maximum=max(DIMENSIONS),
                              tooltip="2: slice-wise U-Net (fast); 3: patch-wise (U-Net only).")
    sliceAxis: int = 2
    patchSize: int = setting(64, **_PATCH)
    batchSize: int = setting(16, **_BATCH)
    steps: int = setting(600, **_STEPS)
    learningRate: float = setting(1e-3, label="Learning rate", minimum=1e-7, maximum=1.0, tooltip="Adam step size.")
    features: int = setting(32, **_FEATURES)
    loss: str = setting("l1", label="Loss", choices=LOSSES, tooltip="L1, L2, or L1 + SSIM.")
    ssimWeight: float = 0.2
    residual: bool = False
    seed: int = setting(**_SEED)
    device: str = setting(**_DEVICE)

    @classmethod
    def forDimensions(cls, dimensions: int | None = None, **options):
        """The config the faces train with: ``PATCH_SIZE_3D`` patches in 3D (unless ``patchSize`` is given)."""
        dimensions = defaultOf(cls, "dimensions") if dimensions is None else int(dimensions)
        if dimensions == 3:
            options.setdefault("patchSize", PATCH_SIZE_3D)
        return cls(dimensions=dimensions, **options)

    def validate(self) -> None:
        checkSettings(self)


@dataclasses.dataclass
class Pix2PixConfig(ImageToImageConfig):
    """:class:`ImageToImageConfig` (2D) plus ``l1Weight`` (pix2pix uses 100 for 0..1 images) and the
    discriminator's learning rate."""

    l1Weight: float = 100.0
    discriminatorLearningRate: float = 2e-4
    learningRate: float = setting(2e-4, label="Learning rate", minimum=1e-7, maximum=1.0,
                                  tooltip="The generator's Adam step size.")


@dataclasses.dataclass
class UltrasoundConfig:
    """Probe and display parameters (mm, degrees, MHz, dB). See :mod:`.ultrasound` for the model."""

    geometry: str = setting("sector", label="Probe geometry", choices=PROBE_GEOMETRIES,
                            tooltip="Sector (fan from a point, e.g. a phased or curvilinear probe) or linear "
                                    "(parallel beams).")
    depth: float = setting(120.0, label="Depth", unit="mm", minimum=10.0, maximum=300.0, tooltip="Imaging depth.")
    angle: float = 70.0           # sector opening (sector probes)
    width: float = 40.0           # aperture width (linear probes)
    frequency: float = setting(5.0, label="Frequency", unit="MHz", minimum=1.0, maximum=20.0,
                               tooltip="Centre frequency: higher is sharper but attenuates faster.")
    axialResolution: float = 0.6  # PSF FWHM along the beam
    lateralResolution: float = 1.5  # PSF FWHM across beams
    axialStep: float = 0.2        # beam sampling
    beams: int = 192              # beams across the sector / aperture
    pixelSize: float = 0.3        # output image pixels
    tgc: float = 1.0              # 1: fully compensates ``tgcAttenuation``; 0: none
    tgcAttenuation: float = 0.6   # dB/cm/MHz the TGC assumes
    dynamicRange: float = 50.0    # dB shown
    gain: float = 0.0             # dB added before display
    seed: int = 0

    def validate(self) -> None:
        checkSettings(self)
        for name in ("angle", "width", "axialResolution", "lateralResolution", "axialStep", "pixelSize",
                     "dynamicRange"):
            if getattr(self, name) <= 0:
                raise SettingError(name, getattr(self, name), "> 0")
