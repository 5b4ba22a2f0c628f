"""Ultrasound simulation: a B-mode image from a label map (or a CT / MR volume) and a probe pose.

The seed's ultrasound simulation, for training models and clinicians, by a ray-based convolution model:

1. **Beams.** A sector (curvilinear / phased) or linear probe sends beams in the probe's image plane; each
   beam is sampled every ``axialStep`` mm down to ``depth``. The tissue properties are read at those points.
2. **Tissue.** Per label (or from intensities): echogenicity (scatter amplitude, 0..1), attenuation
   (dB / cm / MHz) and acoustic impedance (MRayl). Defaults for brain tissue and bone in :data:`TISSUES`.
3. **Speckle.** Scatterers are complex Gaussian noise weighted by echogenicity, convolved with the
   point-spread function: Gaussian envelope, axial FWHM ``axialResolution`` and lateral FWHM
   ``lateralResolution`` (mm); the envelope magnitude is Rayleigh distributed (fully developed speckle).
4. **Interfaces.** Impedance steps reflect ``R = ((Z2 - Z1) / (Z2 + Z1))^2`` of the energy: a bright specular
   echo, and only ``1 - R`` travels on: strong reflectors (bone, air) cast **shadows**.
5. **Attenuation** ``exp(-2 * alpha * f * depth)`` (round trip, cumulative along the beam) and
   **time-gain compensation** ``exp(+2 * tgc * alpha0 * f * depth)`` for an average tissue ``alpha0``.
6. **Display.** Log compression over ``dynamicRange`` dB to 0..255, scan-converted onto a Cartesian image
   (``pixelSize`` mm) in the probe plane; outside the fan is 0.

Probe frame (a 4x4 probe-to-world matrix, RAS mm): origin = the centre of the transducer face, +Y = the beam
direction (depth), +X = lateral (image columns), +Z = elevation (normal to the image plane). The output is a
``(1, X, Y, 1)`` MetaTensor whose affine places the image in that plane, so it overlays the volume in Slicer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from DLCommon import DLError
from DLCommon.errors import SettingError
from DLCommon.sampling import sampleAtWorld

from .config import MODALITIES, UltrasoundConfig  # defined there (torch-free, with what the faces show); re-exported

__all__ = ["UltrasoundConfig", "Tissue", "TISSUES", "simulateUltrasound", "tissueMapsFromLabels",
           "tissueMapsFromIntensity", "probePose", "simulateSweep"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass(frozen=True)
class Tissue:
    """Acoustic properties: ``echogenicity`` 0..1, ``attenuation`` dB/cm/MHz, ``impedance`` MRayl."""

    echogenicity: float
    attenuation: float
    impedance: float


# Typical values (Szabo, Diagnostic Ultrasound Imaging, 2014; Duck, Physical Properties of Tissue, 1990)
TISSUES = {
    "background": Tissue(0.02, 0.002, 1.48),  # water / CSF: anechoic, hardly attenuating
    "grey matter": Tissue(0.35, 0.6, 1.60),
    "white matter": Tissue(0.65, 0.9, 1.62),
    "soft tissue": Tissue(0.5, 0.54, 1.63),
    "fat": Tissue(0.3, 0.48, 1.38),
    "bone": Tissue(1.0, 10.0, 7.8),
    "air": Tissue(0.0, 40.0, 0.0004),
}


def tissueMapsFromLabels(labels: torch.Tensor, tissues: dict[int, Tissue]) -> torch.Tensor:
    """``(3, I, J, K)`` echogenicity / attenuation / impedance maps from an integer label map ``(I, J, K)``.

    Labels missing from ``tissues`` get ``TISSUES["soft tissue"]``.
    """
    maps = torch.empty((3,) + tuple(labels.shape))
    default = TISSUES["soft tissue"]
    maps[0], maps[1], maps[2] = default.echogenicity, default.attenuation, default.impedance
    for value, tissue in tissues.items():
        where = labels == int(value)
        maps[0][where], maps[1][where], maps[2][where] = tissue.echogenicity, tissue.attenuation, tissue.impedance
    return maps


def tissueMapsFromIntensity(image: torch.Tensor, modality: str = "mr") -> torch.Tensor:
    """``(3, I, J, K)`` tissue maps from a CT (Hounsfield units) or MR volume ``(I, J, K)``.

    CT: air below -500 HU, bone above 300 HU, soft tissue in between (echogenicity rising with density).
    MR: echogenicity from the intensity scaled 0..1 (percentiles), soft-tissue attenuation and impedance
    rising slightly with it.
    """
    image = image.float()
    if modality == "ct":
        labels = torch.full(image.shape, 1, dtype=torch.int64)
        labels[image < -500] = 0
        labels[image > 300] = 2
        maps = tissueMapsFromLabels(labels, {0: TISSUES["air"], 1: TISSUES["soft tissue"], 2: TISSUES["bone"]})
        soft = labels == 1
        maps[0][soft] = ((image[soft] + 200) / 300).clamp(0.05, 0.9)
        return maps
    if modality not in MODALITIES:
        raise SettingError("modality", modality, f"one of {', '.join(MODALITIES)}")
    values = image.reshape(-1)[:: max(1, image.numel() // 1_000_000)]
    low, high = torch.quantile(values, torch.tensor([0.01, 0.99]))
    scaled = ((image - low) / max(float(high - low), 1e-6)).clamp(0, 1)
    return torch.stack([0.02 + 0.8 * scaled, 0.002 + 0.9 * scaled, 1.48 + 0.15 * scaled])


def probePose(position: Sequence[float], target: Sequence[float], planeNormal: Sequence[float]) -> torch.Tensor:
    """Probe-to-world 4x4 from the transducer ``position``, a ``target`` point on the beam axis, and the
    normal of the image plane (made orthogonal to the beam)."""
    origin = torch.tensor(position, dtype=torch.float64)
    axial = torch.tensor(target, dtype=torch.float64) - origin
    if float(axial.norm()) == 0:
        raise DLError("has its target at its own position", node="The probe pose", fix="pick a target point deeper")
    axial = axial / axial.norm()
    normal = torch.tensor(planeNormal, dtype=torch.float64)
    normal = normal - (normal @ axial) * axial
    if float(normal.norm()) < 1e-6:
        raise DLError("has a plane normal along the beam", node="The probe pose", fix="give a normal across the beam")
    normal = normal / normal.norm()
    lateral = torch.linalg.cross(axial, normal)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = lateral, axial, normal, origin
    return pose


def _gaussian1d(fwhm: float, step: float) -> torch.Tensor:
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2))) / step
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.norm()


def _beamPoints(config: UltrasoundConfig, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """World points ``(beams, samples, 3)``, the depth of each sample (mm), and the beam spacing (mm; for a
    sector at mid-depth, where the lateral point-spread function is sized)."""
    depths = torch.arange(0.0, config.depth, config.axialStep, dtype=torch.float64)
    if config.geometry == "sector":
        angles = torch.deg2rad(torch.linspace(-config.angle / 2, config.angle / 2, config.beams, dtype=torch.float64))
        lateral = torch.sin(angles)[:, None] * depths[None]
        axial = torch.cos(angles)[:, None] * depths[None]
        spacing = math.radians(config.angle) / max(config.beams - 1, 1) * config.depth / 2  # at mid-depth
    else:
        offsets = torch.linspace(-config.width / 2, config.width / 2, config.beams, dtype=torch.float64)
        lateral = offsets[:, None].expand(-1, depths.numel())
        axial = depths[None].expand(config.beams, -1)
        spacing = config.width / max(config.beams - 1, 1)
    local = torch.stack([lateral, axial, torch.zeros_like(lateral)], dim=-1)
    world = local @ pose[:3, :3].T + pose[:3, 3]
    return world.float(), depths.float(), spacing


def simulateUltrasound(maps: torch.Tensor, affine: torch.Tensor, pose: torch.Tensor,
                       config: UltrasoundConfig | None = None) -> MetaTensor:
    """One B-mode frame.

    Args:
        maps: ``(3, I, J, K)`` tissue maps (:func:`tissueMapsFromLabels` / :func:`tissueMapsFromIntensity`).
        affine: the maps' voxel -> world RAS matrix.
        pose: probe-to-world 4x4 (see the module docstring).
        config: :class:`UltrasoundConfig`.

    Returns:
        ``(1, X, Y, 1)`` float32 image 0..255 (X lateral, Y depth) with the affine of the probe plane.

    Raises:
        DLError: the probe's field of view misses the volume.
    """
    config = config or UltrasoundConfig()
    config.validate()
    pose = torch.as_tensor(pose, dtype=torch.float64)
    points, depths, beamSpacing = _beamPoints(config, pose)
    sampled, inside = sampleAtWorld(maps[None].float(), torch.as_tensor(affine), points[None], padding="border")
    coverage = float(inside.float().mean())
    if coverage < 0.05:
        raise DLError(f"sees {100 * coverage:.0f}% of its field of view inside the volume",
                      node="The probe pose", fix="place the probe on or near the volume, pointing into it")
    echo, attenuation, impedance = sampled[0, :, 0]  # each (beams, samples)
    outside = ~inside[0, 0, 0]
    echo = echo.masked_fill(outside, 0.0)
    attenuation = attenuation.masked_fill(outside, TISSUES["background"].attenuation)
    generator = torch.Generator().manual_seed(config.seed)
    # speckle: complex Gaussian scatterers weighted by echogenicity, convolved with the PSF (separable)
    scatterers = torch.complex(torch.randn(echo.shape, generator=generator), torch.randn(echo.shape, generator=generator))
    field = scatterers * echo
    axialKernel = _gaussian1d(config.axialResolution, config.axialStep)
    lateralKernel = _gaussian1d(config.lateralResolution, beamSpacing)
    parts = []
    for part in (field.real, field.imag):
        x = part[None, None]
        x = F.conv2d(F.pad(x, (axialKernel.numel() // 2,) * 2 + (0, 0), mode="reflect"), axialKernel.reshape(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0) + (lateralKernel.numel() // 2,) * 2, mode="reflect"),
                     lateralKernel.reshape(1, 1, -1, 1))
        parts.append(x[0, 0])
    envelope = torch.sqrt(parts[0] ** 2 + parts[1] ** 2)
    # interfaces: energy reflection between consecutive samples; transmission falls behind strong ones
    z1, z2 = impedance[:, :-1], impedance[:, 1:]
    reflection = ((z2 - z1) / (z2 + z1).clamp(min=1e-6)) ** 2
    reflection = torch.cat([torch.zeros_like(reflection[:, :1]), reflection], dim=1).masked_fill(outside, 0.0)
    transmission = torch.cumprod(1.0 - reflection, dim=1)
    specular = reflection.sqrt() * 4.0  # specular echoes are much brighter than scattering
    specular = F.conv1d(F.pad(specular[:, None], (axialKernel.numel() // 2,) * 2), axialKernel.reshape(1, 1, -1))[:, 0]
    # attenuation (round trip) and time-gain compensation, in nepers: dB / 8.686
    stepCm = config.axialStep / 10.0
    loss = torch.cumsum(attenuation * config.frequency * stepCm, dim=1) * 2.0 / 8.686
    compensation = 2.0 * config.tgc * config.tgcAttenuation * config.frequency * (depths / 10.0) / 8.686
    amplitude = (envelope + specular) * torch.exp(-loss + compensation[None]) * transmission
    # log compression for display
    decibels = 20.0 * torch.log10(amplitude.clamp(min=1e-12)) + config.gain
    reference = torch.quantile(decibels[decibels > -200].reshape(-1)[::7], 0.99)
    display = ((decibels - reference + config.dynamicRange) / config.dynamicRange).clamp(0, 1) * 255.0
    return _scanConvert(display, depths, config, pose)


def _scanConvert(display: torch.Tensor, depths: torch.Tensor, config: UltrasoundConfig, pose: torch.Tensor
                 ) -> MetaTensor:
    """Beams ``(beams, samples)`` -> a Cartesian image ``(1, X, Y, 1)`` in the probe plane."""
    if config.geometry == "sector":
        halfWidth = config.depth * math.sin(math.radians(config.angle / 2))
    else:
        halfWidth = config.width / 2
    columns = int(math.ceil(2 * halfWidth / config.pixelSize)) + 1
    rows = int(math.ceil(config.depth / config.pixelSize)) + 1
    x = -halfWidth + torch.arange(columns, dtype=torch.float32) * config.pixelSize
    y = torch.arange(rows, dtype=torch.float32) * config.pixelSize
    xx, yy = torch.meshgrid(x, y, indexing="ij")  # (X, Y)
    if config.geometry == "sector":
        radius = torch.sqrt(xx ** 2 + yy ** 2)
        angle = torch.rad2deg(torch.atan2(xx, yy))
        u = angle / (config.angle / 2)  # -1..1 across beams
    else:
        radius = yy
        u = xx / halfWidth
    v = radius / float(depths[-1]) * 2 - 1  # -1..1 along the beam
    grid = torch.stack([v, u], dim=-1)[None]  # grid_sample: (x = samples, y = beams)
    image = F.grid_sample(display[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0]
    image = image.masked_fill((u.abs() > 1) | (v > 1), 0.0)
    affine = pose.clone()
    affine[:3, 0] = pose[:3, 0] * config.pixelSize
    affine[:3, 1] = pose[:3, 1] * config.pixelSize
    affine[:3, 3] = pose[:3, 3] - pose[:3, 0] * halfWidth
    return MetaTensor(image[..., None][None], affine=affine, meta={"space": "RAS"})


def simulateSweep(maps: torch.Tensor, affine: torch.Tensor, poses: Sequence[torch.Tensor],
                  config: UltrasoundConfig | None = None, progress: Progress | None = None) -> MetaTensor:
    """Frames along a sweep of parallel probe poses, stacked into a ``(1, X, Y, N)`` volume.

    The poses must share their orientation and be evenly spaced (a translation sweep, e.g. a probe slid
    across the skin), so the stack is a volume with one voxel grid; each frame keeps its own speckle.
    """
    config = config or UltrasoundConfig()
    poses = [torch.as_tensor(p, dtype=torch.float64) for p in poses]
    if len(poses) < 2:
        raise DLError("has fewer than two poses", node="The sweep", fix="give at least two probe poses")
    step = poses[1][:3, 3] - poses[0][:3, 3]
    for index, pose in enumerate(poses[1:], start=1):
        if not torch.allclose(pose[:3, :3], poses[0][:3, :3], atol=1e-6) or \
                not torch.allclose(pose[:3, 3] - poses[0][:3, 3], index * step, atol=1e-3):
            raise DLError(f"pose {index + 1} is not a parallel, evenly spaced step from the first",
                          node="The sweep", fix="simulate frames one by one for a free-hand sweep")
    frames = []
    for index, pose in enumerate(poses):
        frames.append(simulateUltrasound(maps, affine, pose, dataclasses.replace(config, seed=config.seed + index)))
        if progress:
            progress((index + 1) / len(poses), f"ultrasound frame {index + 1}/{len(poses)}")
    stacked = torch.cat([f.as_tensor() for f in frames], dim=-1)
    stackAffine = torch.as_tensor(frames[0].affine).clone()
    stackAffine[:3, 2] = step
    return MetaTensor(stacked, affine=stackAffine, meta={"space": "RAS"})
