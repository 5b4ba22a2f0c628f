"""Resource estimates before a run: measured per-window cost, the plan (as asked / smaller batch / CPU / refused)."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from DLCommon import DLError, ModelSpec
from DLCommon import resources
from DLCommon.resources import estimateSlidingWindow, formatBytes, planInference


@pytest.fixture(scope="module")
def unet():
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(3, 1, 3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1).eval()


def image(shape=(1, 96, 80, 72)):
    return MetaTensor(torch.rand(shape), affine=torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)))


SPEC = ModelSpec(name="unet", inputChannels=1, roiSize=[32, 32, 32], labelNames=["a", "b"])


def test_estimate_counts_volumes_windows_and_activations(unet):
    small = estimateSlidingWindow(unet, image(), SPEC, torch.device("cpu"), windowBatchSize=1)
    big = estimateSlidingWindow(unet, image(), SPEC, torch.device("cpu"), windowBatchSize=8)
    scores = estimateSlidingWindow(unet, image(), SPEC, torch.device("cpu"), windowBatchSize=1, labelsOnly=False)
    voxels = 96 * 80 * 72
    assert small.memoryBytes > 8 * voxels  # at least the input and its normalised copy (float32)
    assert big.memoryBytes > small.memoryBytes  # more windows per batch, more activations
    assert scores.memoryBytes - small.memoryBytes >= 4 * 2 * 3 * voxels - voxels  # class scores + weights
    assert small.seconds > 0 and "windows of 32x32x32" in small.note
    assert small.availableBytes is None or small.availableBytes > 0
    text = small.describe()
    assert text.startswith("Inference: needs about ") and " on cpu (" in text and "free" in text


def test_plan_keeps_shrinks_or_refuses(unet, monkeypatch):
    asked = estimateSlidingWindow(unet, image(), SPEC, torch.device("cpu"), windowBatchSize=4)
    single = estimateSlidingWindow(unet, image(), SPEC, torch.device("cpu"), windowBatchSize=1)
    assert single.memoryBytes < asked.memoryBytes
    monkeypatch.setattr(resources, "availableMemory", lambda device: int(asked.memoryBytes / 0.9) + 1)
    assert planInference(unet, image(), SPEC, "cpu", windowBatchSize=4).windowBatchSize == 4
    between = (single.memoryBytes + asked.memoryBytes) / 2 / 0.9
    monkeypatch.setattr(resources, "availableMemory", lambda device: int(between))
    plan = planInference(unet, image(), SPEC, "cpu", windowBatchSize=4)
    assert plan.windowBatchSize == 1 and plan.note.startswith("switched from cpu with 4 windows per batch")
    monkeypatch.setattr(resources, "availableMemory", lambda device: 1000)
    with pytest.raises(DLError, match=r"needs about .* but only 1000 B is free on cpu.*Fix: crop"):
        planInference(unet, image(), SPEC, "cpu", windowBatchSize=4, node="Volume 'big'")


def test_format_bytes():
    assert formatBytes(512) == "512 B" and formatBytes(1536) == "1.5 KB" and formatBytes(3 * 1024 ** 3) == "3.0 GB"


def test_meddl_dry_run_segment(tmp_path, capsys, monkeypatch, unet):
    """meddl --dry-run segment prints the estimate and writes nothing; a run that cannot fit exits 2."""
    import json

    import numpy as np
    import slicer

    from conftest import makeVolume
    from DLCommon import saveCheckpoint
    from DLCommon.cli import main
    from DLCommon.storage import saveNode

    spec = ModelSpec(name="unet", task="segmentation", inputChannels=1, roiSize=[32, 32, 32], labelNames=["a", "b"])
    model = saveCheckpoint(unet, tmp_path / "unet.pt", "UNet", {"spatial_dims": 3, "in_channels": 1,
                           "out_channels": 3, "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}, spec)
    volume = saveNode(makeVolume(slicer.vtkMRMLScene(), np.random.rand(40, 48, 56).astype(np.float32), np.eye(4)),
                      tmp_path / "case.nrrd")
    argv = ["--dry-run", "segment", "--model", str(model), "--input", str(volume), "--output", str(tmp_path / "o.seg.nrrd")]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["fits"] and line["memoryBytes"] > 4 * 40 * 48 * 56 and line["seconds"] > 0
    assert not (tmp_path / "o.seg.nrrd").exists()
    monkeypatch.setattr(resources, "availableMemory", lambda device: 1000)
    assert main(argv) == 2
    assert "is too large for this machine" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text"]
    monkeypatch.undo()
    assert main(["--dry-run", "register", "--fixed", str(volume), "--moving", str(volume),
                 "--output-transform", str(tmp_path / "reg" / "t.h5")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["what"] == "Registration" and line["memoryBytes"] > 8 * 40 * 48 * 56 and line["fits"]
    assert line["seconds"] > 0  # timed by a short real run
    assert not (tmp_path / "reg").exists()  # a dry run writes nothing, not even folders
    labels = np.zeros((40, 48, 56), np.int16)
    labels[10:30, 10:30, 10:30] = 1
    labelFile = saveNode(makeVolume(slicer.vtkMRMLScene(), labels, np.eye(4), className="vtkMRMLLabelMapVolumeNode"),
                         tmp_path / "labels.nrrd")
    assert main(["--dry-run", "train-segment", "--images", str(volume), "--labels", str(labelFile), "--patch", "32",
                 "32", "32", "--epochs", "3", "--output-model", str(tmp_path / "m"), "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["what"] == "Segmentation training" and line["seconds"] > 0 and "48 steps of 2 x 32x32x32" in line["note"]
    assert not (tmp_path / "m").exists()
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label\n{volume},a\n{volume},b\n")
    assert main(["--dry-run", "train-classify", "--csv", str(csv), "--input-size", "32", "32", "32",
                 "--output-model", str(tmp_path / "m"), "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["what"] == "Classification training" and line["seconds"] > 0 and line["fits"]
    assert main(["--dry-run", "train-synthesis", "--mode", "autoencoder", "--sources", str(volume), "--steps", "50",
                 "--output-model", str(tmp_path / "m"), "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["what"] == "Denoising" and line["seconds"] > 0 and "50 training steps, 4 draws" in line["note"]
    thick = saveNode(makeVolume(slicer.vtkMRMLScene(), np.random.rand(10, 48, 56).astype(np.float32),
                                np.diag([1.0, 1.0, 4.0, 1.0])), tmp_path / "thick.nrrd")
    assert main(["--dry-run", "super-resolve", "--input", str(thick), "--output", str(tmp_path / "sr.nrrd"),
                 "--steps", "50", "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["what"] == "Super-resolution" and line["seconds"] > 0 and line["note"].startswith("x4 along axis 2")
    assert not (tmp_path / "m").exists() and not (tmp_path / "sr.nrrd").exists()
    assert main(["--dry-run", "simulate-us", "--volume", str(volume), "--position", "0", "0", "0", "--target", "0",
                 "0", "10", "--output", str(tmp_path / "us.nrrd")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["what"] == "Ultrasound simulation" and line["fits"] and line["seconds"] > 0
    assert not (tmp_path / "us.nrrd").exists()


def test_gpu_estimate_counts_device_and_system_memory_apart(monkeypatch):
    """On a GPU the windows live on the device and the whole-volume buffers in system memory: each is checked
    against its own free memory, and the refusal names the one that does not fit."""
    monkeypatch.setattr(resources, "availableMemory", lambda device: 1000 if torch.device(device).type == "cuda" else 10**6)
    estimate = resources.makeEstimate("Inference", "cuda:0", 800, 5000, 2.0)
    assert estimate.fits and estimate.memoryBytes == 800 and estimate.hostBytes == 5000
    assert "800 B on cuda:0 (1000 B free) and 4.9 KB of system memory (976.6 KB free)" in estimate.describe()
    tooBigForHost = resources.makeEstimate("Inference", "cuda:0", 800, 2 * 10**6, 2.0)
    assert not tooBigForHost.fits and resources._need(tooBigForHost).endswith("is free in system memory")
    tooBigForGpu = resources.makeEstimate("Inference", "cuda:0", 950, 5000, 2.0)
    assert not tooBigForGpu.fits and resources._need(tooBigForGpu) == "about 950 B but only 1000 B is free on cuda:0"
    onCpu = resources.makeEstimate("Inference", "cpu", 800, 5000, 2.0)
    assert onCpu.memoryBytes == 5800 and onCpu.hostBytes == 0  # one pool


def test_training_estimate_leaves_a_model_to_fine_tune_unchanged(unet):
    """The estimate runs one real step (Adam, batch-norm statistics): a base model must get its state back."""
    from DLCommon.resources import estimateTraining

    unet.eval()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    estimate = estimateTraining(unet, (1, 32, 32, 32), 2, 10, "cpu")
    assert estimate.seconds > 0 and estimate.memoryBytes > 0 and not unet.training
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())


def test_torchscript_models_are_estimated_too(unet):
    """A TorchScript model takes no forward hooks: its CPU estimate counts what autograd would save instead."""
    scripted = torch.jit.script(unet)
    eager = estimateSlidingWindow(unet, image(), SPEC, torch.device("cpu"), windowBatchSize=4)
    script = estimateSlidingWindow(scripted, image(), SPEC, torch.device("cpu"), windowBatchSize=4)
    assert script.fits and script.seconds > 0
    assert 0.5 < script.memoryBytes / eager.memoryBytes < 2.0  # the same network, measured two ways
