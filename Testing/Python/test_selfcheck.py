"""After-inference self-checks: outputs on the input's grid, and the orientation sanity warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import makeVolume, obliqueAffine

from DLCommon import DLError, segmentationFromTensor
from DLCommon.sampledata import mni152Tissue
from DLCommon.selfcheck import checkOutputGeometry, foregroundMask, orientationWarning


@pytest.fixture(scope="module")
def mni():
    return mni152Tissue(4.0)


def test_a_segmentation_inside_the_head_passes_and_one_in_the_air_warns(mni):
    image, labels = mni
    foreground = foregroundMask(image)
    assert orientationWarning(labels, foreground) is None
    # (a cheap check: a flipped brain still lies inside the head and passes; segmentations in the air do not)
    corner = torch.zeros_like(labels)
    corner[:8, :8, -8:] = 1  # the air at a corner of the field of view
    message = orientationWarning(corner, foreground)
    assert message is not None and message.startswith("100% of the segmented voxels lie outside the imaged body")
    assert orientationWarning(torch.zeros_like(labels), foreground) is None  # nothing segmented: nothing to judge
    permuted = labels.permute(1, 0, 2)  # another shape: not this image's segmentation
    assert orientationWarning(permuted, foreground) is None


def test_output_geometry_check(scene):
    rng = np.random.default_rng(0)
    affine = obliqueAffine(rng)
    volume = makeVolume(scene, rng.normal(size=(6, 7, 8)).astype(np.float32), affine, name="oblique")
    labels = torch.zeros(8, 7, 6, dtype=torch.long)
    labels[2:5, 2:5, 1:4] = 1
    segmentation = segmentationFromTensor(labels, volume, scene, ["a"])
    checkOutputGeometry(volume, segmentation)
    same = makeVolume(scene, np.zeros((6, 7, 8), np.float32), affine, name="same grid")
    checkOutputGeometry(volume, same)
    shifted = affine.copy()
    shifted[:3, 3] += 0.5
    moved = makeVolume(scene, np.zeros((6, 7, 8), np.float32), shifted, name="moved")
    with pytest.raises(DLError, match="is not on the grid of 'oblique'"):
        checkOutputGeometry(volume, moved)
    other = segmentationFromTensor(labels, moved, scene, ["a"])
    with pytest.raises(DLError, match="is not on the grid of 'oblique'"):
        checkOutputGeometry(volume, other)
