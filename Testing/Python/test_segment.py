"""DLSegment engine: train in the scene, segment, fine-tune, bundles, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import COLORS, NAMES, addCase, assertGeometryClose, makeVolume, obliqueAffine, phantom

from DLCommon import DLError, ModelCatalog, loadModel, segmentationFromTensor, tensorFromSegmentation, tensorFromVolume
from monai.data import MetaTensor
from DLCommon.errors import JobCancelled
from DLCommon.geometry import ijkToRasMatrix
from DLSegmentLib.logic import SegmentationLogic
from DLSegmentLib.trainer import SegmentationTrainingConfig

FAST = dict(network="unet", features=8, patchSize=(16, 16, 16), epochs=30, batchesPerEpoch=8, batchSize=4,
            learningRate=5e-3, device="cpu",
            # CT-like absolute intensities: a fixed window, not a per-image z-score (which shifts with
            # how much of each structure a case holds)
            normalization={"type": "range", "aMin": 0.0, "aMax": 120.0, "bMin": 0.0, "bMax": 1.0, "clip": False})


@pytest.fixture(scope="module")
def trainedOnce(tmp_path_factory):
    """One small model trained through the logic on two scene pairs (shared by several tests)."""
    import slicer

    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDDL_HOME", str(home / "h"))
    patch.setenv("MEDDL_CACHE", str(home / "c"))
    scene = slicer.vtkMRMLScene()
    pairs = [addCase(scene, seed)[:2] for seed in (1, 2)]
    before = scene.GetNumberOfNodes()
    fractions = []
    result = SegmentationLogic(scene).train(pairs, SegmentationTrainingConfig(**FAST), modelName="phantom",
                                            outputDir=home / "model", progress=lambda f, m: fractions.append(f))
    patch.undo()
    assert scene.GetNumberOfNodes() == before  # training adds nothing to the scene
    assert fractions[-1] == 1.0
    return result, home


@pytest.fixture
def trained(trainedOnce, monkeypatch):
    """The shared model, with the catalog it was registered in."""
    result, home = trainedOnce
    monkeypatch.setenv("MEDDL_HOME", str(home / "h"))
    monkeypatch.setenv("MEDDL_CACHE", str(home / "c"))
    return result, home


def test_training_registers_a_verified_model(trained):
    result, home = trained
    assert result.catalogId == "phantom"
    entry = ModelCatalog().get("phantom")
    assert entry.format == "checkpoint" and len(entry.sha256) == 64
    reloaded = ModelCatalog().load("phantom")
    assert reloaded.spec.labelNames == NAMES and reloaded.spec.orientation == "RAS"
    np.testing.assert_allclose(reloaded.spec.labelColors, COLORS)
    history = json.loads((home / "model" / "phantom.history.json").read_text())
    assert history["trainLoss"][-1] < history["trainLoss"][0]


def test_segment_held_out_oblique_case(trained, scene):
    result, _ = trained
    volume, _, labels = addCase(scene, 7, affine=obliqueAffine(np.random.default_rng(3), spacing=(1.0, 1.0, 1.0)))
    count = scene.GetNumberOfNodes()
    output = SegmentationLogic(scene).segment(volume, "phantom", probabilityVolumes=True, entropyVolume=True)
    segmentation = output.segmentation
    predicted, names, colors = tensorFromSegmentation(segmentation, volume)
    assert names == NAMES
    np.testing.assert_allclose(colors, COLORS, atol=1e-6)
    for value in (1, 2):
        a, b = predicted.numpy() == value, labels == value
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8, f"Dice of {NAMES[value - 1]}"
    assert len(output.probabilities) == 2 and output.entropy is not None
    assertGeometryClose(ijkToRasMatrix(output.probabilities[0]), ijkToRasMatrix(volume))
    assert scene.GetNumberOfNodes() > count


def test_mirror_test_time_augmentation_averages_with_the_mirrored_prediction(trained, scene):
    from DLSegmentLib.segmenter import predictProbabilities

    result, _ = trained
    volume, _, labels = addCase(scene, 8)
    image = tensorFromVolume(volume)
    axis = 1 + int(torch.as_tensor(image.affine)[0, :3].abs().argmax())
    plain = predictProbabilities(result.model, image, device="cpu")
    flipped = predictProbabilities(result.model, MetaTensor(image.as_tensor().flip(axis), affine=image.affine),
                                   device="cpu")
    mirrored = predictProbabilities(result.model, image, device="cpu", mirror=True)
    assert torch.allclose(mirrored.as_tensor(), (plain.as_tensor() + flipped.as_tensor().flip(axis)) / 2, atol=1e-5)
    output = SegmentationLogic(scene).segment(volume, "phantom", mirror=True)
    predicted, _, _ = tensorFromSegmentation(output.segmentation, volume)
    assert torch.equal(predicted, mirrored.argmax(0))


def test_segment_into_existing_node_and_fine_tune(trained, scene, tmp_path):
    result, _ = trained
    volume, reference, labels = addCase(scene, 8)
    target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My output")
    target.CreateDefaultDisplayNodes()
    logic = SegmentationLogic(scene)
    count = scene.GetNumberOfNodes()
    output = logic.segment(volume, result.model, outputSegmentation=target)
    assert output.segmentation is target and scene.GetNumberOfNodes() == count  # reused, no extra node
    assert target.GetSegmentation().GetNumberOfSegments() == 2

    config = SegmentationTrainingConfig(**{**FAST, "epochs": 2})
    tuned = logic.train([(volume, reference)], config, modelName="phantom-tuned", baseModel="phantom",
                        outputDir=tmp_path)
    assert tuned.model.format == "checkpoint" and tuned.model.networkDef["name"] == "UNet"
    assert loadModel(tuned.modelPath).spec.labelNames == NAMES


def test_model_zoo_style_bundle_runs_unchanged(scene, tmp_path):
    """A bundle laid out like spleen_ct_segmentation (configs/inference.json + models/model.pt)."""
    from monai.networks.nets import UNet

    root = tmp_path / "spleen_ct_segmentation"
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    networkDef = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                  "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"}
    inference = {
        "imports": ["$import glob", "$import os"], "bundle_root": ".", "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "/workspace/data/Task09_Spleen",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": networkDef, "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"}, {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0,
             "b_max": 1, "clip": True},
            {"_target_": "EnsureTyped", "keys": "image"}]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96], "sw_batch_size": 4, "overlap": 0.5},
    }
    (root / "configs" / "inference.json").write_text(json.dumps(inference))
    (root / "configs" / "metadata.json").write_text(json.dumps({
        "name": "Spleen CT segmentation", "version": "0.5.0",
        "network_data_format": {"inputs": {"image": {"num_channels": 1}},
                                "outputs": {"pred": {"num_channels": 2, "channel_def": {"0": "background", "1": "spleen"}}}}}))
    torch.manual_seed(0)
    reference = UNet(**{k: v for k, v in networkDef.items() if k != "_target_"}).eval()
    torch.save(reference.state_dict(), root / "models" / "model.pt")

    from DLCommon.bundletrust import trustBundle

    trustBundle(root)  # its '$' expressions run only with the user's consent
    model = loadModel(root)
    spec = model.spec
    assert spec.labelNames == ["spleen"] and spec.spacing == [1.5, 1.5, 2.0] and spec.orientation == "RAS"
    assert spec.roiSize == [96, 96, 96]
    assert spec.normalization == {"type": "range", "aMin": -57.0, "aMax": 164.0, "bMin": 0.0, "bMax": 1.0, "clip": True}
    for key, value in reference.state_dict().items():
        assert torch.equal(model.network.state_dict()[key], value)

    affine = np.diag([-0.8, -0.8, 2.5, 1.0])  # an LPS-ordered CT-like grid
    image = np.random.default_rng(0).normal(40, 30, size=(24, 40, 40)).astype(np.float32)
    volume = makeVolume(scene, image, affine, name="CT")
    output = SegmentationLogic(scene).segment(volume, model)
    labels, names, _ = tensorFromSegmentation(output.segmentation, volume)
    assert names == ["spleen"] and labels.shape == (40, 40, 24)


# --- bad input: clear errors, nothing left behind --------------------------------------------------------

def test_bad_training_input(scene):
    volume, segmentation, _ = addCase(scene, 3)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Nothing")
    blank = segmentationFromTensor(torch.zeros(36, 32, 28, dtype=torch.int64), volume, scene, ["nothing drawn"],
                                   nodeName="Blank")
    logic = SegmentationLogic(scene)
    count = scene.GetNumberOfNodes()
    with pytest.raises(DLError, match="Segmentation 'Nothing' has no segments"):
        logic.train([(volume, empty)], SegmentationTrainingConfig(**FAST))
    with pytest.raises(DLError, match="Segmentation 'Blank' is empty on the grid of volume"):
        logic.train([(volume, blank)], SegmentationTrainingConfig(**FAST))
    with pytest.raises(DLError, match="No training pair"):
        logic.train([], SegmentationTrainingConfig(**FAST))
    assert scene.GetNumberOfNodes() == count


def test_segmentation_on_another_geometry_is_resampled(scene):
    """A segmentation drawn on a 2x coarser grid is rasterised onto the volume (stated, not misaligned)."""
    from DLSegmentLib.data import sampleFromNodes

    volume, _, labels = addCase(scene, 4)
    coarse = makeVolume(scene, np.zeros((14, 16, 18), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]) + np.diag([0, 0, 0, 0]))
    coarseLabels = torch.from_numpy(labels[::2, ::2, ::2].copy())
    segmentation = segmentationFromTensor(coarseLabels, coarse, scene, NAMES, COLORS)
    sample, names, _ = sampleFromNodes(volume, segmentation)
    assert sample.labels.shape == (36, 32, 28) and names == NAMES
    agreement = (sample.labels.numpy() == labels).mean()
    assert agreement > 0.9


def test_bad_inference_input(trained, scene):
    import slicer

    result, _ = trained
    logic = SegmentationLogic(scene)
    rgb = makeVolume(scene, np.zeros((10, 12, 14, 3), np.float32), np.eye(4), name="Photo",
                     className="vtkMRMLVectorVolumeNode")
    flat = makeVolume(scene, np.zeros((1, 30, 30), np.float32), np.eye(4), name="Slice")
    nan = makeVolume(scene, np.zeros((10, 12, 14), np.float32), np.eye(4), name="Holes")
    slicer.util.arrayFromVolume(nan)[2, 3, 4] = np.nan
    count = scene.GetNumberOfNodes()
    with pytest.raises(DLError, match="Input 'Photo' has 3 channel\\(s\\) but model 'phantom' expects 1"):
        logic.segment(rgb, result.model)
    with pytest.raises(DLError, match="Volume 'Slice' is a single slice .* but model 'phantom' is 3D"):
        logic.segment(flat, result.model)
    with pytest.raises(DLError, match="Input 'Holes' has 1 NaN or infinite voxel"):
        logic.segment(nan, result.model)
    with pytest.raises(DLError, match="Model 'nope' is neither a catalog model"):
        logic.segment(flat, "nope")
    assert scene.GetNumberOfNodes() == count


def test_cancel_mid_inference_leaves_no_node(trained, scene):
    result, _ = trained
    volume, _, _ = addCase(scene, 5)
    job = SegmentationLogic(scene).segmentJob(volume, result.model, probabilityVolumes=True, entropyVolume=True)
    count = scene.GetNumberOfNodes()
    work = job.work

    def cancellingWork(context):
        report = context.report

        def cancelAfterFirst(fraction, message=""):
            job.cancel()
            report(fraction, message)

        context.report = cancelAfterFirst
        return work(context)

    job.work = cancellingWork
    with pytest.raises(JobCancelled):
        job.run()
    assert scene.GetNumberOfNodes() == count


def test_2d_model_on_a_single_slice(scene, tmp_path):
    import slicer

    image, labels = phantom(6, shape=(48, 48, 28))
    image, labels = image[:, :, 16:17], labels[:, :, 16:17]  # a slice through both structures
    assert set(np.unique(labels)) == {0, 1, 2}
    volume = makeVolume(scene, np.ascontiguousarray(image.transpose(2, 1, 0)), np.eye(4), name="Slice")
    segmentation = segmentationFromTensor(torch.from_numpy(labels), volume, scene, NAMES[:1] + NAMES[1:], COLORS)
    config = SegmentationTrainingConfig(**{**FAST, "patchSize": (32, 32), "epochs": 12, "augmentations": ()})
    result = SegmentationLogic(scene).train([(volume, segmentation)], config, modelName="flat", outputDir=tmp_path,
                                            addToCatalog=False)
    output = SegmentationLogic(scene).segment(volume, result.model)
    predicted, _, _ = tensorFromSegmentation(output.segmentation, volume)
    assert (predicted.numpy() == labels).mean() > 0.9
    assert slicer.util.arrayFromVolume(volume).shape == (1, 48, 48)


def test_cli_train_and_batch_segment(scene, tmp_path, capsys):
    """meddl train-segment on files, then meddl segment on a folder (batch), files read back by Slicer's readers."""
    from DLCommon.cli import main
    from DLCommon.storage import loadSegmentation, saveNode

    images, labelFiles, truth = [], [], {}
    for seed in (1, 2, 9):
        volume, segmentation, labels = addCase(scene, seed, name="cli")
        folder = tmp_path / ("test" if seed == 9 else "train")
        images.append(saveNode(volume, folder / f"case{seed}.nrrd"))
        labelFiles.append(saveNode(segmentation, tmp_path / "labels" / f"case{seed}.seg.nrrd"))
        truth[f"case{seed}"] = labels
    assert main(["train-segment", "--images", *map(str, images[:2]), "--labels", *map(str, labelFiles[:2]),
                 "--patch", "16", "16", "16", "--epochs", "30", "--batches-per-epoch", "8", "--batch-size", "4",
                 "--features", "8", "--intensity-range", "0", "120", "--device", "cpu",
                 "--output-model", str(tmp_path / "model"), "--name", "cli-phantom", "--register"]) == 0
    assert (tmp_path / "model" / "cli-phantom_curves.png").exists()
    assert main(["segment", "--model", "cli-phantom", "--input", str(tmp_path / "test"),
                 "--output", str(tmp_path / "out"), "--probabilities", str(tmp_path / "prob")]) == 0
    segmentation = loadSegmentation(tmp_path / "out" / "case9.seg.nrrd", scene)
    reference = scene.GetFirstNodeByName("cli 9")
    predicted, names, _ = tensorFromSegmentation(segmentation, reference)
    assert names == NAMES
    labels = truth["case9"]
    for value in (1, 2):
        a, b = predicted.numpy() == value, labels == value
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8
    assert (tmp_path / "prob" / "case9_probabilities.nrrd").exists()
    assert "case9.nrrd: ball, box" in capsys.readouterr().out


def test_fine_tune_a_torchscript_model(trained, scene, tmp_path):
    """Fine-tuning an imported TorchScript model keeps it self-contained TorchScript, with the new spec."""
    from DLCommon import saveTorchScript

    result, _ = trained
    example = torch.zeros(1, 1, 16, 16, 16)
    scripted = saveTorchScript(result.model.network, tmp_path / "phantom.ts", result.model.spec, example=example)
    volume, reference, _ = addCase(scene, 10)
    config = SegmentationTrainingConfig(**{**FAST, "epochs": 1, "batchesPerEpoch": 2})
    tuned = SegmentationLogic(scene).train([(volume, reference)], config, modelName="phantom-ts", baseModel=str(scripted),
                                           outputDir=tmp_path / "out", addToCatalog=False)
    assert tuned.modelPath.suffix == ".ts"
    reloaded = loadModel(tuned.modelPath)
    assert reloaded.format == "torchscript" and reloaded.spec.labelNames == NAMES and reloaded.spec.name == "phantom-ts"
    with torch.no_grad():
        assert reloaded.network(example).shape == (1, 3, 16, 16, 16)
