"""MONAI Model Zoo bundles run unchanged (DLCommon.bundles): MedDL's segmentation of a volume node against MONAI's own
bundle workflow (``ConfigWorkflow``, what ``python -m monai.bundle run`` runs) on the same file.

The configs are the Model Zoo's own (``Testing/Data/modelzoo``, unchanged). Weights are not downloadable here, so each
bundle gets its ``network_def`` with seeded random weights, the bias of its output layer balanced so that every class
wins somewhere on the test image (a network that votes one class everywhere would hide geometry errors). The test
images are CT / MR phantoms with noise, defined in world (RAS) millimetres and stored as NIfTI with LPS-ordered axes
away from the bundle's spacing and RAS-ordered axes at it, small enough for one window of the bundle's inferer.
"""

from __future__ import annotations

import contextlib
import glob
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from DLCommon import DLError, tensorFromSegmentation
from DLCommon.bundletrust import trustBundle
from DLCommon.storage import loadSegmentation, loadVolume

MODELZOO = Path(__file__).resolve().parents[1] / "Data" / "modelzoo"

# name -> modality and the two test grids: (axis signs, spacing in mm, shape in voxels); one window of 96^3 each
BUNDLES = {
    "spleen_ct_segmentation": ("CT", {"LPS": ((-1, -1, 1), (0.75, 0.75, 2.5), (128, 112, 24)),
                                      "RAS": ((1, 1, 1), (1.5, 1.5, 2.0), (64, 56, 30))}),
    "prostate_mri_anatomy": ("MR", {"LPS": ((-1, -1, 1), (0.625, 0.625, 3.0), (64, 64, 12)),
                                    "RAS": ((1, 1, 1), (0.5, 0.5, 0.5), (80, 80, 72))}),
    "wholeBody_ct_segmentation": ("CT", {"LPS": ((-1, -1, 1), (0.75, 0.75, 2.5), (128, 112, 24)),
                                         "RAS": ((1, 1, 1), (1.5, 1.5, 1.5), (64, 56, 40))}),
    # a 2D network run slice by slice by its own SliceInferer (roi 256x256), on a stack of short-axis-like slices
    "ventricular_short_axis_3label": ("MR", {"LPS": ((-1, -1, 1), (1.4, 1.4, 8.0), (96, 88, 8)),
                                             "RAS": ((1, 1, 1), (1.25, 1.25, 10.0), (104, 96, 6))}),
}
RUN_IDS = {"ventricular_short_axis_3label": "evaluating"}  # the config's run key, where it is not "run"
# one 96^3 window of wholeBody's 105-class SegResNet takes 10-40 s on 2 shared CPU cores; prostate at its own grid is
# the third run of that UNet (the default suite keeps its LPS file, away from its grid)
SLOW = {("wholeBody_ct_segmentation", "LPS"), ("wholeBody_ct_segmentation", "RAS"), ("prostate_mri_anatomy", "RAS")}
AGREEMENT = {}  # (bundle, grid) -> numbers printed at the end of the module (-s), for the report


# --- the test material -------------------------------------------------------------------------------------------

def phantom(modality: str, grid: str, name: str, folder: Path) -> Path:
    """A NIfTI phantom of the body part the bundle expects, sampled at the world positions of the grid's voxels (so
    the LPS and RAS files show the same anatomy), with noise so that outputs vary from voxel to voxel."""
    signs, spacing, shape = BUNDLES[name][1][grid]
    affine = np.diag([*(s * d for s, d in zip(signs, spacing)), 1.0])
    extent = np.array(spacing) * (np.array(shape) - 1)
    affine[:3, 3] = [-s * e / 2 for s, e in zip(signs, extent)]  # centred on the RAS origin
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    x, y, z = (ijk @ affine[:3, :3].T + affine[:3, 3]).T
    rng = np.random.default_rng(7)
    if modality == "CT":  # air, a body of soft tissue, a spine, a liver- and a spleen-like organ (HU)
        r = np.sqrt((x / 45) ** 2 + (y / 38) ** 2)
        values = np.where(r < 1, 30.0, -1000.0)
        values = np.where(np.hypot(x, y + 25) < 9, 700.0, values)
        values = np.where(((x + 18) / 20) ** 2 + ((y - 5) / 16) ** 2 + (z / 30) ** 2 < 1, 60.0, values)
        values = np.where(((x - 25) / 9) ** 2 + ((y + 5) / 12) ** 2 + ((z - 6) / 18) ** 2 < 1, 48.0, values)
        values = values + rng.normal(0, 20, values.shape) + 15 * np.sin(z / 7.0)
        array, dtype = np.clip(np.round(values), -1024, 3071).astype(np.int16), np.int16
    else:  # T2-like: a gland with a brighter peripheral zone, fat and muscle around it, a bias field
        r = np.sqrt((x / 16) ** 2 + (y / 13) ** 2 + (z / 14) ** 2)
        values = np.where(r < 1, np.where(y < -4, 420.0, 260.0), np.where(np.hypot(x, y) < 18, 180.0, 320.0))
        values = values * (1 + 0.002 * x) + rng.normal(0, 25, values.shape)
        array, dtype = np.clip(values, 0, None).astype(np.float32), np.float32
    import nibabel as nib

    path = folder / f"{name}_{grid}.nii.gz"
    nib.Nifti1Image(array.reshape(shape).astype(dtype), affine).to_filename(str(path))
    return path


def zooCopy(name: str, folder: Path):
    """A copy of the stored Model Zoo bundle ``name`` (configs unchanged, an empty ``models/``) and its parser."""
    from monai.bundle import ConfigParser

    root = folder / name
    shutil.copytree(MODELZOO / name, root)
    (root / "models").mkdir()
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    return root, parser


def makeBundle(name: str, folder: Path, sample: Path | dict) -> Path:
    """The Model Zoo bundle ``name`` with seeded random weights in ``models/model.pt``, balanced on ``sample`` (a
    file, or the data list entry of a bundle with several inputs), and trusted."""
    root, parser = zooCopy(name, folder)
    sys.path.insert(0, str(root))  # its scripts package, as ConfigWorkflow does
    try:
        torch.manual_seed(0)
        network = parser.get_parsed_content("network_def").eval()
        data = sample if isinstance(sample, dict) else {"image": str(sample)}
        image = parser.get_parsed_content("preprocessing")(data)["image"]
    finally:
        sys.path.remove(str(root))
        for module in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[module]
    balanceClasses(network, torch.as_tensor(np.asarray(image)))
    torch.save(network.state_dict(), root / "models" / "model.pt")
    trustBundle(root)  # the user's consent to its code (tested below)
    return root


def balanceClasses(network: torch.nn.Module, image: torch.Tensor) -> None:
    """Subtract each class's mean score on ``image`` (the bundle's preprocessed sample, at 64^3) from the bias of the
    output layer, so that every class wins somewhere."""
    image = torch.as_tensor(image).float()
    if getattr(network, "dimensions", 3) == 2:  # a 2D network: its slices (along the last axis) as a batch
        small = torch.nn.functional.interpolate(image.permute(3, 0, 1, 2), size=(64, 64), mode="bilinear")
    else:
        small = torch.nn.functional.interpolate(image[None], size=(64, 64, 64), mode="trilinear")
    with torch.no_grad():
        scores = network(small)
        bias = [p for n, p in network.named_parameters() if n.endswith("bias") and p.shape == (scores.shape[1],)][-1]
        bias -= scores.mean(dim=[0, *range(2, scores.ndim)])


def monaiWorkflow(root: Path, image: Path, output: Path) -> np.ndarray:
    """The oracle: the bundle's inference config run by MONAI's ConfigWorkflow on ``image``, overriding only the
    input list, the output folder and the device (as ``python -m monai.bundle run`` users do); its written labels."""
    from monai.bundle import ConfigWorkflow

    path = list(sys.path)
    try:
        workflow = ConfigWorkflow(config_file=str(root / "configs" / "inference.json"),
                                  meta_file=str(root / "configs" / "metadata.json"), workflow_type="infer",
                                  bundle_root=str(root), datalist=[str(image)], output_dir=str(output),
                                  device="$torch.device('cpu')", run_id=RUN_IDS.get(root.name, "run"))
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    finally:
        sys.path[:] = path
    import nibabel as nib

    written = glob.glob(str(output / "**" / "*.nii.gz"), recursive=True)
    assert len(written) == 1, written
    # prostate_mri_anatomy interpolates its label map linearly (Invertd nearest_interp false): the nearest label
    return np.rint(np.asarray(nib.load(written[0]).dataobj)).astype(np.int64)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Bundles, phantoms and the oracle's labels, made once per module on first use."""
    folder = tmp_path_factory.mktemp("modelzoo")
    made = {}

    def get(name: str, grid: str):
        if (name, grid) not in made:
            image = phantom(BUNDLES[name][0], grid, name, folder)
            if name not in made:
                made[name] = makeBundle(name, folder, image)
            started = time.monotonic()
            labels = monaiWorkflow(made[name], image, folder / f"oracle_{name}_{grid}")
            made[name, grid] = (image, labels, time.monotonic() - started)
        trustBundle(made[name])  # each test has a MedDL home (and trust file) of its own
        return made[name], made[name, grid]

    return get


def dicePerLabel(ours: np.ndarray, reference: np.ndarray) -> dict[int, float]:
    """Dice of every label present in either map (background excluded)."""
    scores = {}
    for value in sorted((set(np.unique(ours)) | set(np.unique(reference))) - {0}):
        a, b = ours == value, reference == value
        scores[int(value)] = 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())
    return scores


def labelsOf(segmentation, volume, names: list[str]) -> np.ndarray:
    """The segmentation as bundle channel indices on the volume's grid (``names``: the bundle's channels 1..n)."""
    labels, segmentNames, _ = tensorFromSegmentation(segmentation, volume)
    lookup = np.array([0] + [names.index(n) + 1 for n in segmentNames])
    return lookup[labels.numpy()]


def checkAgreement(name: str, grid: str, ours: np.ndarray, reference: np.ndarray, seconds: dict) -> None:
    """Dice >= 0.99 for every label. The maps are equal in the common case; they may differ at a few near-ties
    because MONAI's DataLoader worker preprocesses with one thread (measured: wholeBody LPS, 2 of 344064 voxels; the
    normalised image differs by <= 4e-7 between one and two threads; with ``dataloader#num_workers=0`` MONAI's
    labels equal MedDL's)."""
    assert ours.shape == reference.shape
    dice = dicePerLabel(ours, reference)
    equal = float((ours == reference).mean())
    AGREEMENT[name, grid] = {"labels": len(dice), "minDice": min(dice.values()), "equalVoxels": equal, **seconds}
    print(f"\n{name} {grid}: {len(dice)} labels, min Dice {min(dice.values()):.4f}, equal voxels {equal:.4%}, {seconds}")
    assert len(np.unique(reference)) >= 2 and dice, f"the test image should make several classes win, got {dice}"
    assert min(dice.values()) >= 0.99, {k: v for k, v in dice.items() if v < 0.99}


# --- the loader step bypassed ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"ensure_channel_first": True}, {"image_only": False}], ids=str)
def test_volume_stands_in_for_loadimaged_as_it_reads_the_file(tmp_path, scene, options):
    """The volume node loaded from a NIfTI gives what ``LoadImaged`` gives for that file: voxels, dtype, shape, the
    affine (to the bit: Slicer's round-off removed), and the meta that EnsureChannelFirstd / Orientationd / Invertd
    read."""
    from monai.transforms import LoadImaged

    from DLCommon import tensorFromVolume
    from DLCommon.bundles import _VolumeAsLoaded

    path = phantom("CT", "LPS", "spleen_ct_segmentation", tmp_path)
    loader = LoadImaged(keys="image", **options)
    expected = loader({"image": str(path)})
    ours = _VolumeAsLoaded(loader)({"image": tensorFromVolume(loadVolume(path, scene))})
    assert set(ours) == set(expected)
    a, b = ours["image"], expected["image"]
    assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.as_tensor(), b.as_tensor())
    assert torch.equal(a.affine, b.affine)
    for key in ("original_affine", "spatial_shape"):
        np.testing.assert_array_equal(np.asarray(a.meta[key]), np.asarray(b.meta[key]), err_msg=key)
    assert str(a.meta["space"]) == str(b.meta["space"]) == "RAS"
    assert str(a.meta["original_channel_dim"]) == str(b.meta["original_channel_dim"])


# --- agreement with MONAI's workflow -------------------------------------------------------------------------------

CASES = [pytest.param(name, grid, marks=[pytest.mark.slow] if (name, grid) in SLOW else [], id=f"{name}-{grid}")
         for name in BUNDLES for grid in ("LPS", "RAS")]


@pytest.mark.parametrize("name, grid", CASES)
def test_bundle_agrees_with_monai_workflow(zoo, scene, name, grid):
    """``SegmentationLogic.segment`` (the Python API, volume node in, segmentation node out) on the bundle folder."""
    from DLCommon.bundles import stableColor
    from DLSegmentLib.logic import SegmentationLogic

    root, (image, reference, oracleSeconds) = zoo(name, grid)
    volume = loadVolume(image, scene)
    withProbabilities = name == "spleen_ct_segmentation" and grid == "RAS"
    if withProbabilities:  # Slicer's anatomy colour table: a matching name takes its colour
        table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "GenericAnatomyColors")
        table.SetTypeToUser()
        table.SetNumberOfColors(2)
        table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        table.SetColor(1, "Spleen", 0.62, 0.42, 0.64, 1.0)
    started = time.monotonic()
    output = SegmentationLogic(scene).segment(volume, str(root), device="cpu", probabilityVolumes=withProbabilities)
    seconds = {"meddl_s": round(time.monotonic() - started, 1), "monai_s": round(oracleSeconds, 1)}
    names = json.loads((root / "configs" / "metadata.json").read_text())["network_data_format"]["outputs"]["pred"][
        "channel_def"]
    names = [names[str(i)] for i in range(1, len(names))]
    ours = labelsOf(output.segmentation, volume, names)
    checkAgreement(name, grid, ours, reference, seconds)
    segments = output.segmentation.GetSegmentation()
    assert [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())] == names
    if name == "prostate_mri_anatomy" and grid == "LPS":  # away from its grid: fractional labels, rounded, and said
        assert any("fractional labels" in w for w in output.warnings)
    if withProbabilities:
        assert segments.GetNthSegment(0).GetColor() == pytest.approx((0.62, 0.42, 0.64), abs=1 / 255)  # 8-bit table
        from DLCommon import tensorFromVolume

        foreground = tensorFromVolume(output.probabilities[0])[0].numpy()
        assert foreground.shape == ours.shape and 0 <= foreground.min() and foreground.max() <= 1
        # the spleen bundle inverts its probabilities (linearly) before its argmax: they give its labels
        assert np.array_equal(foreground > 0.5, ours == 1)
    else:
        assert segments.GetNthSegment(0).GetColor() == pytest.approx(stableColor(names[0]), abs=1e-6)


def test_meddl_segment_runs_a_bundle_zip(zoo, tmp_path, scene):
    """``meddl segment --model <bundle.zip>`` goes through the same job: the bundle's own labels, and probabilities."""
    from DLCommon.cli import main

    name = "spleen_ct_segmentation"
    root, (image, reference, _) = zoo(name, "LPS")
    archive = shutil.make_archive(str(tmp_path / name), "zip", root.parent, root.name)
    output, probabilities = tmp_path / "out.seg.nrrd", tmp_path / "p.nrrd"
    assert main(["segment", "--model", archive, "--input", str(image), "--output", str(output),
                 "--probabilities", str(probabilities), "--device", "cpu"]) == 0
    volume = loadVolume(image, scene)
    ours = labelsOf(loadSegmentation(output, scene), volume, ["spleen"])
    checkAgreement(name, "LPS via meddl segment", ours, reference, {})
    import SimpleITK as sitk

    scores = sitk.GetArrayFromImage(sitk.ReadImage(str(probabilities))).transpose(3, 2, 1, 0)  # (C, I, J, K)
    assert scores.shape == (2,) + ours.shape
    np.testing.assert_allclose(scores.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(scores[1] > 0.5, ours == 1)  # the bundle inverts its probabilities before its argmax


@pytest.mark.slow
def test_bundle_job_in_a_child_process_equals_the_in_process_run(zoo, scene):
    """The DL Segment panel's Apply on a bundle, run as Slicer runs it (plan and work in a ``meddl`` child, apply here):
    the same labels as in this process, and the progress reaches 1."""
    from conftest import settingsOf

    from DLCommon.jobs import JobState
    from DLCommon.modules import moduleByPackage
    from DLCommon.process import childProcessJob

    root, (image, reference, _) = zoo("spleen_ct_segmentation", "LPS")
    volume = loadVolume(image, scene)
    description = moduleByPackage("DLSegmentLib")
    p = settingsOf(description, inputVolume=volume, modelId=str(root))
    job = childProcessJob(description, "apply", description.makeEngine(scene), p)
    job.start()
    assert job.wait(600), "the child did not finish"
    assert job.state == JobState.SUCCEEDED, job.error
    fractions = [r["fraction"] for r in job.records if "fraction" in r]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    checkAgreement("spleen_ct_segmentation", "LPS in a child process", labelsOf(job.output.segmentation, volume,
                                                                             ["spleen"]), reference, {})


# --- bundles that cannot run ---------------------------------------------------------------------------------------

def brokenBundle(folder: Path, name: str, edit) -> Path:
    """A copy of a stored Model Zoo bundle with ``edit(config)`` applied and an (unused) weights file."""
    root, _ = zooCopy(name, folder)
    config = json.loads((root / "configs" / "inference.json").read_text())
    text = edit(config)  # the edited config, or a text to write instead
    (root / "configs" / "inference.json").write_text(text if isinstance(text, str) else json.dumps(config))
    torch.save({}, root / "models" / "model.pt")
    with contextlib.suppress(DLError):  # trusted, so that its other faults show (an unreadable one cannot be)
        trustBundle(root)
    return root


def unknownTarget(config):
    config["preprocessing"]["transforms"][3]["_target_"] = "SpacingWithMagicd"


def badReference(config):
    config["preprocessing"]["transforms"][3]["pixdim"] = "@voxel_size"


def badExpression(config):
    config["inferer"]["roi_size"] = "$[96] * three"


def truncated(config):
    return json.dumps(config)[:-40]


UNRUNNABLE = {
    # the Model Zoo's 2024 config as it is: SwinUNETR lost img_size in MONAI 1.5
    "network argument": ("swin_unetr_btcv_segmentation", None,
                         r"Bundle 'swin_unetr_btcv_segmentation' config key 'network_def' cannot be built: .*img_size.*"
                         r"MONAI 1\.6.*Fix: use a version of the bundle made for MONAI 1\.6.*pip install monai==1\.4\.0"),
    "unknown target": ("spleen_ct_segmentation", unknownTarget,
                       r"config key 'preprocessing#transforms#3' has an unknown _target_ 'SpacingWithMagicd'.*"
                       r"Fix: .*monai==1\.4\.0"),
    "broken reference": ("spleen_ct_segmentation", badReference,
                         r"config key 'preprocessing#transforms#3#pixdim' is broken .*@voxel_size.*Fix: repair"),
    "broken expression": ("spleen_ct_segmentation", badExpression,
                          r"config key 'inferer#roi_size' is broken .*three.*Fix: repair"),
    "unreadable file": ("spleen_ct_segmentation", truncated,
                        r"inference.json' is not a readable bundle config .*Fix: repair the file"),
}


@pytest.mark.parametrize("case", sorted(UNRUNNABLE))
def test_unrunnable_bundle_says_why_and_adds_nothing(tmp_path, scene, case, capsys):
    from DLCommon.catalog import ModelCatalog
    from DLCommon.cli import main
    from DLSegmentLib.logic import SegmentationLogic

    name, edit, message = UNRUNNABLE[case]
    root = brokenBundle(tmp_path, name, edit or (lambda config: None))
    volume = loadVolume(phantom("CT", "RAS", "spleen_ct_segmentation", tmp_path), scene)
    nodes, entries = scene.GetNumberOfNodes(), dict(ModelCatalog().entries)
    with pytest.raises(DLError, match=message):
        SegmentationLogic(scene).segment(volume, str(root), device="cpu")
    assert scene.GetNumberOfNodes() == nodes and dict(ModelCatalog().entries) == entries
    output = tmp_path / "out.seg.nrrd"
    assert main(["segment", "--model", str(root), "--input", str(tmp_path / "spleen_ct_segmentation_RAS.nii.gz"),
                 "--output", str(output)]) == 2
    assert not output.exists() and name in capsys.readouterr().err


def test_missing_optional_package_names_it(zoo, scene, monkeypatch):
    """prostate_mri_anatomy's KeepLargestConnectedComponentd needs scikit-image: without it, the bundle is refused
    when loaded (not after its network ran), with the package and the version the bundle names."""
    from DLCommon import loadModel

    root, (image, _, _) = zoo("prostate_mri_anatomy", "LPS")
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage now fails, as where it is not installed
    with pytest.raises(DLError, match=r"Bundle 'prostate_mri_anatomy' config key 'postprocessing#transforms#1' needs "
                                      r"the Python package scikit-image \(KeepLargestConnectedComponentd needs it\).*"
                                      r"Fix: install it: pip install scikit-image"):
        loadModel(root)


# --- bundles with several inputs ----------------------------------------------------------------------------------

# name -> the volumes it takes (MedDL's names, the loader's keys) and two grids as above
MULTI = {
    # four MR sequences stacked as the channels of one key; sigmoid channels merged into the BraTS labels 1, 2, 4.
    # Its window is 240x240x160 (40-50 s per forward on 2 CPU cores), so it runs with -m slow
    "brats_mri_segmentation": (("T1c", "T1", "T2", "FLAIR"),
                               {"LPS": ((-1, -1, 1), (1.2, 1.2, 1.5), (48, 44, 28)),
                                "RAS": ((1, 1, 1), (1.0, 1.0, 1.0), (52, 48, 36))}),
    # three CT phases under keys of their own, concatenated by the bundle's scripts/my_transforms.py; it also loads
    # a label key (optional in MedDL: the oracle is given an empty one)
    "renalStructures_CECT_segmentation": (("artery", "vein", "excret"),
                                          {"LPS": ((-1, -1, 1), (0.7, 0.7, 1.0), (64, 60, 36)),
                                           "RAS": ((1, 1, 1), (0.8, 0.8, 0.8), (56, 52, 40))}),
}


def worldGrid(signs, spacing, shape):
    """The affine of a grid centred on the RAS origin, and the RAS coordinates x, y, z of its voxels (flattened)."""
    affine = np.diag([*(s * d for s, d in zip(signs, spacing)), 1.0])
    extent = np.array(spacing) * (np.array(shape) - 1)
    affine[:3, 3] = [-s * e / 2 for s, e in zip(signs, extent)]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    return (affine, *(ijk @ affine[:3, :3].T + affine[:3, 3]).T)


def multiPhantom(name: str, grid: str, folder: Path) -> dict[str, Path]:
    """One NIfTI per input, same grid: a brain with a tumour (an enhancing rim on T1c, a necrotic core, oedema bright
    on T2 and FLAIR), or an abdomen in three contrast phases (an aorta bright in the arterial phase, a vena cava in the
    venous one, a kidney whose collecting system fills in the excretory one). Noise makes outputs vary per voxel."""
    import nibabel as nib

    names, grids = MULTI[name]
    affine, x, y, z = worldGrid(*grids[grid])
    shape = grids[grid][2]
    rng = np.random.default_rng(11)
    paths = {}
    if name.startswith("brats"):
        brain = (x / 24) ** 2 + (y / 22) ** 2 + (z / 17) ** 2 < 1
        r = np.sqrt(((x - 6) / 8) ** 2 + ((y - 4) / 7) ** 2 + ((z + 2) / 6) ** 2)
        levels = {"T1c": (600, 1400, 300, 500), "T1": (600, 450, 350, 500), "T2": (500, 900, 1300, 1100),
                  "FLAIR": (400, 700, 600, 1000)}  # tissue, enhancing rim, necrotic core, oedema
        for sequence in names:
            tissue, rim, core, oedema = levels[sequence]
            values = np.where(brain, tissue * (1 + 0.003 * y), 0.0)
            values = np.where(brain & (r < 2.0), oedema, values)
            values = np.where(r < 1.0, rim, values)
            values = np.where(r < 0.6, core, values)
            values = np.clip(values + rng.normal(0, 40, values.shape) * brain, 0, None)
            path = folder / f"{name}_{grid}_{sequence}.nii.gz"
            nib.Nifti1Image(values.reshape(shape).astype(np.float32), affine).to_filename(str(path))
            paths[sequence] = path
    else:
        body = (x / 30) ** 2 + (y / 24) ** 2 < 1
        aorta, cava = np.hypot(x + 4, y + 8) < 5, np.hypot(x - 8, y + 8) < 6
        kidney = ((x + 14) / 7) ** 2 + ((y - 4) / 9) ** 2 + (z / 13) ** 2 < 1
        pelvis = ((x + 12) / 2.5) ** 2 + ((y - 4) / 3) ** 2 + (z / 6) ** 2 < 1
        levels = {"artery": (50, 320, 120, 160, 30), "vein": (60, 170, 190, 200, 40), "excret": (60, 110, 120, 150, 700)}
        for phase in names:
            tissue, inAorta, inCava, inKidney, inPelvis = levels[phase]
            values = np.where(body, tissue, -1000.0)
            for mask, value in ((aorta, inAorta), (cava, inCava), (kidney, inKidney), (pelvis, inPelvis)):
                values = np.where(mask, value, values)
            values = values + rng.normal(0, 15, values.shape)
            path = folder / f"{name}_{grid}_{phase}.nii.gz"
            nib.Nifti1Image(np.round(values).reshape(shape).astype(np.int16), affine).to_filename(str(path))
            paths[phase] = path
        label = folder / f"{name}_{grid}_label.nii.gz"  # the oracle's config loads a label key: an empty one
        nib.Nifti1Image(np.zeros(shape, np.uint8), affine).to_filename(str(label))
        paths["label"] = label
    return paths


def multiData(name: str, paths: dict[str, Path]) -> dict:
    """The data list entry MONAI's workflow reads for these files."""
    if name.startswith("brats"):
        return {"image": [str(paths[n]) for n in MULTI[name][0]]}
    return {key: str(path) for key, path in paths.items()}


def multiOracle(name: str, root: Path, paths: dict[str, Path], output: Path) -> np.ndarray:
    """MONAI's ConfigWorkflow on the files, overriding the data list, the output folder and the device only."""
    from monai.bundle import ConfigWorkflow

    overrides = ({"test_datalist": [multiData(name, paths)]} if name.startswith("brats")  # its run id: "inference"
                 else {"dataset#data": [multiData(name, paths)], "dataset_dir": str(paths["label"].parent),
                       "run_id": "inference"})
    path = list(sys.path)
    try:
        workflow = ConfigWorkflow(config_file=str(root / "configs" / "inference.json"),
                                  meta_file=str(root / "configs" / "metadata.json"), workflow_type="infer",
                                  bundle_root=str(root), output_dir=str(output), device="$torch.device('cpu')",
                                  **overrides)
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    finally:
        sys.path[:] = path
        for module in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[module]
    import nibabel as nib

    first = Path(paths[MULTI[name][0][0]]).name.replace(".nii.gz", "")
    written = [p for p in glob.glob(str(output / "**" / "*.nii.gz"), recursive=True) if first in Path(p).name]
    assert len(written) == 1, written
    return np.rint(np.asarray(nib.load(written[0]).dataobj)).astype(np.int64)


MULTI_CASES = [pytest.param(name, grid, marks=[pytest.mark.slow] if name.startswith("brats") else [],
                            id=f"{name}-{grid}") for name in MULTI for grid in ("LPS", "RAS")]


@pytest.mark.parametrize("name, grid", MULTI_CASES)
def test_multi_input_bundle_agrees_with_monai_workflow(tmp_path, scene, name, grid):
    """Each input mapped to a volume node (``otherInputs``, as the panel's input rows give them): the bundle's own
    labels, segment names and probabilities, on the first input's grid."""
    from DLCommon import tensorFromVolume
    from DLCommon.bundles import loadBundle
    from DLSegmentLib.logic import SegmentationLogic

    paths = multiPhantom(name, grid, tmp_path)
    root = makeBundle(name, tmp_path, multiData(name, paths))
    assert loadBundle(root).volumeNames == list(MULTI[name][0]) + ([] if name.startswith("brats") else ["label"])
    started = time.monotonic()
    reference = multiOracle(name, root, paths, tmp_path / "oracle")
    oracleSeconds = time.monotonic() - started
    names = MULTI[name][0]
    volumes = {n: loadVolume(paths[n], scene) for n in names}
    started = time.monotonic()
    output = SegmentationLogic(scene).segment(volumes[names[0]], str(root), device="cpu", probabilityVolumes=True,
                                              otherInputs={n: volumes[n] for n in names[1:]})
    seconds = {"meddl_s": round(time.monotonic() - started, 1), "monai_s": round(oracleSeconds, 1)}
    assert reference.shape == tuple(tensorFromVolume(volumes[names[0]]).shape[1:])
    segments = output.segmentation.GetSegmentation()
    segmentNames = [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]
    if name.startswith("brats"):  # the BraTS label values, named by value (the metadata names channels, not labels)
        values = sorted(int(v) for v in np.unique(reference) if v > 0)
        assert segmentNames == [f"label {v}" for v in values], segmentNames
        assert any("label values" in w for w in output.warnings)
        ours = labelsOf(output.segmentation, volumes[names[0]], segmentNames)
        ours = np.array([0] + values)[ours]
        channelNames = ["Tumor core", "Whole tumor", "Enhancing tumor"]  # independent sigmoid channels
    else:
        channelNames = ["artery", "vein", "ureter", "neoplasm", "parenchyma"]
        assert segmentNames == channelNames
        ours = labelsOf(output.segmentation, volumes[names[0]], channelNames)
    checkAgreement(name, grid, ours, reference, seconds)
    assert [node.GetName().split("p(")[-1].rstrip(")") for node in output.probabilities] == channelNames
    assert output.exclusive is False
    for node in output.probabilities:
        values = tensorFromVolume(node)[0].numpy()
        assert values.shape == ours.shape and 0 <= values.min() and values.max() <= 1
        assert values.min() < 0.5 < values.max()  # independent channels, each on somewhere


def test_multi_input_bundle_mapping_errors(tmp_path, scene, capsys):
    """A missing input, a name the bundle does not take, an extra panel row: a clear error naming the inputs, and
    nothing added; ``meddl segment --input NAME=FILE`` runs the same job, the first input's grid kept."""
    from DLCommon.cli import main
    from DLSegmentLib.logic import SegmentationLogic

    name = "renalStructures_CECT_segmentation"
    paths = multiPhantom(name, "LPS", tmp_path)
    root = makeBundle(name, tmp_path, multiData(name, paths))
    artery, vein, excret = (loadVolume(paths[n], scene) for n in ("artery", "vein", "excret"))
    logic, nodes = SegmentationLogic(scene), scene.GetNumberOfNodes()
    with pytest.raises(DLError, match=r"takes 3 input volumes \(artery, vein, excret\); excret was not given.*"
                                      r"--input excret=FILE"):
        logic.segment(artery, str(root), device="cpu", otherInputs={"vein": vein})
    with pytest.raises(DLError, match=r"takes no input named 'portal'.*name its inputs: artery, vein, excret, label"):
        logic.segment(artery, str(root), device="cpu", otherInputs={"vein": vein, "excret": excret, "portal": vein})
    with pytest.raises(DLError, match=r"Input 5 is set too"):
        logic.segment(artery, str(root), device="cpu", otherInputs=[vein, excret, None, vein])
    assert scene.GetNumberOfNodes() == nodes
    output = tmp_path / "out.seg.nrrd"
    assert main(["segment", "--model", str(root), "--input", f"vein={paths['vein']}", "--input", str(paths["artery"]),
                 "--output", str(output), "--device", "cpu"]) == 2
    assert "excret was not given" in capsys.readouterr().err and not output.exists()
    assert main(["segment", "--model", str(root), "--input", f"artery={paths['artery']}", "--input",
                 f"vein={paths['vein']}", "--input", f"excret={paths['excret']}", "--output", str(output),
                 "--device", "cpu"]) == 0
    ours = logic.segment(artery, str(root), device="cpu", otherInputs=[vein, excret])  # the panel's rows, by position
    from DLCommon.storage import loadSegmentation

    saved = labelsOf(loadSegmentation(output, scene), artery, ["artery", "vein", "ureter", "neoplasm", "parenchyma"])
    inPanel = labelsOf(ours.segmentation, artery, ["artery", "vein", "ureter", "neoplasm", "parenchyma"])
    assert np.array_equal(saved, inPanel) and len(np.unique(saved)) >= 2


# --- trust: a bundle's code runs only with the user's consent --------------------------------------------------

def untrustedBundle(folder: Path, name: str = "renalStructures_CECT_segmentation") -> Path:
    """A Model Zoo bundle with random weights (unbalanced: nothing is run) whose code nobody has trusted yet."""
    root, parser = zooCopy(name, folder)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    return root


def test_untrusted_bundle_shows_its_code_and_runs_nothing(tmp_path, scene, capsys, monkeypatch):
    """Loading, segmenting with or importing a bundle nobody trusted: a DLError listing its imports, expressions,
    non-MONAI targets and scripts with its code SHA-256, no code run (its scripts are not imported), nothing added."""
    from DLCommon.bundletrust import codeSha256
    from DLCommon.catalog import ModelCatalog
    from DLCommon.cli import main
    from DLSegmentLib.logic import SegmentationLogic

    root = untrustedBundle(tmp_path)
    archive = Path(shutil.make_archive(str(tmp_path / "renal"), "zip", root.parent, root.name))
    digest = codeSha256(root)
    volume = loadVolume(phantom("CT", "RAS", "spleen_ct_segmentation", tmp_path), scene)
    nodes, entries = scene.GetNumberOfNodes(), dict(ModelCatalog().entries)
    monkeypatch.delitem(sys.modules, "scripts", raising=False)
    message = (r"Bundle 'renalStructures_CECT_segmentation' runs Python code when it is loaded: imports \$import glob, "
               r"\$import os; 12 '\$' expression\(s\) .*2 target\(s\) outside MONAI \(scripts\.my_transforms\."
               r"ConcatImages, scripts\.my_transforms\.MergeClassesd\); Python files scripts/__init__\.py, "
               rf"scripts/download_data\.py, scripts/my_transforms\.py\. It is not trusted yet \(code SHA-256 {digest}\)"
               rf".*Fix: review it \(meddl models inspect .*--trust-bundle \(or --trust-bundle {digest}\)")
    with pytest.raises(DLError, match=message):
        SegmentationLogic(scene).segment(volume, str(root), device="cpu")
    with pytest.raises(DLError, match=message.split(" It is")[0]):
        ModelCatalog().importFile(archive)
    assert "scripts" not in sys.modules, "the bundle's scripts were imported"
    assert main(["models", "import", str(archive)]) == 2  # no terminal to ask on: refused
    assert scene.GetNumberOfNodes() == nodes and dict(ModelCatalog().entries) == entries
    capsys.readouterr()
    assert main(["models", "inspect", str(archive)]) == 0
    listing = capsys.readouterr().out
    assert f"code SHA-256 {digest}" in listing and "trusted: no" in listing
    assert "expression  images: $[{'artery':a" in listing and "target      preprocessing#transforms#4: " \
        "scripts.my_transforms.ConcatImages" in listing and "file        scripts/my_transforms.py" in listing


def test_trust_is_recorded_per_code_checksum(tmp_path, scene, capsys):
    """``--trust-bundle`` (or the code SHA-256) records consent; the import then loads the bundle and records its
    inputs; a bundle whose code changed asks again; a wrong checksum is refused."""
    from DLCommon.bundletrust import codeSha256, isTrusted
    from DLCommon.catalog import ModelCatalog
    from DLCommon.cli import main

    root = untrustedBundle(tmp_path)
    archive = Path(shutil.make_archive(str(tmp_path / "renal"), "zip", root.parent, root.name))
    assert main(["models", "import", str(archive), "--id", "renal", "--trust-bundle", "0" * 64]) == 2
    assert "not the code that was reviewed" in capsys.readouterr().err and "renal" not in ModelCatalog().entries
    assert main(["models", "import", str(archive), "--id", "renal", "--trust-bundle", codeSha256(root)]) == 0
    spec = ModelCatalog().get("renal").spec
    assert spec["options"]["bundle"]["inputs"] == ["artery", "vein", "excret", "label"]
    assert spec["labelNames"] == ["artery", "vein", "ureter", "neoplasm", "parenchyma"]
    from DLSegmentLib.parameters import modelInputNames

    assert modelInputNames("renal") == ["artery", "vein", "excret", "label"]  # the panel's input rows
    capsys.readouterr()
    assert main(["models", "list"]) == 0 and "(inputs: artery, vein, excret, label)" in capsys.readouterr().out
    assert webInputRows("renal") == [("artery", True), ("vein", True), ("excret", True), ("label", True)]
    assert webInputRows("") == [("Input volume", True), ("Input 2", False), ("Input 3", False), ("Input 4", False)]
    assert isTrusted(root)
    config = root / "configs" / "inference.json"  # one expression changed: new code, a new consent
    config.write_text(config.read_text().replace("'/eval'", "'/elsewhere'"))
    assert not isTrusted(root)
    image = phantom("CT", "RAS", "spleen_ct_segmentation", tmp_path)
    command = ["--dry-run", "segment", "--model", str(root), "--output", str(tmp_path / "out.seg.nrrd"),
               *(f"--input={name}={image}" for name in ("artery", "vein", "excret"))]
    assert main(command) == 2
    assert "It is not trusted yet" in capsys.readouterr().err
    assert main(command + ["--trust-bundle"]) == 0 and isTrusted(root)
    assert '"fits": true' in capsys.readouterr().out.replace(" ", " ")


def webInputRows(modelId: str) -> list[tuple[str, bool]]:
    """The DL Segment web panel's input rows (label, shown) once ``modelId`` is selected (its state, no browser)."""
    import types

    from conftest import TrameState

    from DLCommon.modules import moduleByPackage
    from DLCommon.web.panel import ModulePanel

    state = TrameState()
    panel = ModulePanel(types.SimpleNamespace(server=types.SimpleNamespace(state=state)), moduleByPackage("DLSegmentLib"))
    state["segment_modelId"] = modelId
    state.handlers["segment_modelId"]()  # what trame calls when the page changes the model
    names = ["inputVolume", "inputVolume2", "inputVolume3", "inputVolume4"]
    assert list(panel._inputRows()) == names
    return [(state[f"segment_{n}_label"], state[f"segment_{n}_shown"]) for n in names]


def test_zz_report_agreement():
    """Print the agreement table of the cases that ran (pytest -s), for RESULTS / the issue."""
    for (name, grid), numbers in sorted(AGREEMENT.items()):
        print(f"{name:28s} {grid:24s} {numbers}")
