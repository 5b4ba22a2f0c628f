"""One real job of each module in a ``meddl`` child process, as a Slicer panel runs it, against an in-process run
of the same settings: a registration, a super-resolution, a classifier's training and its classification.
(DL Segment's training and apply through the child are clicked through its panel in
Testing/Slicer/test_shells_in_fake_slicer.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import settingsOf

from DLCommon import tensorFromVolume, volumeFromTensor
from DLCommon.jobs import JobState
from DLCommon.modules import moduleByPackage
from DLCommon.process import childProcessJob
from DLCommon.sampledata import mni152Tissue, randomCopy


@pytest.fixture(scope="module")
def mni6mm():
    return mni152Tissue(6.0)


def runInChild(description, action, logic, p):
    job = childProcessJob(description, action, logic, p)
    job.start()
    assert job.wait(600), "the child did not finish"
    assert job.state == JobState.SUCCEEDED, job.error
    fractions = [r["fraction"] for r in job.records if "fraction" in r]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    return job


def test_registration_in_a_child_equals_the_in_process_registration(scene, mni6mm):
    image, labels = mni6mm
    fixed = volumeFromTensor(randomCopy(image, labels, 1, bias=False)[0], None, scene, "fixed")
    moving = volumeFromTensor(randomCopy(image, labels, 2, bias=False)[0], None, scene, "moving")
    description = moduleByPackage("DLRegisterLib")
    logic = description.makeEngine(scene)
    p = settingsOf(description, fixedVolume=fixed, movingVolume=moving, iterations=20, applyToMoving=False)
    child = runInChild(description, "apply", logic, p).output
    local = description.makeJob("apply", logic, p).run()
    for key in ("similarityBefore", "similarityAfter"):
        if key in child.report:
            assert child.report[key] == pytest.approx(local.report[key], rel=1e-3, abs=1e-4), key
    warped, expected = tensorFromVolume(child.warpedVolume), tensorFromVolume(local.warpedVolume)
    assert warped.shape == expected.shape
    # the same optimisation on the same data: equal up to float rounding across processes
    assert float((warped - expected).abs().max()) <= 1e-3 * float(expected.abs().max())
    assert child.transform.IsA("vtkMRMLGridTransformNode") and child.transform.GetScene() is scene


def test_super_resolution_in_a_child_equals_the_in_process_result(scene, mni6mm):
    image, _ = mni6mm
    thick = image[:, :, :, ::2].clone()
    affine = image.affine.clone()
    affine[:3, 2] *= 2
    from monai.data import MetaTensor

    volume = volumeFromTensor(MetaTensor(thick, affine=affine), None, scene, "thick")
    description = moduleByPackage("DLSynthesizeLib")
    logic = description.makeEngine(scene)
    p = settingsOf(description, inputVolume=volume, task="super-resolution", trainingSteps=30)
    job = runInChild(description, "apply", logic, p)
    child = tensorFromVolume(job.output.volume)
    local = tensorFromVolume(description.makeJob("apply", logic, p).run().volume)
    assert child.shape == local.shape and child.shape[3] > thick.shape[3]  # thinner slices, same field of view
    np.testing.assert_allclose(child.affine.numpy(), local.affine.numpy(), rtol=0, atol=1e-9)
    correlation = np.corrcoef(child.flatten().numpy(), local.flatten().numpy())[0, 1]
    assert correlation > 0.999  # seeded training: the same network up to float rounding
    assert job.output.details["finalLoss"] == pytest.approx(job.result.history.trainLoss[-1])


def test_classifier_trained_and_applied_in_children(scene, mni6mm):
    """A table of labelled volumes (named by node ID and by name) travels with the volumes it names; the trained
    model lands in the catalog; classifying in a child equals classifying here."""
    image, labels = mni6mm
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "labels")
    for column in ("volume", "label"):
        table.AddColumn().SetName(column)
    volumes = []
    for seed in range(6):
        copy, _ = randomCopy(image, labels, seed)
        bright = seed % 2 == 1
        volume = volumeFromTensor(copy * (1.6 if bright else 1.0), None, scene, f"case {seed}")
        volumes.append(volume)
        row = table.AddEmptyRow()
        table.SetCellText(row, 0, volume.GetID() if seed < 3 else volume.GetName())
        table.SetCellText(row, 1, "bright" if bright else "dark")
    description = moduleByPackage("DLClassifyLib")
    logic = description.makeEngine(scene)
    p = settingsOf(description, trainingTable=table, epochs=3, inputSize=16, modelName="brightness")
    job = runInChild(description, "train", logic, p)
    assert job.recipe.carried and len({n.GetID() for n in job.recipe.carried}) == 6  # the table's volumes travel
    assert job.result.catalogId == "brightness" and job.result.model.network is None  # saved there, not sent
    assert set(job.result.report) >= {"accuracy", "eceBefore", "eceAfter"}
    p = settingsOf(description, inputVolume=volumes[1], modelId="brightness")
    child = runInChild(description, "apply", logic, p).output
    local = description.makeJob("apply", logic, p).run()
    (childClass, childProbability, _), = child.predictions
    (localClass, localProbability, _), = local.predictions
    assert childClass == localClass and childProbability == pytest.approx(localProbability, abs=1e-5)
    assert child.table.GetScene() is scene and child.table.GetNumberOfRows() == 1
