"""The widget behaviour the module shells share (DLCommon.shell), driven here without Qt: fake timer and
widgets, the real parameter-node-free job machinery, a real MRML scene."""

from __future__ import annotations

import types

import pytest

from DLCommon import Job
from DLCommon.shell import ModuleWidgetMixin


class FakeTimer:
    def __init__(self):
        self.running, self.interval, self.callback = False, None, None

    def setInterval(self, milliseconds):
        self.interval = milliseconds

    def connect(self, signal, callback):
        self.callback = callback

    def start(self):
        self.running = True

    def stop(self):
        self.running = False


class Label:
    def __init__(self):
        self.text, self.style = "", ""

    def setStyleSheet(self, style):
        self.style = style


class Widget(ModuleWidgetMixin):
    def __init__(self):
        self.ui = types.SimpleNamespace(statusLabel=types.SimpleNamespace(text=""), estimateLabel=Label())
        self.finished, self.updates, self.observed = [], 0, []
        self._parameterNode = types.SimpleNamespace()  # the panel's parameter node (None once its scene closed)

    def addObserver(self, caller, event, callback):
        self.observed.append(event)

    def removeObservers(self):
        self.observed.clear()

    def _updateButtons(self, caller=None, event=None):
        self.updates += 1

    def onJobFinished(self, job):
        self.finished.append(job.output)


@pytest.fixture
def widget(scene, monkeypatch):
    import slicer

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    widget = Widget()
    widget.setupJobs(FakeTimer())
    return widget


def drive(widget, job, bar):
    widget.startJob(job, bar)
    assert widget._timer.running and not widget.isIdle
    job._thread.join(timeout=30)
    while widget._timer.running:
        widget._timer.callback()


def test_a_job_runs_reports_and_is_applied_on_the_poll(widget, scene):
    bar = types.SimpleNamespace(value=0)

    def work(context):
        context.report(0.5, "half way")
        return 21

    def apply(result):
        return scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"result {2 * result}")

    drive(widget, Job(work, apply, scene=scene, name="Demo"), bar)
    assert widget.isIdle and bar.value == 100 and "succeeded" in widget.ui.statusLabel.text
    assert widget.finished[0].GetName() == "result 42"
    assert widget._timer.interval == 200 and len(widget.observed) == 2


def test_a_failed_job_shows_the_error_and_changes_nothing(widget, scene, monkeypatch):
    import slicer

    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda message, **kwargs: shown.append(message))
    before = scene.GetNumberOfNodes()

    def work(context):
        raise ValueError("bad input: fix it")

    drive(widget, Job(work, lambda r: scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"), scene=scene), types.SimpleNamespace(value=0))
    assert shown == ["bad input: fix it"] and widget.finished == [] and scene.GetNumberOfNodes() == before


def test_cancel_stops_the_job(widget, scene):
    import threading

    release = threading.Event()

    def work(context):
        while True:
            context.report(0.1, "waiting")
            release.wait(0.01)

    job = Job(work, None, scene=scene)
    widget.startJob(job, types.SimpleNamespace(value=0))
    widget.onCancel()
    assert widget.ui.statusLabel.text == "Cancelling..."
    job._thread.join(timeout=30)
    while widget._timer.running:
        widget._timer.callback()
    assert widget.isIdle and widget.finished == [] and "cancelled" in widget.ui.statusLabel.text


def test_estimate_shows_every_enabled_action_without_starting_it(widget, scene, monkeypatch):
    """The Estimate button builds the jobs of the enabled buttons, shows their memory and time, starts none, and
    shows a refusal (too large) in red; a started job shows the estimate it was planned with."""
    import contextlib

    import slicer

    from DLCommon import DLError
    from DLCommon import resources

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", lambda *args, **kwargs: contextlib.nullcontext())  # Qt
    monkeypatch.setattr(resources, "availableMemory", lambda device: 4 * 2**30)
    made = []

    def makeJob(megabytes):
        def make():
            estimate = resources.makeEstimate("Training", "cpu", megabytes * 2**20, 0, 90.0)
            job = Job(lambda context: 1, None, name="Train", plan=lambda: estimate)
            made.append(job)
            return job
        return make

    def refused():
        raise DLError("is too large for this machine: needs about 9 GB", node="Volume 'big'", fix="crop it")

    enabled, disabled = types.SimpleNamespace(enabled=True), types.SimpleNamespace(enabled=False)
    factories = {"apply": makeJob(300), "train": makeJob(1), "batch": lambda: Job(lambda c: 1), "refused": refused}
    widget.makeJob = lambda action: factories[action]()  # the module's actions, made here (prepare)
    widget.jobActions = lambda: [("Apply", enabled, "apply"), ("Train", disabled, "train"), ("Batch", enabled, "batch")]
    before = scene.GetNumberOfNodes()
    widget.onEstimate()
    assert widget.ui.estimateLabel.text == ("Apply: Training: needs about 300.0 MB on cpu (4.0 GB free), "
                                            "about 1 min 30 s")
    assert widget.ui.estimateLabel.style == "" and len(made) == 1 and made[0].state.value == "pending"
    assert widget.isIdle and scene.GetNumberOfNodes() == before
    widget.jobActions = lambda: [("Apply", enabled, "refused")]
    widget.onEstimate()
    assert widget.ui.estimateLabel.text.startswith("Apply: Volume 'big' is too large for this machine")
    assert "c0392b" in widget.ui.estimateLabel.style
    drive(widget, makeJob(5)(), types.SimpleNamespace(value=0))
    assert widget.ui.estimateLabel.text.startswith("Running: Training: needs about 5.0 MB")


# --- a module action from the panel: a meddl child process, followed by the poll timer ------------------------------

@pytest.fixture
def fakePanel(widget, scene, fakeModule, monkeypatch):
    """The widget as the shell of the conftest's DLFakeLib module, with an input volume selected."""
    import contextlib

    import numpy as np
    import slicer
    from conftest import makeVolume, settingsOf

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", lambda *a, **k: contextlib.nullcontext())  # Qt
    widget.moduleName, widget.logic = "DLFake", fakeModule.makeEngine(scene)
    volume = makeVolume(scene, np.ones((3, 4, 5), np.float32), np.eye(4), name="Input")
    widget._parameterNode = settingsOf(fakeModule, inputVolume=volume, steps=40, mode="slow")
    return widget


def pollUntilIdle(widget, bar, timeout=120):
    import time

    values, deadline = [], time.monotonic() + timeout
    while widget._timer.running and time.monotonic() < deadline:
        widget._timer.callback()
        values.append(bar.value)
        time.sleep(0.05)
    return values


def test_an_action_runs_in_a_child_process_with_progress_and_its_result_applied_here(fakePanel, scene):
    from DLCommon.process import ProcessJob

    bar = types.SimpleNamespace(value=0)
    fakePanel.startAction("apply", bar)
    assert isinstance(fakePanel._job, ProcessJob) and not fakePanel.isIdle
    values = pollUntilIdle(fakePanel, bar)
    assert values == sorted(values) and values[-1] == 100 and len(set(values)) > 3  # the bar moved, forwards
    assert fakePanel.isIdle and "succeeded" in fakePanel.ui.statusLabel.text
    output, = fakePanel.finished
    assert output.GetName() == "Input offset" and output.GetScene() is scene
    assert fakePanel.ui.estimateLabel.text.startswith("Running: Offset: needs about")  # the child's plan


def test_cancel_in_the_panel_stops_the_child_and_changes_nothing(fakePanel, scene):
    import time

    import psutil

    fakePanel._parameterNode.steps = 100000
    before = scene.GetNumberOfNodes()
    bar = types.SimpleNamespace(value=0)
    fakePanel.startAction("apply", bar)
    job = fakePanel._job
    while job.fraction == 0:
        fakePanel._timer.callback()
        time.sleep(0.05)
    started = time.monotonic()
    fakePanel.onCancel()
    pollUntilIdle(fakePanel, bar)
    assert time.monotonic() - started < 2.0 and fakePanel.isIdle
    assert "cancelled" in fakePanel.ui.statusLabel.text and fakePanel.finished == []
    assert scene.GetNumberOfNodes() == before
    assert not psutil.pid_exists(job.process.pid) or psutil.Process(job.process.pid).status() == psutil.STATUS_ZOMBIE


def test_a_failing_child_shows_its_error_and_changes_nothing(fakePanel, scene, monkeypatch):
    import slicer

    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda message, **kwargs: shown.append(message))
    fakePanel._parameterNode.mode = "fail"
    before = scene.GetNumberOfNodes()
    bar = types.SimpleNamespace(value=0)
    fakePanel.startAction("apply", bar)
    pollUntilIdle(fakePanel, bar)
    assert shown == ["Volume 'Input' cannot be offset. Fix: pick another volume."]
    assert fakePanel.finished == [] and scene.GetNumberOfNodes() == before and fakePanel.isIdle


def test_a_job_whose_inputs_cannot_be_written_leaves_the_panel_idle(fakePanel, monkeypatch):
    """Writing the child's inputs fails (a full disk, say): the error reaches the caller (Slicer shows it) and the
    panel does not stay busy with a job that never started."""
    from DLCommon.process import JobRecipe

    def full(self, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(JobRecipe, "write", full)
    with pytest.raises(OSError, match="No space left"):
        fakePanel.startAction("apply", types.SimpleNamespace(value=0))
    assert fakePanel.isIdle and not fakePanel._timer.running
