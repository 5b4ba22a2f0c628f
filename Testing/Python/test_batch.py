"""The GUI batch (Apply to all): one job per volume, a manifest in the output folder, and a resumed batch doing only
what is left."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import makeVolume, settingsOf

from DLCommon.cohort import MANIFEST_COLUMNS, readManifest
from DLCommon.jobs import JobState
from DLCommon.storage import saveNode


@pytest.fixture
def folder(scene, tmp_path):
    """Three volume files, the middle one unreadable."""
    inputs = tmp_path / "inputs"
    for index in range(3):
        node = makeVolume(scene, np.full((3, 4, 5), float(index), np.float32), np.eye(4), name=f"case{index}")
        saveNode(node, inputs / f"case{index}.nrrd")
        scene.RemoveNode(node)
    (inputs / "case1.nrrd").write_bytes(b"not a volume")
    return inputs


def batchOf(fakeModule, scene, folder, output, made):
    from DLCommon.batch import BatchJob, batchItems

    logic = fakeModule.makeEngine(scene)

    def makeJob(volumeNode):
        made.append(volumeNode.GetName())
        return fakeModule.makeJob("batch", logic, settingsOf(fakeModule, steps=2), volumeNode=volumeNode)

    return BatchJob(batchItems(folder), makeJob, scene, output, "Offset batch")


def test_a_batch_keeps_a_manifest_and_a_second_run_does_only_what_is_left(fakeModule, scene, folder, tmp_path):
    output, made = tmp_path / "out", []
    before = scene.GetNumberOfNodes()
    outcomes = batchOf(fakeModule, scene, folder, output, made).run()
    assert [(o.item, o.status) for o in outcomes] == [("case0", "done"), ("case1", "failed"), ("case2", "done")]
    assert made == ["case0", "case2"] and scene.GetNumberOfNodes() == before  # loaded for their turn only
    rows = readManifest(output / "manifest.csv")
    assert list(rows[0]) == MANIFEST_COLUMNS  # the command line's cohort columns
    assert [(r["item"], r["status"]) for r in rows] == [("case0", "done"), ("case1", "failed"), ("case2", "done")]
    assert "case1.nrrd' is not a NRRD file" in rows[1]["error"]  # refused before the reader (filechecks)
    written = [path for row in rows for path in row["output"].split("; ") if path]
    assert len(written) == 2 and all(Path(path).parent == output and Path(path).exists() for path in written)

    # the unreadable file is fixed, one output is lost: a second run makes those two and skips the third
    saveNode(makeVolume(scene, np.ones((3, 4, 5), np.float32), np.eye(4), name="fixed"), folder / "case1.nrrd")
    os.remove(rows[2]["output"])
    made.clear()
    outcomes = batchOf(fakeModule, scene, folder, output, made).run()
    assert [(o.item, o.status) for o in outcomes] == [("case0", "skipped"), ("case1", "done"), ("case2", "done")]
    assert made == ["case1", "case2"]
    assert [r["status"] for r in readManifest(output / "manifest.csv")] == ["skipped", "done", "done"]


def test_a_cancelled_batch_resumes_after_the_items_it_finished(fakeModule, scene, folder, tmp_path):
    (folder / "case1.nrrd").unlink()
    output, made = tmp_path / "out", []
    batch = batchOf(fakeModule, scene, folder, output, made)
    batch.start()
    while len(batch.outcomes) < 1:  # the first item is done: cancel during the second
        batch.poll()
    batch.cancel()
    while not batch.poll():
        pass
    assert batch.state == JobState.CANCELLED
    assert [r["status"] for r in readManifest(output / "manifest.csv")][0] == "done"
    made.clear()
    outcomes = batchOf(fakeModule, scene, folder, output, made).run()
    assert [o.status for o in outcomes] == ["skipped", "done"] and made == ["case2"]
