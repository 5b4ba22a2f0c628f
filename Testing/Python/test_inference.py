"""Sliding-window inference: preprocessing per spec, geometry back on the input grid (to 1e-9 mm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assertGeometryClose, makeVolume, obliqueAffine
from monai.data import MetaTensor

from DLCommon import DLError, ModelSpec, slidingWindowInference, tensorFromVolume, volumeFromTensor
from DLCommon.errors import JobCancelled
from DLCommon.geometry import ijkToRasMatrix


def scaleNetwork(factor=2.0):
    network = torch.nn.Conv3d(1, 1, 1, bias=False)
    network.weight.data.fill_(factor)
    return network


def smoothImage(affine, shape=(40, 36, 30)):
    grids = torch.meshgrid(*[torch.linspace(0, 1, s) for s in shape], indexing="ij")
    data = torch.sin(4 * grids[0]) * torch.cos(3 * grids[1]) + grids[2]
    return MetaTensor(data[None].float(), affine=torch.as_tensor(affine))


def test_no_spacing_change_is_exact_and_keeps_geometry():
    affine = obliqueAffine(np.random.default_rng(0))
    image = smoothImage(affine)
    output = slidingWindowInference(scaleNetwork(), image, ModelSpec(roiSize=[16, 16, 16]), overlap=0.5)
    assert output.shape == image.shape
    assert torch.allclose(output.as_tensor(), 2 * image.as_tensor(), atol=1e-5)
    assertGeometryClose(output.affine, affine)


def test_spacing_change_is_inverted_onto_the_input_grid(scene):
    affine = obliqueAffine(np.random.default_rng(1), spacing=(1.0, 1.0, 1.5))
    image = smoothImage(affine)
    spec = ModelSpec(roiSize=[16, 16, 16], spacing=[2.0, 2.0, 3.0])
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.shape)
            return 2 * x

    output = slidingWindowInference(Recorder(), image, spec, overlap=0.25)
    assert all(tuple(s[2:]) == (16, 16, 16) for s in seen)
    assert output.shape == image.shape
    assertGeometryClose(output.affine, affine)
    error = (output.as_tensor() - 2 * image.as_tensor()).abs()
    assert error[:, 2:-2, 2:-2, 2:-2].mean() < 0.02  # interpolation error only, away from the border

    # the result drops straight onto the input volume's node geometry
    node = makeVolume(scene, np.zeros(image.shape[1:][::-1], np.float32), affine)
    out = volumeFromTensor(output, node, scene, "out")
    assertGeometryClose(ijkToRasMatrix(out), ijkToRasMatrix(node))


def test_normalization_from_spec():
    image = MetaTensor(torch.rand(1, 8, 8, 8) * 100 + 50, affine=torch.eye(4, dtype=torch.float64))
    original = image.clone()
    identity = torch.nn.Identity()
    zscore = slidingWindowInference(identity, image, ModelSpec(normalization={"type": "zscore"}))
    assert abs(float(zscore.mean())) < 1e-4 and abs(float(zscore.std()) - 1) < 1e-2
    ranged = slidingWindowInference(identity, image, ModelSpec(
        normalization={"type": "range", "aMin": 50, "aMax": 150, "bMin": 0, "bMax": 1, "clip": True}))
    assert float(ranged.min()) >= 0 and float(ranged.max()) <= 1
    assert torch.allclose(ranged.as_tensor(), (image.as_tensor() - 50) / 100, atol=1e-5)
    assert torch.equal(image.as_tensor(), original.as_tensor())  # the input (maybe a node's voxels) is untouched


def test_wrong_channels_is_a_clear_error(scene):
    node = makeVolume(scene, np.zeros((4, 4, 4), np.float32), np.eye(4), name="T1")
    with pytest.raises(DLError, match="Input 'T1' has 1 channel\\(s\\) but model 'two' expects 2"):
        slidingWindowInference(scaleNetwork(), tensorFromVolume(node), ModelSpec(name="two", inputChannels=2))


def test_progress_and_cancel():
    image = smoothImage(np.eye(4), shape=(32, 32, 32))
    fractions = []

    def progress(fraction, message):
        fractions.append(fraction)
        if len(fractions) == 2:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        slidingWindowInference(scaleNetwork(), image, ModelSpec(roiSize=[16, 16, 16]), windowBatchSize=1,
                               overlap=0.0, progress=progress)
    assert fractions == [1 / 8, 2 / 8]


def test_orientation_is_applied_and_undone():
    """An LPS-ordered image seen by a model that wants RAS: the network sees RAS order, the output comes
    back on the input grid unchanged."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    image = MetaTensor(torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(1, 4, 5, 6), affine=torch.as_tensor(affine))
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return x

    output = slidingWindowInference(Recorder(), image, ModelSpec(orientation="RAS"))
    assert torch.equal(seen[0][0, 0], torch.flip(image.as_tensor()[0], dims=(0, 1)))  # RAS order inside
    assert torch.allclose(output.as_tensor(), image.as_tensor(), atol=1e-4)
    assertGeometryClose(output.affine, affine)


def test_spacing_is_compared_after_reorientation():
    """Axes stored as (S, A, R) with 3 x 1 x 1 mm: in RAS order that is 1 x 1 x 3 mm, so a model wanting
    3 x 1 x 1 mm (RAS) must get a resampled image, not the stored one."""
    affine = np.zeros((4, 4))
    affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = 3.0, 1.0, 1.0, 1.0  # I -> S, J -> A, K -> R
    image = MetaTensor(torch.rand(1, 10, 20, 30), affine=torch.as_tensor(affine))
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[2:]))
            return x

    output = slidingWindowInference(Recorder(), image, ModelSpec(orientation="RAS", spacing=[3.0, 1.0, 1.0]))
    # RAS order: (30, 20, 10) voxels of 1 x 1 x 3 mm; at 3 x 1 x 1 mm MONAI's Spacing gives (11, 20, 28)
    assert seen == [(11, 20, 28)]
    assert output.shape == image.shape
    assertGeometryClose(output.affine, affine)


@pytest.mark.parametrize("normalization", [{"type": "zscore"}, {"type": "zscore", "nonzero": True},
                                           {"type": "range", "aMin": -1.0, "aMax": 2.0, "bMin": 0.0, "bMax": 1.0,
                                            "clip": True}])
def test_deep_volumes_are_normalised_patch_by_patch_with_whole_image_statistics(normalization):
    """A volume >= 4 windows deep along K takes the rolling path; a voxel-wise network shows the result equals
    the whole-volume pipeline (same normalisation statistics, blending weights summing to one)."""
    from DLCommon.inference import SLAB_MIN_WINDOWS, preprocess

    affine = obliqueAffine(np.random.default_rng(1))
    image = smoothImage(affine, shape=(20, 18, 16 * SLAB_MIN_WINDOWS + 5))
    image.as_tensor()[0, :4] = 0.0  # zeros for the nonzero variant
    spec = ModelSpec(roiSize=[16, 16, 16], normalization=normalization)
    calls = []
    output = slidingWindowInference(scaleNetwork(), image, spec, overlap=0.25,
                                    progress=lambda fraction, message: calls.append(fraction))
    assert torch.allclose(output.as_tensor(), 2 * preprocess(image, spec).as_tensor(), atol=1e-5)
    assertGeometryClose(output.affine, affine)
    assert calls[-1] == pytest.approx(1.0)


def test_rolling_inference_equals_monai_whole_volume_inference_and_reduces_per_slab():
    """A real 3D CNN: the rolling buffer gives MONAI's whole-volume sliding-window output (same windows and
    weights), and the argmax ``reduce`` gives its labels."""
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    network = UNet(3, 1, 3, channels=(4, 8), strides=(2,), num_res_units=0).eval()
    image = MetaTensor(torch.rand(1, 24, 20, 96), affine=torch.eye(4, dtype=torch.float64))
    spec = ModelSpec(roiSize=[16, 16, 16])
    output = slidingWindowInference(network, image, spec, overlap=0.5, device="cpu")
    with torch.no_grad():
        whole = sliding_window_inference(image.as_tensor()[None], (16, 16, 16), 4, network, overlap=0.5,
                                         mode="gaussian")[0]
    assert output.shape == whole.shape
    assert torch.allclose(output.as_tensor(), whole, atol=1e-5)
    labels = slidingWindowInference(network, image, spec, overlap=0.5, device="cpu",
                                    reduce=lambda scores: scores.argmax(0, keepdim=True).to(torch.uint8))
    assert labels.dtype == torch.uint8 and labels.shape == (1, 24, 20, 96)
    assert float((labels.as_tensor()[0].long() == whole.argmax(0)).float().mean()) > 0.9999
