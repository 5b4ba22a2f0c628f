"""The bad-input catalogue: every public logic entry point and CLI command against the inputs users get wrong.

Each case either raises :class:`DLError` whose message names the node or file and says how to fix it, or
gives a correct result (outputs on the input's grid, finite). On failure the scene keeps its node count and
every pre-existing node is unchanged (name, class, voxels, geometry, segments). No case may crash with any
other exception. ``python Testing/test_bad_inputs.py`` prints the count (recorded in RESULTS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "Python"))

from conftest import TrameState, makeVolume, obliqueAffine, runAsync, sceneSnapshot  # noqa: E402 - Testing/Python's helpers (fixtures: Testing/conftest.py)

from DLCommon import DLError  # noqa: E402
from DLCommon.errors import JobCancelled  # noqa: E402

# --- inputs ------------------------------------------------------------------------------------------------

SHAPE = (20, 24, 28)  # K, J, I


def phantom(rng=None) -> np.ndarray:
    rng = rng or np.random.default_rng(0)
    k, j, i = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    ball = ((k - 10) ** 2 + (j - 12) ** 2 + (i - 14) ** 2) < 36
    return (20 + 80 * ball + rng.normal(0, 4, SHAPE)).astype(np.float32)


def goodVolume(scene, name="good"):
    return makeVolume(scene, phantom(), np.diag([2.0, 2.0, 2.0, 1.0]), name=name)


def badVolume(kind: str, scene):
    """A volume-like input of the given kind (see VOLUME_KINDS)."""
    if kind == "none":
        return None
    if kind == "wrong node class":
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "a segmentation")
        segmentation.GetSegmentation().AddEmptySegment("s")
        return segmentation
    if kind == "empty image":
        return scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    if kind == "2D single slice":
        return makeVolume(scene, phantom()[10:11], np.diag([2.0, 2.0, 2.0, 1.0]), name="one slice")
    if kind in ("4D (4 components)", "RGB vector volume"):
        components = 4 if kind.startswith("4D") else 3
        node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", kind)
        import slicer

        array = np.repeat(phantom()[..., None], components, axis=-1)
        slicer.util.updateVolumeFromArray(node, array.astype(np.uint8 if components == 3 else np.float32))
        return node
    if kind in ("NaN voxels", "Inf voxels"):
        array = phantom()
        array[5, 5, 5] = np.nan if kind.startswith("NaN") else np.inf
        return makeVolume(scene, array, np.eye(4), name=kind)
    if kind == "constant image":
        return makeVolume(scene, np.full(SHAPE, 7.0, np.float32), np.eye(4), name="constant")
    if kind in ("oblique", "LPS"):  # thick slices (super-resolution needs them), centred on the good volume
        affine = obliqueAffine(np.random.default_rng(1), (2.0, 2.0, 4.0)) if kind == "oblique" else np.diag(
            [-2.0, -2.0, 4.0, 1.0])
        centre = np.array([(n - 1) / 2 for n in SHAPE[::-1]] + [1.0])
        affine[:3, 3] += 2.0 * centre[:3] - (affine @ centre)[:3]
        return makeVolume(scene, phantom(), affine, name=kind)
    raise ValueError(kind)


VOLUME_KINDS = ["none", "wrong node class", "empty image", "2D single slice", "4D (4 components)",
                "RGB vector volume", "NaN voxels", "Inf voxels", "constant image", "oblique", "LPS"]
MUST_FAIL = {"none", "wrong node class", "empty image", "4D (4 components)", "RGB vector volume", "NaN voxels",
             "Inf voxels"}
MUST_WORK = {"oblique", "LPS"}

# --- models the cases use (built here: no downloads) ----------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from DLClassifyLib.trainer import ClassificationTrainingConfig, trainClassifier
    from DLCommon import ModelSpec, loadModel, saveCheckpoint
    from DLSegmentLib.networks import buildNetwork

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    built = {}
    for channels in (1, 2):
        className, args, network = buildNetwork("unet", channels, 2, (16, 16, 16), 8, "batch")
        spec = ModelSpec(name=f"unet{channels}", task="segmentation", inputChannels=channels, roiSize=[16, 16, 16],
                         labelNames=["ball"], normalization={"type": "zscore"})
        path = saveCheckpoint(network.eval(), folder / f"unet{channels}.pt", className, args, spec).with_suffix(".pt")
        built[f"segment{channels}"] = loadModel(path, device="cpu")
        built[f"segment{channels}Path"] = path
    images = torch.randn(8, 1, 32, 32, 32)
    labels = torch.tensor([0, 1] * 4)
    images[labels == 1] += 1.0
    result = trainClassifier(images, labels, ["dim", "bright"], ClassificationTrainingConfig(
        architecture="tiny", inputSize=(32, 32, 32), epochs=1, batchSize=4, device="cpu", calibrate=False),
        folder / "classifier", "classifier3d")
    built["classify"] = result.model
    corrupt = folder / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a model")
    built["corruptPath"] = corrupt
    return built


# --- entry points --------------------------------------------------------------------------------------------

def segment(scene, volume, models):
    from DLSegmentLib.logic import SegmentationLogic

    return [SegmentationLogic(scene).segment(volume, models["segment1"], device="cpu").segmentation]


def register(scene, volume, models):
    from DLRegisterLib.logic import RegistrationLogic
    from DLRegisterLib.optimisation import RegistrationConfig

    fixed = goodVolume(scene, "fixed")
    try:
        result = RegistrationLogic(scene).register(fixed, volume, RegistrationConfig(
            iterations=(10,), levels=(1,), affineIterations=10, device="cpu"))
    except BaseException:
        scene.RemoveNode(fixed)
        raise
    return [result.warpedVolume]


def superResolve(scene, volume, models):
    from DLSynthesizeLib.logic import SynthesisLogic
    from DLSynthesizeLib.superresolution import SuperResolutionConfig

    return [SynthesisLogic(scene).superResolve(volume, SuperResolutionConfig(steps=10, device="cpu")).volume]


def denoise(scene, volume, models):
    from DLSynthesizeLib.denoise import DenoiseConfig
    from DLSynthesizeLib.logic import SynthesisLogic

    return [SynthesisLogic(scene).denoiseJob(volume, DenoiseConfig(steps=10, device="cpu")).run().volume]


def classify(scene, volume, models):
    from DLClassifyLib.logic import ClassificationLogic

    result = ClassificationLogic(scene).classify([volume], models["classify"], device="cpu")
    return [result.table]


ENTRY_POINTS = {"segment": segment, "register": register, "superResolve": superResolve, "denoise": denoise,
                "classify": classify}
ON_INPUT_GRID = {"segment", "denoise"}  # outputs that must share the input's voxel grid exactly


# --- the checks ------------------------------------------------------------------------------------------



def expectClearError(error: DLError) -> None:
    text = str(error)
    assert "Fix:" in text and len(text) > 40, text


def runCase(scene, call) -> object:
    """Run ``call``; a DLError must be clear and leave the scene as it was. Returns the result or the error."""
    before = sceneSnapshot(scene)
    try:
        return call()
    except DLError as error:
        expectClearError(error)
        assert sceneSnapshot(scene) == before, "a failed call changed the scene"
        return error


@pytest.mark.parametrize("kind", VOLUME_KINDS)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_logic_entry_point_with_bad_volume(entry, kind, scene, models):
    volume = badVolume(kind, scene)
    outcome = runCase(scene, lambda: ENTRY_POINTS[entry](scene, volume, models))
    if kind in MUST_FAIL:
        assert isinstance(outcome, DLError), f"{entry} accepted a {kind} input"
        if volume is not None and kind != "empty image":
            assert volume.GetName() in str(outcome) or "input" in str(outcome).lower(), str(outcome)
        return
    if kind in MUST_WORK:
        assert not isinstance(outcome, DLError), f"{entry} refused a valid {kind} volume: {outcome}"
    if isinstance(outcome, DLError):
        return
    from DLCommon.selfcheck import checkOutputGeometry
    import slicer

    for node in outcome:
        assert node is not None and node.GetScene() is scene
        if node.IsA("vtkMRMLVolumeNode"):
            assert np.isfinite(slicer.util.arrayFromVolume(node)).all()
            if entry in ON_INPUT_GRID:
                checkOutputGeometry(volume, node)
            if entry == "register":
                checkOutputGeometry(scene.GetFirstNodeByName("fixed"), node)
        if node.IsA("vtkMRMLSegmentationNode"):
            checkOutputGeometry(volume, node)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_huge_image_is_refused_before_allocation_with_the_estimate(entry, scene, models, monkeypatch):
    from DLCommon import resources

    monkeypatch.setattr(resources, "availableMemory", lambda device: 20_000)  # a machine with 20 KB free
    volume = badVolume("LPS", scene)  # thick slices: super-resolution needs them
    outcome = runCase(scene, lambda: ENTRY_POINTS[entry](scene, volume, models))
    assert isinstance(outcome, DLError) and "is too large for this machine" in str(outcome), str(outcome)
    assert "needs about" in str(outcome) and "only 19.5 KB is free on cpu" in str(outcome)


def test_model_with_wrong_channels(scene, models):
    from DLSegmentLib.logic import SegmentationLogic

    volume = goodVolume(scene)
    outcome = runCase(scene, lambda: SegmentationLogic(scene).segment(volume, models["segment2"], device="cpu"))
    assert isinstance(outcome, DLError) and "channel" in str(outcome)


def test_corrupt_model_file(scene, models):
    from DLSegmentLib.logic import SegmentationLogic

    volume = goodVolume(scene)
    outcome = runCase(scene, lambda: SegmentationLogic(scene).segment(volume, str(models["corruptPath"])))
    assert isinstance(outcome, DLError) and "corrupt.pt" in str(outcome)


def test_checksum_mismatch(scene, models):
    from DLCommon import ModelCatalog

    outcome = runCase(scene, lambda: ModelCatalog().importFile(models["segment1Path"], sha256="0" * 64))
    assert isinstance(outcome, DLError) and "0" * 64 in str(outcome)


def segmentationWith(scene, volume, masks: dict):
    from DLCommon import segmentationFromTensor

    node = segmentationFromTensor(torch.zeros(volume.GetImageData().GetDimensions(), dtype=torch.long), volume,
                                  scene, [], nodeName="labels")
    import slicer

    for name, mask in masks.items():
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        slicer.util.updateVolumeFromArray(labelmap, mask.astype(np.uint8))
        matrix = __import__("vtk").vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        labelmap.SetIJKToRASMatrix(matrix)
        slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node)
        node.GetSegmentation().GetNthSegment(node.GetSegmentation().GetNumberOfSegments() - 1).SetName(name)
        scene.RemoveNode(labelmap)
    return node


def test_training_with_an_empty_segmentation(scene, tmp_path):
    from DLSegmentLib.logic import SegmentationLogic
    from DLSegmentLib.trainer import SegmentationTrainingConfig

    volume = goodVolume(scene)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "no segments")
    outcome = runCase(scene, lambda: SegmentationLogic(scene).train([(volume, empty)], SegmentationTrainingConfig(
        epochs=1, device="cpu"), modelName="m", outputDir=tmp_path))
    assert isinstance(outcome, DLError) and "no segments" in str(outcome)


def test_training_with_overlapping_segments(scene, tmp_path):
    """Two segments claiming the same voxels: trained with the later segment winning there (stated), no crash."""
    from DLSegmentLib.data import sampleFromNodes

    volume = goodVolume(scene)
    ball = phantom() > 60
    box = np.zeros(SHAPE, bool)
    box[8:14, 10:16, 12:18] = True  # overlaps the ball
    segmentation = segmentationWith(scene, volume, {"ball": ball, "box": box})
    sample, names, _ = sampleFromNodes(volume, segmentation)
    assert names == ["ball", "box"]
    labels = sample.labels.numpy().transpose(2, 1, 0)
    assert (labels[box] == 2).all() and (labels[ball & ~box] == 1).all()


def test_mismatched_geometries_are_resampled(scene):
    """A segmentation drawn on another grid is rasterised onto the training volume's grid."""
    from DLSegmentLib.data import sampleFromNodes

    volume = goodVolume(scene)
    other = makeVolume(scene, phantom(), np.diag([1.5, 1.5, 1.5, 1.0]), name="other grid")
    segmentation = segmentationWith(scene, other, {"ball": phantom() > 60})
    sample, _, _ = sampleFromNodes(volume, segmentation)
    assert tuple(sample.labels.shape) == (SHAPE[2], SHAPE[1], SHAPE[0]) and 0 < int(sample.labels.sum())


def test_cancel_mid_run_adds_nothing(scene, models):
    from DLSegmentLib.logic import SegmentationLogic

    volume = goodVolume(scene)
    before = sceneSnapshot(scene)
    job = SegmentationLogic(scene).segmentJob(volume, models["segment1"], device="cpu")
    with pytest.raises(JobCancelled):
        job.run(lambda fraction, message: job.cancel())
    assert sceneSnapshot(scene) == before


def test_simulated_cuda_out_of_memory_falls_back(scene, models, monkeypatch):
    """The first inference batch raises CUDA OOM (after the estimate's window): inference retries with smaller
    window batches and still succeeds."""
    from DLSegmentLib.logic import SegmentationLogic

    network = models["segment1"].network
    calls = {"n": 0}
    original = network.forward

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(x)

    monkeypatch.setattr(network, "forward", flaky)
    volume = goodVolume(scene)
    result = SegmentationLogic(scene).segment(volume, models["segment1"], device="cpu")
    assert calls["n"] > 2 and result.segmentation is not None


CLI_CASES = {
    "segment: missing input": (["segment", "--model", "{segment1}", "--input", "{tmp}/missing.nrrd",
                                "--output", "{tmp}/out.seg.nrrd"], "does not exist"),
    "segment: unwritable output": (["segment", "--model", "{segment1}", "--input", "{good}",
                                    "--output", "{good}/inside-a-file/out.seg.nrrd"], "could not be written"),
    "segment: corrupt model": (["segment", "--model", "{corrupt}", "--input", "{good}", "--output",
                                "{tmp}/o.seg.nrrd"], "corrupt.pt"),
    "train-segment: label count mismatch": (["train-segment", "--images", "{good}", "--labels", "{good}", "{good}",
                                             "--output-model", "{tmp}/m"], "1 image(s) and 2 label file(s)"),
    "register: missing moving": (["register", "--fixed", "{good}", "--moving", "{tmp}/missing.nrrd",
                                  "--output-transform", "{tmp}/t.h5"], "does not exist"),
    "train-register: one image": (["train-register", "--images", "{good}", "--output-model", "{tmp}/m"],
                                  "at least two"),
    "super-resolve: missing input": (["super-resolve", "--input", "{tmp}/missing.nrrd", "--output", "{tmp}/o.nrrd"],
                                     "does not exist"),
    "synthesize: corrupt model": (["synthesize", "--model", "{corrupt}", "--input", "{good}", "--output",
                                   "{tmp}/o.nrrd"], "corrupt.pt"),
    "train-synthesis: no targets": (["train-synthesis", "--sources", "{good}", "--output-model", "{tmp}/m"],
                                    "targets"),
    "simulate-us: missing labels": (["simulate-us", "--labels", "{tmp}/missing.seg.nrrd", "--output", "{tmp}/u.nrrd",
                                     "--position", "0", "0", "0", "--target", "0", "10", "0"], "does not exist"),
    "classify: missing input": (["classify", "--model", "{segment1}", "--input", "{tmp}/missing.nrrd",
                                 "--output", "{tmp}/r.csv"], ""),
    "train-classify: missing CSV": (["train-classify", "--csv", "{tmp}/missing.csv", "--output-model", "{tmp}/m"],
                                    "does not exist"),
    "models import: checksum mismatch": (["models", "import", "{segment1}", "--sha256", "0" * 64], "0" * 64),
    # meddl web: refused before anything is built (no trame, no port taken)
    "web: public host without a token": (["web", "--host", "0.0.0.0", "--token", "", "--port", "8099"],
                                         "would let anyone who reaches 0.0.0.0:8099"),
    "web: token too short": (["web", "--token", "abc"], "a token of at least 8 printable characters"),
    "web: upload limit not positive": (["web", "--max-upload-mb", "0"], "must be a positive number of megabytes"),
    "web: TLS files missing": (["web", "--ssl", "{tmp}/missing.pem,{tmp}/missing.key"],
                               "could not be loaded as a certificate"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_command_with_bad_input(case, models, tmp_path, capsys):
    from DLCommon.cli import main
    from DLCommon.storage import saveNode
    import slicer

    good = saveNode(goodVolume(slicer.vtkMRMLScene()), tmp_path / "good.nrrd")
    values = {"tmp": tmp_path, "good": good, "segment1": models["segment1Path"], "corrupt": models["corruptPath"]}
    argv, expected = CLI_CASES[case]
    status = main([arg.format(**values) for arg in argv])
    err = capsys.readouterr().err
    assert status == 2, err
    message = err.strip().splitlines()[-1]  # (after any progress bar)
    assert message.startswith("meddl: error: ") and "Fix:" in message and expected in message, err


# --- every job states its memory and time before it runs (the widgets' Estimate button shows it) ---------------

def _segmentationOf(scene, volume):
    from DLCommon import segmentationFromTensor, tensorFromVolume

    labels = (tensorFromVolume(volume)[0] > 60).to(torch.uint8)
    return segmentationFromTensor(labels, volume, scene, ["ball"], nodeName="ball")


def segmentJob(scene, volume, models):
    from DLSegmentLib.logic import SegmentationLogic

    return SegmentationLogic(scene).segmentJob(volume, models["segment1"], device="cpu")


def trainSegmentationJob(scene, volume, models):
    from DLSegmentLib.logic import SegmentationLogic
    from DLSegmentLib.trainer import SegmentationTrainingConfig

    config = SegmentationTrainingConfig(patchSize=(16, 16, 16), features=8, epochs=2, device="cpu")
    return SegmentationLogic(scene).trainJob([(volume, _segmentationOf(scene, volume))], config)


def registerJob(scene, volume, models):
    from DLRegisterLib.logic import RegistrationLogic
    from DLRegisterLib.optimisation import RegistrationConfig

    config = RegistrationConfig(iterations=(10,), levels=(1,), affineIterations=10, device="cpu")
    return RegistrationLogic(scene).registerJob(goodVolume(scene, "fixed"), volume, config)


def trainRegistrationJob(scene, volume, models):
    from DLRegisterLib.logic import RegistrationLogic
    from DLRegisterLib.trainer import RegistrationTrainingConfig

    config = RegistrationTrainingConfig(shape=(16, 16, 16), epochs=2, device="cpu")
    return RegistrationLogic(scene).trainJob([volume, goodVolume(scene, "other")], config=config)


def superResolveJob(scene, volume, models):
    from DLSynthesizeLib.logic import SynthesisLogic
    from DLSynthesizeLib.superresolution import SuperResolutionConfig

    return SynthesisLogic(scene).superResolveJob(badVolume("LPS", scene), SuperResolutionConfig(steps=20, device="cpu"))


def denoiseJob(scene, volume, models):
    from DLSynthesizeLib.denoise import DenoiseConfig
    from DLSynthesizeLib.logic import SynthesisLogic

    return SynthesisLogic(scene).denoiseJob(volume, DenoiseConfig(steps=20, device="cpu"))


def imageToImageJob(scene, volume, models):
    from DLSynthesizeLib.imagetoimage import ImageToImageConfig
    from DLSynthesizeLib.logic import SynthesisLogic

    return SynthesisLogic(scene).imageToImageJob([(volume, goodVolume(scene, "target"))], volume,
                                                 ImageToImageConfig(steps=20, device="cpu"))


def classifyJob(scene, volume, models):
    from DLClassifyLib.logic import ClassificationLogic

    return ClassificationLogic(scene).classifyJob([volume], models["classify"], saliency=True, device="cpu")


def trainClassifierJob(scene, volume, models):
    from DLClassifyLib.logic import ClassificationLogic
    from DLClassifyLib.trainer import ClassificationTrainingConfig

    config = ClassificationTrainingConfig(inputSize=(32, 32, 32), epochs=2, device="cpu")
    return ClassificationLogic(scene).trainJob([(volume, "a"), (goodVolume(scene, "b"), "b")], config=config)


JOBS = {"segment": segmentJob, "train segmentation": trainSegmentationJob, "register": registerJob,
        "train registration": trainRegistrationJob, "super-resolve": superResolveJob, "denoise": denoiseJob,
        "image-to-image": imageToImageJob, "classify": classifyJob, "train classifier": trainClassifierJob}


@pytest.mark.parametrize("name", list(JOBS))
def test_every_job_states_its_memory_and_time_before_running(name, scene, models):
    volume = goodVolume(scene)
    job = JOBS[name](scene, volume, models)
    before = scene.GetNumberOfNodes()
    estimate = job.resourceEstimate()
    assert scene.GetNumberOfNodes() == before  # estimating adds nothing
    assert estimate.fits and estimate.seconds > 0 and estimate.device == "cpu"
    assert estimate.memoryBytes > 4 * int(np.prod(SHAPE)), estimate.describe()  # at least the input as float32
    assert estimate.describe().startswith(estimate.what + ": needs about ") and "free" in estimate.describe()
    if name == "segment":  # the job's first status is the estimate
        messages = []
        job.run(lambda fraction, message: messages.append(message))
        assert messages[0] == estimate.describe()


def test_a_job_that_does_not_fit_the_gpu_moves_to_the_cpu(monkeypatch):
    """fitOrSwitch: on a GPU too small for the run, the CPU's estimate is used (noted); nowhere: refused."""
    from DLCommon import resources

    def estimateOn(device):
        return resources.ResourceEstimate("Training", str(device), 100, 80 if device.type == "cuda" else 1000, 1.0)

    plan = resources.fitOrSwitch(estimateOn, torch.device("cuda"), "Volume 'x'", "use less")
    assert plan.device == "cpu" and "switched from cuda, which needs about 100 B but only 80 B is free" in plan.note
    with pytest.raises(DLError, match=r"Volume 'x' is too large for this machine: training needs about 100 B but only"
                                      r" 80 B is free on cuda \(and does not fit on the CPU either\).*Fix: use less"):
        resources.fitOrSwitch(lambda d: resources.ResourceEstimate("Training", str(d), 100, 80, 1.0),
                              torch.device("cuda"), "Volume 'x'", "use less")


# --- meddl web (issue 22): what a page, or a crafted client, may send -----------------------------------------------
# Single functions here (fast, no server); the same against a running server and a browser:
# Testing/Web/test_web_security.py

WEB_UPLOAD_NAMES = {"parent folder": "../x.nrrd", "parent folder, backslash": "..\\x.nrrd",
                    "deeper traversal": "a/../../x.nrrd", "absolute path": "/tmp/x.nrrd",
                    "Windows absolute path": "C:\\x.nrrd", "dot-dot": "..", "dot": ".", "NUL": "x\x00.nrrd",
                    "newline": "x\n.nrrd", "DEL": "x\x7f.nrrd", "empty": "", "not a string": 7,
                    "too long": "x" * 300 + ".nrrd"}


class _Page:
    """What the web app's upload shows: the files it loaded, the problems, the messages said meanwhile."""

    def __init__(self):
        self.loaded, self.problems, self.said = [], [], []

    def load(self, paths, problems):
        self.loaded += [(Path(p).name, Path(p).read_bytes()) for p in paths]  # the folder goes right after
        self.problems += problems

    def say(self, message, kind="info"):
        self.said.append(message)

    @property
    def text(self) -> str:
        return " ".join(self.problems + self.said)


@pytest.fixture
def webUpload(tmp_path, monkeypatch):
    """``(Uploads with a 1000-byte limit, its _Page, the folder its private folders go to)``."""
    import tempfile

    from DLCommon.web.uploads import Uploads

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    page = _Page()
    yield Uploads(1000, page.load, page.say), page, temporary
    assert not list(temporary.iterdir()), "an upload folder was left behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"], "something was written outside the upload folder"


@pytest.mark.parametrize("case", list(WEB_UPLOAD_NAMES))
def test_web_upload_with_a_bad_file_name(case, webUpload):
    uploads, page, _ = webUpload
    name = WEB_UPLOAD_NAMES[case]
    assert uploads.begin([{"name": name, "size": 4}])["accepted"] == []
    assert uploads.part(0, 0, {"name": name, "content": b"data"}) is False  # sent anyway: refused
    uploads.end()
    assert not page.loaded and len(page.problems) == 2 and "Fix:" in page.problems[0], page.problems
    assert any(what in page.problems[0] for what in ("is a path, not a file name", "has a control character",
                                                     "has no file name", "longer than 255 bytes")), page.problems


def _nrrd(extra: bytes = b"") -> bytes:
    return (b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n" + extra + b"\n" + bytes(8))


_DETACHED = _nrrd(b"data file: /etc/hostname\n")  # a header that reads a file of the server's
WEB_UPLOAD_STEPS = {  # (what the client sends, what the page must say)
    "a file over the limit": ([("begin", [{"name": "big.nrrd", "size": 2000}])],
                              "is 2.0 KB, more than the upload limit of 1000 B"),
    "files over the limit together": ([("begin", [{"name": f"f{i}.nrrd", "size": 400} for i in range(3)])],
                                      "would bring this upload to 1.2 KB, more than the limit of 1000 B"),
    "more bytes than announced": ([("begin", [{"name": "a.nrrd", "size": 10}]), ("part", 0, 0, b"x" * 20)],
                                  "is larger than the 10 B announced for it"),
    "a part of no upload": ([("part", 0, 0, b"x" * 10)], "arrived for no file of the upload in progress"),
    "a part out of order": ([("begin", [{"name": "a.nrrd", "size": 10}]), ("part", 0, 5, b"x" * 5)],
                            "arrived out of order (at byte 5, expected 0)"),
    "a part under another name": ([("begin", [{"name": "a.nrrd", "size": 10}]), ("part", 0, 0, b"x" * 10, "../a")],
                                  "arrived with another name or without content"),
    "a header naming a server file": ([("begin", [{"name": "d.nrrd", "size": len(_DETACHED)}]),
                                       ("part", 0, 0, _DETACHED)],
                                      "names a data file elsewhere (/etc/hostname)"),
}


@pytest.mark.parametrize("case", list(WEB_UPLOAD_STEPS))
def test_web_upload_over_the_limit_or_out_of_protocol(case, webUpload):
    uploads, page, temporary = webUpload
    steps, expected = WEB_UPLOAD_STEPS[case]
    for step in steps:
        if step[0] == "begin":
            uploads.begin(step[1])
            if uploads.folder is not None:  # made for the accepted files: this user only
                assert (uploads.folder.stat().st_mode & 0o777) == 0o700 and uploads.folder.parent == temporary
        else:
            name = step[4] if len(step) > 4 else (steps[0][1][0]["name"] if steps[0][0] == "begin" else "a.nrrd")
            uploads.part(step[1], step[2], {"name": name, "content": step[3]})
    uploads.end()
    assert expected in page.text and "Fix:" in page.text, page.text
    assert not page.loaded


def test_web_upload_of_good_files_in_slices(webUpload):
    """The same steps done right: both files arrive whole, in the folder, then the folder goes."""
    uploads, page, _ = webUpload
    plan = uploads.begin([{"name": "a b.nrrd", "size": len(_nrrd())}, {"name": "c.nrrd", "size": 3}])
    assert plan["accepted"] == [0, 1]
    assert uploads.part(0, 0, {"name": "a b.nrrd", "content": _nrrd()[:10]})
    assert uploads.part(0, 10, {"name": "a b.nrrd", "content": [_nrrd()[10:20], _nrrd()[20:]]})  # in pieces
    assert uploads.part(1, 0, {"name": "c.nrrd", "content": b"abc"})
    uploads.end()
    assert page.loaded == [("a b.nrrd", _nrrd()), ("c.nrrd", b"abc")] and not page.problems


def test_web_message_over_the_ceiling_is_refused_before_it_is_held():
    """wslink allocates what a message's first chunk declares (up to 4 GB); MedDL's UnChunker refuses it first."""
    import struct

    import msgpack

    from DLCommon.web.access import limitedUnChunker

    refused = []
    unchunker = limitedUnChunker(1000, refused.append)
    unchunker.set_max_message_size(4 << 30)  # what wslink does once the client said hello
    huge = msgpack.packb({"wslink": "1.0", "id": "rpc:c0:7", "method": "trame.trigger", "args": ["x", [b"0" * 5000]]})
    first, second = huge[:3000], huge[3000:]
    answer = unchunker.process_chunk(struct.pack("<III", 1, 0, len(huge)) + first)
    assert refused == [len(huge)] and not unchunker.pending_messages  # nothing allocated
    assert answer == {"wslink": "1.0", "id": "rpc:c0:7", "method": "trame.trigger", "args": ["meddl_refused", [], {}]}
    assert unchunker.process_chunk(struct.pack("<III", 1, 3000, len(huge)) + second) is None  # skipped
    small = msgpack.packb({"wslink": "1.0", "id": "rpc:c0:8", "method": "m", "args": []})
    assert unchunker.process_chunk(struct.pack("<III", 2, 0, len(small)) + small)["id"] == "rpc:c0:8"  # still served


WEB_OUTPUT_NAMES = {"path in the node name": "../../evil", "absolute path": "/etc/cron.d/evil", "dot-dot": "..",
                    "empty": "", "control characters": "a\nb\x00c", "hidden file": ".bashrc",
                    "a link planted in the folder": "planted"}


@pytest.mark.parametrize("case", list(WEB_OUTPUT_NAMES))
def test_web_result_file_names_stay_in_the_output_folder(case, tmp_path):
    from DLCommon.web.uploads import checkFileName, outputPath

    folder = tmp_path / "results"
    folder.mkdir()
    (tmp_path / "elsewhere.nrrd").write_text("not to be overwritten")
    (folder / "planted.nrrd").symlink_to(tmp_path / "elsewhere.nrrd")
    path = outputPath(folder, WEB_OUTPUT_NAMES[case], ".nrrd")
    assert path.parent == folder and checkFileName(path.name) == path.name and not path.name.startswith(".")
    assert not path.exists() and not path.is_symlink()  # a new file: the planted link is not written through


WEB_REQUESTS = {  # (token of the server, --shared, what the request carries, expected status)
    "no token": ("t0ken-123", False, {}, 403),
    "wrong token in the address": ("t0ken-123", False, {"query": "?token=wrong"}, 403),
    "wrong token cookie": ("t0ken-123", False, {"cookie": "wrong"}, 403),
    "wrong Authorization header": ("t0ken-123", False, {"headers": {"Authorization": "token wrong"}}, 403),
    "websocket of a page of another origin": ("t0ken-123", False, {"query": "?token=t0ken-123", "websocket": True,
                                                                   "headers": {"Origin": "http://evil.example"}}, 403),
    "a second browser while the first has the page": ("t0ken-123", False, {"query": "?token=t0ken-123",
                                                                           "second": True}, 409),
    "no-token server reached by another name": ("", False, {"headers": {"Host": "evil.example:8080"}}, 403),
}


def _gate(token: str, shared: bool, request: dict) -> tuple[int, str, dict]:
    """Status, body and cookies of ``request`` through an AccessGate in front of a page and a websocket."""

    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from DLCommon.web.access import AccessGate

    async def main():
        gate = AccessGate(token, 8080, shared=shared)
        app = web.Application(middlewares=[gate.middleware])

        async def page(_):
            return web.Response(text="scene data")

        async def socket(request):
            answer = web.WebSocketResponse()
            await answer.prepare(request)
            async for _ in answer:
                pass
            return answer

        app.router.add_get("/", page)
        app.router.add_get("/ws", socket)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        base = f"http://127.0.0.1:{server.port}/"
        cookies = {"meddl-token-8080": request["cookie"]} if "cookie" in request else {}
        owner = None
        try:
            # unsafe: keep cookies of an IP address (aiohttp's jar drops them otherwise), as a browser does
            async with aiohttp.ClientSession(cookies=cookies, cookie_jar=aiohttp.CookieJar(unsafe=True)) as first:
                if request.get("second"):  # the first browser: its page, then its websocket (same session cookie)
                    await (await first.get(base + request["query"])).read()
                    owner = await first.ws_connect(base + "ws")
                    assert (await first.get(base)).status == 200  # its own reloads are served
                async with aiohttp.ClientSession() as second:
                    client = second if request.get("second") else first
                    url = base + ("ws" if request.get("websocket") else "") + request.get("query", "")
                    if request.get("websocket"):
                        try:
                            await client.ws_connect(url, headers=request.get("headers", {}))
                            return 101, "", {}
                        except aiohttp.WSServerHandshakeError as error:
                            return error.status, "", {}
                    answer = await client.get(url, headers=request.get("headers", {}))
                    return answer.status, await answer.text(), {c.key: c.value for c in answer.cookies.values()}
        finally:
            if owner is not None:
                await owner.close()
            await server.close()

    return runAsync(main())


@pytest.mark.parametrize("case", list(WEB_REQUESTS))
def test_web_request_without_access(case):
    token, shared, request, expected = WEB_REQUESTS[case]
    status, body, cookies = _gate(token, shared, request)
    assert status == expected and "scene data" not in body and not cookies
    if status == 409:
        assert "in use by another user; start another server" in body and "--shared" in body
    if body and status == 403:
        assert "403: Forbidden" in body
    if request.get("second"):  # the same with --shared: the second browser is let in
        assert _gate(token, True, request)[0] == 200


def test_web_request_with_the_token_gets_the_page_and_the_cookie():
    status, body, cookies = _gate("t0ken-123", False, {"query": "?token=t0ken-123"})
    assert status == 200 and body == "scene data" and cookies["meddl-token-8080"] == "t0ken-123"
    assert _gate("t0ken-123", False, {"cookie": "t0ken-123"})[:2] == (200, "scene data")
    assert _gate("t0ken-123", False, {"headers": {"Authorization": "token t0ken-123"}})[:2] == (200, "scene data")
    assert _gate("", False, {})[:2] == (200, "scene data")  # no token, on loopback


WEB_SETTINGS = {"model id that is a file path": ("modelId", "/tmp/evil.ts", "is not in the model catalog"),
                "model name with a path": ("modelName", "../../evil", "must be a plain name"),
                "model name with a newline": ("modelName", "evil\nname", "must be a plain name")}


@pytest.mark.parametrize("case", list(WEB_SETTINGS))
def test_web_panel_setting_that_names_a_path(case, scene):
    """Settings a crafted page could set to paths: refused before any job is made."""
    import types

    from DLCommon.modules import registeredModules
    from DLCommon.web.panel import ModulePanel

    setting, value, expected = WEB_SETTINGS[case]
    module = next(m for m in registeredModules() if m.key == "segment")
    app = types.SimpleNamespace(server=types.SimpleNamespace(state=TrameState()), scene=scene)
    panel = ModulePanel(app, module)
    panel.state[panel.var(setting)] = value
    outcome = runCase(scene, panel.values)
    assert isinstance(outcome, DLError) and expected in str(outcome), outcome


def count() -> int:
    """The number of catalogue cases: every test, each parametrisation counted."""
    import math

    return sum(math.prod(len(mark.args[1]) for mark in getattr(test, "pytestmark", []) if mark.name == "parametrize")
               for name, test in globals().items() if name.startswith("test_"))


if __name__ == "__main__":
    print(f"{count()} bad-input cases")
