"""Jobs in a ``meddl`` child process (DLCommon.process): what a Slicer widget runs for every job.

The runner's own behaviour is tested on ``DLFakeLib`` (conftest: a module of MedDL's shape whose job is quick):
progress in order up to 1, the result applied here, the child's error text, a crash, Cancel within 2 s leaving no
node, file or process. ``test_child_jobs.py`` runs one real job of each of the four modules the same way.
"""

from __future__ import annotations

import os
import time

import numpy as np
import psutil
import pytest
from conftest import makeVolume, sceneSnapshot, settingsOf

from DLCommon.errors import DLError
from DLCommon.jobs import JobState
from DLCommon.process import ProcessJob, childProcessJob
from DLCommon.volumes import volumeArrayView


@pytest.fixture
def volume(scene):
    return makeVolume(scene, np.arange(60, dtype=np.float32).reshape(3, 4, 5), np.diag([0.5, 0.7, 2.0, 1.0]),
                      name="Input")


def run(job: ProcessJob, timeout: float = 120) -> ProcessJob:
    job.start()
    assert job.wait(timeout), f"the child did not finish in {timeout} s"
    return job


def fractions(job: ProcessJob) -> list[float]:
    return [record["fraction"] for record in job.records if "fraction" in record]


def test_a_child_job_reports_in_order_and_its_result_is_applied_here(fakeModule, scene, volume):
    logic = fakeModule.makeEngine(scene)
    job = childProcessJob(fakeModule, "apply", logic, settingsOf(fakeModule, inputVolume=volume, steps=20))
    assert job.recipe.settings.keys() == {"inputVolume", "outputVolume", "mode", "steps", "offset"}  # what it read
    run(job)
    assert job.state == JobState.SUCCEEDED and job.error is None
    progress = fractions(job)
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 3
    assert any("plan" in record for record in job.records) and job.measuredEstimate.fits
    assert job.result["pid"] != os.getpid()  # the work ran in the child
    # the output node was made here, by the job's own apply, equal to an in-process run
    expected = fakeModule.makeJob("apply", logic, settingsOf(fakeModule, inputVolume=volume, steps=20)).run()
    assert job.output.GetName() == "Input offset" and job.output.GetScene() is scene
    np.testing.assert_array_equal(volumeArrayView(job.output), volumeArrayView(expected))
    np.testing.assert_array_equal(volumeArrayView(job.output), volumeArrayView(volume) + 1)
    assert not job.folder.exists()  # the temporary inputs and result are gone


def test_an_output_node_the_user_chose_is_written_here(fakeModule, scene, volume):
    target = makeVolume(scene, np.zeros((3, 4, 5), np.float32), np.eye(4), name="Target")
    logic = fakeModule.makeEngine(scene)
    job = childProcessJob(fakeModule, "apply", logic, settingsOf(fakeModule, inputVolume=volume, outputVolume=target,
                                                                  offset=2.5))
    job.start()
    recipe = (job.folder / "recipe.json").read_text()
    assert '"name": "Target"' in recipe and recipe.count('"file"') == 1  # only the input travels as a file
    assert job.wait(120) and job.state == JobState.SUCCEEDED
    assert job.output is target
    np.testing.assert_array_equal(volumeArrayView(target), volumeArrayView(volume) + 2.5)


def test_the_childs_error_is_the_jobs_error_and_the_scene_is_unchanged(fakeModule, scene, volume):
    before = sceneSnapshot(scene)
    job = run(childProcessJob(fakeModule, "apply", fakeModule.makeEngine(scene),
                              settingsOf(fakeModule, inputVolume=volume, mode="fail")))
    assert job.state == JobState.FAILED and isinstance(job.error, DLError)
    assert str(job.error) == "Volume 'Input' cannot be offset. Fix: pick another volume."
    assert sceneSnapshot(scene) == before and not job.folder.exists()


def test_a_refusing_plan_fails_the_job_with_its_estimate(fakeModule, scene, volume):
    job = run(childProcessJob(fakeModule, "apply", fakeModule.makeEngine(scene),
                              settingsOf(fakeModule, inputVolume=volume, mode="plan-refuses")))
    assert job.state == JobState.FAILED and str(job.error) == ("Volume 'Input' is too large for this machine. "
                                                               "Fix: crop it.")


def test_a_crashing_child_gives_its_exit_status_and_last_error_lines(fakeModule, scene, volume):
    before = sceneSnapshot(scene)
    job = run(childProcessJob(fakeModule, "apply", fakeModule.makeEngine(scene),
                              settingsOf(fakeModule, inputVolume=volume, mode="crash")))
    assert job.state == JobState.FAILED and isinstance(job.error, DLError)
    text = str(job.error)
    assert "exited with status 7" in text and "fatal: the fake engine lost its memory" in text
    assert text.startswith("Job 'Offset Input' stopped")
    assert sceneSnapshot(scene) == before and not job.folder.exists()


def test_cancel_ends_the_child_within_two_seconds_and_leaves_nothing(fakeModule, scene, volume):
    before = sceneSnapshot(scene)
    job = childProcessJob(fakeModule, "apply", fakeModule.makeEngine(scene),
                          settingsOf(fakeModule, inputVolume=volume, mode="slow", steps=100000))
    job.start()
    deadline = time.monotonic() + 120
    while job.fraction == 0 and time.monotonic() < deadline:  # the child is in its work loop
        job.poll()
        time.sleep(0.05)
    assert 0 < job.fraction < 1 and job.state == JobState.RUNNING
    family = [job.process.pid] + [c.pid for c in psutil.Process(job.process.pid).children(recursive=True)]
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 2.0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in family)
    assert job.poll() and job.state == JobState.CANCELLED and job.output is None
    assert sceneSnapshot(scene) == before and not job.folder.exists()
    assert "cancelled" in job.statusText()


def test_bad_input_is_refused_before_a_child_starts(fakeModule, scene):
    with pytest.raises(DLError, match="No input volume was selected"):
        childProcessJob(fakeModule, "apply", fakeModule.makeEngine(scene), settingsOf(fakeModule))


def test_making_a_job_takes_no_estimate(fakeModule, scene, volume, monkeypatch):
    """The prepare phase is cheap on the caller's thread: the plan (which may run the model) waits for the
    worker or the child. Here the plan would take 5 s."""
    from DLCommon import resources

    monkeypatch.setattr(resources, "makeEstimate", lambda *a, **k: time.sleep(5))
    started = time.monotonic()
    job = fakeModule.makeJob("apply", fakeModule.makeEngine(scene), settingsOf(fakeModule, inputVolume=volume))
    assert time.monotonic() - started < 0.2 and job.state == JobState.PENDING
