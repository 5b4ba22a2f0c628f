"""One path per job for DL Classify: ``meddl classify`` (files, cohorts, ``--slices``) and ``meddl train-classify``
(a CSV of path,label; ``--planes``) run the jobs of ``ClassificationLogic`` that the panel runs, so the same settings
give the same outputs and warnings through the command line and through the logic; ``--dry-run`` prints the job's
plan. Small: phantom volumes, 16-voxel networks, one or two epochs on the CPU."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import makeVolume, phantom
from DLClassifyLib.config import ClassificationTrainingConfig, PlaneTrainingConfig
from DLClassifyLib.logic import ClassificationLogic

from DLCommon import DLError, saveCheckpoint, tensorFromVolume
from DLCommon.cli import main
from DLCommon.errors import SettingError
from DLCommon.models import ModelSpec
from DLCommon.settings import defaultOf, settingOf
from DLCommon.storage import loadVolume, saveNode

CLASSES = ["dark", "bright"]


def tinyClassifier(folder, inputSize) -> str:
    """An untrained tiny DenseNet with a classifier spec (deterministic weights; a temperature, so calibration is
    part of what is compared); 2 sizes: a 2D model."""
    from DLClassifyLib.architectures import buildClassifier

    torch.manual_seed(5)
    className, args, network = buildClassifier("tiny", len(inputSize), 1, len(CLASSES), inputSize)
    spec = ModelSpec(name="tiny-classifier", task="classification", labelNames=CLASSES,
                     options={"encoding": "nominal", "architecture": "tiny", "inputSize": list(inputSize),
                              "temperature": 1.5})
    return str(saveCheckpoint(network, folder / f"tiny{len(inputSize)}d.pt", className, args, spec))


def warningsIn(err: str) -> list[str]:
    return [line.split(": ", 3)[-1] for line in err.splitlines() if line.startswith("meddl: warning")]


def caseFiles(scene, folder, count: int) -> list:
    """``count`` phantom volume files, every second one brighter; ``[(path, label)]``."""
    files = []
    for seed in range(count):
        image, _ = phantom(seed)  # (I, J, K) = 36 x 32 x 28, 1 mm
        bright = seed % 2 == 1
        volume = makeVolume(scene, np.ascontiguousarray((image * (1.6 if bright else 1.0)).transpose(2, 1, 0)),
                            np.eye(4), name=f"case {seed}")
        files.append((saveNode(volume, folder / f"case{seed}.nrrd"), CLASSES[bright]))
    return files


def readCsv(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def assertRowsEqual(cliRows: list[dict], rows: list[dict]) -> None:
    """CSV rows (text) against the logic's rows: names and classes exactly, numbers to their 4 written decimals."""
    assert len(cliRows) == len(rows)
    for cliRow, row in zip(cliRows, rows):
        assert list(cliRow) == list(row)
        for column, value in row.items():
            if isinstance(value, float):
                assert float(cliRow[column]) == pytest.approx(value, abs=1e-4), column
            else:
                assert cliRow[column] == str(value), column


def assertSameWeights(path, expectedPath) -> None:
    """Two saved state dicts hold the same weights (to float32 round-off on the CPU)."""
    cli, logic = torch.load(path, weights_only=True), torch.load(expectedPath, weights_only=True)
    assert cli.keys() == logic.keys()
    for key in logic:
        torch.testing.assert_close(cli[key], logic[key], atol=1e-5, rtol=0, msg=key)


def planOf(estimate: dict) -> dict:
    """What a dry run must repeat of the job's estimate (its seconds are a timing)."""
    return {key: estimate[key] for key in ("what", "device", "memoryBytes", "hostBytes", "fits")}


# --- classify -----------------------------------------------------------------------------------------------

def test_meddl_classify_equals_the_logic_on_the_same_settings(scene, tmp_path, capsys):
    """A cohort folder with saliency: each item's rows and saliency volume are the logic job's on that file."""
    model = tinyClassifier(tmp_path, (16, 16, 16))
    files = caseFiles(scene, tmp_path / "in", 2)
    assert main(["classify", "--model", model, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "r.csv"),
                 "--saliency", str(tmp_path / "saliency"), "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    cliRows = readCsv(tmp_path / "r.csv")
    for index, (path, _) in enumerate(files):
        loaded = loadVolume(path, scene)  # the logic on the same file, same settings
        expected = ClassificationLogic(scene).classify([loaded], model, saliency=True, device="cpu")
        assertRowsEqual(cliRows[index:index + 1], [{**row, "input": path.name} for row in expected.rows])
        saliency = loadVolume(tmp_path / "saliency" / f"case{index}_saliency.nrrd", scene)
        np.testing.assert_allclose(tensorFromVolume(saliency).numpy(), tensorFromVolume(expected.saliency[0]).numpy(),
                                   atol=1e-5)
        assert getattr(expected, "warnings", []) == []
    assert warningsIn(printed.err) == []


def test_meddl_classify_slices_equals_the_logic(scene, tmp_path, capsys):
    """--slices: a row per slice from the logic's sliceProbabilitiesJob, which equals the panel's immediate plot."""
    model = tinyClassifier(tmp_path, (16, 16))
    (path, _), = caseFiles(scene, tmp_path, 1)
    assert main(["classify", "--model", model, "--input", str(path), "--output", str(tmp_path / "slices.csv"),
                 "--slices", "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    loaded = loadVolume(path, scene)
    logic = ClassificationLogic(scene)
    expected = logic.sliceProbabilitiesJob(loaded, model, device="cpu").run()
    assert len(expected.rows) == 28  # the K axis (closest to S) of the 36 x 32 x 28 phantom
    assertRowsEqual(readCsv(tmp_path / "slices.csv"), [{**row, "input": path.name} for row in expected.rows])
    positions, probabilities, names = logic.sliceProbabilities(loaded, model, device="cpu")
    assert positions == expected.positions and names == expected.classNames == CLASSES
    torch.testing.assert_close(probabilities, expected.probabilities, atol=1e-6, rtol=0)
    assert warningsIn(printed.err) == []


def test_meddl_classify_dry_run_prints_the_jobs_estimate(scene, tmp_path, capsys):
    model3d, model2d = tinyClassifier(tmp_path, (16, 16, 16)), tinyClassifier(tmp_path, (16, 16))
    (path, _), = caseFiles(scene, tmp_path, 1)
    loaded = loadVolume(path, scene)
    for model, extra, job in (
            (model3d, ["--saliency", str(tmp_path / "s")],
             ClassificationLogic(scene).classifyJob([loaded], model3d, saliency=True, device="cpu")),
            (model2d, ["--slices"], ClassificationLogic(scene).sliceProbabilitiesJob(loaded, model2d, device="cpu"))):
        assert main(["--dry-run", "classify", "--model", model, "--input", str(path), "--output",
                     str(tmp_path / "out" / "r.csv"), "--device", "cpu", *extra]) == 0
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["input"] == str(path) and planOf(line) == planOf(job.resourceEstimate().toDict())
        assert line["fits"] and line["seconds"] > 0
    assert not (tmp_path / "out").exists() and not (tmp_path / "s").exists()  # a dry run writes nothing
    # the job refuses a 3D volume for a 2D model when it is made: a line saying so, exit status 2
    assert main(["--dry-run", "classify", "--model", model2d, "--input", str(path), "--output",
                 str(tmp_path / "r.csv"), "--device", "cpu"]) == 2
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not line["fits"] and "the model classifies 2D images" in line["text"]


# --- train-classify -----------------------------------------------------------------------------------------

TRAIN_FLAGS = ["--input-size", "16", "16", "16", "--epochs", "2", "--batch-size", "2", "--seed", "3",
               "--validation-fraction", "0.35", "--device", "cpu"]
TRAIN_CONFIG = ClassificationTrainingConfig(inputSize=(16, 16, 16), epochs=2, batchSize=2, seed=3,
                                            validationFraction=0.35, device="cpu")


def test_meddl_train_classify_equals_the_logic(scene, tmp_path, capsys):
    """The same CSV through train-classify and through the logic's trainJob: the same weights, temperature, report
    and curves."""
    files = caseFiles(scene, tmp_path / "data", 6)
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"data/{p.name},{label}\n" for p, label in files))
    assert main(["train-classify", "--csv", str(tmp_path / "labels.csv"), *TRAIN_FLAGS,
                 "--output-model", str(tmp_path / "cli"), "--name", "m"]) == 0
    printed = capsys.readouterr()
    labelled = [(loadVolume(p, scene), label) for p, label in files]
    expected = ClassificationLogic(scene).train(labelled, None, TRAIN_CONFIG, modelName="m",
                                                outputDir=tmp_path / "logic", addToCatalog=False)
    assertSameWeights(tmp_path / "cli" / "m.pt", expected.modelPath)
    cliSpec = json.loads((tmp_path / "cli" / "m.json").read_text())["spec"]
    assert cliSpec["labelNames"] == expected.model.spec.labelNames == ["bright", "dark"]
    assert cliSpec["options"]["temperature"] == pytest.approx(expected.model.spec.options["temperature"], abs=1e-4)
    assert f"accuracy {expected.report['accuracy']:.3f}" in printed.out
    assert (tmp_path / "cli" / "m_curves.png").exists() and warningsIn(printed.err) == []

    # --dry-run: the same job's plan, and nothing written
    assert main(["--dry-run", "train-classify", "--csv", str(tmp_path / "labels.csv"), *TRAIN_FLAGS,
                 "--output-model", str(tmp_path / "dry")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    job = ClassificationLogic(scene).trainJob(labelled, None, TRAIN_CONFIG, modelName="m")
    assert line["images"] == 6 and planOf(line) == planOf(job.resourceEstimate().toDict())
    assert line["what"] == "Classification training" and not (tmp_path / "dry").exists()


def test_meddl_train_classify_planes_equals_the_logic(scene, tmp_path, capsys):
    """--planes: the logic's trainPlanesJob on the MNI152 T1 (a few planes, one epoch)."""
    pytest.importorskip("nilearn")
    from DLCommon.sampledata import loadMNI152

    flags = ["--planes-per-class", "2", "--deformed-copies", "0", "--epochs", "1", "--batch-size", "5",
             "--device", "cpu"]
    assert main(["train-classify", "--planes", *flags, "--output-model", str(tmp_path / "cli"), "--name", "p"]) == 0
    printed = capsys.readouterr()
    expected = ClassificationLogic(scene).trainPlanes(
        loadMNI152(scene)["t1"], ClassificationTrainingConfig(epochs=1, batchSize=5, device="cpu"), perClass=2,
        deformedCopies=0, modelName="p", outputDir=tmp_path / "logic", addToCatalog=False)
    assertSameWeights(tmp_path / "cli" / "p.pt", expected.modelPath)
    assert json.loads((tmp_path / "cli" / "p.json").read_text())["spec"]["options"]["plane"] == \
        expected.model.spec.options["plane"]
    assert warningsIn(printed.err) == []


# --- settings -------------------------------------------------------------------------------------------------

def test_out_of_range_settings_are_refused_in_every_face(tmp_path, capsys):
    for values in ({"epochs": 0}, {"batchSize": 0}, {"validationFraction": 1.0}, {"inputSize": (8, 8)},
                   {"inputSize": (64,)}, {"encoding": "one-hot"}, {"architecture": "alexnet"}, {"learningRate": 2.0}):
        with pytest.raises(SettingError, match=f"Setting '{next(iter(values))}'"):
            ClassificationTrainingConfig(**values).validate()
    ClassificationTrainingConfig(learningRate=None, patience=None).validate()  # None: not set (the defaults)
    with pytest.raises(SettingError, match="Setting 'perClass'"):
        PlaneTrainingConfig(perClass=0).validate()
    with pytest.raises(DLError, match="Setting 'deformedCopies'"):
        ClassificationLogic().trainPlanesJob(None, deformedCopies=-1)  # before any node is read
    (tmp_path / "labels.csv").write_text("path,label\n")
    assert main(["train-classify", "--csv", str(tmp_path / "labels.csv"), "--epochs", "0",
                 "--output-model", str(tmp_path / "m")]) == 2
    assert "Setting 'epochs' is 0" in capsys.readouterr().err


def test_the_panels_input_size_reads_the_configs_default_and_range():
    """The panel's one-edge input size is written by hand (the config holds 2 or 3 sizes): its default and range
    come from the config field, as do train-classify's."""
    from DLClassifyLib.parameters import PARAMETERS

    edge = next(p for p in PARAMETERS if p.name == "inputSize")
    meta = settingOf(ClassificationTrainingConfig, "inputSize")
    assert (edge.default, edge.minimum, edge.maximum) == (defaultOf(ClassificationTrainingConfig, "inputSize")[0],
                                                          meta["minimum"], meta["maximum"])
    assert edge.tooltip == meta["tooltip"]
