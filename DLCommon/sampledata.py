"""Real sample data shipped inside pip packages (no download): the MNI152 2009 template from nilearn.

``mni152Paths()`` -> paths of the T1 template and its grey / white matter probability maps
(197 x 233 x 189 voxels, 1 mm, uint8 0-255, RAS).
"""

from __future__ import annotations

from pathlib import Path

from .errors import DLError

import torch

__all__ = ["mni152Paths", "loadMNI152", "tissueLabels", "TISSUE_NAMES", "TISSUE_COLORS", "mni152Tissue",
           "sampleTissue", "SAMPLE_SPACING",
           "randomCopy"]

TISSUE_NAMES = ["grey matter", "white matter"]
TISSUE_COLORS = [(0.90, 0.62, 0.0), (0.34, 0.71, 0.91)]


def mni152Paths() -> dict[str, Path]:
    """``{"t1": ..., "gm": ..., "wm": ...}`` NIfTI paths inside the installed nilearn package."""
    try:
        import nilearn.datasets
    except ImportError:
        raise DLError("nilearn is not installed, so the MNI152 sample data is missing", node="Sample data",
                      fix="pip install nilearn (the README's setup command installs it)") from None
    folder = Path(nilearn.datasets.__file__).parent / "data"
    paths = {key: folder / f"mni_icbm152_{key}_tal_nlin_sym_09a_converted.nii.gz" for key in ("t1", "gm", "wm")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DLError(f"is missing files {missing}", node="nilearn's MNI152 data", fix="reinstall nilearn")
    return paths


def loadMNI152(scene) -> dict[str, object]:
    """Load the T1 template and GM / WM maps as volume nodes ``MNI152_T1``, ``MNI152_GM``, ``MNI152_WM``."""
    from .storage import loadVolume

    return {key: loadVolume(path, scene, name=f"MNI152_{key.upper()}") for key, path in mni152Paths().items()}


def tissueLabels(gm: torch.Tensor, wm: torch.Tensor) -> torch.Tensor:
    """Labels 0 = background, 1 = grey matter, 2 = white matter from probability maps (any scale).

    A tissue wins where its probability is highest and above one half of the maximum (255 for the
    uint8 MNI152 maps); elsewhere background (CSF, skull, outside).
    """
    gm, wm = (t.as_tensor() if hasattr(t, "as_tensor") else t for t in (gm.float(), wm.float()))
    full = 255.0 if float(torch.maximum(gm.max(), wm.max())) > 1.0 else 1.0
    background = torch.clamp(full - gm - wm, min=0.0)
    return torch.stack([torch.maximum(background, torch.full_like(gm, full / 2)), gm, wm]).argmax(0)


def mni152Tissue(spacing: float | None = 2.0):
    """The MNI152 T1 and its tissue labels as tensors, optionally resampled to ``spacing`` mm.

    Returns:
        ``(image, labels)``: MetaTensor ``(1, I, J, K)`` float32 (T1, 0-255) and int64 ``(I, J, K)`` labels
        (see :func:`tissueLabels`) on the same grid.
    """
    import slicer
    from monai.transforms import Spacing

    from .volumes import tensorFromVolume

    scene = slicer.vtkMRMLScene()
    nodes = loadMNI152(scene)
    image, gm, wm = (tensorFromVolume(nodes[key]) for key in ("t1", "gm", "wm"))
    if spacing is not None:  # resample the probability maps, then label: smoother than resampling labels
        image, gm, wm = (Spacing(pixdim=(spacing,) * 3, mode="bilinear")(t) for t in (image, gm, wm))
    labels = tissueLabels(gm[0], wm[0])
    scene.Clear(1)
    return image, labels


SAMPLE_SPACING = 3.0  # mm: small enough for the samples' workflows (browser, demos) to train on a CPU
_sampleTissue: list = []


def sampleTissue():
    """:func:`mni152Tissue` at :data:`SAMPLE_SPACING`, made once per process (callers copy before changing it)."""
    if not _sampleTissue:
        _sampleTissue.append(mni152Tissue(SAMPLE_SPACING))
    return _sampleTissue[0]


def randomCopy(image, labels: torch.Tensor, seed: int, deform: bool = True, bias: bool = True,
               noise: bool = True, contrast: bool = True):
    """A realistic random variant of ``(image (1, I, J, K), labels (I, J, K))`` on the same grid.

    Smooth elastic deformation + small rotation / scaling (applied to both), a multiplicative bias
    field, a gamma contrast change and Gaussian noise (image only), all from MONAI transforms and
    reproducible from ``seed``. Labels are deformed as one-hot channels with linear interpolation and
    then take the most likely class: the reference follows the warped anatomy as smoothly as the
    (linearly interpolated) image does, without the staircase of nearest-neighbour label warping.
    """
    from monai.transforms import (Compose, Rand3DElasticd, RandAdjustContrastd, RandBiasFieldd,
                                  RandGaussianNoised)

    spread = float(image.max() - image.min()) or 1.0
    steps = []
    if deform:
        steps.append(Rand3DElasticd(keys=["image", "label"], sigma_range=(6, 8), magnitude_range=(40, 80), prob=1.0,
                                    rotate_range=(0.1, 0.1, 0.1), scale_range=(0.06, 0.06, 0.06),
                                    mode=("bilinear", "bilinear"), padding_mode="zeros"))
    if bias:
        # every polynomial coefficient is drawn in this range: (0.02, 0.05) gives roughly 0.8x-1.7x fields
        steps.append(RandBiasFieldd(keys=["image"], coeff_range=(0.02, 0.05), prob=1.0))
    if contrast:
        steps.append(RandAdjustContrastd(keys=["image"], gamma=(0.8, 1.25), prob=1.0))
    if noise:
        steps.append(RandGaussianNoised(keys=["image"], std=0.03 * spread, prob=1.0))
    transform = Compose(steps)
    transform.set_random_state(seed=seed)
    labels = labels.as_tensor() if hasattr(labels, "as_tensor") else labels
    oneHot = torch.nn.functional.one_hot(labels.long(), int(labels.max()) + 1).permute(3, 0, 1, 2).float()
    out = transform({"image": image.clone(), "label": oneHot})
    outLabels = out["label"].argmax(0)  # outside the field of view every channel is 0: background
    return out["image"].float(), (outLabels.as_tensor() if hasattr(outLabels, "as_tensor") else outLabels)
