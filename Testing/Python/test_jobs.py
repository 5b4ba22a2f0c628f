"""Jobs: progress with ETA, cancel, and the scene left exactly as it was when a job fails or is cancelled."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import makeVolume, sceneSnapshot

from DLCommon import Job, JobState, volumeFromTensor
from DLCommon.errors import JobCancelled
from DLCommon.volumes import volumeArrayView


@pytest.fixture
def inputNode(scene):
    return makeVolume(scene, np.arange(60, dtype=np.float32).reshape(3, 4, 5), np.eye(4), name="Input")


def makeJob(scene, inputNode, steps=50, failAt=None, gate=None, failInApply=False):
    from DLCommon import tensorFromVolume

    tensor = tensorFromVolume(inputNode).clone()  # read inputs before the job starts

    def work(context):
        result = tensor
        for step in range(steps):
            if gate is not None and step == steps // 2:
                gate.wait(5)
            if failAt == step:
                raise RuntimeError("boom")
            result = result + 1
            context.report((step + 1) / steps, f"step {step + 1}")
        return result

    def apply(result):
        node = volumeFromTensor(result, inputNode, scene, "Output")
        if failInApply:
            raise ValueError("apply failed after creating a node")
        return node

    return Job(work, apply, scene=scene, name="Test job")


def test_success_applies_and_reports(scene, inputNode):
    job = makeJob(scene, inputNode)
    output = job.run()
    assert job.state == JobState.SUCCEEDED and job.fraction == 1.0
    assert output.GetName() == "Output"
    assert volumeArrayView(output)[0, 0, 0] == 50


def test_cancel_mid_run_leaves_scene_unchanged(scene, inputNode):
    gate = threading.Event()
    job = makeJob(scene, inputNode, gate=gate)
    before = sceneSnapshot(scene)
    job.start()
    while job.fraction < 0.4:  # it is really running
        threading.Event().wait(0.01)
    assert job.eta is not None and "about" in job.statusText()
    job.cancel()
    gate.set()
    assert job.wait(5)
    assert job.poll()
    assert job.state == JobState.CANCELLED and isinstance(job.error, JobCancelled)
    assert 0.4 <= job.fraction < 1.0
    assert sceneSnapshot(scene) == before


@pytest.mark.parametrize("where", ["work", "apply"])
def test_failing_job_leaves_scene_unchanged(scene, inputNode, where):
    job = makeJob(scene, inputNode, failAt=10 if where == "work" else None, failInApply=where == "apply")
    before = sceneSnapshot(scene)
    with pytest.raises((RuntimeError, ValueError)):
        job.run()
    assert job.state == JobState.FAILED
    assert sceneSnapshot(scene) == before


def test_cancel_after_work_finished_still_applies_nothing(scene, inputNode):
    job = makeJob(scene, inputNode, steps=3)
    before = sceneSnapshot(scene)
    job.start()
    job.wait(5)
    job.cancel()
    assert job.poll() and job.state == JobState.CANCELLED
    assert sceneSnapshot(scene) == before


def test_training_cancel_through_job(scene):
    """The training loop stops at the next report once the job is cancelled."""
    from DLCommon import TrainingConfig, trainModel

    network = torch.nn.Conv3d(1, 1, 3, padding=1)
    batches = [(torch.randn(1, 1, 8, 8, 8), torch.randn(1, 1, 8, 8, 8))]
    epochs = []

    def work(context):
        def progress(fraction, message):
            epochs.append(fraction)
            if len(epochs) == 3:
                job.cancel()
            context.report(fraction, message)
        return trainModel(network, batches, torch.nn.MSELoss(), TrainingConfig(epochs=50, device="cpu"),
                          progress=progress)

    job = Job(work, name="Train")
    with pytest.raises(JobCancelled):
        job.run()
    assert job.state == JobState.CANCELLED and len(epochs) == 3


def test_run_forwards_progress(scene, inputNode):
    seen = []
    makeJob(scene, inputNode, steps=4).run(progress=lambda fraction, message: seen.append((fraction, message)))
    assert seen == [(0.25, "step 1"), (0.5, "step 2"), (0.75, "step 3"), (1.0, "step 4")]
