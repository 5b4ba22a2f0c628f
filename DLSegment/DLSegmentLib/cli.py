"""``meddl segment`` / ``meddl train-segment`` and DLSegment's part of ``meddl demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["addCommands", "demo"]

# the train-segment flags made from the training config's fields (DLCommon.settings: one definition)
TRAINING_FLAGS = ("loss", "network", "epochs", "batchesPerEpoch", "batchSize", "learningRate", "features", "norm",
                  "seed", "device")


def addCommands(commands) -> None:
    from DLCommon.cli import addTrustArgument
    from DLCommon.settings import addArguments, defaultOf

    from .config import SegmentationTrainingConfig

    segment = commands.add_parser("segment", help="segment a volume (or every volume in a folder) with a model")
    segment.add_argument("--model", required=True, help="catalog id or model file / bundle")
    segment.add_argument("--input", required=True, action="append", metavar="FILE | NAME=FILE",
                         help="volume file, or a cohort: a folder of volumes or a CSV with an 'input' column "
                              "(optional 'name', 'output'); sharded over torchrun processes, resumable. A bundle "
                              "that takes several volumes: one --input NAME=FILE each (its names: `meddl models "
                              "list`; e.g. --input T1c=a.nii.gz --input T1=b.nii.gz ...), or a CSV with a "
                              "column per name")
    segment.add_argument("--output", required=True,
                         help="output .seg.nrrd (for a cohort: an output folder, with manifest.csv)")
    segment.add_argument("--probabilities", help="also write class probabilities (a 4D .nrrd / a folder)")
    segment.add_argument("--mirror", action="store_true",
                         help="test-time augmentation: average with the left-right mirrored prediction (2x time)")
    segment.add_argument("--device", default="auto")
    addTrustArgument(segment)
    segment.set_defaults(handler=_segment, dryRun=True)

    train = commands.add_parser("train-segment", help="train a segmentation model on image / label files")
    train.add_argument("--images", nargs="+", required=True, help="training volumes")
    train.add_argument("--labels", nargs="+", required=True, help=".seg.nrrd or labelmap files, one per image")
    addArguments(train, SegmentationTrainingConfig, TRAINING_FLAGS)
    train.add_argument("--patch", type=int, nargs="+", default=list(defaultOf(SegmentationTrainingConfig, "patchSize")),
                       help="patch size (2 or 3 values)")
    train.add_argument("--spacing", type=float, nargs=3, help="train at this voxel size (mm)")
    train.add_argument("--intensity-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                       help="scale this intensity window to 0..1 (e.g. CT: -200 300) instead of a per-image z-score")
    train.add_argument("--fine-tune", help="catalog id or model file to start from")
    train.add_argument("--output-model", required=True, help="folder for the trained model (+ curves PNG)")
    train.add_argument("--name", default="segmentation", help="model name (and catalog id with --add-to-catalog)")
    train.add_argument("--add-to-catalog", "--register", dest="add_to_catalog", action="store_true",
                       help="add the model to the catalog (--register: its former name)")
    train.set_defaults(handler=_trainSegment, dryRun=True)


def _segment(args) -> int:
    from DLCommon.cohort import CohortItem, cohortItems, isCohortSource, runCohortCommand
    from DLCommon.storage import checkWritable

    from DLCommon.cli import trustFromArguments

    from .logic import resolveModel

    trustFromArguments(args.model, args)
    model = resolveModel(args.model)
    inputs = _namedInputFiles(args.input, model)
    cohort = len(inputs) == 1 and isCohortSource(next(iter(inputs.values())))
    for option in ("output", "probabilities"):  # before any work: a typo in an output path costs no run
        if getattr(args, option) and not args.dry_run:
            checkWritable(Path(getattr(args, option)) / "manifest.csv" if cohort else getattr(args, option))
    if args.dry_run:
        return _segmentDryRun(model, inputs, args)

    def process(item: CohortItem, output: Path) -> None:
        _segmentFile(model, item.inputs, output, args, item.name)

    if not cohort:
        first = next(iter(inputs.values()))
        process(CohortItem(first.name, inputs, Path(args.output)), Path(args.output))
        return 0
    folder = Path(args.output)
    bundle = getattr(model, "bundle", None)  # a bundle with several inputs: a CSV column per input name
    names = bundle.requiredVolumeNames if bundle is not None and len(bundle.volumeNames) > 1 else ["input"]
    items = cohortItems(next(iter(inputs.values())), lambda name: folder / f"{name}.seg.nrrd", columns=names)
    return runCohortCommand(items, process, folder / "manifest.csv", "segment")


def _namedInputFiles(entries: list[str], model) -> dict[str, Path]:
    """``--input`` entries as input name -> path, the model's first input first: ``FILE`` is the first input
    (``input`` for a cohort's column); ``NAME=FILE`` names a bundle's input (``=`` in a file name that exists is
    the file's)."""
    from DLCommon import DLError

    bundle = getattr(model, "bundle", None)
    names = bundle.volumeNames if bundle is not None and len(bundle.volumeNames) > 1 else []
    first = names[0] if names else "input"
    named: dict[str, Path] = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or Path(entry).exists() or not name or "/" in name or "\\" in name:
            name, path = first, entry
        if name in named:
            raise DLError(f"is given twice ({named[name]}, {path})", node=f"--input {name}",
                          fix="give each input once")
        named[name] = Path(path)
    unknown = [n for n in named if n not in names + [first]]
    if unknown:
        raise DLError(f"names {', '.join(map(repr, unknown))}, which the model does not take", node="--input",
                      fix=f"name its inputs: {', '.join(names)}" if names else "give one --input FILE")
    if first not in named:
        raise DLError(f"does not give the model's first input '{first}'", node="--input",
                      fix=f"add --input {first}=FILE (its result is on that volume's grid)")
    return {first: named.pop(first), **named}


def _applyJob(model, inputs: dict[str, Path], args, scene):
    """The job the DL Segment panel makes for these settings (``parameters.applyJob``), on the files ``inputs``
    (input name -> path, the first input first) loaded into ``scene``: the command, its ``--dry-run`` and the Slicer
    widget run the same job."""
    import types

    from DLCommon.storage import loadVolume

    from . import MODULE

    volumes = {name: loadVolume(path, scene) for name, path in inputs.items()}
    first = next(iter(volumes))
    settings = types.SimpleNamespace(inputVolume=volumes.pop(first), modelId=model, outputSegmentation=None,
                                     probabilityVolumes=bool(args.probabilities), entropyVolume=False,
                                     mirror=args.mirror, otherInputs=volumes)
    return MODULE.makeJob("apply", MODULE.makeEngine(scene), settings, device=args.device), settings.inputVolume


def _segmentDryRun(model, inputs: dict[str, Path], args) -> int:
    """Print each input's resource estimate (the job's plan, as JSON lines); 2 when one would not fit here."""
    import slicer

    from DLCommon.cohort import inputFiles, isCohortSource
    from DLCommon.commands import printJobEstimate

    first = next(iter(inputs.values()))
    cases = ([{"input": path} for path in inputFiles(first)] if len(inputs) == 1 and isCohortSource(first)
             else [inputs])
    status = 0
    for case in cases:
        scene = slicer.vtkMRMLScene()
        try:
            status = max(status, printJobEstimate(lambda: _applyJob(model, case, args, scene)[0],
                                                  input=str(next(iter(case.values())))))
        finally:
            scene.Clear(1)
    return status


def _segmentFile(model, inputs: dict[str, Path], output: Path, args, name: str) -> None:
    """Segment one case (input name -> volume file, the first input first) into ``output`` (.seg.nrrd) with the
    panel's job, and its probabilities (one 4D file: background first when the classes are exclusive) if asked."""
    import slicer
    import torch

    from DLCommon import saveNode, tensorFromVolume, volumeFromTensor
    from DLCommon.cohort import isCohortSource
    from DLCommon.commands import runWithProgressBar

    path = next(iter(inputs.values()))
    scene = slicer.vtkMRMLScene()
    try:
        job, volume = _applyJob(model, inputs, args, scene)
        result = runWithProgressBar(job, Path(path).name, leave=False)
        for warning in result.warnings:
            print(f"meddl: warning: {Path(path).name}: {warning}", file=sys.stderr)
        if args.probabilities:
            classes = torch.stack([tensorFromVolume(node)[0] for node in result.probabilities])
            scores = torch.cat([(1 - classes.sum(0)).clamp(min=0)[None], classes]) if result.exclusive else classes
            target = (Path(args.probabilities) / f"{name}_probabilities.nrrd" if isCohortSource(args.input[0])
                      else Path(args.probabilities))
            saveNode(volumeFromTensor(scores, volume, scene, "probabilities"), target)
        saveNode(result.segmentation, output)
        segments = result.segmentation.GetSegmentation()
        print(f"{Path(path).name}: {', '.join(segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments()))}")
    finally:
        scene.Clear(1)


def _trainSegment(args) -> int:
    """Train through the job the DL Segment panel's Train makes (``SegmentationLogic.trainJob``) on the files loaded
    into a slicer-core scene; ``--dry-run`` prints that job's plan (its estimate, or the device it switches to)."""
    import slicer

    from DLCommon import DLError
    from DLCommon.commands import printJobEstimate, runWithProgressBar
    from DLCommon.distributed import isMainProcess
    from DLCommon.plots import historyCurves, saveCurvesPng
    from DLCommon.settings import valuesFrom
    from DLCommon.storage import loadLabels, loadVolume

    from .config import SegmentationTrainingConfig
    from .logic import SegmentationLogic

    if len(args.images) != len(args.labels):
        raise DLError(f"got {len(args.images)} image(s) and {len(args.labels)} label file(s)", node="--labels",
                      fix="give one label file per image, in the same order")
    options = {}
    if args.intensity_range:
        low, high = args.intensity_range
        options["normalization"] = {"type": "range", "aMin": low, "aMax": high, "bMin": 0.0, "bMax": 1.0, "clip": False}
    config = SegmentationTrainingConfig(**valuesFrom(args, SegmentationTrainingConfig, TRAINING_FLAGS),
                                        patchSize=args.patch, spacing=args.spacing, **options)
    scene = slicer.vtkMRMLScene()
    try:
        pairs = [(loadVolume(image, scene), loadLabels(labels, scene)) for image, labels in zip(args.images, args.labels)]
        output = Path(args.output_model)
        def makeJob():
            return SegmentationLogic(scene).trainJob(pairs, config, modelName=args.name, baseModel=args.fine_tune,
                                                     outputDir=output, addToCatalog=args.add_to_catalog)

        if args.dry_run:
            return printJobEstimate(makeJob, images=len(pairs))
        result = runWithProgressBar(makeJob(), f"train {args.name}", total=args.epochs, unit="epoch")
    finally:
        scene.Clear(1)
    if not isMainProcess():  # under torchrun rank 0 writes the outputs
        return 0
    saveCurvesPng(historyCurves(result.history), output / f"{args.name}_curves.png", title=f"{args.name} ({args.loss})")
    print(f"Model: {result.modelPath}" + (f" (catalog id '{result.catalogId}')" if result.catalogId else ""))
    print(f"Best validation Dice {result.history.bestMetric:.3f} at epoch {result.history.bestEpoch + 1}")
    return 0


def demo(scene, output: Path, progress) -> dict:
    """Train a small tissue model on augmented MNI152 copies, segment a held-out deformed copy."""
    from DLCommon import segmentationFromTensor, volumeFromTensor
    from DLCommon.montage import saveMontage
    from DLCommon.plots import historyCurves, saveCurvesPng
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, mni152Tissue, randomCopy

    from .data import SegmentationSample
    from .segmenter import dicePerLabel, predictProbabilities
    from .trainer import SegmentationTrainingConfig, trainSegmentationModel

    progress(0.02, "segment: preparing MNI152 at 3 mm")
    image, labels = mni152Tissue(3.0)
    samples = [SegmentationSample(*randomCopy(image, labels, seed)) for seed in range(3)]
    test = randomCopy(image, labels, 999)
    config = SegmentationTrainingConfig(epochs=12, batchesPerEpoch=8, batchSize=4, patchSize=(32, 32, 32), features=8,
                                        learningRate=3e-3, device="cpu")
    result = trainSegmentationModel(samples, TISSUE_NAMES, TISSUE_COLORS, config, output / "segment-model",
                                    "mni152-tissue-demo",
                                    progress=lambda f, m: progress(0.05 + 0.8 * f, "segment: " + m))
    saveCurvesPng(historyCurves(result.history), output / "segment_training_curves.png", title="DLSegment demo (dicece)")
    progress(0.9, "segment: held-out copy")
    probabilities = predictProbabilities(result.model, test[0], device="cpu")
    predicted = probabilities.argmax(0)
    dice = dicePerLabel(predicted, test[1], 2)
    reference = volumeFromTensor(test[0], None, scene, "MNI152 deformed copy")
    segmentationFromTensor(predicted, reference, scene, TISSUE_NAMES, TISSUE_COLORS, nodeName="DLSegment demo")
    saveMontage(output / "segment_montage.png", test[0][0], predicted, TISSUE_COLORS,
                title=f"DLSegment demo: GM Dice {dice[0]:.2f}, WM Dice {dice[1]:.2f} (12 quick epochs, 3 mm)")
    progress(1.0, "segment: done")
    summary = {"dice": dict(zip(TISSUE_NAMES, [round(d, 3) for d in dice])), "model": str(result.modelPath),
               "files": ["segment_montage.png", "segment_training_curves.png"]}
    (output / "segment_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
