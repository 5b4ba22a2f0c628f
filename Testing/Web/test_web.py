"""Click-through tests of ``meddl web`` in a real browser: each module's workflow on the sample data, and bad input.

Results are checked from what the page shows and from the files the app wrote for the run (``--output``), read
back with DLCommon: segment count and Dice, registration report and warped labels, super-resolved grid, class and
probability table. Screenshots of each workflow go to a temporary folder, or to ``Resources/Screenshots/`` with
``MEDDL_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect
import webapp
from webapp import SCREENSHOTS

browser, display, page, server = webapp.browser, webapp.display, webapp.page, webapp.server  # the fixtures

pytestmark = pytest.mark.web

RUN_SECONDS = 360  # a training run on 2 CPU cores, with margin (it took 260 s on a loaded machine)


# --- page helpers (controls are found by the classes the panel gives them: param-<module>-<setting>) ----------
def openTab(page: Page, module: str) -> None:
    page.locator(f".tab-{module}").click()


def loadSample(page: Page, name: str) -> None:
    page.locator(".sample-data").click()
    page.locator(".sample-item", has_text=name).click()
    expect(page.locator(".app-message")).to_contain_text(f"Loaded sample '{name}'", timeout=60_000)


def pick(page: Page, module: str, setting: str, *options: str) -> None:
    """Choose ``options`` (exact titles) in a select; several for a multiple select."""
    control = page.locator(f".param-{module}-{setting}")
    control.click()
    for option in options:
        page.get_by_role("option", name=option, exact=True).click()
    if len(options) > 1 or control.locator(".v-chip").count():  # a multiple select stays open
        page.keyboard.press("Escape")
    for option in options:
        expect(page.get_by_role("option", name=option, exact=True)).to_be_hidden()  # closed: clicks reach the panel
        expect(control).to_contain_text(option)


def fill(page: Page, module: str, setting: str, value) -> None:
    page.locator(f".param-{module}-{setting} input").fill(str(value))


def check(page: Page, module: str, setting: str) -> None:
    page.locator(f".param-{module}-{setting} input").check()


def press(page: Page, module: str, action: str) -> None:
    page.locator(f".action-{module}-{action}").click()


def message(page: Page, module: str, contains: str, timeout: float = RUN_SECONDS) -> str:
    """Wait until the module's message shows ``contains``; its text."""
    locator = page.locator(f".message-{module}")
    expect(locator).to_contain_text(contains, timeout=timeout * 1000)
    return locator.inner_text()


def followRun(page: Page, module: str, done: str) -> tuple[str, str]:
    """Wait for a started run: its progress / ETA line while it runs, then the message ``done``."""
    status = page.locator(f".status-{module}")
    # the first progress line comes after the job's preparation (e.g. sampling planes): 30 s was short on a loaded
    # 2-core machine (a wait, not a speed check)
    expect(status).to_contain_text("%", timeout=120_000)
    seen = status.inner_text()
    return seen, message(page, module, done)


def screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    folder = SCREENSHOTS if os.environ.get("MEDDL_UPDATE_SCREENSHOTS") == "1" else tmp_path
    path = folder / f"web_{name}.png"
    page.wait_for_timeout(1500)  # let the views' last frames arrive
    page.screenshot(path=str(path))
    return path


def viewIsNotBlank(page: Page) -> float:
    """Standard deviation of the axial view's pixels (0 for an empty black view)."""
    from PIL import Image

    view = page.locator(".v-main").screenshot()
    image = np.asarray(Image.open(io.BytesIO(view)).convert("L"), dtype=np.float64)
    axial = image[:, : image.shape[1] // 2]
    return float(axial.std())


def dice(a, b, label: int) -> float:
    a, b = a == label, b == label
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def sampleNodes(name: str, scene) -> dict:
    """The nodes of sample ``name``, made as the app makes them, by node name."""
    from DLCommon.web.samples import addSample

    return {node.GetName(): node for node in addSample(name, scene)}


def labels(segmentation, volume):
    """``(I, J, K)`` labels of ``segmentation`` on ``volume``'s grid."""
    from DLCommon import tensorFromSegmentation

    return tensorFromSegmentation(segmentation, volume)[0]


# --- workflows ---------------------------------------------------------------------------------------------------
def test_segment_train_then_apply_on_a_held_out_copy(page, server, tmp_path):
    import slicer

    from DLCommon.storage import loadSegmentation, loadVolume

    loadSample(page, "MNI152 brain + tissue segmentation")
    loadSample(page, "MNI152 deformed copy + its tissue")
    openTab(page, "segment")
    pick(page, "segment", "trainingVolumes", "MNI152 T1")
    pick(page, "segment", "trainingSegmentations", "MNI152 tissue")
    fill(page, "segment", "epochs", 20)
    fill(page, "segment", "patchSize", 32)
    fill(page, "segment", "modelName", "web-tissue")
    press(page, "segment", "estimate")
    expect(page.locator(".estimate-segment")).to_contain_text("Train:", timeout=60_000)
    press(page, "segment", "train")
    status, done = followRun(page, "segment", "Trained 'web-tissue'")
    assert "Train" in status
    expect(page.locator(".param-segment-modelId")).to_contain_text("web-tissue")  # selected for Apply
    pick(page, "segment", "inputVolume", "MNI152 deformed")
    press(page, "segment", "apply")
    shown = message(page, "segment", "2 segments (grey matter, white matter)")
    saved = re.search(r"Saved: ([^,.]+\.seg\.nrrd)", shown).group(1)
    scene = slicer.vtkMRMLScene()
    predicted = labels(loadSegmentation(server.output / saved, scene),
                       loadVolume(server.output / saved, scene, labelmap=True))  # on the result's own grid
    nodes = sampleNodes("MNI152 deformed copy + its tissue", scene)
    truth = labels(nodes["MNI152 deformed tissue"], nodes["MNI152 deformed"])
    assert predicted.shape == truth.shape
    assert dice(predicted, truth, 1) > 0.7 and dice(predicted, truth, 2) > 0.7  # grey, white matter
    assert viewIsNotBlank(page) > 10
    screenshot(page, "segment", tmp_path)


def test_register_a_deformed_copy_to_the_template(page, server, tmp_path):
    import slicer

    from DLCommon.storage import loadSegmentation

    loadSample(page, "MNI152 brain + tissue segmentation")
    loadSample(page, "MNI152 deformed copy + its tissue")
    openTab(page, "register")
    expect(page.locator(".param-register-fixedVolume")).to_contain_text("MNI152 T1")  # pre-selected
    pick(page, "register", "movingVolume", "MNI152 deformed")
    pick(page, "register", "movingSegmentation", "MNI152 deformed tissue")
    fill(page, "register", "iterations", 60)
    press(page, "register", "apply")
    report = message(page, "register", "after affine")
    before, afterAffine, after = (float(x) for x in re.search(
        r"LNCC: ([\d.]+) before, ([\d.]+) after affine, ([\d.]+) after", report).groups())
    assert after > afterAffine > before
    warped = re.search(r"Saved: .*?([^ ,]+\.seg\.nrrd)", report).group(1)
    scene = slicer.vtkMRMLScene()
    template = sampleNodes("MNI152 brain + tissue segmentation", scene)
    moved = labels(loadSegmentation(server.output / warped, scene), template["MNI152 T1"])
    deformed = sampleNodes("MNI152 deformed copy + its tissue", scene)
    unregistered = labels(deformed["MNI152 deformed tissue"], deformed["MNI152 deformed"])
    reference = labels(template["MNI152 tissue"], template["MNI152 T1"])
    assert dice(moved, reference, 2) > dice(unregistered, reference, 2) + 0.1  # white matter now overlaps
    assert viewIsNotBlank(page) > 10
    screenshot(page, "register", tmp_path)


def test_synthesize_super_resolution_and_ultrasound(page, server, tmp_path):
    import slicer

    from DLCommon import tensorFromVolume
    from DLCommon.storage import loadVolume

    loadSample(page, "MNI152 with thick slices")
    openTab(page, "synthesize")
    expect(page.locator(".param-synthesize-task")).to_contain_text("super-resolution")
    expect(page.locator(".param-synthesize-inputVolume")).to_contain_text("MNI152 thick slices")
    fill(page, "synthesize", "trainingSteps", 60)
    press(page, "synthesize", "apply")
    _, done = followRun(page, "synthesize", "written")
    saved = re.search(r"Saved: ([^,]+\.nrrd)", done).group(1)
    scene = slicer.vtkMRMLScene()
    output = loadVolume(server.output / saved, scene)
    thick = sampleNodes("MNI152 with thick slices", scene)["MNI152 thick slices"]
    assert output.GetSpacing()[2] == pytest.approx(thick.GetSpacing()[2] / 3)  # 3x thinner slices
    restored = tensorFromVolume(output)[0].numpy()
    truth = tensorFromVolume(sampleNodes("MNI152 brain + tissue segmentation", scene)["MNI152 T1"])[0].numpy()
    truth = truth[:, :, : restored.shape[2]]
    assert np.corrcoef(restored.ravel(), truth.ravel())[0, 1] > 0.95
    assert viewIsNotBlank(page) > 10
    screenshot(page, "synthesize", tmp_path)
    # ultrasound: a B-mode frame from the brain's tissue labels at the sample probe (no training: at once)
    loadSample(page, "MNI152 brain + tissue segmentation")
    loadSample(page, "Ultrasound probe above the MNI152 brain")
    pick(page, "synthesize", "task", "ultrasound")
    expect(page.locator(".action-synthesize-apply")).to_be_hidden()
    pick(page, "synthesize", "inputVolume", "MNI152 T1")
    pick(page, "synthesize", "tissueSegmentation", "MNI152 tissue")
    pick(page, "synthesize", "probeTransform", "ultrasound probe")
    press(page, "synthesize", "ultrasound")
    shown = message(page, "synthesize", "'Simulated ultrasound' written", timeout=60)
    frame = re.search(r"Saved: ([^,]+\.nrrd)", shown).group(1)
    bMode = tensorFromVolume(loadVolume(server.output / frame, scene))[0].numpy()
    assert 1 in bMode.shape and bMode.std() > 5  # one plane of speckle and echoes
    assert viewIsNotBlank(page) > 10


def test_classify_standard_planes_with_saliency(page, server, tmp_path):
    loadSample(page, "MNI152 brain + tissue segmentation")
    loadSample(page, "MNI152 standard-plane slices")
    openTab(page, "classify")
    pick(page, "classify", "trainingData", "standard planes")
    pick(page, "classify", "dimensions", "2D")
    fill(page, "classify", "epochs", 3)
    fill(page, "classify", "modelName", "web-planes")
    expect(page.locator(".param-classify-inputVolume")).to_contain_text("MNI152 T1")
    press(page, "classify", "train")
    followRun(page, "classify", "Trained 'web-planes'")
    press(page, "classify", "slice")  # the Red (axial) view shows the volume's centre: near trans-ventricular
    message(page, "classify", "Red slice view: axial")
    pick(page, "classify", "inputVolume", "MNI152 mid-sagittal slice")
    check(page, "classify", "saliency")
    press(page, "classify", "apply")
    shown = message(page, "classify", "MNI152 mid-sagittal slice: mid-sagittal")
    assert int(re.search(r"\((\d+)%\)", shown).group(1)) > 60
    table = page.locator(".rows-classify")
    expect(table).to_contain_text("mid-sagittal")
    assert "saliency" in shown.lower() or "Saved:" in shown  # the Grad-CAM volume was written
    assert viewIsNotBlank(page) > 10
    screenshot(page, "classify", tmp_path)


# --- bad input --------------------------------------------------------------------------------------------------
def test_bad_input_gets_a_message_and_the_app_keeps_serving(page, server, tmp_path):
    # a file of a type MedDL does not read, and a corrupt volume
    notes, broken = tmp_path / "notes.pdf", tmp_path / "broken.nrrd"
    notes.write_bytes(b"%PDF-1.4 not an image")
    broken.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n\x00\x01")
    page.locator(".load-files input[type=file]").set_input_files([str(notes), str(broken)])
    shown = page.locator(".app-message")
    expect(shown).to_contain_text("File 'notes.pdf' is not a file MedDL reads", timeout=30_000)
    expect(shown).to_contain_text("File 'broken.nrrd' holds 2 bytes of voxel data, 4,000 declared")  # filechecks
    # a run with missing inputs
    openTab(page, "segment")
    press(page, "segment", "apply")
    message(page, "segment", "Select Input volume, Model first", timeout=30)
    # a value out of range
    loadSample(page, "MNI152 brain + tissue segmentation")
    fill(page, "segment", "epochs", 0)
    pick(page, "segment", "trainingVolumes", "MNI152 T1")
    pick(page, "segment", "trainingSegmentations", "MNI152 tissue")
    press(page, "segment", "train")
    message(page, "segment", "Epochs: 0 is out of range", timeout=30)
    # a cancelled run leaves the scene as it was
    fill(page, "segment", "epochs", 2000)
    press(page, "segment", "train")
    expect(page.locator(".status-segment")).to_contain_text("%", timeout=60_000)
    press(page, "segment", "cancel")
    message(page, "segment", "was cancelled; the scene is unchanged", timeout=60)
    assert not list(server.output.iterdir())  # no result written
    catalog = tmp_path / "home" / "catalog.json"  # the server's MEDDL_HOME: no model registered
    assert not catalog.exists() or "my-segmentation" not in catalog.read_text()
    page.locator(".param-segment-inputVolume").click()  # the scene still holds the sample's one volume
    expect(page.get_by_role("option")).to_have_count(1)
    page.keyboard.press("Escape")
    # a run that fails: a 2D model on a 3D volume
    openTab(page, "classify")
    pick(page, "classify", "trainingData", "standard planes")
    pick(page, "classify", "dimensions", "2D")
    fill(page, "classify", "epochs", 1)
    press(page, "classify", "train")
    message(page, "classify", "Trained", timeout=RUN_SECONDS)
    press(page, "classify", "apply")
    message(page, "classify", "is a 3D volume of shape", timeout=30)
    # still serving: the page works and a new page loads
    loadSample(page, "MNI152 with thick slices")
    assert server.alive() and server.process.poll() is None, server.lastError
    screenshot(page, "bad_input", tmp_path)
