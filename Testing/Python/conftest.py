"""Shared fixtures: a fresh MRML scene per test (real slicer-core MRML), isolated model cache / catalog."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT, ROOT / "DLSegment", ROOT / "DLRegister", ROOT / "DLSynthesize", ROOT / "DLClassify"):  # also without `pip install -e .`
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(autouse=True, scope="session")
def _quietVtk():
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)


@pytest.fixture(autouse=True)
def _isolatedMedDLHome(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDDL_HOME", str(tmp_path / "meddl-home"))
    monkeypatch.setenv("MEDDL_CACHE", str(tmp_path / "meddl-cache"))
    monkeypatch.delenv("MEDDL_DEVICE", raising=False)


@pytest.fixture
def scene():
    import slicer

    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene  # slicer.util helpers look here
    yield scene
    scene.Clear(1)


GEOMETRY_ATOL_MM = 1e-9
"""The precision MedDL promises for geometry: voxel positions, origins, spacings and IJK-to-RAS affines agree
to 1e-9 mm (affine entries are mm per voxel index; the bottom row is compared too)."""


def assertGeometryClose(actual, expected, err_msg: str = "") -> None:
    """Assert that two geometries (4x4 affines, RAS positions, origins, spacings; mm) agree to 1e-9 mm.

    Geometry passes through floating-point products (MRML keeps spacing, directions and origin apart and
    multiplies them back; parent transforms are composed), so a last bit may differ (~2e-16) between runs,
    machines and BLAS builds: bit equality would test that rounding, not the product. The tolerance is
    absolute (``rtol=0``), so it does not grow with the distance from the RAS origin. Use bit equality only for
    integers, labels and voxel values that are copied, not computed.

    Accepts NumPy arrays, torch tensors (including MONAI MetaTensor affines) and scalars.
    """
    np.testing.assert_allclose(_float64(actual), _float64(expected), rtol=0, atol=GEOMETRY_ATOL_MM, err_msg=err_msg)


def _float64(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor / MetaTensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def randomRotation(rng: np.random.Generator) -> np.ndarray:
    """A random proper rotation (det +1), i.e. an oblique direction matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def runAsync(coroutine):
    """Run ``coroutine`` to its end in a thread of its own: after a browser test, Playwright's sync API keeps an
    event loop running in the main thread, so ``asyncio.run`` there fails (test order decides; CI met it)."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


class TrameState(dict):
    """A stand-in for a trame server's state (the web panel's settings, no browser): items, and ``change(name)``
    registering the handler trame calls when the page changes ``name`` (kept in ``handlers``)."""

    def __init__(self):
        super().__init__()
        self.handlers = {}

    def change(self, name):
        return lambda handler: self.handlers.setdefault(name, handler)


def makeVolume(scene, array_kji: np.ndarray, ijkToRas: np.ndarray, name: str = "vol", className="vtkMRMLScalarVolumeNode"):
    """Volume node from a (K, J, I) array and a 4x4 IJK-to-RAS matrix."""
    import slicer
    import vtk

    node = scene.AddNewNodeByClass(className, name)
    slicer.util.updateVolumeFromArray(node, array_kji)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijkToRas[r, c]))
    node.SetIJKToRASMatrix(matrix)
    return node


def obliqueAffine(rng: np.random.Generator, spacing=(0.7, 1.3, 2.9)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = randomRotation(rng) @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-100, 100, size=3)
    return affine


# --- a module of MedDL's shape, small and fast, for the job machinery (child processes, the shell mixin) ---------

FAKE_MODULE = {
    "__init__.py": '''
"""DLFakeLib: a module that registers itself like the real four; its one job adds an offset to a volume."""
from DLCommon.modules import ModuleDescription, registerModule
from DLCommon.parameters import Parameter

VOLUME = ("vtkMRMLScalarVolumeNode",)
PARAMETERS = (
    Parameter("inputVolume", "node", nodeClasses=VOLUME),
    Parameter("outputVolume", "node", nodeClasses=VOLUME, output=True),
    Parameter("mode", "choice", "add", choices=("add", "fail", "crash", "slow", "plan-refuses")),
    Parameter("steps", "int", 5, minimum=1, maximum=100000),
    Parameter("offset", "float", 1.0, minimum=-100.0, maximum=100.0),
)


def applyJob(logic, p, volumeNode=None):
    if volumeNode is not None:
        return logic.offsetJob(volumeNode, None, p.mode, p.steps, p.offset)
    return logic.offsetJob(p.inputVolume, p.outputVolume, p.mode, p.steps, p.offset)


MODULE = registerModule(ModuleDescription(
    key="fake", package=__name__, title="Fake", parameters=PARAMETERS, order=99,
    actions={"apply": applyJob, "batch": lambda logic, p, volumeNode: applyJob(logic, p, volumeNode)},
    engine=f"{__name__}.logic:FakeLogic"))
''',
    "logic.py": '''
import os
import sys
import time

from DLCommon import DLError, Job, tensorFromVolume, updateVolumeFromTensor, volumeFromTensor
from DLCommon.resources import makeEstimate
from DLCommon.scenelogic import SceneLogic


class FakeLogic(SceneLogic):
    def offsetJob(self, volume, outputVolume, mode, steps, offset):
        if volume is None:
            raise DLError("No input volume was selected", fix="select a volume")
        image, scene, name = tensorFromVolume(volume), self.scene(volume), volume.GetName()

        def plan():
            if mode == "plan-refuses":
                raise DLError("is too large for this machine", node=f"Volume '{name}'", fix="crop it")
            return makeEstimate("Offset", "cpu", image.numel() * 4, 0, 0.01 * steps)

        def work(context):
            for step in range(steps):
                if mode == "slow":
                    time.sleep(0.05)
                if mode == "fail" and step == steps // 2:
                    raise DLError("cannot be offset", node=f"Volume '{name}'", fix="pick another volume")
                if mode == "crash" and step == steps // 2:
                    print("fatal: the fake engine lost its memory", file=sys.stderr, flush=True)
                    os._exit(7)
                context.report((step + 1) / steps, f"step {step + 1}/{steps}")
            return {"image": image + offset, "pid": os.getpid()}

        def apply(result):
            if outputVolume is not None:
                updateVolumeFromTensor(outputVolume, result["image"])
                return outputVolume
            return volumeFromTensor(result["image"], volume, scene, f"{name} offset")

        return Job(work, apply, scene=scene, name=f"Offset {name}", plan=plan)
''',
}


@pytest.fixture(scope="session")
def fakeModule(tmp_path_factory):
    """The ``DLFakeLib`` module (see FAKE_MODULE), importable here and in child processes; its description."""
    folder = tmp_path_factory.mktemp("fake-module")
    (folder / "DLFakeLib").mkdir()
    for name, text in FAKE_MODULE.items():
        (folder / "DLFakeLib" / name).write_text(text.lstrip())
    sys.path.insert(0, str(folder))
    from DLCommon.modules import moduleByPackage

    yield moduleByPackage("DLFakeLib")
    sys.path.remove(str(folder))


def settingsOf(description, **values):
    """Settings ``p`` of a module (every default), with ``values`` set: what a parameter node holds."""
    import types

    p = {q.name: [] if q.kind == "nodes" else q.default for q in description.parameters}
    p.update(values)
    return types.SimpleNamespace(**p)


def sceneSnapshot(scene) -> dict:
    """What must not change on failure: every node's ID, name and class, a volume's voxels (checksum), origin and
    spacing, a segmentation's segment count."""
    import hashlib

    from DLCommon.volumes import volumeArrayView

    state = {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        entry = [node.GetName(), node.GetClassName()]
        if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
            entry += [hashlib.sha256(np.ascontiguousarray(volumeArrayView(node)).tobytes()).hexdigest(),
                      str([node.GetOrigin(), node.GetSpacing()])]
        if node.IsA("vtkMRMLSegmentationNode"):
            entry.append(node.GetSegmentation().GetNumberOfSegments())
        state[node.GetID()] = entry
    return state


# --- small real problems shared by several test files ------------------------------------------------------------

def blobBatches(count, seed):
    """Bright spheres on noise: a real (tiny) segmentation problem; ``[(image (1, 1, 16, 16, 16), mask), ...]``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    batches = []
    grid = torch.stack(torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij"))
    for _ in range(count):
        centre = torch.randint(5, 11, (3,), generator=generator).float()
        radius = 3 + 2 * torch.rand(1, generator=generator)
        mask = ((grid - centre[:, None, None, None]) ** 2).sum(0) < radius ** 2
        image = mask.float() + 0.3 * torch.randn(16, 16, 16, generator=generator)
        batches.append((image[None, None], mask[None, None].long()))
    return batches


def dice(prediction, target):
    predicted = prediction.argmax(1, keepdim=True)
    intersection = ((predicted == 1) & (target == 1)).sum().item()
    return 2 * intersection / max((predicted == 1).sum().item() + (target == 1).sum().item(), 1)


def makeNetwork():
    """A small 3D U-Net, the same weights every time."""
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16), strides=(2,), num_res_units=1)


NAMES = ["ball", "box"]
COLORS = [(1.0, 0.2, 0.2), (0.2, 0.4, 1.0)]


def phantom(seed: int, shape=(36, 32, 28)):
    """A bright ball (label 1) and a darker box (label 2) on a noisy, biased background; (I, J, K)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    centre = rng.uniform(9, 13, size=3)
    labels = np.zeros(shape, np.int64)
    labels[((grid - centre[:, None, None, None]) ** 2).sum(0) < rng.uniform(5, 7) ** 2] = 1
    corner = rng.integers(15, 18, size=3)  # inside the volume: no structure touches the border
    labels[corner[0]:corner[0] + 8, corner[1]:corner[1] + 8, corner[2]:corner[2] + 6] = 2
    image = np.where(labels == 1, 100.0, np.where(labels == 2, 60.0, 20.0))
    image = image * (1 + 0.1 * grid[0] / shape[0]) + rng.normal(0, 6, size=shape)
    return image.astype(np.float32), labels


def addCase(scene, seed, affine=None, name="case"):
    """A phantom volume (:func:`phantom`) and its segmentation in ``scene``; ``(volume, segmentation, labels)``."""
    import torch

    from DLCommon import segmentationFromTensor

    image, labels = phantom(seed)
    volume = makeVolume(scene, np.ascontiguousarray(image.transpose(2, 1, 0)), affine if affine is not None else np.eye(4),
                        name=f"{name} {seed}")
    segmentation = segmentationFromTensor(torch.from_numpy(labels), volume, scene, NAMES, COLORS,
                                          nodeName=f"{name} {seed} labels")
    return volume, segmentation, labels
