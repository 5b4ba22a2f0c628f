"""Standard-plane recognition on the MNI152 brain (the seed's fetal-ultrasound plane task, on data we have).

A *plane pose* is a 4x4 plane-to-world matrix: columns ``u`` (image rows' direction, the slice view's screen
right), ``v`` (screen up), ``n`` (normal) and the plane's centre, in world RAS mm — the layout of a Slicer
slice node's ``SliceToRAS``. A plane image is ``(1, size, size)`` sampled on the plane at ``spacing`` mm,
centred on the plane's centre; pixel ``[i, j]`` lies at ``centre + (i - c) s u + (j - c) s v``.

Standard planes (MNI152 coordinates; u / v follow Slicer's axial / coronal / sagittal views):

=========================  ==================  =====================================================
class                      plane               anatomy
=========================  ==================  =====================================================
axial trans-ventricular    z = +18 mm          bodies of the lateral ventricles
axial trans-cerebellar     z = -30 mm          cerebellar hemispheres, temporal lobes
coronal trans-thalamic     y = -18 mm          thalami, third ventricle
mid-sagittal               x = 0 mm            corpus callosum, brainstem, cerebellar vermis
other                      anything else       >= 12 mm or >= 20 degrees away from every standard plane
=========================  ==================  =====================================================

A standard-plane sample is perturbed by up to 4 degrees of tilt, 10 degrees of in-plane rotation, 3 mm
along the normal and 10 mm in the plane (a sonographer's hand); "other" planes are parallel planes 12-60 mm
away, or random obliques. Poses in between (the ambiguous band) are never used for training or testing.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from DLCommon.sampling import sampleAtWorld

from .data import _antiAliased

__all__ = ["STANDARD_PLANES", "PLANE_CLASSES", "StandardPlane", "planePose", "samplePlane", "smoothForPlanes",
           "randomPlanePose", "planeClassOf", "planeDataset", "planeAffine", "slicePoses", "PLANE_SIZE",
           "PLANE_SPACING", "BRAIN_CENTRE"]

PLANE_SIZE = 64        # pixels
PLANE_SPACING = 3.5    # mm: a 224 mm field of view holds the whole head
BRAIN_CENTRE = (0.0, -18.0, 8.0)  # MNI mm, roughly the centre of the brain's bounding box

_AXIAL = ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
_CORONAL = ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0))
_SAGITTAL = ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0))


@dataclasses.dataclass(frozen=True)
class StandardPlane:
    name: str
    u: tuple[float, float, float]
    v: tuple[float, float, float]
    point: tuple[float, float, float]  # a point on the plane (MNI mm)


STANDARD_PLANES = (
    StandardPlane("axial trans-ventricular", *_AXIAL, (0.0, -18.0, 18.0)),
    StandardPlane("axial trans-cerebellar", *_AXIAL, (0.0, -18.0, -30.0)),
    StandardPlane("coronal trans-thalamic", *_CORONAL, (0.0, -18.0, 8.0)),
    StandardPlane("mid-sagittal", *_SAGITTAL, (0.0, -18.0, 8.0)),
)
PLANE_CLASSES = [p.name for p in STANDARD_PLANES] + ["other"]

STANDARD_TOLERANCE = (4.0, 8.0)    # (mm along the normal, degrees of tilt) still labelled standard
OTHER_MARGIN = (12.0, 20.0)        # "other" is at least this far (mm) or this tilted (degrees)


def planePose(u: Sequence[float], v: Sequence[float], centre: Sequence[float]) -> torch.Tensor:
    """Plane-to-world 4x4 (float64) from in-plane directions ``u``, ``v`` (orthonormalised) and the centre."""
    u = torch.as_tensor(u, dtype=torch.float64)
    u = u / u.norm()
    v = torch.as_tensor(v, dtype=torch.float64)
    v = v - (v @ u) * u
    v = v / v.norm()
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = u, v, torch.linalg.cross(u, v)
    pose[:3, 3] = torch.as_tensor(centre, dtype=torch.float64)
    return pose


def planeAffine(pose: torch.Tensor, size: int = PLANE_SIZE, spacing: float = PLANE_SPACING) -> torch.Tensor:
    """Voxel-to-world affine of the plane image as a ``(size, size, 1)`` single-slice volume."""
    affine = torch.eye(4, dtype=torch.float64)
    affine[:3, :3] = pose[:3, :3].double() * spacing
    offset = (size - 1) / 2
    affine[:3, 3] = pose[:3, 3].double() - affine[:3, 0] * offset - affine[:3, 1] * offset
    return affine


def smoothForPlanes(image: torch.Tensor, affine: torch.Tensor, spacing: float = PLANE_SPACING) -> torch.Tensor:
    """``(C, I, J, K)`` smoothed once for sampling many planes at ``spacing`` mm (no aliasing)."""
    return _antiAliased(torch.as_tensor(image).float(), affine, spacing)


def samplePlane(image: torch.Tensor, affine: torch.Tensor, pose: torch.Tensor, size: int = PLANE_SIZE,
                spacing: float = PLANE_SPACING) -> torch.Tensor:
    """The ``(C, size, size)`` image on plane ``pose`` of a ``(C, I, J, K)`` volume (zero outside it).

    Sample from :func:`smoothForPlanes` output when ``spacing`` is coarser than the volume's voxels.
    """
    planeToWorld = planeAffine(pose, size, spacing)
    ij = torch.stack(torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                                    indexing="ij"), dim=-1)
    points = ij @ planeToWorld[:3, :2].T + planeToWorld[:3, 3]
    values, _ = sampleAtWorld(torch.as_tensor(image).float()[None], affine, points[:, :, None].float(),
                              padding="zeros")
    return values[0, :, :, :, 0]


def _rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
    axis = axis / axis.norm()
    k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
                     dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _standardPose(plane: StandardPlane) -> torch.Tensor:
    """The standard plane's pose, centred on the brain centre's projection onto the plane."""
    pose = planePose(plane.u, plane.v, plane.point)
    normal, point = pose[:3, 2], torch.tensor(plane.point, dtype=torch.float64)
    centre = torch.tensor(BRAIN_CENTRE, dtype=torch.float64)
    pose[:3, 3] = centre - ((centre - point) @ normal) * normal
    return pose


def planeClassOf(pose: torch.Tensor) -> int | None:
    """Class index of a pose: a standard plane (within :data:`STANDARD_TOLERANCE`), ``other`` (beyond
    :data:`OTHER_MARGIN` of every standard plane), or None in the ambiguous band between."""
    normal, centre = pose[:3, 2].double(), pose[:3, 3].double()
    label = len(STANDARD_PLANES)
    for index, plane in enumerate(STANDARD_PLANES):
        standard = _standardPose(plane)
        tilt = math.degrees(math.acos(min(1.0, abs(float(normal @ standard[:3, 2])))))
        # distance between the planes where they cross the brain's centre line along the standard normal
        offset = abs(float((centre - standard[:3, 3]) @ normal) / max(abs(float(normal @ standard[:3, 2])), 1e-6))
        if offset <= STANDARD_TOLERANCE[0] and tilt <= STANDARD_TOLERANCE[1]:
            return index
        if offset < OTHER_MARGIN[0] and tilt < OTHER_MARGIN[1]:
            label = None
    return label


def randomPlanePose(label: int, generator: torch.Generator) -> torch.Tensor:
    """A random pose of class ``label`` (index into :data:`PLANE_CLASSES`)."""
    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))

    def randomAxis() -> torch.Tensor:
        return torch.randn(3, generator=generator, dtype=torch.float64)

    while True:
        if label < len(STANDARD_PLANES):
            pose = _standardPose(STANDARD_PLANES[label])
            offset, tilt, spin = uniform(-3, 3), math.radians(uniform(0, 4)), math.radians(uniform(-10, 10))
        else:
            plane = STANDARD_PLANES[int(torch.randint(len(STANDARD_PLANES), (), generator=generator))]
            pose = _standardPose(plane)
            if uniform(0, 1) < 0.6:  # a parallel plane elsewhere in the brain
                offset, tilt = uniform(12, 60) * (1 if uniform(0, 1) < 0.5 else -1), math.radians(uniform(0, 4))
            else:  # an oblique plane
                offset, tilt = uniform(-25, 25), math.radians(uniform(20, 90))
            spin = math.radians(uniform(-10, 10))
        normal = pose[:3, 2]
        tiltAxis = torch.linalg.cross(normal, randomAxis())
        rotation = _rotation(tiltAxis, tilt) @ _rotation(normal, spin)
        centre = pose[:3, 3] + offset * normal
        u, v = rotation @ pose[:3, 0], rotation @ pose[:3, 1]
        newNormal = torch.linalg.cross(u, v)
        shift = torch.stack([u, v], 1) @ torch.tensor([uniform(-10, 10), uniform(-10, 10)], dtype=torch.float64)
        # keep the brain centre's projection in view (what a centred slice view shows)
        brainCentre = torch.tensor(BRAIN_CENTRE, dtype=torch.float64)
        centre = brainCentre - ((brainCentre - centre) @ newNormal) * newNormal + shift
        candidate = planePose(u, v, centre)
        if planeClassOf(candidate) == label:
            return candidate


def planeDataset(volumes: Sequence[tuple[torch.Tensor, torch.Tensor]], perClass: int, seed: int,
                 size: int = PLANE_SIZE, spacing: float = PLANE_SPACING) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled plane images from MNI-space volumes.

    Args:
        volumes: ``[(image (1, I, J, K), affine 4x4), ...]`` in MNI152 space (e.g. deformed copies).
        perClass: planes per class and volume.
        seed: pose seed.

    Returns:
        ``(images (N, 1, size, size) raw intensities, labels (N,))`` with ``N = 5 * perClass * len(volumes)``.
    """
    generator = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for image, affine in volumes:
        smooth = smoothForPlanes(image, affine, spacing)
        for label in range(len(PLANE_CLASSES)):
            for _ in range(perClass):
                images.append(samplePlane(smooth, affine, randomPlanePose(label, generator), size, spacing))
                labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def slicePoses(affine: torch.Tensor, shape: Sequence[int], axis: int) -> tuple[list[torch.Tensor], list[float]]:
    """Poses of the volume's slices across voxel ``axis`` (0..2), with Slicer-view in-plane axes, and each
    slice's position (mm along the world axis closest to the slice normal) for plotting.

    Each pose is centred on the projection of the volume's centre onto the slice.
    """
    affine = torch.as_tensor(affine, dtype=torch.float64)
    normal = affine[:3, axis] / affine[:3, axis].norm()
    worldAxis = int(normal.abs().argmax())
    u, v = {2: _AXIAL, 1: _CORONAL, 0: _SAGITTAL}[worldAxis]
    u = torch.tensor(u, dtype=torch.float64)
    u = u - (u @ normal) * normal
    w = torch.linalg.cross(normal, u)
    v = w if float(w @ torch.tensor(v, dtype=torch.float64)) >= 0 else -w  # screen up stays up
    centreIndex = torch.tensor([(n - 1) / 2 for n in shape], dtype=torch.float64)
    poses, positions = [], []
    for index in range(int(shape[axis])):
        ijk = centreIndex.clone()
        ijk[axis] = index
        centre = affine[:3, :3] @ ijk + affine[:3, 3]
        poses.append(planePose(u, v, centre))
        positions.append(float(centre[worldAxis]))
    return poses, positions
