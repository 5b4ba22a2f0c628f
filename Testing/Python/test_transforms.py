"""Displacement fields <-> MRML transforms, and physical-space resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import vtk
from conftest import assertGeometryClose, makeVolume, obliqueAffine

from DLCommon import DLError, displacementFromTransform, gridTransformFromDisplacement, resampleVolume
from DLCommon.geometry import ijkToRasMatrix


def trilinear(ddf: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Independent reference: trilinear interpolation of a (3, I, J, K) field at RAS points."""
    ijk = (points - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    base = np.floor(ijk).astype(int)
    frac = ijk - base
    out = np.zeros((len(points), 3))
    for corner in np.ndindex(2, 2, 2):
        idx = base + np.array(corner)
        weight = np.prod(np.where(np.array(corner) == 1, frac, 1 - frac), axis=1)
        out += weight[:, None] * ddf[:, idx[:, 0], idx[:, 1], idx[:, 2]].T
    return out


def test_grid_transform_matches_ddf_at_1000_random_points(scene):
    rng = np.random.default_rng(5)
    affine = obliqueAffine(rng, spacing=(1.5, 2.0, 2.5))
    shape = (12, 14, 10)
    reference = makeVolume(scene, np.zeros(shape[::-1], np.float32), affine)
    ddf = torch.from_numpy(rng.normal(scale=3.0, size=(3,) + shape).astype(np.float32))
    node = gridTransformFromDisplacement(ddf, reference, scene)

    # random points strictly inside the grid, in world RAS
    ijk = rng.uniform(0.01, np.array(shape) - 1.01, size=(1000, 3))
    points = ijk @ affine[:3, :3].T + affine[:3, 3]
    fromWorld = vtk.vtkGeneralTransform()
    node.GetTransformFromWorld(fromWorld)
    mapped = np.array([fromWorld.TransformPoint(*p) for p in points])
    expected = points + trilinear(ddf.double().numpy(), affine, points)
    assert np.abs(mapped - expected).max() < 0.01

    # and the field read back at the voxel centres is the field put in
    back = displacementFromTransform(node, reference)
    assert back.shape == (3,) + shape
    assert (back - ddf).abs().max() < 1e-4
    assertGeometryClose(back.affine, affine)  # MRML stores spacing/directions and multiplies them back


def test_linear_transform_matches_vtk_transform(scene):
    rng = np.random.default_rng(9)
    reference = makeVolume(scene, np.zeros((6, 7, 8), np.float32), obliqueAffine(rng))
    transform = vtk.vtkTransform()
    transform.RotateWXYZ(25, 0.3, 0.5, 0.8)
    transform.Scale(1.1, 0.9, 1.0)
    transform.Translate(4, -7, 12)
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Affine")
    node.SetMatrixTransformFromParent(transform.GetMatrix())
    ddf = displacementFromTransform(node, reference).numpy()
    affine = ijkToRasMatrix(reference)
    for i, j, k in rng.integers(0, [8, 7, 6], size=(200, 3)):
        x = affine[:3, :3] @ [i, j, k] + affine[:3, 3]
        assert np.abs(x + ddf[:, i, j, k] - np.array(transform.TransformPoint(*x))).max() < 0.01


def test_composite_and_bspline_transforms(scene):
    """A b-spline under a linear parent: the field is their composition, as Slicer applies it."""
    import vtk.util.numpy_support as vtknp

    reference = makeVolume(scene, np.zeros((5, 6, 7), np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    bspline = vtk.vtkBSplineTransform() if hasattr(vtk, "vtkBSplineTransform") else None
    if bspline is None:
        pytest.skip("vtkBSplineTransform not available")
    grid = vtk.vtkImageData()
    grid.SetDimensions(6, 6, 6)
    grid.SetOrigin(-6, -6, -6)
    grid.SetSpacing(6, 6, 6)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    coefficients = vtknp.vtk_to_numpy(grid.GetPointData().GetScalars())
    coefficients[:] = np.random.default_rng(2).normal(scale=1.5, size=coefficients.shape)
    bspline.SetCoefficientData(grid)
    bsplineNode = scene.AddNewNodeByClass("vtkMRMLBSplineTransformNode", "BSpline")
    bsplineNode.SetAndObserveTransformFromParent(bspline)
    parent = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Shift")
    shift = vtk.vtkTransform()
    shift.Translate(1.0, 2.0, 3.0)
    parent.SetMatrixTransformToParent(shift.GetMatrix())
    bsplineNode.SetAndObserveTransformNodeID(parent.GetID())

    ddf = displacementFromTransform(bsplineNode, reference).numpy()
    fromWorld = vtk.vtkGeneralTransform()
    bsplineNode.GetTransformFromWorld(fromWorld)
    for i, j, k in [(0, 0, 0), (3, 2, 1), (6, 5, 4)]:
        x = np.array([3.0 * i, 3.0 * j, 3.0 * k])
        assert np.abs(x + ddf[:, i, j, k] - np.array(fromWorld.TransformPoint(*x))).max() < 1e-4
    assert np.abs(ddf).max() > 1.0  # the b-spline really moved things


def test_resample_in_physical_space(scene):
    import slicer

    rng = np.random.default_rng(4)
    array = rng.random((10, 12, 14)).astype(np.float32)
    moving = makeVolume(scene, array, np.eye(4), name="Moving")
    # a reference that is the moving grid shifted by exactly 2 voxels along I
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    reference = makeVolume(scene, np.zeros((10, 12, 10), np.float32), shifted, name="Ref")
    out = resampleVolume(moving, reference)
    np.testing.assert_allclose(out[0].numpy(), np.transpose(array, (2, 1, 0))[2:12], atol=1e-5)
    assertGeometryClose(out.affine, shifted)

    # the same through a translation transform (-2 mm along R): sample moving at x - 2
    translation = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "T")
    t = vtk.vtkTransform()
    t.Translate(-2.0, 0, 0)
    translation.SetMatrixTransformFromParent(t.GetMatrix())
    again = resampleVolume(moving, reference, translation)
    np.testing.assert_allclose(again[0].numpy(), np.transpose(array, (2, 1, 0))[0:10], atol=1e-5)

    # a grid transform as the moving volume's own parent is applied too (as displayed in Slicer)
    ddf = torch.zeros(3, 14, 12, 10)
    ddf[0] = 1.0
    warp = gridTransformFromDisplacement(ddf, moving, scene)
    moving.SetAndObserveTransformNodeID(warp.GetID())
    sameGrid = makeVolume(scene, np.zeros((10, 12, 14), np.float32), np.eye(4), name="Grid")
    warped = resampleVolume(moving, sameGrid)
    np.testing.assert_allclose(warped[0, :13].numpy(), np.transpose(array, (2, 1, 0))[1:14], atol=1e-4)
    assert slicer.util.arrayFromVolume(moving).shape == (10, 12, 14)  # input untouched


def test_wrong_ddf_shape_is_refused(scene):
    reference = makeVolume(scene, np.zeros((3, 4, 5), np.float32), np.eye(4), name="Fixed")
    count = scene.GetNumberOfNodes()
    with pytest.raises(DLError, match=r"must have shape \(3, 5, 4, 3\).*Fix: compute it on the grid of 'Fixed'"):
        gridTransformFromDisplacement(torch.zeros(3, 2, 2, 2), reference, scene)
    assert scene.GetNumberOfNodes() == count


def test_grid_transform_survives_h5_file(scene, tmp_path):
    """Saved and re-read through Slicer's transform storage node (ITK .h5), the field is unchanged."""
    from DLCommon.storage import loadTransform, saveNode

    rng = np.random.default_rng(8)
    reference = makeVolume(scene, np.zeros((6, 7, 8), np.float32), obliqueAffine(rng, spacing=(1.0, 1.5, 2.0)))
    ddf = torch.from_numpy(rng.normal(scale=2.0, size=(3, 8, 7, 6)).astype(np.float32))
    node = gridTransformFromDisplacement(ddf, reference, scene)
    saveNode(node, tmp_path / "warp.h5")
    reread = loadTransform(tmp_path / "warp.h5", scene)
    assert (displacementFromTransform(reread, reference) - ddf).abs().max() < 1e-3
