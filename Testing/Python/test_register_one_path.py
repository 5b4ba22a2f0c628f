"""One path per job for DL Register: ``meddl register`` and ``meddl train-register`` (and their ``--dry-run``) run
the job ``RegistrationLogic`` makes for the panel, so the same settings give the same outputs and warnings through
the command line and through the logic; the settings' defaults are the panel's (one definition, config.py).

Tiny phantoms (conftest ``addCase``: 36 x 32 x 28 voxels), a few iterations / epochs, on the CPU.
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from conftest import addCase

from DLCommon import saveNode, tensorFromSegmentation, tensorFromVolume
from DLCommon.cli import buildParser, main
from DLCommon.parameters import defaults
from DLCommon.storage import loadSegmentation, loadTransform, loadVolume
from DLCommon.transforms import displacementFromTransform

FLOAT_ATOL = 1e-5  # the same run twice on the CPU (fixed seed, same thread count)
FEW = ["--iterations", "6", "4"]  # deformable iterations of two levels: a second or so on these phantoms


@pytest.fixture(autouse=True)
def oneThread():
    """One torch thread: on these tiny grids the fastest (no per-operation thread hand-off, which on a loaded
    2-core machine costs more than the arithmetic), and both runs of a comparison use the same count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def command(name: str):
    action = next(a for a in buildParser()._actions if a.dest == "command")
    return action.choices[name]


@pytest.fixture
def files(scene, tmp_path):
    """Two phantom volumes (different ball / box positions) and their segmentations, as files."""
    paths = {}
    for role, seed in (("fixed", 1), ("moving", 2)):
        volume, segmentation, _ = addCase(scene, seed, name=role)
        paths[role] = saveNode(volume, tmp_path / f"{role}.nrrd")
        paths[role + "Labels"] = saveNode(segmentation, tmp_path / f"{role}.seg.nrrd")
    return paths


def spyOnJobs(monkeypatch) -> list[str]:
    """Record each RegistrationLogic job made (the commands must go through them)."""
    from DLRegisterLib.logic import RegistrationLogic

    made = []
    for name in ("registerJob", "trainJob"):
        original = getattr(RegistrationLogic, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            made.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(RegistrationLogic, name, spy)
    return made


def warningsOf(stderr: str) -> list[str]:
    return [line.split(": ", 3)[-1] for line in stderr.splitlines() if line.startswith("meddl: warning")]


def test_the_commands_defaults_are_the_panels():
    """With no setting given, ``meddl register`` / ``train-register`` build the config the panel builds from its
    defaults (the panel's one iterations number and -1 "auto" weight included)."""
    from DLRegisterLib import MODULE, cli, parameters
    from DLRegisterLib.config import RegistrationConfig, RegistrationTrainingConfig

    panel = types.SimpleNamespace(**defaults(MODULE.parameters))
    args = command("register").parse_args(["--fixed", "f.nrrd", "--moving", "m.nrrd", "--output-transform", "t.h5"])
    assert cli.registrationConfigFrom(args) == parameters.registrationConfig(panel) == RegistrationConfig()
    args = command("train-register").parse_args(["--images", "a.nrrd", "b.nrrd", "--output-model", "m"])
    logic = types.SimpleNamespace(trainJob=lambda volumes, segmentations, config, **options: config)
    assert cli.trainingConfigFrom(args) == parameters.trainJob(logic, panel) == RegistrationTrainingConfig()
    # and a panel's non-default choice reaches the config as the flag's does
    panel.iterations, panel.regularisationWeight, panel.fieldModel = 50, 12.0, "svf"
    args = command("register").parse_args(["--fixed", "f", "--moving", "m", "--output-transform", "t.h5",
                                           "--iterations", "50", "40", "20", "--regularisation-weight", "12",
                                           "--field", "svf"])
    assert cli.registrationConfigFrom(args) == parameters.registrationConfig(panel)


def test_out_of_range_settings_are_refused_before_any_loading(tmp_path, capsys):
    from DLCommon.errors import SettingError
    from DLRegisterLib.config import RegistrationConfig, RegistrationTrainingConfig

    for config, name in ((RegistrationConfig(iterations=(100, -1, 40)), "iterations"),
                         (RegistrationConfig(regularisationWeight=-2.0), "regularisationWeight"),
                         (RegistrationConfig(similarity="ncc"), "similarity"),
                         (RegistrationTrainingConfig(shape=(64, 60, 64)), "shape"),
                         (RegistrationTrainingConfig(epochs=0), "epochs")):
        with pytest.raises(SettingError, match=f"Setting '{name}'"):
            config.validate()
    missing = str(tmp_path / "missing.nrrd")  # the setting is refused first: no file is read
    assert main(["register", "--fixed", missing, "--moving", missing, "--output-transform", str(tmp_path / "t.h5"),
                 "--label-weight", "20"]) == 2
    assert "Setting 'labelWeight' is 20.0; it must be from 0 to 10" in capsys.readouterr().err
    assert main(["train-register", "--images", missing, missing, "--output-model", str(tmp_path / "m"),
                 "--shape", "16", "20", "16"]) == 2
    assert "Setting 'shape'" in capsys.readouterr().err


def untrainedModel(folder) -> str:
    """A small LocalNet checkpoint (its dense head starts at zero: the centre-of-mass start alone)."""
    from monai.networks.nets import LocalNet

    from DLCommon import saveCheckpoint
    from DLCommon.models import ModelSpec

    torch.manual_seed(0)
    args = {"spatial_dims": 3, "in_channels": 2, "num_channel_initial": 4, "extract_levels": [0, 1, 2, 3],
            "out_activation": None, "out_channels": 3, "out_kernel_initializer": "zeros"}
    spec = ModelSpec(name="tiny-reg", task="registration", inputChannels=2, roiSize=[16, 16, 16])
    return str(saveCheckpoint(LocalNet(**args), folder / "tiny-reg.pt", "LocalNet", args, spec))


# (meddl register flags, the same settings for RegistrationLogic.registerJob) per case; {fixed}... are file paths
CASES = {
    "atlas, svf, Jacobian, report": (
        ["--field", "svf", "--moving-labels", "{movingLabels}", *FEW],
        lambda f: dict(config=dict(fieldModel="svf", iterations=(6, 4), levels=(2, 1)),
                       warpSegmentation=f["movingLabels"])),
    "masks, initial transform, label term": (
        ["--fixed-mask", "{fixedLabels}", "--moving-mask", "{movingLabels}", "--initial-transform", "{initial}",
         "--fixed-labels", "{fixedLabels}", "--moving-labels", "{movingLabels}", "--label-weight", "0.5",
         "--similarity", "ssd", "--regulariser", "diffusion", "--regularisation-weight", "2", *FEW],
        lambda f: dict(config=dict(similarity="ssd", regulariser="diffusion", regularisationWeight=2.0,
                                   labelWeight=0.5, iterations=(6, 4), levels=(2, 1)),
                       fixedMask=f["fixedLabels"], movingMask=f["movingLabels"], initialTransform=f["initial"],
                       fixedLabels=f["fixedLabels"], movingLabels=f["movingLabels"],
                       warpSegmentation=f["movingLabels"])),
    "a model's prediction, a cohort of pairs": (
        ["--model", "{model}", "--iterations", "0"],
        lambda f: dict(config=dict(iterations=(), levels=(), deformable=False), model=f["model"])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_meddl_register_equals_the_logic_on_the_same_settings(case, scene, files, tmp_path, capsys, monkeypatch):
    import vtk

    from DLRegisterLib.config import RegistrationConfig
    from DLRegisterLib.logic import RegistrationLogic

    shift = vtk.vtkMatrix4x4()  # a linear start: fixed -> moving, 2 mm along R
    shift.SetElement(0, 3, 2.0)
    initial = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    initial.SetMatrixTransformToParent(shift)
    files = dict(files, initial=saveNode(initial, tmp_path / "initial.h5"), model=untrainedModel(tmp_path))
    flags, logicOptions = CASES[case]
    out = tmp_path / "out"
    cohort = "cohort" in case  # one pair as a --pairs CSV: the cohort path runs the same job per pair
    if cohort:
        (tmp_path / "pairs.csv").write_text(f"fixed,moving\n{files['fixed']},{files['moving']}\n")
        inputs = ["--pairs", str(tmp_path / "pairs.csv"), "--output-transform", str(out / "t")]
        outputs = dict(transform=out / "t" / "moving_to_fixed.h5", warped=out / "w" / "moving_to_fixed.nrrd",
                       jacobian=out / "j" / "moving_to_fixed_jacobian.nrrd", report=out / "r" / "moving_to_fixed.json")
        inputs += ["--output-warped", str(out / "w"), "--jacobian", str(out / "j"), "--report", str(out / "r")]
    else:
        outputs = dict(transform=out / "t.h5", warped=out / "w.nrrd", jacobian=out / "j.nrrd",
                       report=out / "report.json", warpedLabels=out / "wl.seg.nrrd")
        inputs = ["--fixed", str(files["fixed"]), "--moving", str(files["moving"]),
                  "--output-transform", str(outputs["transform"]), "--output-warped", str(outputs["warped"]),
                  "--jacobian", str(outputs["jacobian"]), "--report", str(outputs["report"])]
        if "--moving-labels" in flags:
            inputs += ["--output-warped-labels", str(outputs["warpedLabels"])]
    made = spyOnJobs(monkeypatch)
    assert main(["register", *inputs, *[flag.format(**files) for flag in flags], "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    assert made == ["registerJob"]

    # the logic on the same files, with the same settings
    fixed, moving = loadVolume(files["fixed"], scene), loadVolume(files["moving"], scene)
    nodes = {"fixed": fixed, "moving": moving, "initial": loadTransform(files["initial"], scene),
             "model": files["model"]}
    nodes.update({key: loadSegmentation(files[key], scene) for key in ("fixedLabels", "movingLabels")})
    options = logicOptions(nodes)
    config = RegistrationConfig(**options.pop("config"), device="cpu")
    expected = RegistrationLogic(scene).registerJob(fixed, moving, config, jacobianVolume=True, **options).run()

    displacement = displacementFromTransform(loadTransform(outputs["transform"], scene), fixed)
    np.testing.assert_allclose(displacement, displacementFromTransform(expected.transform, fixed), atol=FLOAT_ATOL)
    for key, node in (("warped", expected.warpedVolume), ("jacobian", expected.jacobian)):
        np.testing.assert_allclose(tensorFromVolume(loadVolume(outputs[key], scene)), tensorFromVolume(node),
                                   atol=FLOAT_ATOL)
    if expected.warpedSegmentation is not None:
        cliLabels, cliNames, _ = tensorFromSegmentation(loadSegmentation(outputs["warpedLabels"], scene), fixed)
        labels, names, _ = tensorFromSegmentation(expected.warpedSegmentation, fixed)
        assert cliNames == names and torch.equal(cliLabels, labels)  # labels: exactly
    report = json.loads(outputs["report"].read_text())
    assert report.keys() == expected.report.keys() and ("model" in report) == ("--model" in flags)
    for key, value in expected.report.items():
        if key == "seconds":
            continue
        if isinstance(value, float):
            assert report[key] == pytest.approx(value, abs=FLOAT_ATOL), key
        else:
            assert report[key] == value, key
    assert warningsOf(printed.err) == expected.warnings


def test_a_folding_transform_is_warned_about_in_every_face(scene, files, tmp_path, capsys):
    """The result's warnings: the command prints the ones the logic's job gives (here: no regularisation and no
    affine stage fold the field)."""
    from DLRegisterLib.config import RegistrationConfig
    from DLRegisterLib.logic import RegistrationLogic

    assert main(["register", "--fixed", str(files["fixed"]), "--moving", str(files["moving"]), "--output-transform",
                 str(tmp_path / "t.h5"), "--regularisation-weight", "0", "--no-affine", "--device", "cpu",
                 "--iterations", "30"]) == 0
    printed = warningsOf(capsys.readouterr().err)
    fixed, moving = loadVolume(files["fixed"], scene), loadVolume(files["moving"], scene)
    config = RegistrationConfig(regularisationWeight=0.0, affine=False, iterations=(30,), levels=(1,), device="cpu")
    expected = RegistrationLogic(scene).register(fixed, moving, config)
    assert expected.report["foldingPercent"] > 1.0 and len(printed) == 1 and "folds" in printed[0]
    assert printed == expected.warnings


def test_dry_run_prints_the_jobs_estimate_and_writes_nothing(scene, files, tmp_path, capsys, monkeypatch):
    from DLCommon import resources
    from DLRegisterLib.config import RegistrationConfig, RegistrationTrainingConfig
    from DLRegisterLib.logic import RegistrationLogic

    made = spyOnJobs(monkeypatch)
    assert main(["--dry-run", "register", "--fixed", str(files["fixed"]), "--moving", str(files["moving"]),
                 "--output-transform", str(tmp_path / "out" / "t.h5"), "--device", "cpu", *FEW]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    fixed, moving = loadVolume(files["fixed"], scene), loadVolume(files["moving"], scene)
    config = RegistrationConfig(iterations=(6, 4), levels=(2, 1), device="cpu")
    expected = RegistrationLogic(scene).registerJob(fixed, moving, config).resourceEstimate().toDict()
    for key in ("what", "device", "memoryBytes", "note", "fits"):
        assert line[key] == expected[key], key
    assert line["seconds"] > 0 and line["fixed"] == str(files["fixed"])  # timed by a short real run
    assert not (tmp_path / "out").exists()

    assert main(["--dry-run", "train-register", "--images", str(files["fixed"]), str(files["moving"]),
                 "--shape", "16", "16", "16", "--features", "4", "--epochs", "3", "--output-model",
                 str(tmp_path / "model"), "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert made == ["registerJob", "registerJob", "trainJob"]
    config = RegistrationTrainingConfig(shape=(16, 16, 16), features=4, epochs=3, device="cpu")
    expected = RegistrationLogic(scene).trainJob([fixed, moving], None, config).resourceEstimate().toDict()
    for key in ("what", "device", "note", "fits"):
        assert line[key] == expected[key], key
    assert line["pairs"] == 2 and line["seconds"] > 0 and not (tmp_path / "model").exists()

    monkeypatch.setattr(resources, "availableMemory", lambda device: 1000)  # nothing fits: a line, exit status 2
    assert main(["--dry-run", "register", "--fixed", str(files["fixed"]), "--moving", str(files["moving"]),
                 "--output-transform", str(tmp_path / "out" / "t.h5"), "--device", "cpu"]) == 2
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not line["fits"] and "is too large for this machine" in line["text"]


def test_meddl_train_register_equals_the_logic_on_the_same_settings(scene, files, tmp_path, capsys, monkeypatch):
    from DLCommon import loadModel
    from DLRegisterLib.config import RegistrationTrainingConfig
    from DLRegisterLib.logic import RegistrationLogic

    made = spyOnJobs(monkeypatch)
    assert main(["train-register", "--images", str(files["fixed"]), str(files["moving"]), "--labels",
                 str(files["fixedLabels"]), str(files["movingLabels"]), "--shape", "16", "16", "16", "--features", "4",
                 "--epochs", "2", "--output-model", str(tmp_path / "cli"), "--name", "reg", "--device", "cpu"]) == 0
    assert made == ["trainJob"] and (tmp_path / "cli" / "reg_curves.png").is_file()
    assert "catalog id" not in capsys.readouterr().out  # only with --add-to-catalog

    volumes = [loadVolume(files[role], scene) for role in ("fixed", "moving")]
    segmentations = [loadSegmentation(files[role + "Labels"], scene) for role in ("fixed", "moving")]
    config = RegistrationTrainingConfig(shape=(16, 16, 16), features=4, epochs=2, device="cpu")
    expected = RegistrationLogic(scene).trainJob(volumes, segmentations, config, modelName="reg",
                                                 outputDir=tmp_path / "logic", addToCatalog=False).run()
    trained = loadModel(tmp_path / "cli" / "reg.pt")
    assert trained.spec.labelNames == expected.model.spec.labelNames == ["label 1", "label 2"]
    ours, theirs = trained.network.state_dict(), expected.model.network.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], atol=FLOAT_ATOL, rtol=0)
    history = json.loads((tmp_path / "cli" / "reg.history.json").read_text())
    np.testing.assert_allclose(history["trainLoss"], expected.history.trainLoss, atol=FLOAT_ATOL)
    np.testing.assert_allclose(history["validationMetric"], expected.history.validationMetric, atol=FLOAT_ATOL)
