"""One path per job: ``meddl segment`` runs the job the DL Segment panel makes (``parameters.applyJob``), so the same
settings give the same output and the same warnings through the command line and through the logic."""

from __future__ import annotations

import numpy as np
import torch
from conftest import addCase, makeVolume

from DLCommon import ModelCatalog, saveCheckpoint, tensorFromSegmentation, tensorFromVolume
from DLCommon.cli import main
from DLCommon.models import ModelSpec
from DLCommon.storage import loadSegmentation, loadVolume, saveNode


def tinyModel(folder) -> str:
    """A small untrained U-Net with a spec (its labels are arbitrary but deterministic: what is compared)."""
    from monai.networks.nets import UNet

    torch.manual_seed(3)
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2],
            "num_res_units": 0}
    path = saveCheckpoint(UNet(**args), folder / "tiny.pt", "UNet", args,
                          ModelSpec(name="tiny", task="segmentation", labelNames=["ball", "box"], roiSize=[16, 16, 16]))
    return ModelCatalog().importFile(path.with_suffix(".pt"), modelId="tiny").id


def test_meddl_segment_equals_the_logic_on_the_same_settings(scene, tmp_path, capsys):
    from DLSegmentLib.logic import SegmentationLogic

    modelId = tinyModel(tmp_path)
    volume, _, _ = addCase(scene, 4)
    saveNode(volume, tmp_path / "case.nrrd")
    assert main(["segment", "--model", modelId, "--input", str(tmp_path / "case.nrrd"), "--output",
                 str(tmp_path / "case.seg.nrrd"), "--probabilities", str(tmp_path / "p.nrrd"), "--device", "cpu"]) == 0
    printed = capsys.readouterr()

    loaded = loadVolume(tmp_path / "case.nrrd", scene)  # the logic on the same file, same settings
    expected = SegmentationLogic(scene).segment(loaded, modelId, probabilityVolumes=True, device="cpu")
    cliLabels, cliNames, _ = tensorFromSegmentation(loadSegmentation(tmp_path / "case.seg.nrrd", scene), loaded)
    labels, names, _ = tensorFromSegmentation(expected.segmentation, loaded)
    assert cliNames == names == ["ball", "box"] and torch.equal(cliLabels, labels)
    import SimpleITK as sitk

    # a vector NRRD: (K, J, I, class) here, background first; the logic's volumes are (1, I, J, K)
    probabilities = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "p.nrrd"))).transpose(3, 2, 1, 0)
    assert probabilities.shape[0] == 3
    for index, node in enumerate(expected.probabilities, start=1):
        np.testing.assert_allclose(probabilities[index], tensorFromVolume(node)[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    warnings = [line.split(": ", 3)[-1] for line in printed.err.splitlines() if line.startswith("meddl: warning")]
    assert warnings == expected.warnings


def test_meddl_train_segment_equals_the_logic_on_the_same_settings(scene, tmp_path, capsys):
    """``meddl train-segment`` runs the panel's training job (``SegmentationLogic.trainJob``): the same settings give
    the same weights; a labelmap file is read as labels ``label 1``, ``label 2`` on the image's grid."""
    from DLSegmentLib.config import SegmentationTrainingConfig
    from DLSegmentLib.logic import SegmentationLogic

    volume, _, labels = addCase(scene, 1)
    labelmap = makeVolume(scene, labels.transpose(2, 1, 0).astype(np.int16), np.eye(4),
                          className="vtkMRMLLabelMapVolumeNode")
    saveNode(volume, tmp_path / "case.nrrd")
    saveNode(labelmap, tmp_path / "labels.nrrd")
    options = dict(epochs=2, batchesPerEpoch=2, batchSize=2, features=4, patchSize=(16, 16, 16), device="cpu", seed=5)
    assert main(["train-segment", "--images", str(tmp_path / "case.nrrd"), "--labels", str(tmp_path / "labels.nrrd"),
                 "--epochs", "2", "--batches-per-epoch", "2", "--batch-size", "2", "--features", "4", "--patch", "16",
                 "16", "16", "--device", "cpu", "--seed", "5", "--output-model", str(tmp_path / "cli"),
                 "--name", "cli"]) == 0
    assert "Model:" in capsys.readouterr().out

    pair = (loadVolume(tmp_path / "case.nrrd", scene), loadVolume(tmp_path / "labels.nrrd", scene, labelmap=True))
    expected = SegmentationLogic(scene).train([pair], SegmentationTrainingConfig(**options), modelName="logic",
                                              outputDir=tmp_path / "logic", addToCatalog=False)
    cli = torch.load(next((tmp_path / "cli").glob("cli*.pt")), weights_only=True)
    logicState = torch.load(expected.modelPath, weights_only=True)
    assert expected.model.spec.labelNames == ["label 1", "label 2"]
    cliState, logicState = cli.get("state_dict", cli), logicState.get("state_dict", logicState)
    assert cliState.keys() == logicState.keys()
    for key in logicState:
        torch.testing.assert_close(cliState[key], logicState[key], rtol=1e-5, atol=1e-6)
