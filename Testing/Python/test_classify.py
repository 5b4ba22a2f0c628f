"""DLClassify: encodings, calibration, architectures, standard-plane recognition, saliency geometry, the
logic's scene contract, the CLI and bad input.

Data: the MNI152 T1 at 2 mm and randomly deformed copies of it (DLCommon.sampledata.randomCopy).
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from DLCommon import DLError, JobCancelled, loadModel, tensorFromVolume, volumeFromTensor
from DLCommon.catalog import ModelCatalog
from DLCommon.geometry import ijkToRasMatrix, vtkMatrixFromArray
from DLCommon.sampledata import mni152Tissue, randomCopy
from DLCommon.scene import nodeIds
from DLClassifyLib.architectures import ARCHITECTURES, architectureTable, buildClassifier
from DLClassifyLib.calibration import expectedCalibrationError, fitTemperature
from DLClassifyLib.classifier import classProbabilities, saliencyMap
from DLClassifyLib.data import normaliseImages, prepareImage
from DLClassifyLib.encodings import BinaryEncoding, NominalEncoding, OrdinalEncoding, encodingFor
from DLClassifyLib.logic import ClassificationLogic, resolveLabels
from DLClassifyLib.metrics import balancedAccuracy, classificationReport, confusionMatrix, meanAbsoluteError
from DLClassifyLib.planes import (PLANE_CLASSES, STANDARD_PLANES, planeAffine, planeClassOf, planeDataset,
                                  randomPlanePose)
from DLClassifyLib.quality import QUALITY_GRADES, degrade, qualityDataset
from DLClassifyLib.trainer import ClassificationTrainingConfig, trainClassifier

from conftest import obliqueAffine

QUICK = ClassificationTrainingConfig(epochs=10, device="cpu")


# --- encodings, metrics, calibration ----------------------------------------------------------------------

def test_encodings_round_trip():
    labels = torch.tensor([0, 3, 1, 2, 2, 0, 3])
    nominal, ordinal = NominalEncoding(4), OrdinalEncoding(4)
    assert torch.equal(nominal.decode(nominal.encode(labels)), labels)
    assert torch.equal(ordinal.decode(ordinal.encode(labels)), labels)
    assert ordinal.encode(torch.tensor([2])).tolist() == [[1.0, 1.0, 0.0]]  # cumulative: y > 0, y > 1, not y > 2
    binary = BinaryEncoding()
    assert torch.equal(binary.decode(binary.encode(labels % 2)), labels % 2)
    assert (nominal.outputs, ordinal.outputs, binary.outputs) == (4, 3, 1)
    with pytest.raises(ValueError):
        encodingFor("binary", 3)


def test_ordinal_probabilities_are_monotone_and_sum_to_one():
    ordinal = OrdinalEncoding(5)
    logits = torch.randn(200, 4, generator=torch.Generator().manual_seed(0)) * 4
    cumulative = ordinal.cumulative(logits)
    assert bool((cumulative[:, 1:] <= cumulative[:, :-1] + 1e-7).all())  # P(y > k) never increases with k
    probabilities = ordinal.probabilities(logits)
    assert bool((probabilities >= 0).all())
    assert torch.allclose(probabilities.sum(1), torch.ones(200), atol=1e-6)
    # the decision (number of thresholds passed) is the median class of those probabilities
    median = (probabilities.cumsum(1) >= 0.5).float().argmax(1)
    assert torch.equal(ordinal.predict(logits), median)


def test_metrics_on_a_known_example():
    reference = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 1, 2, 0])
    assert confusionMatrix(predicted, reference, 3).tolist() == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert balancedAccuracy(predicted, reference, 3) == pytest.approx((0.75 + 1.0 + 0.5) / 3)
    assert meanAbsoluteError(predicted, reference) == pytest.approx(3 / 8)
    assert classificationReport(predicted, reference, 3)["accuracy"] == pytest.approx(6 / 8)


@pytest.mark.parametrize("encodingName", ["nominal", "ordinal"])
def test_temperature_scaling_lowers_the_calibration_error(encodingName):
    """An over-confident model (true logits x 4) is calibrated on validation data; ECE drops on test data."""
    generator = torch.Generator().manual_seed(1)
    encoding = encodingFor(encodingName, 4)

    def sample(count):
        labels = torch.randint(0, 4, (count,), generator=generator)
        if encodingName == "nominal":
            logits = 2.0 * torch.nn.functional.one_hot(labels, 4) + torch.randn(count, 4, generator=generator)
        else:
            logits = 1.5 * (labels[:, None] > torch.arange(3)[None]).float() * 2 - 1.0
            logits = logits + torch.randn(count, 3, generator=generator)
        return 4.0 * logits, labels

    validation, test = sample(2000), sample(2000)
    temperature = fitTemperature(*validation, encoding)
    before = expectedCalibrationError(encoding.probabilities(test[0]), test[1])
    after = expectedCalibrationError(encoding.probabilities(test[0], temperature), test[1])
    assert temperature > 1.2  # over-confident logits are softened
    assert after < 0.5 * before and after < 0.05


# --- architectures ----------------------------------------------------------------------------------------

def test_architecture_table_and_3d_networks():
    rows = {row["name"]: row for row in architectureTable(2, names=["tiny", "densenet121", "resnet18", "vit"])}
    assert rows["densenet121"]["depth"] == 121
    assert 6.5e6 < rows["densenet121"]["parameters"] < 7.5e6 and rows["resnet18"]["parameters"] > 1e7
    assert rows["tiny"]["sizeMB"] < rows["densenet121"]["sizeMB"]
    for name in ("tiny", "resnet18", "efficientnet-b0", "vit"):
        _, _, network = buildClassifier(name, 3, 1, 3, [32, 32, 32])
        output = network(torch.zeros(2, 1, 32, 32, 32))
        assert (output[0] if isinstance(output, tuple) else output).shape == (2, 3)
    assert {"densenet121", "densenet169", "densenet201", "resnet18", "resnet50", "seresnet50", "efficientnet-b0",
            "vit"} <= set(ARCHITECTURES)


# --- standard planes --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mni2mm():
    image, labels = mni152Tissue(2.0)
    return image, labels


def test_random_plane_poses_have_their_class():
    generator = torch.Generator().manual_seed(0)
    for label in range(len(PLANE_CLASSES)):
        for _ in range(20):
            assert planeClassOf(randomPlanePose(label, generator)) == label
    # a standard plane moved 8 mm is in the ambiguous band: never used for training or testing
    pose = randomPlanePose(0, generator)
    pose[:3, 3] += 8.0 * pose[:3, 2] / pose[:3, 2].norm()
    assert planeClassOf(pose) in (None, len(STANDARD_PLANES))


@pytest.fixture(scope="module")
def planeModel(mni2mm, tmp_path_factory):
    """The standard-plane recogniser trained through the logic on the MNI152 T1 node (and deformed copies)."""
    import slicer

    from DLCommon.sampledata import loadMNI152

    scene = slicer.vtkMRMLScene()
    t1 = loadMNI152(scene)["t1"]
    result = ClassificationLogic(scene).trainPlanes(t1, QUICK,
                                                    outputDir=tmp_path_factory.mktemp("planes"), addToCatalog=False)
    yield result, scene, t1
    scene.Clear(1)


def test_plane_recognition_on_deformed_copies(planeModel, mni2mm):
    result, _, _ = planeModel
    image, labels = mni2mm
    heldOut = [(randomCopy(image, labels, seed)[0].as_tensor(), image.affine) for seed in (100, 101)]
    planes, truth = planeDataset(heldOut, 30, seed=5)
    probabilities = classProbabilities(result.model, normaliseImages(planes, 2), "cpu")
    report = classificationReport(probabilities.argmax(1), truth, 5)
    assert report["accuracy"] >= 0.95, report
    assert result.report["eceAfter"] <= result.report["eceBefore"] + 1e-6
    # the saved checkpoint (weights_only, JSON spec) gives the same answers
    reloaded = loadModel(result.modelPath)
    assert torch.allclose(classProbabilities(reloaded, normaliseImages(planes[:10], 2), "cpu"), probabilities[:10],
                          atol=1e-5)


def _setSlice(sliceNode, u, v, origin):
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1] = u, v
    matrix[:3, 2] = np.cross(u, v)
    matrix[:3, 3] = origin
    sliceNode.GetSliceToRAS().DeepCopy(vtkMatrixFromArray(matrix))
    sliceNode.UpdateMatrices()


def test_slice_view_classification_follows_scrolling_and_rotation(planeModel):
    result, scene, t1 = planeModel
    logic = ClassificationLogic(scene)
    sliceNode = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    try:
        _setSlice(sliceNode, (-1, 0, 0), (0, 1, 0), (30, 40, 18))  # axial at z = 18 mm, view panned
        assert logic.classifySlice(sliceNode, t1, result.model)[0] == "axial trans-ventricular"
        _setSlice(sliceNode, (-1, 0, 0), (0, 1, 0), (0, 0, -30))
        assert logic.classifySlice(sliceNode, t1, result.model)[0] == "axial trans-cerebellar"
        _setSlice(sliceNode, (-1, 0, 0), (0, 1, 0), (0, 0, 55))  # scrolled up
        name, probability, probabilities = logic.classifySlice(sliceNode, t1, result.model)
        assert name == "other" and probabilities.sum().item() == pytest.approx(1.0, abs=1e-5)
        _setSlice(sliceNode, (0, -1, 0), (0, 0, 1), (0, -18, 8))
        assert logic.classifySlice(sliceNode, t1, result.model)[0] == "mid-sagittal"
        c, s = math.cos(math.radians(40)), math.sin(math.radians(40))
        _setSlice(sliceNode, (0, -c, -s), (0, -s, c), (0, -18, 8))  # rotated 40 degrees about R: no longer sagittal
        _setSlice(sliceNode, (-c, 0, -s), (0, 1, 0), (0, -18, 18))  # axial tilted 40 degrees
        assert logic.classifySlice(sliceNode, t1, result.model)[0] == "other"
    finally:
        scene.RemoveNode(sliceNode)


def test_slice_probability_plot_peaks_at_the_standard_planes(planeModel):
    result, scene, t1 = planeModel
    logic = ClassificationLogic(scene)
    positions, probabilities, names = logic.sliceProbabilities(t1, result.model, device="cpu")
    assert len(positions) == 189 and probabilities.shape == (189, 5)
    from DLClassifyLib.planes import STANDARD_TOLERANCE

    for name, level in (("axial trans-ventricular", 18.0), ("axial trans-cerebellar", -30.0)):
        column = probabilities[:, names.index(name)]
        band = [z for z, p in zip(positions, column) if p > 0.5]
        peak = positions[int(column.argmax())]
        # the recogniser labels a slice standard within STANDARD_TOLERANCE of the plane (planes.py) and is not
        # trained between that and the 'other' margin, so its band may lean to one side; its peak may not
        assert band and band[0] <= level <= band[-1], (name, band)
        assert abs(peak - level) <= STANDARD_TOLERANCE[0], (name, peak)
    before = len(nodeIds(scene))
    chart = logic.plotSliceProbabilities(t1, result.model, device="cpu")
    assert chart.GetNumberOfPlotSeriesNodes() == 5
    table = chart.GetNthPlotSeriesNode(0).GetTableNode()
    assert table.GetNumberOfRows() == 189 and table.GetColumnName(0) == "position (mm)"
    assert len(nodeIds(scene)) == before + 11  # chart + 5 series + 5 tables


def test_classify_writes_a_table_and_saliency_on_the_input_grid(planeModel):
    """A plane saved as a single-slice volume, classified with saliency: the map has the input's geometry."""
    result, scene, _ = planeModel
    image, labels = mni152Tissue(2.0)
    pose = randomPlanePose(3, torch.Generator().manual_seed(2))  # mid-sagittal
    planes, _ = planeDataset([(image.as_tensor(), image.affine)], 1, seed=11)
    plane = MetaTensor(planes[3][..., None], affine=planeAffine(pose))
    volume = volumeFromTensor(plane, None, scene, "sagittal plane")
    before = set(nodeIds(scene))
    output = ClassificationLogic(scene).classify([volume], result.model, saliency=True, device="cpu")
    assert output.predictions[0][0] == "mid-sagittal"
    table = output.table
    assert table.GetCellText(0, 1) == "mid-sagittal"
    columns = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert columns[:3] == ["input", "class", "probability"] and "p(other)" in columns and "temperature" in columns
    saliency = output.saliency[0]
    assert saliency.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
    assert np.allclose(ijkToRasMatrix(saliency), ijkToRasMatrix(volume))
    values = tensorFromVolume(saliency)
    assert float(values.min()) >= 0.0 and float(values.max()) == pytest.approx(1.0, abs=1e-4)
    assert set(nodeIds(scene)) - before >= {table.GetID(), saliency.GetID()}


def test_single_slice_volumes_are_seen_as_a_slice_view_shows_them(planeModel):
    """A 1 mm axial MNI152 slice (other size, spacing and axis order than the training planes) is classified
    at the model's field of view, with the view's in-plane axes."""
    result, scene, t1 = planeModel
    image = tensorFromVolume(t1)
    for z, expected in ((18.0, "axial trans-ventricular"), (-30.0, "axial trans-cerebellar"), (50.0, "other")):
        k = int(round(float(torch.linalg.solve(image.affine, torch.tensor([0.0, 0.0, z, 1.0], dtype=torch.float64))[2])))
        affine = image.affine.clone()
        affine[:3, 3] += affine[:3, 2] * k
        node = volumeFromTensor(MetaTensor(image[:, :, :, k:k + 1].as_tensor(), affine=affine), None, scene, f"z {z}")
        output = ClassificationLogic(scene).classify([node], result.model)
        assert output.predictions[0][0] == expected, (z, output.predictions[0])
        scene.RemoveNode(output.table)
        scene.RemoveNode(node)


def test_saliency_of_3d_and_vit_models_lands_on_the_input_grid():
    """Grad-CAM (3D DenseNet) and occlusion (ViT) maps of an oblique volume resampled onto its voxels."""
    from DLCommon.models import LoadedModel, ModelSpec

    rng = np.random.default_rng(0)
    affine = torch.from_numpy(obliqueAffine(rng, spacing=(1.5, 1.0, 2.0)))
    image = MetaTensor(torch.rand(1, 30, 40, 20), affine=affine)
    size = [32, 32, 32]
    for name, encodingName in (("tiny", "ordinal"), ("vit", "nominal")):
        _, _, network = buildClassifier(name, 3, 1, encodingFor(encodingName, 3).outputs, size)
        spec = ModelSpec(name=name, task="classification", labelNames=["a", "b", "c"],
                         options={"encoding": encodingName, "architecture": name, "inputSize": size})
        model = LoadedModel(network=network.eval(), spec=spec, format="checkpoint", path=None)
        prepared = prepareImage(image, size, 1)
        assert saliencyMap(model, prepared, device="cpu").shape == (1, *size)  # on the network's grid
        saliency = saliencyMap(model, prepared, image, device="cpu")
        assert saliency.shape == image.shape
        assert torch.allclose(saliency.affine.double(), affine)
        assert float(saliency.min()) >= 0.0 and float(saliency.max()) <= 1.0 + 1e-5


# --- training from the scene, quality grading -------------------------------------------------------------

@pytest.fixture(scope="module")
def sharpAndBlurred(mni2mm):
    """Small 3D volumes (4 mm) of two classes: sharp, and blurred (sigma 1.5 voxels)."""
    from monai.transforms import GaussianSmooth, Spacing

    image, labels = mni2mm
    coarse = Spacing(pixdim=(4.0, 4.0, 4.0))(image)
    volumes = []
    for seed in range(16):
        copy, _ = randomCopy(coarse, torch.zeros(coarse.shape[1:], dtype=torch.long), seed=seed)
        blurred = seed % 2 == 1
        data = torch.as_tensor(GaussianSmooth(sigma=1.5)(copy)) if blurred else copy.as_tensor()
        volumes.append((MetaTensor(data, affine=coarse.affine), "blurred" if blurred else "sharp"))
    return volumes


def _tableOf(scene, rows):
    import vtk

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "labels")
    for column in ("volume", "label"):
        array = vtk.vtkStringArray()
        array.SetName(column)
        for row in rows:
            array.InsertNextValue(row[column])
        table.AddColumn(array)
    return table


def test_train_from_a_table_node_and_classify_held_out_volumes(scene, sharpAndBlurred, tmp_path):
    nodes = [(volumeFromTensor(image, None, scene, f"case {i}"), label) for i, (image, label) in enumerate(sharpAndBlurred)]
    table = _tableOf(scene, [{"volume": node.GetName(), "label": label} for node, label in nodes[:12]])
    config = ClassificationTrainingConfig(encoding="binary", architecture="tiny", inputSize=(32, 32, 32), epochs=30,
                                          batchSize=4, device="cpu", validationFraction=0.25)
    logic = ClassificationLogic(scene)
    before = set(nodeIds(scene))
    result = logic.train(table, config=config, modelName="sharpness", outputDir=tmp_path, addToCatalog=True)
    assert set(nodeIds(scene)) == before  # training adds no node
    assert result.model.spec.labelNames == ["blurred", "sharp"]
    assert ModelCatalog().get("sharpness").spec["labelNames"] == ["blurred", "sharp"]
    output = logic.classify([node for node, _ in nodes[12:]], "sharpness", device="cpu")
    assert [prediction[0] for prediction in output.predictions] == [label for _, label in nodes[12:]]
    assert output.table.GetNumberOfRows() == 4


def test_ordinal_quality_grading_learns_the_grades(mni2mm, tmp_path):
    image, labels = mni2mm
    train = [(image.as_tensor(), image.affine)] + [(randomCopy(image, labels, s, noise=False)[0].as_tensor(),
                                                    image.affine) for s in (1, 2)]
    test = [(randomCopy(image, labels, 50, noise=False)[0].as_tensor(), image.affine)]
    images, grades = qualityDataset(train, 70, seed=0)
    testImages, testGrades = qualityDataset(test, 40, seed=1)
    config = ClassificationTrainingConfig(encoding="ordinal", epochs=10, augment=False, device="cpu")
    result = trainClassifier(normaliseImages(images, 2), grades, QUALITY_GRADES, config, tmp_path, "quality")
    probabilities = classProbabilities(result.model, normaliseImages(testImages, 2), "cpu")
    assert torch.allclose(probabilities.sum(1), torch.ones(len(testGrades)), atol=1e-5)
    from DLClassifyLib.classifier import encodingOf, predictLogits

    predicted = encodingOf(result.model).predict(predictLogits(result.model.network, normaliseImages(testImages, 2)))
    assert meanAbsoluteError(predicted, testGrades) < 0.45


def test_degradations_grow_with_severity(mni2mm):
    image, _ = mni2mm
    clean = image.as_tensor()[:, :, :, 47].float()
    generator = torch.Generator().manual_seed(0)
    for kind in ("noise", "blur", "motion"):
        errors = [float((degrade(clean, kind, s, generator) - clean).abs().mean()) for s in (0.0, 1.0, 3.0)]
        assert errors[0] == 0.0 and errors[1] < errors[2], (kind, errors)


# --- bad input --------------------------------------------------------------------------------------------

def test_unknown_and_unordered_labels():
    with pytest.raises(DLError, match="CSV row 2 has label 'medium', which is not one of the classes"):
        resolveLabels(["low", "medium"], ["low", "high"], "nominal", ["CSV row 1", "CSV row 2"])
    with pytest.raises(DLError, match="order is unknown"):
        resolveLabels(["low", "high"], None, "ordinal")
    indices, names = resolveLabels(["2", "0", "3"], None, "ordinal")
    assert names == ["0", "1", "2", "3"] and indices.tolist() == [2, 0, 3]
    indices, names = resolveLabels(["b", "a", "b"], None, "nominal")
    assert names == ["a", "b"] and indices.tolist() == [1, 0, 1]


def test_single_class_training_data_is_refused(scene, sharpAndBlurred):
    nodes = [(volumeFromTensor(image, None, scene, f"case {i}"), "sharp") for i, (image, _) in
             enumerate(sharpAndBlurred[:4])]
    with pytest.raises(DLError, match="one class only"):
        ClassificationLogic(scene).train(nodes, config=ClassificationTrainingConfig(inputSize=(32, 32, 32)),
                                         addToCatalog=False)


def test_4d_and_wrong_dimension_input_gives_clear_errors_and_no_nodes(planeModel):
    result, scene, t1 = planeModel
    vector = volumeFromTensor(MetaTensor(torch.rand(4, 20, 20, 1), affine=torch.eye(4, dtype=torch.float64)), None,
                              scene, "4D frames")
    before = set(nodeIds(scene))
    with pytest.raises(DLError, match="4 components.*expects 1"):
        ClassificationLogic(scene).classify([vector], result.model, saliency=True)
    with pytest.raises(DLError, match="3D volume.*2D images"):
        ClassificationLogic(scene).classify([t1], result.model)
    assert set(nodeIds(scene)) == before
    scene.RemoveNode(vector)


def test_cancelled_training_adds_nothing(scene, sharpAndBlurred, tmp_path):
    nodes = [(volumeFromTensor(image, None, scene, f"case {i}"), label) for i, (image, label) in
             enumerate(sharpAndBlurred[:8])]
    before = set(nodeIds(scene))
    job = ClassificationLogic(scene).trainJob(nodes, config=ClassificationTrainingConfig(
        inputSize=(32, 32, 32), epochs=50, device="cpu"), modelName="cancelled", outputDir=tmp_path)

    def cancelAfterFirstEpoch(fraction, message):
        if "epoch" in message:
            job.cancel()

    with pytest.raises(JobCancelled):
        job.run(cancelAfterFirstEpoch)
    assert set(nodeIds(scene)) == before
    assert "cancelled" not in ModelCatalog().entries and not (tmp_path / "cancelled.pt").exists()


# --- CLI ----------------------------------------------------------------------------------------------------

def test_cli_train_classify_and_classify(tmp_path, sharpAndBlurred, capsys):
    import slicer

    from DLCommon import saveNode
    from DLCommon.cli import main

    scene = slicer.vtkMRMLScene()
    rows = []
    for i, (image, label) in enumerate(sharpAndBlurred):
        path = tmp_path / "data" / f"case{i:02d}.nrrd"
        saveNode(volumeFromTensor(image, None, scene, f"case{i}"), path)
        rows.append((path, label))
    scene.Clear(1)
    labelCsv = tmp_path / "labels.csv"
    labelCsv.write_text("path,label\n" + "".join(f"data/{p.name},{label}\n" for p, label in rows[:12]))
    code = main(["train-classify", "--csv", str(labelCsv), "--arch", "tiny", "--input-size", "32", "32", "32",
                 "--epochs", "12", "--batch-size", "4", "--output-model", str(tmp_path / "model"), "--name", "sharp",
                 "--register", "--device", "cpu"])
    assert code == 0 and (tmp_path / "model" / "sharp.pt").exists() and (tmp_path / "model" / "sharp_curves.png").exists()
    held = tmp_path / "held"
    held.mkdir()
    for path, _ in rows[12:]:
        (held / path.name).write_bytes(path.read_bytes())
    assert main(["classify", "--model", "sharp", "--input", str(held), "--output", str(tmp_path / "results.csv"),
                 "--saliency", str(tmp_path / "saliency"), "--device", "cpu"]) == 0
    with open(tmp_path / "results.csv") as stream:
        results = list(csv.DictReader(stream))
    assert [r["class"] for r in results] == [label for _, label in rows[12:]]
    assert set(results[0]) >= {"input", "class", "probability", "p(blurred)", "p(sharp)", "temperature"}
    assert len(list((tmp_path / "saliency").glob("*_saliency.nrrd"))) == 4

    # an unknown label in the CSV: exit code 2, the row named, no model written
    badCsv = tmp_path / "bad.csv"
    badCsv.write_text("".join(f"data/{p.name},{label}\n" for p, label in rows[:4]) + f"data/{rows[4][0].name},fuzzy\n")
    capsys.readouterr()
    assert main(["train-classify", "--csv", str(badCsv), "--classes", "blurred", "sharp", "--output-model",
                 str(tmp_path / "bad-model")]) == 2
    assert "'fuzzy', which is not one of the classes" in capsys.readouterr().err
    assert not (tmp_path / "bad-model").exists()


def test_shell_offers_every_architecture():
    """The settings list the architecture names without importing the engine (the shell loads before PyTorch)."""
    from DLClassifyLib.config import ARCHITECTURE_NAMES
    from DLClassifyLib.parameters import PARAMETERS

    assert list(ARCHITECTURE_NAMES) == list(ARCHITECTURES)
    assert next(p for p in PARAMETERS if p.name == "architecture").choices == ARCHITECTURE_NAMES


def test_plane_training_refuses_a_volume_outside_mni_space(scene):
    far = volumeFromTensor(MetaTensor(torch.rand(1, 20, 20, 20), affine=torch.diag(torch.tensor(
        [2.0, 2.0, 2.0, 1.0], dtype=torch.float64))), None, scene, "knee")
    before = set(nodeIds(scene))
    with pytest.raises(DLError, match="Volume 'knee' spans .* which does not hold the MNI152 brain"):
        ClassificationLogic(scene).trainPlanesJob(far)
    assert set(nodeIds(scene)) == before
