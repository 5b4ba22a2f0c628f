"""Shared fixtures: a fresh MRML scene per test (real slicer-core MRML), isolated model cache / catalog."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT, ROOT / "DLSegment", ROOT / "DLRegister", ROOT / "DLSynthesize", ROOT / "DLClassify"):  # also without `pip install -e .`
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(autouse=True, scope="session")
def _quietVtk():
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)


@pytest.fixture(autouse=True)
def _isolatedMedDLHome(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDDL_HOME", str(tmp_path / "meddl-home"))
    monkeypatch.setenv("MEDDL_CACHE", str(tmp_path / "meddl-cache"))
    monkeypatch.delenv("MEDDL_DEVICE", raising=False)


@pytest.fixture
def scene():
    import slicer

    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene  # slicer.util helpers look here
    yield scene
    scene.Clear(1)


GEOMETRY_ATOL_MM = 1e-9
"""The precision MedDL promises for geometry: voxel positions, origins, spacings and IJK-to-RAS affines agree
to 1e-9 mm (affine entries are mm per voxel index; the bottom row is compared too)."""


def assertGeometryClose(actual, expected, err_msg: str = "") -> None:
    """Assert that two geometries (4x4 affines, RAS positions, origins, spacings; mm) agree to 1e-9 mm.

    Geometry passes through floating-point products (MRML keeps spacing, directions and origin apart and
    multiplies them back; parent transforms are composed), so a last bit may differ (~2e-16) between runs,
    machines and BLAS builds: bit equality would test that rounding, not the product. The tolerance is
    absolute (``rtol=0``), so it does not grow with the distance from the RAS origin. Use bit equality only for
    integers, labels and voxel values that are copied, not computed.

    Accepts NumPy arrays, torch tensors (including MONAI MetaTensor affines) and scalars.
    """
    np.testing.assert_allclose(_float64(actual), _float64(expected), rtol=0, atol=GEOMETRY_ATOL_MM, err_msg=err_msg)


def _float64(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor / MetaTensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def randomRotation(rng: np.random.Generator) -> np.ndarray:
    """A random proper rotation (det +1), i.e. an oblique direction matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def makeVolume(scene, array_kji: np.ndarray, ijkToRas: np.ndarray, name: str = "vol", className="vtkMRMLScalarVolumeNode"):
    """Volume node from a (K, J, I) array and a 4x4 IJK-to-RAS matrix."""
    import slicer
    import vtk

    node = scene.AddNewNodeByClass(className, name)
    slicer.util.updateVolumeFromArray(node, array_kji)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijkToRas[r, c]))
    node.SetIJKToRASMatrix(matrix)
    return node


def obliqueAffine(rng: np.random.Generator, spacing=(0.7, 1.3, 2.9)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = randomRotation(rng) @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-100, 100, size=3)
    return affine
