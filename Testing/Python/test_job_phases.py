"""The job phases (DLCommon.jobs): making a job (prepare) only reads its inputs; the plan (estimates that run the
model) waits for the worker or the child; the Estimate buttons run prepare + plan and nothing else."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from conftest import makeVolume, settingsOf

from DLCommon import segmentationFromTensor
from DLCommon.jobs import JobState
from DLCommon.modules import moduleByPackage
from DLCommon.models import LoadedModel, ModelSpec

PLANNERS = ("fitOrSwitch", "planInference")


@pytest.fixture
def noPlanning(monkeypatch):
    """Every logic module's planners raise: a job whose maker plans fails to be made."""
    import importlib

    def refuse(*args, **kwargs):
        raise AssertionError("the plan ran while the job was being made")

    for package in ("DLSegmentLib", "DLRegisterLib", "DLSynthesizeLib", "DLClassifyLib"):
        logic = importlib.import_module(f"{package}.logic")
        for name in PLANNERS:
            if hasattr(logic, name):
                monkeypatch.setattr(logic, name, refuse)


class SlowNetwork(torch.nn.Module):
    """A segmentation network whose every forward pass takes a second (an estimate runs it)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        time.sleep(1.0)
        return self.conv(x)


def volume(scene, name, spacing=(1.0, 1.0, 1.0), seed=0):
    rng = np.random.default_rng(seed)
    array = rng.normal(50, 10, (20, 24, 28)).astype(np.float32)
    array[6:14, 8:16, 10:18] += 60
    return makeVolume(scene, array, np.diag([*spacing, 1.0]), name=name)


def labelled(scene, node):
    labels = torch.zeros(28, 24, 20, dtype=torch.long)
    labels[10:18, 8:16, 6:14] = 1
    return segmentationFromTensor(labels, node, scene, ["blob"], [(1.0, 0.0, 0.0)], nodeName=f"{node.GetName()} labels")


def test_making_a_segmentation_job_runs_no_estimate_with_a_slow_model(scene):
    network = SlowNetwork().eval()
    model = LoadedModel(network, ModelSpec(name="slow", task="segmentation", labelNames=["a", "b"],
                                           roiSize=[16, 16, 16]), "checkpoint", None)
    logic = moduleByPackage("DLSegmentLib").makeEngine(scene)
    started = time.monotonic()
    job = logic.segmentJob(volume(scene, "input"), model)
    assert time.monotonic() - started < 0.2 and network.calls == 0  # prepare: no forward pass
    assert job.state == JobState.PENDING and job.measuredEstimate is None
    estimate = job.resourceEstimate()  # the Estimate button: prepare + plan
    assert network.calls >= 1 and estimate.fits and job.measuredEstimate is estimate
    calls = network.calls
    job.runWork()  # the plan is made once: the work reuses it
    assert job.state == JobState.RUNNING and network.calls > calls


def test_every_modules_jobs_are_made_without_planning(scene, noPlanning):
    """Each module's Apply / Train job is made with its planners replaced by ones that fail."""
    first, second = volume(scene, "first", seed=1), volume(scene, "second", seed=2)
    thick = volume(scene, "thick", spacing=(1.0, 1.0, 3.0), seed=3)
    made = []
    segment = moduleByPackage("DLSegmentLib")
    p = settingsOf(segment, trainingVolumes=[first], trainingSegmentations=[labelled(scene, first)], epochs=1)
    made.append(segment.makeJob("train", segment.makeEngine(scene), p))
    register = moduleByPackage("DLRegisterLib")
    made.append(register.makeJob("apply", register.makeEngine(scene),
                                 settingsOf(register, fixedVolume=first, movingVolume=second)))
    made.append(register.makeJob("train", register.makeEngine(scene),
                                 settingsOf(register, trainingVolumes=[first, second])))
    synthesize = moduleByPackage("DLSynthesizeLib")
    for task, extra in (("super-resolution", {}), ("denoise", {}),
                        ("image-to-image", {"sourceVolumes": [first], "targetVolumes": [second]})):
        made.append(synthesize.makeJob("apply", synthesize.makeEngine(scene),
                                       settingsOf(synthesize, inputVolume=thick, task=task, **extra)))
    assert all(job.state == JobState.PENDING for job in made) and len(made) == 6


def test_the_work_of_a_job_reads_no_node(scene, tmp_path):
    """Work runs in a worker thread or a child process, so it reads no MRML node: after making the jobs, every
    read of the input nodes fails, and the plan and the work still run (the classifier's work read volume names)."""
    from monai.networks.nets import DenseNet121

    from DLCommon import saveCheckpoint

    volumes = [volume(scene, f"case {i}", seed=i) for i in range(4)]
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2}
    path = saveCheckpoint(DenseNet121(**args), tmp_path / "cls.pt", "DenseNet121", args,
                          ModelSpec(name="cls", task="classification", labelNames=["a", "b"], roiSize=[32, 32, 32],
                                    options={"encoding": "nominal", "inputSize": [32, 32, 32]}))
    classify = moduleByPackage("DLClassifyLib")
    logic = classify.makeEngine(scene)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "labels")
    for column in ("volume", "label"):
        table.AddColumn().SetName(column)
    for index, node in enumerate(volumes):
        row = table.AddEmptyRow()
        table.SetCellText(row, 0, node.GetName())
        table.SetCellText(row, 1, "ab"[index % 2])
    jobs = [logic.classifyJob(volumes[:2], str(path), saliency=True),
            classify.makeJob("train", logic, settingsOf(classify, trainingTable=table, epochs=1, inputSize=16))]

    def read(*args):
        raise AssertionError("a node was read by the job's work")

    for node in volumes + [table]:
        for method in ("GetName", "GetID", "GetImageData", "GetScene", "GetCellText"):
            if hasattr(node, method):
                setattr(node, method, read)
    for job in jobs:
        job.runWork()
        assert job.state == JobState.RUNNING and job.error is None, job.error  # work done, apply to come
