"""The real module shells (``DLx/DLx.py``) clicked through in a stand-in Slicer (fakeslicer.py): every panel opens,
jobs run as real ``meddl`` child processes with progress, results and errors shown, batches, the model selector,
importing a model, a scene closed during a job, a deleted node in a list."""

from __future__ import annotations

import time

import numpy as np
import psutil
from pathlib import Path

import pytest
import torch
from fakeslicer import FakeSlicer

from DLCommon import ModelCatalog, segmentationFromTensor, tensorFromSegmentation
from DLCommon.batch import BatchJob
from DLCommon.process import ProcessJob

MODULES = ("DLClassify", "DLRegister", "DLSegment", "DLSynthesize")
NAMES, COLORS = ["ball", "box"], [(1.0, 0.2, 0.2), (0.2, 0.4, 1.0)]


@pytest.fixture
def fake(scene, monkeypatch):
    fake = FakeSlicer(scene, monkeypatch)
    yield fake
    fake.close()


def phantomPair(scene, seed: int, name: str, spacing=(1.0, 1.0, 1.0)):
    """A bright ball and a darker box on noise (I, J, K = 32, 28, 24) and its segmentation."""
    from conftest import makeVolume

    rng = np.random.default_rng(seed)
    shape = (32, 28, 24)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    labels = np.zeros(shape, np.int64)
    labels[((grid - np.array([10, 10, 9])[:, None, None, None] - seed % 2) ** 2).sum(0) < 36] = 1
    labels[18:26, 16:24, 12:18] = 2
    image = np.where(labels == 1, 100.0, np.where(labels == 2, 60.0, 20.0)) + rng.normal(0, 5, shape)
    volume = makeVolume(scene, np.ascontiguousarray(image.astype(np.float32).transpose(2, 1, 0)),
                        np.diag([*spacing, 1.0]), name=name)
    segmentation = segmentationFromTensor(torch.from_numpy(labels), volume, scene, NAMES, COLORS,
                                          nodeName=f"{name} labels")
    return volume, segmentation, labels


def click(widget, name: str) -> None:
    getattr(widget.ui, name).emit("clicked(bool)", True)


@pytest.mark.parametrize("moduleName", MODULES)
def test_every_panel_opens_with_its_parameter_node(fake, moduleName):
    """Slicer writes every default when it wraps the parameter node: DL Synthesize's probe setting (a union of
    node classes without None) made its panel fail here."""
    shell, module, widget = fake.open(moduleName)
    p = widget._parameterNode
    assert p is not None and fake.errors == []
    for q in shell.parameters.PARAMETERS:
        expected = [] if q.kind == "nodes" else q.default
        assert getattr(p, q.name) == expected, q.name
    assert widget._parameterNodeGuiTag is not None  # a tag disconnectGui can undo, on Slicer 5.8 too
    assert not widget.ui.applyButton.enabled  # nothing selected yet


def test_segment_train_apply_and_batch_through_the_panel(fake, scene):
    """Train from the panel (a child process, live curve), the new model is selected, Apply segments another
    volume (a child), equal to an in-process run; Apply to all runs a batch and shows its table."""
    shell, _, widget = fake.open("DLSegment")
    first, firstSegmentation, _ = phantomPair(scene, 1, "case 1")
    second, _, _ = phantomPair(scene, 2, "case 2")
    p = widget._parameterNode
    p.trainingVolume, p.trainingSegmentation = first, firstSegmentation
    click(widget, "addPairButton")
    assert widget.ui.pairsListWidget.items == ["case 1  +  case 1 labels"]
    p.epochs, p.patchSize, p.modelName = 3, 16, "gui-model"
    assert widget.ui.trainButton.enabled
    click(widget, "trainButton")
    assert isinstance(widget._job, ProcessJob) and not widget.ui.trainButton.enabled
    assert widget.ui.cancelTrainButton.enabled
    fake.runTimers(widget)
    assert fake.errors == [] and widget.isIdle
    assert widget.ui.trainProgressBar.value == 100  # the outcome's message (DLSegmentLib/frontend.py):
    assert widget.ui.statusLabel.text.startswith("Trained 'gui-model': 3 epochs in ")
    assert p.modelId == "gui-model" and widget.ui.modelComboBox.currentText == "gui-model"
    assert len(fake.charts) == 1  # the live training curve
    assert ModelCatalog().get("gui-model").format == "checkpoint"

    nodesBefore = scene.GetNumberOfNodes()
    p.inputVolume = second
    assert widget.ui.applyButton.enabled
    click(widget, "applyButton")
    fake.runTimers(widget)
    assert fake.errors == [] and p.outputSegmentation is not None
    labels, names, _ = tensorFromSegmentation(p.outputSegmentation, second)
    assert names == NAMES and scene.GetNumberOfNodes() > nodesBefore
    assert widget.ui.statusLabel.text == f"'{p.outputSegmentation.GetName()}': 2 segments (ball, box)."
    inProcess = shell.DLSegmentLogic().segment(second, "gui-model")
    expected, _, _ = tensorFromSegmentation(inProcess.segmentation, second)
    assert torch.equal(labels, expected)  # the child's result, applied here, is the in-process result

    widget.ui.batchVolumesComboBox.checkedNodeList = [first, second]
    assert widget.ui.batchApplyButton.enabled
    click(widget, "batchApplyButton")
    assert isinstance(widget._job, BatchJob)
    fake.runTimers(widget)
    assert fake.errors == []
    layout, tableId = fake.shownTables[-1]
    table = scene.GetNodeByID(tableId)
    assert layout == 34 and table.GetNumberOfRows() == 2  # switched to a layout with a table view
    assert [table.GetCellText(r, 1) for r in range(2)] == ["done", "done"]


def test_a_failing_job_shows_its_error_and_leaves_the_scene(fake, scene):
    """A registration refused in the child (a moving volume that is all zeros has no centre of mass...) comes
    back as the error dialog's text; no node is added."""
    _, _, widget = fake.open("DLRegister")
    fixed, _, _ = phantomPair(scene, 1, "fixed")
    from conftest import makeVolume

    empty = makeVolume(scene, np.zeros((24, 28, 32), np.float32), np.eye(4), name="empty")
    p = widget._parameterNode
    p.fixedVolume, p.movingVolume, p.iterations = fixed, empty, 5
    before = scene.GetNumberOfNodes()
    click(widget, "applyButton")
    if widget.isIdle:  # refused when the job was made: shown at once
        assert len(fake.errors) == 1
    else:
        fake.runTimers(widget)
        assert len(fake.errors) == 1 and "empty" in fake.errors[0]
    assert scene.GetNumberOfNodes() == before and widget.isIdle


def test_closing_the_scene_cancels_the_running_job(fake, scene):
    _, _, widget = fake.open("DLSegment")
    volume, segmentation, _ = phantomPair(scene, 1, "case")
    p = widget._parameterNode
    p.trainingVolumes, p.trainingSegmentations = [volume], [segmentation]
    p.epochs, p.patchSize = 10000, 16
    click(widget, "trainButton")
    job = widget._job
    deadline = time.monotonic() + 120
    while job.fraction == 0 and time.monotonic() < deadline:
        widget._timer.fire()
        time.sleep(0.1)
    pid = job.process.pid
    scene.Clear(0)  # File > Close Scene
    assert widget.isIdle and not widget._timer.running and job.state.value == "cancelled"
    time.sleep(0.5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert widget._parameterNode is not None and widget._parameterNode.trainingVolumes == []  # the new scene's
    assert fake.errors == [] and ModelCatalog().list() == []


def test_a_deleted_node_in_a_list_does_not_break_the_panel(fake, scene):
    _, _, widget = fake.open("DLSegment")
    volume, segmentation, _ = phantomPair(scene, 1, "case")
    other, otherSegmentation, _ = phantomPair(scene, 2, "other")
    p = widget._parameterNode
    p.trainingVolumes, p.trainingSegmentations = [volume, other], [segmentation, otherSegmentation]
    scene.RemoveNode(volume)
    p.modelName = "after-delete"  # any change refreshes the panel
    assert widget.ui.pairsListWidget.items == ["other  +  other labels"]


def test_the_shown_model_is_the_selected_model(fake, scene, tmp_path):
    """A model in the catalog is shown when the panel opens: the parameter node takes it, so Apply is enabled
    once a volume is chosen (the selector showed a model while Apply stayed disabled)."""
    _tinyModel("DLSegment", tmp_path, "tiny")
    _, _, widget = fake.open("DLSegment")
    assert widget.ui.modelComboBox.currentText == "tiny" and widget._parameterNode.modelId == "tiny"
    volume, _, _ = phantomPair(scene, 1, "case")
    widget._parameterNode.inputVolume = volume
    assert widget.ui.applyButton.enabled


def test_import_model_installs_the_dependencies_first_and_selects_it(fake, scene, tmp_path, monkeypatch):
    shell, _, widget = fake.open("DLSegment")
    calls = []
    monkeypatch.setattr(shell, "ensureDependencies", lambda: calls.append("ensure") or True)
    path = _tinyCheckpoint("DLSegment", tmp_path)
    fake.fileToOpen = str(path)
    click(widget, "importModelButton")
    assert calls and fake.errors == []
    assert widget.ui.modelComboBox.items == ["seg"] and widget._parameterNode.modelId == "seg"  # id: the file name


@pytest.mark.parametrize("consent", [False, True], ids=["declined", "given"])
def test_importing_a_bundle_asks_consent_to_its_code_and_names_the_input_rows(fake, scene, tmp_path, monkeypatch,
                                                                              consent):
    """Import model file... on a MONAI bundle whose code is not trusted: a Yes / No question naming what it runs, its
    details the whole listing; declined, nothing is imported; given, it is trusted and imported, and the panel's
    input rows take the bundle's input names (hidden rows for inputs it does not have)."""
    import shutil

    import torch
    from monai.bundle import ConfigParser

    from DLCommon.bundletrust import isTrusted
    from DLCommon.catalog import ModelCatalog

    shell, _, widget = fake.open("DLSegment")
    monkeypatch.setattr(shell, "ensureDependencies", lambda: True)
    zoo = Path(__file__).resolve().parents[1] / "Data" / "modelzoo" / "renalStructures_CECT_segmentation"
    root = tmp_path / zoo.name
    shutil.copytree(zoo, root)
    (root / "models").mkdir()
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    fake.fileToOpen = shutil.make_archive(str(tmp_path / "renal"), "zip", tmp_path, root.name)
    fake.confirm = consent
    click(widget, "importModelButton")
    assert len(fake.questions) == 1 and fake.errors == []
    question = fake.questions[0]
    assert "runs Python code when it is loaded" in question["text"] and "scripts/my_transforms.py" in question["text"]
    assert "target      preprocessing#transforms#4: scripts.my_transforms.ConcatImages" in question["detailedText"]
    assert isTrusted(fake.fileToOpen) is consent
    assert ("renal" in ModelCatalog().entries) is consent
    if consent:
        assert widget._parameterNode.modelId == "renal"
        assert widget.ui.label_1.text == "artery:" and widget.ui.inputVolume2Label.text == "vein:"
        assert widget.ui.inputVolume3Label.text == "excret:" and widget.ui.inputVolume4Label.text == "label:"
        assert widget.ui.inputVolume2Selector.visible and widget.ui.inputVolume4Selector.visible


@pytest.mark.parametrize("moduleName", MODULES)
def test_every_module_batch_makes_a_child_job_per_volume(fake, scene, moduleName, tmp_path):
    """'Apply to all' called a logic method the modules did not have; now each module's batch action makes a
    child-process job per volume."""
    shell, _, widget = fake.open(moduleName)
    p = widget._parameterNode
    volume, _, _ = phantomPair(scene, 1, "case", spacing=(1.0, 1.0, 3.0))
    if moduleName == "DLRegister":
        p.fixedVolume = phantomPair(scene, 2, "fixed")[0]
    if moduleName in ("DLSegment", "DLClassify"):
        p.modelId = _tinyModel(moduleName, tmp_path)
    batch = widget.batchJob([volume])
    made = batch._beginItem()
    assert isinstance(batch, BatchJob) and made, batch.outcomes
    job = batch._current
    assert isinstance(job, ProcessJob) and job.recipe.action == "batch"
    assert job.recipe.arguments == {"volumeNode": volume}


def _tinyCheckpoint(moduleName: str, folder):
    """A small untrained segmentation (UNet) or classification (DenseNet) checkpoint with its spec (JSON)."""
    from DLCommon import saveCheckpoint
    from DLCommon.models import ModelSpec

    if moduleName == "DLSegment":
        from monai.networks.nets import UNet

        args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2],
                "num_res_units": 0}
        return saveCheckpoint(UNet(**args), folder / "seg.pt", "UNet", args,
                              ModelSpec(name="seg", task="segmentation", labelNames=NAMES))
    from monai.networks.nets import DenseNet121

    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2}
    return saveCheckpoint(DenseNet121(**args), folder / "cls.pt", "DenseNet121", args,
                          ModelSpec(name="cls", task="classification", labelNames=["a", "b"], roiSize=[32, 32, 32],
                                    options={"encoding": "nominal", "inputSize": [32, 32, 32]}))


def _tinyModel(moduleName: str, folder, modelId: str | None = None) -> str:
    return ModelCatalog().importFile(_tinyCheckpoint(moduleName, folder).with_suffix(".pt"),  # + its .json
                                     modelId=modelId or f"{moduleName.lower()}-tiny").id
