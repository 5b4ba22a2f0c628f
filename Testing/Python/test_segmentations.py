"""Segmentation <-> labels: exact round trip of labels, names and colors, through memory and .seg.nrrd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import makeVolume, obliqueAffine

from DLCommon import DLError, segmentationFromTensor, tensorFromSegmentation
from DLCommon.storage import loadSegmentation, saveNode


def test_round_trip_is_exact_on_an_oblique_grid(scene, tmp_path):
    rng = np.random.default_rng(11)
    reference = makeVolume(scene, np.zeros((9, 10, 12), np.float32), obliqueAffine(rng), name="Ref")
    labels = torch.from_numpy(rng.integers(0, 4, size=(12, 10, 9)))
    labels[labels == 2] = 0  # label 2 empty: its segment must still round-trip
    names = ["liver", "empty one", "tumor"]
    colors = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.2, 0.4, 0.6)]
    node = segmentationFromTensor(labels, reference, scene, names, colors, nodeName="Seg")
    assert node.GetSegmentation().GetNumberOfSegments() == 3

    back, backNames, backColors = tensorFromSegmentation(node, reference)
    assert back.dtype == torch.int64 and back.shape == (12, 10, 9)
    assert torch.equal(back, labels)
    assert backNames == names
    np.testing.assert_allclose(backColors, colors, atol=1e-6)

    saveNode(node, tmp_path / "seg.seg.nrrd")
    reread = loadSegmentation(tmp_path / "seg.seg.nrrd", scene)
    again, againNames, againColors = tensorFromSegmentation(reread, reference)
    assert torch.equal(again, labels) and againNames == names
    np.testing.assert_allclose(againColors, colors, atol=1e-6)


def test_subset_and_probabilities(scene):
    reference = makeVolume(scene, np.zeros((4, 5, 6), np.float32), np.eye(4))
    probabilities = torch.rand(3, 6, 5, 4)
    node = segmentationFromTensor(probabilities, reference, scene, ["a", "b"])
    labels, names, _ = tensorFromSegmentation(node, reference)
    assert torch.equal(labels, probabilities.argmax(0))
    secondId = node.GetSegmentation().GetNthSegmentID(1)
    only, onlyNames, _ = tensorFromSegmentation(node, reference, [secondId])
    assert onlyNames == ["b"] and torch.equal(only, (probabilities.argmax(0) == 2).long())


def test_resampled_onto_another_reference(scene):
    """Labels on a 1 mm grid read back on a 2 mm grid covering the same box land where they should."""
    fine = makeVolume(scene, np.zeros((8, 8, 8), np.float32), np.eye(4), name="Fine")
    coarseAffine = np.diag([2.0, 2.0, 2.0, 1.0])
    coarseAffine[:3, 3] = 0.5
    coarse = makeVolume(scene, np.zeros((4, 4, 4), np.float32), coarseAffine, name="Coarse")
    labels = torch.zeros(8, 8, 8, dtype=torch.int64)
    labels[4:8, 0:4, 2:6] = 1
    node = segmentationFromTensor(labels, fine, scene, ["box"])
    onCoarse, _, _ = tensorFromSegmentation(node, coarse)
    expected = torch.zeros(4, 4, 4, dtype=torch.int64)
    expected[2:4, 0:2, 1:3] = 1
    assert torch.equal(onCoarse, expected)


def test_bad_input_leaves_scene_unchanged(scene):
    reference = makeVolume(scene, np.zeros((4, 5, 6), np.float32), np.eye(4), name="Ref")
    count = scene.GetNumberOfNodes()
    with pytest.raises(DLError, match="contain label 3 but only 2 names"):
        segmentationFromTensor(torch.full((6, 5, 4), 3), reference, scene, ["a", "b"])
    with pytest.raises(DLError, match=r"Volume 'Ref' has shape \(6, 5, 4\) but the labels have \(2, 2, 2\)"):
        segmentationFromTensor(torch.zeros(2, 2, 2, dtype=torch.int64), reference, scene, ["a"])
    with pytest.raises(DLError, match="have 2 channels but 2 names"):
        segmentationFromTensor(torch.rand(2, 6, 5, 4), reference, scene, ["a", "b"])
    assert scene.GetNumberOfNodes() == count
    node = segmentationFromTensor(torch.zeros(6, 5, 4, dtype=torch.int64), reference, scene, ["a"])
    with pytest.raises(DLError, match="has no segment"):
        tensorFromSegmentation(node, reference, ["nope"])


def test_labels_from_scores_is_argmax_with_ties_to_the_lower_class():
    from DLCommon.segmentations import labelsFromScores

    scores = torch.randn(4, 10, 9, 8, generator=torch.Generator().manual_seed(0))
    scores[2, 0, 0, 0] = scores[1, 0, 0, 0] = scores[:, 0, 0, 0].max() + 1  # a tie between classes 1 and 2
    labels = labelsFromScores(scores)
    assert labels.dtype == torch.uint8 and torch.equal(labels.long(), scores.argmax(0))
    assert int(labels[0, 0, 0]) == 1


def test_load_file_picks_the_node_kind_from_the_extension_and_refuses_other_files(scene, tmp_path):
    from DLCommon.scene import nodeIds
    from DLCommon.storage import loadFile

    volume = makeVolume(scene, np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.diag([1.0, 1.0, 2.0, 1.0]))
    labels = torch.zeros(4, 3, 2, dtype=torch.int64)
    labels[1:3, 1, :] = 1
    saveNode(segmentationFromTensor(labels, volume, scene, ["lesion"]), tmp_path / "case.seg.nrrd")
    saveNode(volume, tmp_path / "case.nii.gz")
    assert loadFile(tmp_path / "case.seg.nrrd", scene).IsA("vtkMRMLSegmentationNode")
    loaded = loadFile(tmp_path / "case.nii.gz", scene)
    assert loaded.IsA("vtkMRMLScalarVolumeNode") and loaded.GetName() == "case"
    (tmp_path / "report.pdf").write_bytes(b"%PDF")
    before = nodeIds(scene)
    with pytest.raises(DLError, match=r"File 'report.pdf' is not a file MedDL reads.*\.seg\.nrrd"):
        loadFile(tmp_path / "report.pdf", scene)
    assert nodeIds(scene) == before
