"""DLSynthesize: through-plane super-resolution (engine, geometry, logic, CLI, bad input).

Data: the MNI152 T1 at 2 mm turned into 8 mm thick slices (factor 4) along one axis.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assertGeometryClose
from monai.data import MetaTensor

from DLCommon import DLError, JobCancelled, tensorFromVolume, volumeFromTensor
from DLCommon.geometry import ijkToRasMatrix
from DLCommon.sampledata import mni152Tissue
from DLSynthesizeLib.logic import SynthesisLogic
from DLSynthesizeLib.superresolution import (SuperResolutionConfig, degradeAlongAxis, resampledGeometry,
                                              superResolve, throughPlaneAxis, upsampleAlongAxis)

QUICK = SuperResolutionConfig(steps=150, features=16, batchSize=8, patchSize=48, device="cpu")


@pytest.fixture(scope="module")
def thickSlices():
    """``(truth 2 mm, thick-slice MetaTensor with 8 mm slices along K)``."""
    image, _ = mni152Tissue(2.0)
    count = (image.shape[3] - 1) // 4 * 4 + 1
    truth = image.as_tensor()[0, :, :, :count]
    affine = torch.as_tensor(image.affine).clone()
    affine[:3, 2] *= 4
    return truth, MetaTensor(degradeAlongAxis(truth, 2, 4)[None], affine=affine)


def psnr(estimate, truth):
    mask = truth > 10
    return 10 * math.log10(float(truth.max()) ** 2 / float(((estimate - truth)[mask] ** 2).mean()))


def test_degrade_and_upsample_keep_the_end_slices():
    ramp = torch.arange(17, dtype=torch.float32).reshape(1, 17).repeat(3, 1)
    low = degradeAlongAxis(ramp, 1, 4)
    assert low.shape == (3, 5)
    assert torch.allclose(upsampleAlongAxis(low, 1, 4)[:, ::4], low)
    # a linear ramp is reproduced exactly by the profile (inside) and by cubic interpolation
    assert torch.allclose(upsampleAlongAxis(ramp[:, ::4], 1, 4), ramp, atol=1e-4)
    affine = torch.diag(torch.tensor([1.0, 1.0, 4.0, 1.0])).double()
    affine[:3, 3] = torch.tensor([5.0, 6.0, 7.0])
    expected = affine.clone()
    expected[2, 2] = 1.0  # 4 mm slices made 4 times finer; the first slice (the origin) stays in place
    assertGeometryClose(resampledGeometry(affine, 2, 4), expected)


def test_throughplane_axis_and_isotropic_refusal():
    oblique = torch.eye(4).double()
    oblique[:3, :3] = torch.tensor([[0.0, 0.9, 0.0], [0.0, 0.0, 3.0], [0.9, 0.0, 0.0]]).double()
    assert throughPlaneAxis(oblique) == (2, pytest.approx(3.0 / 0.9))
    with pytest.raises(DLError, match="nearly isotropic"):
        throughPlaneAxis(torch.diag(torch.tensor([1.0, 1.1, 1.2, 1.0])))


def test_super_resolution_beats_cubic_interpolation(thickSlices):
    truth, thick = thickSlices
    result = superResolve(thick, QUICK)
    assert result.axis == 2 and result.factor == 4
    assert result.image.shape[1:] == truth.shape
    assert torch.allclose(torch.as_tensor(result.image.affine)[:3, :3].diagonal(), torch.tensor([2.0, 2.0, 2.0]).double())
    cubic = upsampleAlongAxis(thick.as_tensor()[0], 2, 4)
    gain = psnr(result.image.as_tensor()[0], truth) - psnr(cubic, truth)
    assert gain > 0.5, gain  # 150 CPU steps on 8 mm slices here; the benchmark (600 steps, 1 mm -> 4 mm) gives more
    assert result.history.trainLoss[-1] < result.history.trainLoss[0]


def test_logic_creates_or_overwrites_the_output(scene, thickSlices):
    truth, thick = thickSlices
    node = volumeFromTensor(thick, None, scene, "thick")
    logic = SynthesisLogic(scene)
    created = logic.superResolve(node, QUICK)
    assert created.volume.GetName() == "thick super-resolved" and created.details["axis"] == "K"
    assert tuple(created.volume.GetImageData().GetDimensions()) == tuple(truth.shape)
    assert np.allclose(ijkToRasMatrix(created.volume)[:3, 3], ijkToRasMatrix(node)[:3, 3])
    assert np.allclose(np.linalg.norm(ijkToRasMatrix(created.volume)[:3, :3], axis=0), [2.0, 2.0, 2.0])
    target = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "mine")
    before = scene.GetNumberOfNodes()
    out = logic.superResolve(node, QUICK, outputVolume=target)
    assert out.volume is target and scene.GetNumberOfNodes() == before
    assert torch.allclose(tensorFromVolume(target), tensorFromVolume(created.volume), atol=1e-3)


def test_bad_input_and_cancel_leave_the_scene_unchanged(scene, thickSlices):
    _, thick = thickSlices
    logic = SynthesisLogic(scene)
    iso = volumeFromTensor(MetaTensor(torch.rand(1, 20, 20, 20), affine=torch.eye(4)), None, scene, "isotropic")
    broken = thick.clone()
    broken[0, 5, 5, 5] = float("nan")
    nan = volumeFromTensor(broken, None, scene, "nan")
    node = volumeFromTensor(thick, None, scene, "thick")
    before = scene.GetNumberOfNodes()
    with pytest.raises(DLError, match="nearly isotropic"):
        logic.superResolve(iso)
    with pytest.raises(DLError, match="NaN"):
        logic.superResolve(nan, QUICK)
    with pytest.raises(DLError, match="No input volume"):
        logic.superResolve(None)
    with pytest.raises(DLError, match="cannot be the output"):
        logic.superResolve(node, QUICK, outputVolume=node)
    job = logic.superResolveJob(node, QUICK)
    with pytest.raises(JobCancelled):
        job.run(lambda fraction, message: job.cancel() if fraction > 0.1 else None)
    assert scene.GetNumberOfNodes() == before


def test_cli_super_resolve(tmp_path, scene, thickSlices, capsys):
    from DLCommon import saveNode
    from DLCommon.cli import main
    from DLCommon.storage import loadVolume

    truth, thick = thickSlices
    path = saveNode(volumeFromTensor(thick, None, scene, "thick"), tmp_path / "thick.nrrd")
    assert main(["super-resolve", "--input", str(path), "--output", str(tmp_path / "fine.nrrd"), "--steps", "100",
                 "--device", "cpu"]) == 0
    assert "slice axis K, x4" in capsys.readouterr().out
    fine = tensorFromVolume(loadVolume(tmp_path / "fine.nrrd", scene))
    assert fine.shape[1:] == truth.shape
    assert psnr(fine[0], truth) > psnr(upsampleAlongAxis(thick.as_tensor()[0], 2, 4), truth)


# --- paired image-to-image ------------------------------------------------------------------------------------

def secondContrast(image: torch.Tensor) -> torch.Tensor:
    """A synthetic T2-like contrast: inside the head, dark white matter and bright CSF; dark background."""
    inverted = 255.0 * (1.0 - image / 255.0).clamp(0, 1) ** 2
    return torch.where(image > 30, inverted, torch.zeros_like(image))


@pytest.mark.parametrize("dimensions", [2, 3])
def test_unet_learns_a_paired_contrast_mapping(dimensions):
    from DLCommon.sampledata import randomCopy
    from DLSynthesizeLib.imagetoimage import ImageToImageConfig, applyImageToImage, trainImageToImage

    image, labels = mni152Tissue(4.0)
    pairs = []
    for seed in range(2):
        source = randomCopy(image, labels, seed, bias=False, contrast=False)[0]
        pairs.append((source, MetaTensor(secondContrast(source.as_tensor()), affine=source.affine)))
    config = ImageToImageConfig(dimensions=dimensions, patchSize=32 if dimensions == 3 else 48, batchSize=8,
                                steps=150, features=16, loss="l1ssim", device="cpu")
    model = trainImageToImage(pairs, config)
    test = randomCopy(image, labels, 50, bias=False, contrast=False)[0]
    truth = secondContrast(test.as_tensor())
    predicted = applyImageToImage(model, test)
    assert predicted.shape == test.shape and torch.allclose(predicted.affine, test.affine.double())
    mask = test.as_tensor() > 10
    error = float((predicted.as_tensor() - truth)[mask].abs().mean())
    baseline = float((test.as_tensor() - truth)[mask].abs().mean())  # "the target looks like the source"
    assert error < 0.4 * baseline, (error, baseline)


def test_paired_training_refuses_mismatched_grids():
    from DLSynthesizeLib.imagetoimage import trainImageToImage

    source = MetaTensor(torch.rand(1, 16, 16, 16), affine=torch.eye(4))
    shifted = torch.eye(4)
    shifted[0, 3] = 5.0
    with pytest.raises(DLError, match="different grids"):
        trainImageToImage([(source, MetaTensor(torch.rand(1, 16, 16, 16), affine=shifted))])
    with pytest.raises(DLError, match="different grids"):
        trainImageToImage([(source, MetaTensor(torch.rand(1, 16, 16, 12), affine=torch.eye(4)))])
    with pytest.raises(DLError, match="no .source, target. pair"):
        trainImageToImage([])


# --- ultrasound simulation --------------------------------------------------------------------------------

def phantom(boneDisc: bool = False):
    """A 100 mm soft-tissue cube (label 1) with an optional bone disc (label 2) 30 mm below its top face."""
    from DLSynthesizeLib.ultrasound import TISSUES, tissueMapsFromLabels

    labels = torch.ones(100, 100, 100, dtype=torch.int64)
    if boneDisc:
        x, y = torch.meshgrid(torch.arange(100), torch.arange(100), indexing="ij")
        disc = ((x - 50) ** 2 + (y - 50) ** 2) < 10 ** 2
        labels[:, :, 64:68][disc] = 2  # K is depth below the top face (K = 99)
    maps = tissueMapsFromLabels(labels, {1: TISSUES["soft tissue"], 2: TISSUES["bone"]})
    affine = torch.eye(4, dtype=torch.float64)  # 1 mm voxels, RAS = IJK
    return maps, affine


def topProbe(x=50.0, y=50.0):
    from DLSynthesizeLib.ultrasound import probePose

    return probePose([x, y, 99.0], [x, y, 0.0], [0.0, 1.0, 0.0])  # beams go down (-S), image plane x-z


def test_ultrasound_speckle_is_rayleigh_and_frame_sits_in_the_probe_plane():
    from DLSynthesizeLib.ultrasound import UltrasoundConfig, simulateUltrasound

    maps, affine = phantom()
    config = UltrasoundConfig(geometry="linear", depth=80, width=40, dynamicRange=200, tgc=1.0,
                              tgcAttenuation=0.54)  # TGC matched to the tissue: flat brightness
    frame = simulateUltrasound(maps, affine, topProbe(), config)
    assert frame.shape[0] == 1 and frame.shape[-1] == 1
    # the image plane passes through the probe: pixel (centre column, row 0) is at the transducer
    centre = torch.as_tensor(frame.affine) @ torch.tensor([(frame.shape[1] - 1) / 2, 0.0, 0.0, 1.0]).double()
    assert torch.allclose(centre[:3], torch.tensor([50.0, 50.0, 99.0]).double(), atol=0.5)
    # with a 200 dB range the display is ~linear in dB: back to amplitude, speckle has Rayleigh statistics
    region = frame[0, 40:100, 50:200, 0].double()
    amplitude = 10 ** ((region / 255.0 * 200.0) / 20.0)
    snr = float(amplitude.mean() / amplitude.std())
    assert 1.6 < snr < 2.2, snr  # Rayleigh: mean / std = 1.91
    top, bottom = frame[0, 40:100, 30:80, 0].mean(), frame[0, 40:100, 200:250, 0].mean()
    assert abs(float(top - bottom)) < 10  # TGC compensates the attenuation


def test_ultrasound_attenuation_and_shadowing():
    from DLSynthesizeLib.ultrasound import UltrasoundConfig, simulateUltrasound

    config = UltrasoundConfig(geometry="linear", depth=80, width=60, tgc=0.0)
    plain = simulateUltrasound(*phantom(), topProbe(), config)[0, :, :, 0]
    rows = plain.shape[1]
    assert plain[:, rows // 8: rows // 4].mean() > plain[:, rows // 2: 3 * rows // 4].mean() + 20  # no TGC: darker
    frame = simulateUltrasound(*phantom(boneDisc=True), topProbe(), UltrasoundConfig(geometry="linear", depth=80,
                                                                                      width=60))[0, :, :, 0]
    pixel = 0.3
    behind = frame[int((30 - 6) / pixel):int((30 + 6) / pixel), int(45 / pixel):int(60 / pixel)].mean()
    beside = frame[int((5 - 3) / pixel):int((5 + 3) / pixel), int(45 / pixel):int(60 / pixel)].mean()
    surface = frame[int((30 - 5) / pixel):int((30 + 5) / pixel), int(31 / pixel):int(36 / pixel)].max()
    assert behind < beside - 40, (behind, beside)  # acoustic shadow under the bone disc
    assert surface > 240  # the bright specular echo of its surface


def test_ultrasound_of_the_mni152_labels_and_bad_poses(scene):
    from DLSynthesizeLib.logic import SynthesisLogic

    image, labels = mni152Tissue(2.0)
    node = volumeFromTensor(image, None, scene, "T1")
    from DLCommon import segmentationFromTensor
    from DLCommon.sampledata import TISSUE_NAMES

    segmentation = segmentationFromTensor(labels, node, scene, TISSUE_NAMES, nodeName="tissue")
    probe = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "probe")
    from DLCommon.geometry import vtkMatrixFromArray
    from DLSynthesizeLib.ultrasound import probePose

    probe.SetMatrixTransformToParent(vtkMatrixFromArray(probePose([0, -10, 75], [0, -10, 0], [0, 1, 0]).numpy()))
    logic = SynthesisLogic(scene)
    result = logic.simulateUltrasound(segmentation, probe, referenceVolume=node)
    frame = tensorFromVolume(result.volume)[0, :, :, 0]
    assert frame.shape[0] > 100 and float(frame.max()) > 200 and float((frame == 0).float().mean()) > 0.2  # fan
    # the frame lies in the T1's space: white matter (more echogenic) is brighter than grey matter there
    from DLCommon.transforms import resampleVolume

    labelNode = volumeFromTensor(labels, node, scene, "labels", labelmap=True)
    onFrame = resampleVolume(labelNode, result.volume, interpolation="nearest").as_tensor()[0, :, :, 0]
    inside = frame > 0
    white, grey = frame[(onFrame == 2) & inside].mean(), frame[(onFrame == 1) & inside].mean()
    assert float(white) > float(grey) + 10, (white, grey)
    before = scene.GetNumberOfNodes()
    away = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "away")
    away.SetMatrixTransformToParent(vtkMatrixFromArray(probePose([0, 0, 900], [0, 0, 1200], [0, 1, 0]).numpy()))
    with pytest.raises(DLError, match="field of view inside the volume"):
        logic.simulateUltrasound(segmentation, away, referenceVolume=node)
    assert scene.GetNumberOfNodes() == before + 1  # only the transform added here, no half-made output


def test_cli_simulate_us(tmp_path, scene, capsys):
    from PIL import Image

    from DLCommon import saveNode, segmentationFromTensor
    from DLCommon.cli import main
    from DLCommon.sampledata import TISSUE_NAMES
    from DLCommon.storage import loadVolume

    image, labels = mni152Tissue(2.0)
    node = volumeFromTensor(image, None, scene, "T1")
    t1 = saveNode(node, tmp_path / "t1.nrrd")
    seg = saveNode(segmentationFromTensor(labels, node, scene, TISSUE_NAMES), tmp_path / "tissue.seg.nrrd")
    assert main(["simulate-us", "--labels", str(seg), "--reference", str(t1), "--position", "0", "-10", "75",
                 "--target", "0", "-10", "0", "--output", str(tmp_path / "us.nrrd"), "--png", str(tmp_path / "us.png")]) == 0
    frame = tensorFromVolume(loadVolume(tmp_path / "us.nrrd", scene))
    assert frame.shape[-1] == 1 and float(frame.max()) > 200
    with Image.open(tmp_path / "us.png") as png:
        assert png.size == (frame.shape[1], frame.shape[2])
    assert main(["simulate-us", "--labels", str(seg), "--position", "0", "0", "0", "--target", "0", "0", "-1",
                 "--output", str(tmp_path / "x.nrrd")]) == 2
    assert "needs --reference" in capsys.readouterr().err


def test_logic_image_to_image_resamples_a_misaligned_target(scene):
    from DLCommon.sampledata import randomCopy
    from DLSynthesizeLib.imagetoimage import ImageToImageConfig

    image, labels = mni152Tissue(4.0)
    source = randomCopy(image, labels, 0, bias=False, contrast=False)[0]
    target = MetaTensor(secondContrast(source.as_tensor()), affine=source.affine)
    sourceNode = volumeFromTensor(source, None, scene, "T1")
    aligned = volumeFromTensor(target, None, scene, "T2 aligned")
    cropped = volumeFromTensor(MetaTensor(target.as_tensor()[:, 2:-2, 3:, :-1], affine=_shifted(source.affine, 2, 3)),
                               None, scene, "T2 cropped")
    test = randomCopy(image, labels, 50, bias=False, contrast=False)[0]
    testNode = volumeFromTensor(test, None, scene, "new T1")
    config = ImageToImageConfig(dimensions=2, patchSize=48, batchSize=8, steps=100, features=16, device="cpu")
    job = SynthesisLogic(scene).imageToImageJob([(sourceNode, aligned), (sourceNode, cropped)], testNode, config)
    result = job.run()
    assert result.details["resampledTargets"] == ["T2 cropped"] and len(job.history.trainLoss) == 4
    output = tensorFromVolume(result.volume)
    assert np.allclose(ijkToRasMatrix(result.volume), ijkToRasMatrix(testNode))
    truth = secondContrast(test.as_tensor())
    mask = test.as_tensor() > 10
    assert float((output - truth)[mask].abs().mean()) < 0.6 * float((test.as_tensor() - truth)[mask].abs().mean())


def _shifted(affine, i, j):
    shifted = torch.as_tensor(affine).clone()
    shifted[:3, 3] += shifted[:3, 0] * i + shifted[:3, 1] * j
    return shifted


def test_pix2pix_trains_both_players_and_translates():
    from DLCommon.plots import historyCurves
    from DLCommon.sampledata import randomCopy
    from DLSynthesizeLib.imagetoimage import applyImageToImage
    from DLSynthesizeLib.pix2pix import Pix2PixConfig, trainPix2Pix

    image, labels = mni152Tissue(4.0)
    source = randomCopy(image, labels, 0, bias=False, contrast=False)[0]
    pairs = [(source, MetaTensor(secondContrast(source.as_tensor()), affine=source.affine))]
    epochs = []
    model = trainPix2Pix(pairs, Pix2PixConfig(steps=100, patchSize=48, batchSize=8, features=16, device="cpu"),
                         onEpoch=lambda history: epochs.append(history.snapshot()))
    curves = historyCurves(model.history)
    assert set(curves) == {"generator loss", "discriminator loss", "generator L1"} and len(epochs) == 4
    assert all(len(values) == 4 for _, values in curves.values())
    assert model.history.l1Loss[-1] < model.history.l1Loss[0]
    test = randomCopy(image, labels, 50, bias=False, contrast=False)[0]
    truth, mask = secondContrast(test.as_tensor()), test.as_tensor() > 10
    output = applyImageToImage(model, test)
    assert float((output.as_tensor() - truth)[mask].abs().mean()) < float((test.as_tensor() - truth)[mask].abs().mean())


def test_logic_pix2pix_job_keeps_both_curves(scene):
    from DLSynthesizeLib.pix2pix import Pix2PixConfig

    image, _ = mni152Tissue(4.0)
    source = volumeFromTensor(image, None, scene, "T1")
    target = volumeFromTensor(MetaTensor(secondContrast(image.as_tensor()), affine=image.affine), None, scene, "T2")
    job = SynthesisLogic(scene).imageToImageJob([(source, target)], source, Pix2PixConfig(steps=50, patchSize=32,
                                                batchSize=4, features=8, device="cpu"), method="pix2pix")
    result = job.run()
    assert len(job.history.discriminatorLoss) == 2 and result.volume.GetName() == "T1 synthesized"
    with pytest.raises(ValueError, match="method must be"):
        SynthesisLogic(scene).imageToImageJob([(source, target)], source, method="cyclegan")


def test_cli_train_synthesis_and_synthesize(tmp_path, scene, capsys):
    from DLCommon import saveNode
    from DLCommon.cli import main
    from DLCommon.storage import loadVolume

    image, _ = mni152Tissue(4.0)
    source = saveNode(volumeFromTensor(image, None, scene, "T1"), tmp_path / "t1.nrrd")
    target = saveNode(volumeFromTensor(MetaTensor(secondContrast(image.as_tensor()), affine=image.affine), None, scene,
                                       "T2"), tmp_path / "t2.nrrd")
    assert main(["train-synthesis", "--sources", str(source), "--targets", str(target), "--steps", "50",
                 "--output-model", str(tmp_path / "model"), "--name", "t1-to-t2", "--register", "--device", "cpu"]) == 0
    assert "catalog id 't1-to-t2'" in capsys.readouterr().out
    assert (tmp_path / "model" / "t1-to-t2_curves.png").is_file()
    assert main(["synthesize", "--model", "t1-to-t2", "--input", str(source), "--output", str(tmp_path / "out.nrrd")]) == 0
    output = tensorFromVolume(loadVolume(tmp_path / "out.nrrd", scene))
    assert output.shape == image.shape and np.allclose(output.affine, image.affine)
    assert main(["train-synthesis", "--sources", str(source), "--targets", str(target), str(target),
                 "--output-model", str(tmp_path / "x")]) == 2
    assert "1 sources and 2 targets" in capsys.readouterr().err


def test_ultrasound_sweep_stacks_parallel_frames():
    from DLSynthesizeLib.ultrasound import UltrasoundConfig, simulateSweep

    maps, affine = phantom(boneDisc=True)
    poses = [topProbe(y=40.0 + 2.0 * k) for k in range(4)]
    config = UltrasoundConfig(geometry="linear", depth=60, width=40)
    stack = simulateSweep(maps, affine, poses, config)
    assert stack.shape[-1] == 4
    step = torch.as_tensor(stack.affine)[:3, 2]
    assert torch.allclose(step, torch.tensor([0.0, 2.0, 0.0]).double(), atol=1e-6)  # frames 2 mm apart along y
    assert not torch.equal(stack[..., 0], stack[..., 1])  # each frame has its own speckle
    tilted = poses[:2] + [topProbe(x=10.0, y=44.0)]
    with pytest.raises(DLError, match="not a parallel, evenly spaced step"):
        simulateSweep(maps, affine, tilted, config)


# --- denoising autoencoder --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def noisyT1():
    """A 64 x 64 x 48 mm block of the 1 mm T1 through the ventricles, with 5 % Rician noise."""
    image, _ = mni152Tissue(None)
    truth = image.as_tensor()[0, 66:130, 90:154, 70:118].contiguous()
    generator = torch.Generator().manual_seed(0)
    level = 0.05 * 255
    real = truth + torch.randn(truth.shape, generator=generator) * level
    imaginary = torch.randn(truth.shape, generator=generator) * level
    affine = torch.as_tensor(image.affine).clone()
    affine[:3, 3] += affine[:3, :3] @ torch.tensor([66.0, 90.0, 70.0]).double()
    return truth, MetaTensor(torch.sqrt(real ** 2 + imaginary ** 2)[None], affine=affine), level


def test_self_supervised_denoising(noisyT1):
    from DLSynthesizeLib.denoise import DenoiseConfig, anomalyMap, denoise, estimateNoise

    truth, noisy, level = noisyT1
    assert 0.8 * level < estimateNoise(noisy.as_tensor()[0]) < 1.3 * level
    result = denoise(noisy, DenoiseConfig(steps=300, features=16, batchSize=8, patchSize=48, draws=2, device="cpu"))
    assert result.image.shape == noisy.shape and torch.allclose(result.image.affine, noisy.affine.double())
    gain = psnr(result.image.as_tensor()[0], truth) - psnr(noisy.as_tensor()[0], truth)
    assert gain > 1.5, gain  # a short CPU run; the benchmark trains longer (RESULTS.md)
    anomaly = anomalyMap(result.model, noisy)
    assert anomaly.shape == noisy.shape and float(anomaly.min()) >= 0.0


def test_logic_and_cli_denoise(scene, noisyT1, tmp_path, capsys):
    from DLCommon import saveNode
    from DLCommon.cli import main
    from DLCommon.storage import loadVolume
    from DLSynthesizeLib.denoise import DenoiseConfig

    truth, noisy, _ = noisyT1
    node = volumeFromTensor(noisy, None, scene, "noisy")
    result = SynthesisLogic(scene).denoiseJob(node, DenoiseConfig(steps=300, features=16, batchSize=8, patchSize=48,
                                                                  draws=2, device="cpu"), anomalyVolume=True).run()
    assert result.volume.GetName() == "noisy denoised" and result.details["anomaly"].GetName() == "noisy anomaly"
    assert psnr(tensorFromVolume(result.volume)[0], truth) > psnr(noisy.as_tensor()[0], truth)
    path = saveNode(node, tmp_path / "noisy.nrrd")
    assert main(["train-synthesis", "--mode", "autoencoder", "--sources", str(path), "--steps", "300",
                 "--output-model", str(tmp_path / "model"), "--name", "denoiser", "--register", "--device", "cpu"]) == 0
    assert "catalog id 'denoiser'" in capsys.readouterr().out
    assert main(["synthesize", "--model", "denoiser", "--input", str(path), "--output", str(tmp_path / "clean.nrrd")]) == 0
    clean = tensorFromVolume(loadVolume(tmp_path / "clean.nrrd", scene))
    assert clean.shape == noisy.shape and psnr(clean[0], truth) > psnr(noisy.as_tensor()[0], truth)


def test_image_quality_transfer_from_paired_resolutions():
    from DLCommon.sampledata import randomCopy
    from DLSynthesizeLib.imagetoimage import ImageToImageConfig
    from DLSynthesizeLib.qualitytransfer import applyQualityTransfer, finerGrid, resampleOnto, trainQualityTransfer
    from DLSynthesizeLib.superresolution import degradeAlongAxis

    image, labels = mni152Tissue(2.0)

    def lowResolution(high):
        """4 mm voxels from 2 mm ones: Gaussian profile and every second sample, along each axis."""
        data = high.as_tensor()[0]
        for axis in range(3):
            data = degradeAlongAxis(data, axis, 2)
        affine = torch.as_tensor(high.affine).clone()
        affine[:3, :3] *= 2
        return MetaTensor(data[None], affine=affine)

    highs = [randomCopy(image, labels, seed, bias=False, contrast=False)[0] for seed in (0, 1, 50)]
    pairs = [(lowResolution(h), h) for h in highs[:2]]
    model = trainQualityTransfer(pairs, ImageToImageConfig(dimensions=3, patchSize=32, batchSize=4, steps=150,
                                                           features=8, device="cpu"))
    low = lowResolution(highs[2])
    restored = applyQualityTransfer(model, low)
    affine, shape = finerGrid(low.affine, low.shape[1:], [2.0, 2.0, 2.0])
    assert tuple(restored.shape[1:]) == shape and torch.allclose(torch.as_tensor(restored.affine), affine)
    truth = resampleOnto(highs[2], affine, shape).as_tensor()[0]  # the original on the restored grid
    trilinear = resampleOnto(low, affine, shape).as_tensor()[0]
    assert psnr(restored.as_tensor()[0], truth) > psnr(trilinear, truth) + 0.5


def test_cli_iqt_places_the_output_on_the_finer_grid(tmp_path, scene):
    from DLCommon import saveNode
    from DLCommon.cli import main
    from DLCommon.storage import loadVolume

    high, _ = mni152Tissue(4.0)
    low = MetaTensor(high.as_tensor()[:, ::2, ::2, ::2].clone(), affine=torch.as_tensor(high.affine).clone())
    low.affine[:3, :3] *= 2
    lowPath = saveNode(volumeFromTensor(low, None, scene, "low"), tmp_path / "low.nrrd")
    highPath = saveNode(volumeFromTensor(high, None, scene, "high"), tmp_path / "high.nrrd")
    assert main(["train-synthesis", "--mode", "iqt", "--sources", str(lowPath), "--targets", str(highPath),
                 "--steps", "10", "--output-model", str(tmp_path / "model"), "--name", "iqt", "--device", "cpu"]) == 0
    assert main(["synthesize", "--model", str(tmp_path / "model" / "iqt.ts"), "--input", str(lowPath),
                 "--output", str(tmp_path / "restored.nrrd")]) == 0
    restored = loadVolume(tmp_path / "restored.nrrd", scene)
    assert np.allclose(restored.GetSpacing(), [4.0, 4.0, 4.0])
    assert np.allclose(ijkToRasMatrix(restored)[:3, 3], ijkToRasMatrix(loadVolume(lowPath, scene))[:3, 3])


def test_probe_pose_from_markups_points():
    from DLSynthesizeLib.logic import probePoseFromNode

    class Markups:  # the markups API the logic reads (slicer-core has no markups nodes)
        def __init__(self, points):
            self.points = points

        def IsA(self, className):
            return className == "vtkMRMLMarkupsFiducialNode"

        def GetNumberOfControlPoints(self):
            return len(self.points)

        def GetNthControlPointPositionWorld(self, index, position):
            position[:] = self.points[index]

    pose = probePoseFromNode(Markups([[0, -10, 75], [0, -10, 0], [30, -10, 75]]))
    assert torch.allclose(pose[:3, 3], torch.tensor([0.0, -10.0, 75.0]).double())
    assert torch.allclose(pose[:3, 1], torch.tensor([0.0, 0.0, -1.0]).double())  # beam goes down
    assert abs(float(pose[:3, 2] @ torch.tensor([0.0, 1.0, 0.0]).double())) > 0.999  # coronal image plane
    vertical = probePoseFromNode(Markups([[0, 0, 75], [0, 0, 0]]))
    assert abs(float(torch.det(vertical[:3, :3])) - 1.0) < 1e-9
    with pytest.raises(DLError, match="needs the transducer centre"):
        probePoseFromNode(Markups([[0, 0, 0]]))


def test_logic_sweeps_parallel_and_freehand(scene):
    from DLCommon.geometry import vtkMatrixFromArray
    from DLSynthesizeLib.ultrasound import UltrasoundConfig

    _, affine = phantom()
    node = volumeFromTensor(MetaTensor(torch.ones(1, 100, 100, 100), affine=affine), None, scene, "soft tissue",
                            labelmap=True)

    def probes(offsets, tilt=False):
        nodes = []
        for index, y in enumerate(offsets):
            transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", f"probe {index}")
            pose = topProbe(x=20.0 * index if tilt else 50.0, y=y)
            transform.SetMatrixTransformToParent(vtkMatrixFromArray(pose.numpy()))
            nodes.append(transform)
        return nodes

    config = UltrasoundConfig(geometry="linear", depth=60, width=40)
    logic = SynthesisLogic(scene)
    parallel = logic.simulateSweep(node, probes([40, 42, 44]), config=config)
    assert parallel.volume is not None and parallel.volume.GetImageData().GetDimensions()[2] == 3
    freehand = logic.simulateSweep(node, probes([40, 43, 47], tilt=True), config=config)
    assert freehand.volume is None and len(freehand.details["frames"]) == 3
    with pytest.raises(DLError, match="at least two"):
        logic.simulateSweep(node, probes([40]))


def test_nan_voxels_are_refused_everywhere():
    from DLSynthesizeLib.denoise import denoise
    from DLSynthesizeLib.imagetoimage import trainImageToImage

    clean = MetaTensor(torch.rand(1, 16, 16, 16), affine=torch.eye(4))
    broken = clean.clone()
    broken[0, 1, 2, 3] = float("nan")
    with pytest.raises(DLError, match="NaN or infinite voxels in its target"):
        trainImageToImage([(clean, broken)])
    with pytest.raises(DLError, match="NaN"):
        denoise(broken)


def test_super_resolution_job_keeps_live_curves(scene, thickSlices):
    _, thick = thickSlices
    node = volumeFromTensor(thick, None, scene, "thick")
    job = SynthesisLogic(scene).superResolveJob(node, SuperResolutionConfig(steps=50, features=8, batchSize=4,
                                                                            patchSize=32, device="cpu"))
    job.run()
    assert len(job.history.trainLoss) == 2
