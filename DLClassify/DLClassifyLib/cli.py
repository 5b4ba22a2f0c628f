"""``meddl classify`` / ``meddl train-classify`` and DLClassify's part of ``meddl demo``.

Each command runs the job the DL Classify panel runs (``ClassificationLogic.classifyJob`` through
``parameters.applyJob``, ``sliceProbabilitiesJob``, ``trainJob``, ``trainPlanesJob``) on nodes loaded from its files,
and ``--dry-run`` prints that job's plan (``job.resourceEstimate()``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

__all__ = ["addCommands", "demo", "readLabelCsv"]

# the train-classify flags made from the configs' fields (DLCommon.settings: one definition)
TRAINING_FLAGS = ("encoding", "architecture", "epochs", "batchSize", "augment", "validationFraction", "seed", "device")
PLANE_FLAGS = ("perClass", "deformedCopies")


def addCommands(commands) -> None:
    from DLCommon.settings import addArguments, defaultOf, flagOf, settingOf

    from .config import ClassificationTrainingConfig as Training
    from .config import PlaneTrainingConfig

    classify = commands.add_parser("classify", help="classify a volume (or every volume in a folder); writes a CSV")
    classify.add_argument("--model", required=True, help="catalog id or model file")
    classify.add_argument("--input", required=True,
                          help="volume file, or a cohort: a folder of volumes or a CSV with an 'input' column "
                               "(sharded over torchrun processes, resumable; <output>_manifest.csv)")
    classify.add_argument("--output", required=True, help="results .csv (class, probability per class, calibrated)")
    classify.add_argument("--slices", action="store_true",
                          help="2D models: classify every slice of 3D inputs (a row per slice, with its position)")
    classify.add_argument("--saliency", help="folder for Grad-CAM saliency volumes (<input>_saliency.nrrd)")
    classify.add_argument("--device", default="auto")
    classify.set_defaults(handler=_classify, dryRun=True)

    train = commands.add_parser("train-classify", help="train a classifier on labelled volumes (CSV of path,label)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="CSV with columns path,label (paths relative to the CSV's folder)")
    source.add_argument("--planes", action="store_true",
                        help="train the standard-plane recogniser on the embedded MNI152 T1 (no data needed)")
    source.add_argument("--list-architectures", action="store_true",
                        help="print the architectures with parameters, size and depth, and exit")
    train.add_argument("--classes", nargs="+", help="the classes, in order (ordinal: lowest first); "
                                                    "default: the CSV's labels (ordinal: integer labels)")
    addArguments(train, Training, TRAINING_FLAGS)
    # 2 or 3 sizes, or None: the data's dimensions decide (the panel: one edge and its 2D / 3D choice)
    edge, size = defaultOf(Training, "inputSize")[0], settingOf(Training, "inputSize")
    train.add_argument("--input-size", dest="inputSize", type=int, nargs="+", metavar="SIZE",
                       help=f"network input grid (2 sizes: 2D, 3: 3D; each {size['minimum']:g} to "
                            f"{size['maximum']:g}); default {edge} x {edge} (x {edge} for 3D inputs)")
    # None (the architecture's) has no argparse type of its own: written here, its default read from the config
    train.add_argument(flagOf(Training, "learningRate"), dest="learningRate", type=float,
                       default=defaultOf(Training, "learningRate"), metavar="LEARNING_RATE",
                       help=settingOf(Training, "learningRate")["tooltip"].rstrip(".").replace("none:", "default:"))
    addArguments(train, PlaneTrainingConfig, PLANE_FLAGS)
    train.add_argument("--output-model", help="folder for the model (.pt + .json) and its curves PNG")
    train.add_argument("--name", default="classifier", help="model name (and catalog id with --add-to-catalog)")
    train.add_argument("--add-to-catalog", "--register", dest="add_to_catalog", action="store_true",
                       help="add the model to the catalog (--register: its former name)")
    train.set_defaults(handler=_trainClassify, dryRun=True)


def readLabelCsv(path: str | Path) -> list[tuple[Path, str]]:
    """``[(volume path, label), ...]`` from a CSV of ``path,label`` rows (a header row is skipped).

    Raises:
        DLError: missing columns or files, naming the row.
    """
    from DLCommon import DLError

    path = Path(path)
    if not path.is_file():
        raise DLError("does not exist", file=path, fix="give the CSV of path,label rows")
    rows = []
    with open(path, newline="") as stream:
        for number, row in enumerate(csv.reader(stream), start=1):
            if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
                continue
            if number == 1 and row[0].strip().lower() in ("path", "file", "volume", "image"):
                continue
            if len(row) < 2 or not row[1].strip():
                raise DLError(f"row {number} has no label ({row})", file=path, fix="write rows as path,label")
            volume = Path(row[0].strip()).expanduser()
            volume = volume if volume.is_absolute() else path.parent / volume
            if not volume.exists():
                raise DLError(f"row {number} names {volume}, which does not exist", file=path,
                              fix="correct the path (relative paths start at the CSV's folder)")
            rows.append((volume, row[1].strip()))
    if not rows:
        raise DLError("has no path,label rows", file=path, fix="add one row per labelled volume")
    return rows


def _writeCsv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _classify(args) -> int:
    from DLCommon.cohort import CohortItem, cohortItems, isCohortSource, runCohortCommand
    from DLCommon.storage import checkWritable

    from .logic import ClassificationLogic

    output = Path(args.output) if args.dry_run else checkWritable(args.output)
    model = ClassificationLogic().classifier(args.model)  # read (and checked) once, not per cohort item
    if args.dry_run:
        return _classifyDryRun(model, args)
    if not isCohortSource(args.input):
        rows = _classifyFile(model, Path(args.input), args)
        _writeCsv(rows, output)
        _printRows(rows, args)
        return 0
    # a cohort: one JSON of rows per input (the resumable unit), merged into the CSV at the end
    parts = output.with_name(output.name + ".items")
    items = cohortItems(args.input, lambda name: parts / f"{name}.json")

    def process(item: CohortItem, partial: Path) -> None:
        partial.write_text(json.dumps(_classifyFile(model, item.inputs["input"], args, item.name)))

    status = runCohortCommand(items, process, output.with_name(output.stem + "_manifest.csv"), "classify")
    from DLCommon.distributed import isMainProcess

    if isMainProcess():
        rows = [row for item in items if item.output.exists() for row in json.loads(item.output.read_text())]
        _writeCsv(rows, output)
        _printRows(rows, args)
    return status


def _classifyJob(model, path: Path, args, scene):
    """The job the DL Classify panel makes for these settings (``parameters.applyJob``; ``--slices``: the logic's
    ``sliceProbabilitiesJob``), on ``path`` loaded into ``scene``: the command, its ``--dry-run`` and the Slicer
    widget run the same job."""
    import types

    from DLCommon.storage import loadVolume

    from . import MODULE

    logic = MODULE.makeEngine(scene)
    volume = loadVolume(path, scene)
    if args.slices:
        return logic.sliceProbabilitiesJob(volume, model, device=args.device), volume
    settings = types.SimpleNamespace(inputVolume=volume, modelId=model, outputTable=None, saliency=bool(args.saliency))
    return MODULE.makeJob("apply", logic, settings, device=args.device), volume


def _classifyDryRun(model, args) -> int:
    """Print each input's resource estimate (the job's plan, as JSON lines); 2 when one would not fit here."""
    import slicer

    from DLCommon.cohort import inputFiles
    from DLCommon.commands import printJobEstimate

    status = 0
    for path in inputFiles(args.input):
        scene = slicer.vtkMRMLScene()
        try:
            status = max(status, printJobEstimate(lambda: _classifyJob(model, path, args, scene)[0], input=str(path)))
        finally:
            scene.Clear(1)
    return status


def _printRows(rows: list[dict], args) -> None:
    if not args.slices:
        for row in rows:
            print(f"{row['input']}: {row['class']} ({row['probability']:.3f})")
    print(f"Results: {args.output}")


def _classifyFile(model, path: Path, args, name: str | None = None) -> list[dict]:
    """Result rows for one volume file, named by the file (a row per slice with ``--slices``), from the panel's
    job; writes its saliency volume if asked."""
    import slicer

    from DLCommon import saveNode
    from DLCommon.commands import runWithProgressBar
    from DLCommon.storage import baseNameOf

    scene = slicer.vtkMRMLScene()
    try:
        job, _ = _classifyJob(model, path, args, scene)
        result = runWithProgressBar(job, path.name, leave=False)
        if args.saliency and not args.slices:
            saveNode(result.saliency[0], Path(args.saliency) / f"{name or baseNameOf(path)}_saliency.nrrd")
        return [{**row, "input": path.name} for row in result.rows]  # "input" stays the first column
    finally:
        scene.Clear(1)


def _trainClassify(args) -> int:
    import slicer

    from DLCommon import DLError
    from DLCommon.commands import printJobEstimate, runWithProgressBar
    from DLCommon.distributed import isMainProcess
    from DLCommon.plots import historyCurves, saveCurvesPng
    from DLCommon.settings import defaultOf, valuesFrom
    from DLCommon.storage import loadVolume

    from .config import ClassificationTrainingConfig as Training
    from .config import PlaneTrainingConfig
    from .logic import ClassificationLogic

    if args.list_architectures:
        return _listArchitectures(args)
    if not args.output_model and not args.dry_run:
        raise DLError("--output-model is missing", node="train-classify", fix="give a folder for the model")
    output = Path(args.output_model or ".")
    config = Training(**valuesFrom(args, Training, TRAINING_FLAGS), learningRate=args.learningRate,
                      **({"inputSize": tuple(args.inputSize)} if args.inputSize else {}))
    config.validate()  # a wrong flag costs no data loading (the job checks it again)
    scene = slicer.vtkMRMLScene()
    try:
        logic = ClassificationLogic(scene)
        if args.planes:
            from DLCommon.sampledata import loadMNI152

            planes = valuesFrom(args, PlaneTrainingConfig, PLANE_FLAGS)  # perClass, deformedCopies
            job = logic.trainPlanesJob(loadMNI152(scene)["t1"], config, **planes, modelName=args.name,
                                       outputDir=output, addToCatalog=args.add_to_catalog)
            fields = {"planes": True}
        else:
            labelled = [(loadVolume(path, scene), label) for path, label in readLabelCsv(args.csv)]
            # no --input-size: 64 x 64 for single-slice volumes (one axis of size 1), 64 x 64 x 64 for 3D ones
            edge, dims = defaultOf(Training, "inputSize")[0], labelled[0][0].GetImageData().GetDimensions()
            if not args.inputSize:
                config.inputSize = (edge,) * (2 if list(dims).count(1) == 1 else 3)
            job = logic.trainJob(labelled, args.classes, config, modelName=args.name, outputDir=output,
                                 addToCatalog=args.add_to_catalog)
            fields = {"images": len(labelled)}
        if args.dry_run:
            return printJobEstimate(lambda: job, **fields)
        result = runWithProgressBar(job, f"train {args.name}", total=config.epochs, unit="epoch")
    finally:
        scene.Clear(1)
    if not isMainProcess():  # under torchrun rank 0 writes the outputs
        return 0
    saveCurvesPng(historyCurves(result.history), output / f"{args.name}_curves.png",
                  title=f"{args.name} ({config.architecture}, {result.model.spec.options['encoding']})")
    report = result.report
    print(f"Model: {result.modelPath}" + (f" (catalog id '{result.catalogId}')" if result.catalogId else ""))
    print(f"Validation ({report['validationSamples']} samples): accuracy {report['accuracy']:.3f}, balanced "
          f"{report['balancedAccuracy']:.3f}, MAE {report['mae']:.3f}; ECE {report['eceBefore']:.3f} -> "
          f"{report['eceAfter']:.3f} (temperature {report['temperature']:.2f})")
    return 0


def _listArchitectures(args) -> int:
    """Each architecture's parameters, size and depth (``--list-architectures``; nothing is trained)."""
    from DLCommon.settings import defaultOf

    from .architectures import architectureTable
    from .config import ClassificationTrainingConfig as Training

    size = args.inputSize or list(defaultOf(Training, "inputSize"))
    print(f"{'name':16s} {'MONAI network':16s} {'parameters':>12s} {'size MB':>8s} {'depth':>6s}  "
          f"({len(size)}D, input {'x'.join(map(str, size))})")
    for row in architectureTable(len(size), inputSize=size):
        print(f"{row['name']:16s} {row['network']:16s} {row['parameters']:12,d} {row['sizeMB']:8.1f} "
              f"{row['depth']:6d}  {row['description']}")
    return 0


def demo(scene, output: Path, progress) -> dict:
    """Train the standard-plane recogniser on the MNI152 T1, test it on planes of deformed copies, plot the
    class probabilities along the axial slices, and write a Grad-CAM of one plane."""
    import numpy as np
    import torch
    from PIL import Image

    from DLCommon.plots import saveCurvesPng
    from DLCommon.sampledata import mni152Tissue, randomCopy

    from .classifier import classProbabilities, saliencyMap
    from .data import normaliseImages
    from .logic import ClassificationLogic
    from .metrics import classificationReport
    from .planes import PLANE_CLASSES, planeDataset
    from .trainer import ClassificationTrainingConfig

    t1 = scene.GetFirstNodeByName("MNI152_T1")
    if t1 is None:
        from DLCommon.sampledata import loadMNI152

        t1 = loadMNI152(scene)["t1"]
    logic = ClassificationLogic(scene)
    config = ClassificationTrainingConfig(epochs=10, device="cpu")
    result = logic.trainPlanes(t1, config, modelName="standard-planes-demo",
                               outputDir=output / "classify-model", addToCatalog=False,
                               progress=lambda f, m: progress(0.02 + 0.75 * f, "classify: " + m))
    progress(0.8, "classify: held-out planes of deformed copies")
    image, labels = mni152Tissue(2.0)
    heldOut = [(randomCopy(image, labels, seed)[0].as_tensor(), image.affine) for seed in (900, 901)]
    planes, truth = planeDataset(heldOut, 30, seed=7)
    predicted = classProbabilities(result.model, normaliseImages(planes, 2), "cpu").argmax(1)
    report = classificationReport(predicted, truth, len(PLANE_CLASSES))
    progress(0.9, "classify: probabilities along the axial slices")
    positions, probabilities, names = logic.sliceProbabilities(t1, result.model, device="cpu")
    saveCurvesPng({name: (positions, probabilities[:, i].tolist()) for i, name in enumerate(names)},
                  output / "classify_slice_probabilities.png", title="Standard-plane probabilities along the MNI152 "
                  "axial slices", xName="slice position S (mm)")
    from monai.data import MetaTensor

    plane = normaliseImages(planes[truth == 0][0], 2)
    cam = saliencyMap(result.model, MetaTensor(plane, affine=torch.eye(4, dtype=torch.float64)), device="cpu")[0, :, :, 0]
    gray = (plane[0] - plane[0].min()) / (plane[0].max() - plane[0].min() + 1e-6)
    heat = np.stack([cam.numpy(), 0.3 * np.ones_like(cam.numpy()), 1.0 - cam.numpy()], -1)  # blue low, red high
    overlay = 0.55 * np.repeat(gray.numpy()[..., None], 3, -1) + 0.45 * heat
    picture = np.concatenate([np.repeat(gray.numpy()[..., None], 3, -1), overlay], axis=1)
    Image.fromarray((np.rot90(picture) * 255).clip(0, 255).astype(np.uint8)).resize((512, 256)).save(
        output / "classify_gradcam.png")
    progress(1.0, "classify: done")
    summary = {"heldOutAccuracy": round(report["accuracy"], 4), "confusion": report["confusion"],
               "calibration": {k: round(result.report[k], 4) for k in ("eceBefore", "eceAfter", "temperature")},
               "classes": PLANE_CLASSES, "model": str(result.modelPath),
               "files": ["classify_slice_probabilities.png", "classify_gradcam.png"]}
    (output / "classify_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
