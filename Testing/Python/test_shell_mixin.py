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


class Widget(ModuleWidgetMixin):
    def __init__(self):
        self.ui = types.SimpleNamespace(statusLabel=types.SimpleNamespace(text=""))
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
