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
        self._parameterNode = None

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
            job = Job(lambda context: 1, None, name="Train",
                      estimate=resources.makeEstimate("Training", "cpu", megabytes * 2**20, 0, 90.0))
            made.append(job)
            return job
        return make

    def refused():
        raise DLError("is too large for this machine: needs about 9 GB", node="Volume 'big'", fix="crop it")

    enabled, disabled = types.SimpleNamespace(enabled=True), types.SimpleNamespace(enabled=False)
    widget.jobActions = lambda: [("Apply", enabled, makeJob(300)), ("Train", disabled, makeJob(1)),
                                 ("Batch", enabled, lambda: Job(lambda c: 1))]
    before = scene.GetNumberOfNodes()
    widget.onEstimate()
    assert widget.ui.estimateLabel.text == ("Apply: Training: needs about 300.0 MB on cpu (4.0 GB free), "
                                            "about 1 min 30 s")
    assert widget.ui.estimateLabel.style == "" and len(made) == 1 and made[0].state.value == "pending"
    assert widget.isIdle and scene.GetNumberOfNodes() == before
    widget.jobActions = lambda: [("Apply", enabled, refused)]
    widget.onEstimate()
    assert widget.ui.estimateLabel.text.startswith("Apply: Volume 'big' is too large for this machine")
    assert "c0392b" in widget.ui.estimateLabel.style
    drive(widget, makeJob(5)(), types.SimpleNamespace(value=0))
    assert widget.ui.estimateLabel.text.startswith("Running: Training: needs about 5.0 MB")
