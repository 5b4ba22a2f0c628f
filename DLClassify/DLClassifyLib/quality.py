"""Image-quality grading, the seed's ordinal example: slices graded 0 (clean) to 3 (severe) by degradation.

Each degraded slice gets one artefact at a random severity ``s`` drawn within its grade (grade ``g`` covers
``s`` in ``[g - 0.4, g + 0.4]``, grade 0 ``[0, 0.4]``), so neighbouring grades differ by degree, as
ordinal classes do:

- ``noise``: Gaussian noise, standard deviation ``0.05 s`` x the slice's intensity range;
- ``blur``: Gaussian blur, sigma ``0.7 s`` pixels;
- ``motion``: k-space ghosting, as when the head moves between phase-encoding lines: a random ``12 s`` % of
  the lines take the k-space of the slice shifted by up to 4 pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .planes import PLANE_SIZE, planePose, samplePlane, smoothForPlanes

__all__ = ["DEGRADATIONS", "QUALITY_GRADES", "degrade", "qualityDataset"]

DEGRADATIONS = ("noise", "blur", "motion")
QUALITY_GRADES = ["0 clean", "1 mild", "2 moderate", "3 severe"]
QUALITY_SPACING = 2.5  # mm: a 160 mm field of view, fine enough to show the artefacts


def _gaussianBlur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0.05:
        return image
    from monai.transforms import GaussianSmooth

    return torch.as_tensor(GaussianSmooth(sigma=sigma)(image)).float()


def degrade(image: torch.Tensor, kind: str, severity: float, generator: torch.Generator) -> torch.Tensor:
    """A degraded copy of a ``(1, H, W)`` slice (see the module docstring for ``kind`` and ``severity``)."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"kind must be one of {DEGRADATIONS}, got {kind!r}.")
    image = image.float()
    if severity <= 0:
        return image.clone()
    if kind == "noise":
        spread = float(image.max() - image.min()) or 1.0
        return image + 0.05 * severity * spread * torch.randn(image.shape, generator=generator)
    if kind == "blur":
        return _gaussianBlur(image, 0.7 * severity)
    spectrum = torch.fft.fft2(image)
    shift = [float(v) for v in (torch.rand(2, generator=generator) * 8 - 4)]
    frequencies = [torch.fft.fftfreq(n) for n in image.shape[1:]]
    phase = torch.exp(-2j * math.pi * (frequencies[0][:, None] * shift[0] + frequencies[1][None, :] * shift[1]))
    lines = torch.rand(image.shape[1], generator=generator) < 0.12 * severity  # phase-encoding rows hit
    moved = torch.where(lines[None, :, None], spectrum * phase[None], spectrum)
    return torch.fft.ifft2(moved).real.float()


def qualityDataset(volumes: Sequence[tuple[torch.Tensor, torch.Tensor]], perGrade: int, seed: int,
                   size: int = PLANE_SIZE, spacing: float = QUALITY_SPACING) -> tuple[torch.Tensor, torch.Tensor]:
    """Graded slices from brain volumes: random axial / coronal / sagittal slices through the central 60 mm,
    each degraded by a random artefact at a severity within its grade.

    Args:
        volumes: ``[(image (1, I, J, K), affine), ...]`` (e.g. deformed MNI152 copies).
        perGrade: slices per grade and volume.

    Returns:
        ``(images (N, 1, size, size) raw intensities, grades (N,) in 0..3)``.
    """
    generator = torch.Generator().manual_seed(seed)
    orientations = [((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)), ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
                    ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0))]
    images, grades = [], []
    for image, affine in volumes:
        smooth = smoothForPlanes(image, affine, spacing)
        for grade in range(len(QUALITY_GRADES)):
            for _ in range(perGrade):
                u, v = orientations[int(torch.randint(3, (), generator=generator))]
                normal = torch.linalg.cross(torch.tensor(u), torch.tensor(v)).double()
                centre = torch.tensor([0.0, -18.0, 8.0], dtype=torch.float64) + normal * float(
                    torch.rand((), generator=generator) * 60 - 30)
                clean = samplePlane(smooth, affine, planePose(u, v, centre), size, spacing)
                low, high = (0.0, 0.4) if grade == 0 else (grade - 0.4, grade + 0.4)
                severity = low + (high - low) * float(torch.rand((), generator=generator))
                kind = DEGRADATIONS[int(torch.randint(len(DEGRADATIONS), (), generator=generator))]
                images.append(degrade(clean, kind, severity, generator))
                grades.append(grade)
    return torch.stack(images), torch.tensor(grades)
