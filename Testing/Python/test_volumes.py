"""Volume <-> tensor: voxel positions to 1e-9 mm (and voxel values bit for bit) for oblique, anisotropic,
file-loaded and transformed volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import vtk
from conftest import assertGeometryClose, makeVolume, obliqueAffine

from DLCommon import DLError, tensorFromVolume, updateVolumeFromTensor, volumeFromTensor
from DLCommon.geometry import ijkToRasMatrix
from DLCommon.storage import loadVolume, saveNode


def rasOfAllVoxels(affine: np.ndarray, shape) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


@pytest.mark.parametrize("seed", range(5))
def test_oblique_anisotropic_round_trip_is_exact(scene, seed):
    rng = np.random.default_rng(seed)
    affine = obliqueAffine(rng, spacing=rng.uniform(0.3, 4.0, size=3))
    array = rng.integers(-1000, 3000, size=(7, 11, 13)).astype(np.int16)  # (K, J, I)
    node = makeVolume(scene, array, affine)

    tensor = tensorFromVolume(node)
    assert tensor.shape == (1, 13, 11, 7) and tensor.dtype == torch.float32
    assertGeometryClose(tensor.affine, affine)  # MRML multiplies spacing, directions, origin back: not bit equal
    # tensor[0, i, j, k] is the voxel at IJK (i, j, k): the same RAS position as in the node
    for i, j, k in rng.integers(0, [13, 11, 7], size=(50, 3)):
        assert tensor[0, i, j, k] == array[k, j, i]

    copy = volumeFromTensor(tensor, node, scene, "copy")
    assertGeometryClose(ijkToRasMatrix(copy), ijkToRasMatrix(node))
    assertGeometryClose(rasOfAllVoxels(ijkToRasMatrix(copy), (13, 11, 7)), rasOfAllVoxels(affine, (13, 11, 7)))
    import slicer

    np.testing.assert_array_equal(slicer.util.arrayFromVolume(copy), array.astype(np.float32))  # copied voxels


def test_tensor_is_a_view_when_dtype_matches(scene):
    import slicer

    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    node = makeVolume(scene, array, np.eye(4))
    view = tensorFromVolume(node, dtype=None)
    assert view.dtype == torch.int16
    view[0, 1, 2, 0] = 999  # i=1, j=2, k=0
    assert slicer.util.arrayFromVolume(node)[0, 2, 1] == 999


def test_vector_volume_channels(scene):
    import slicer

    array = np.random.default_rng(0).random((4, 5, 6, 3)).astype(np.float32)  # (K, J, I, C)
    node = makeVolume(scene, array, np.eye(4), className="vtkMRMLVectorVolumeNode")
    tensor = tensorFromVolume(node)
    assert tensor.shape == (3, 6, 5, 4)
    assert tensor[2, 5, 4, 3] == array[3, 4, 5, 2]
    copy = volumeFromTensor(tensor, node, scene, "vector copy")
    assert copy.IsA("vtkMRMLVectorVolumeNode")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(copy), array)


def test_update_in_place_keeps_buffer_and_type(scene):
    import slicer

    array = np.random.default_rng(1).integers(0, 100, size=(5, 6, 7)).astype(np.int16)
    node = makeVolume(scene, array, np.eye(4))
    pointerBefore = slicer.util.arrayFromVolume(node).ctypes.data
    tensor = tensorFromVolume(node) * 2 + 1
    updateVolumeFromTensor(node, tensor, keepScalarType=True)
    after = slicer.util.arrayFromVolume(node)
    assert after.ctypes.data == pointerBefore and after.dtype == np.int16
    np.testing.assert_array_equal(after, array * 2 + 1)
    updateVolumeFromTensor(node, tensor / 4)  # adopts float32
    assert slicer.util.arrayFromVolume(node).dtype == np.float32
    np.testing.assert_allclose(slicer.util.arrayFromVolume(node), (array * 2 + 1) / 4)


def test_labelmap_gets_integer_type(scene):
    import slicer

    node = makeVolume(scene, np.zeros((3, 4, 5), np.float32), np.eye(4))
    labels = torch.zeros(5, 4, 3, dtype=torch.int64)
    labels[1, 2, 0] = 300
    out = volumeFromTensor(labels, node, scene, "labels", labelmap=True)
    assert out.IsA("vtkMRMLLabelMapVolumeNode")
    assert slicer.util.arrayFromVolume(out).dtype == np.int16
    assert slicer.util.arrayFromVolume(out)[0, 2, 1] == 300


def test_linear_parent_transform_is_folded_into_affine(scene):
    import slicer

    node = makeVolume(scene, np.ones((3, 4, 5), np.float32), np.diag([2.0, 3.0, 4.0, 1.0]))
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "T")
    rotation = vtk.vtkTransform()
    rotation.RotateZ(30)
    rotation.Translate(10, -5, 2)
    transform.SetMatrixTransformToParent(rotation.GetMatrix())
    node.SetAndObserveTransformNodeID(transform.GetID())
    tensor = tensorFromVolume(node)
    expected = slicer.util.arrayFromVTKMatrix(rotation.GetMatrix()) @ np.diag([2.0, 3.0, 4.0, 1.0])
    assertGeometryClose(tensor.affine, expected)
    copy = volumeFromTensor(tensor, node, scene, "copy")
    assert copy.GetParentTransformNode() is transform  # same place in the scene, same world position
    assertGeometryClose(ijkToRasMatrix(copy), expected)


def test_nonlinear_parent_transform_is_refused(scene):
    from DLCommon import gridTransformFromDisplacement

    node = makeVolume(scene, np.ones((3, 4, 5), np.float32), np.eye(4), name="Moving")
    grid = gridTransformFromDisplacement(torch.ones(3, 5, 4, 3), node, scene, name="Warp")
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(DLError, match=r"Volume 'Moving' is under the non-linear transform 'Warp'.*Fix: harden"):
        tensorFromVolume(node)


def test_bad_input_is_refused_and_scene_unchanged(scene):
    node = makeVolume(scene, np.ones((3, 4, 5), np.float32), np.eye(4), name="Ref")
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty")
    count = scene.GetNumberOfNodes()
    with pytest.raises(DLError, match="Volume 'Empty' has no voxels"):
        tensorFromVolume(empty)
    with pytest.raises(DLError, match=r"Volume 'Ref' has shape \(5, 4, 3\) but the tensor has \(2, 2, 2\)"):
        volumeFromTensor(torch.zeros(1, 2, 2, 2), node, scene, "out")
    with pytest.raises(DLError, match="is a vtkMRMLSegmentationNode"):
        tensorFromVolume(scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "S"))
    assert scene.GetNumberOfNodes() == count + 1  # only the segmentation this test added itself


# --- files with LPS / RAS headers, read by Slicer's own storage nodes --------------------------------------

def writeNrrd(path, array_kji: np.ndarray, space: str, directions: np.ndarray, origin: np.ndarray) -> None:
    """Minimal raw NRRD; ``directions`` columns are the I, J, K axis vectors in ``space`` coordinates."""
    cols = [f"({','.join(repr(float(v)) for v in directions[:, c])})" for c in range(3)]
    header = ("NRRD0004\ntype: float\ndimension: 3\n"
              f"space: {space}\nsizes: {array_kji.shape[2]} {array_kji.shape[1]} {array_kji.shape[0]}\n"
              f"space directions: {' '.join(cols)}\nkinds: domain domain domain\nendian: little\n"
              f"encoding: raw\nspace origin: ({','.join(repr(float(v)) for v in origin)})\n\n")
    with open(path, "wb") as stream:
        stream.write(header.encode())
        stream.write(array_kji.astype("<f4").tobytes())


@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior"])
def test_nrrd_headers_lps_and_ras(scene, tmp_path, space):
    import slicer

    rng = np.random.default_rng(7)
    affine = obliqueAffine(rng)
    array = rng.random((6, 7, 8)).astype(np.float32)
    toSpace = np.diag([-1.0, -1.0, 1.0]) if space.startswith("left") else np.eye(3)
    writeNrrd(tmp_path / "v.nrrd", array, space, toSpace @ affine[:3, :3], toSpace @ affine[:3, 3])
    node = loadVolume(tmp_path / "v.nrrd", scene)
    assertGeometryClose(ijkToRasMatrix(node), affine)
    tensor = tensorFromVolume(node)
    copy = volumeFromTensor(tensor, node, scene, "copy")
    assertGeometryClose(ijkToRasMatrix(copy), ijkToRasMatrix(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(copy), array)
    # and back to disk and in again: still the same geometry and voxels
    saveNode(copy, tmp_path / "copy.nrrd")
    again = loadVolume(tmp_path / "copy.nrrd", scene)
    assertGeometryClose(ijkToRasMatrix(again), affine)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(again), array)


def test_nifti_matches_an_independent_reader(scene, tmp_path):
    """NIfTI (RAS by definition) read by Slicer's storage node agrees with MONAI's nibabel reader."""
    import nibabel
    from monai.transforms import LoadImage

    rng = np.random.default_rng(3)
    affine = obliqueAffine(rng, spacing=(0.8, 1.1, 2.5))
    data_ijk = rng.integers(0, 500, size=(9, 8, 7)).astype(np.int16)
    image = nibabel.Nifti1Image(data_ijk, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nibabel.save(image, tmp_path / "v.nii.gz")

    node = loadVolume(tmp_path / "v.nii.gz", scene)
    tensor = tensorFromVolume(node, dtype=None)
    reference = LoadImage(reader="NibabelReader", image_only=True, ensure_channel_first=True)(str(tmp_path / "v.nii.gz"))
    np.testing.assert_array_equal(tensor.numpy(), reference.numpy())
    # NIfTI stores its affine as float32: 1e-4 mm covers float32 rounding of positions up to ~100 mm (~1e-5 mm)
    np.testing.assert_allclose(tensor.affine.numpy(), reference.affine.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(tensor.affine.numpy(), affine, rtol=0, atol=1e-4)
