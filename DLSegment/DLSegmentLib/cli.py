"""``meddl segment`` / ``meddl train-segment`` and DLSegment's part of ``meddl demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["addCommands", "demo"]



def addCommands(commands) -> None:
    from .networks import NETWORKS
    from .trainer import LOSS_NAMES

    segment = commands.add_parser("segment", help="segment a volume (or every volume in a folder) with a model")
    segment.add_argument("--model", required=True, help="catalog id or model file / bundle")
    segment.add_argument("--input", required=True,
                         help="volume file, or a cohort: a folder of volumes or a CSV with an 'input' column "
                              "(optional 'name', 'output'); sharded over torchrun processes, resumable")
    segment.add_argument("--output", required=True,
                         help="output .seg.nrrd (for a cohort: an output folder, with manifest.csv)")
    segment.add_argument("--probabilities", help="also write class probabilities (a 4D .nrrd / a folder)")
    segment.add_argument("--mirror", action="store_true",
                         help="test-time augmentation: average with the left-right mirrored prediction (2x time)")
    segment.add_argument("--device", default="auto")
    segment.set_defaults(handler=_segment, dryRun=True)

    train = commands.add_parser("train-segment", help="train a segmentation model on image / label files")
    train.add_argument("--images", nargs="+", required=True, help="training volumes")
    train.add_argument("--labels", nargs="+", required=True, help=".seg.nrrd or labelmap files, one per image")
    train.add_argument("--loss", choices=LOSS_NAMES, default="dicece")
    train.add_argument("--network", choices=sorted(NETWORKS), default="unet")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--patch", type=int, nargs="+", default=[64, 64, 64], help="patch size (2 or 3 values)")
    train.add_argument("--spacing", type=float, nargs=3, help="train at this voxel size (mm)")
    train.add_argument("--batches-per-epoch", type=int, default=16)
    train.add_argument("--batch-size", type=int, default=2)
    train.add_argument("--features", type=int, default=16, help="width of the network's first level")
    train.add_argument("--norm", choices=("batch", "instance", "group"), default="batch",
                       help="normalisation layers (instance / group: independent of how a batch is split "
                            "over torchrun processes on CPU)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--intensity-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                       help="scale this intensity window to 0..1 (e.g. CT: -200 300) instead of a per-image z-score")
    train.add_argument("--fine-tune", help="catalog id or model file to start from")
    train.add_argument("--output-model", required=True, help="folder for the trained model (+ curves PNG)")
    train.add_argument("--name", default="segmentation", help="model name (and catalog id with --register)")
    train.add_argument("--register", action="store_true", help="add the model to the catalog")
    train.add_argument("--device", default="auto")
    train.set_defaults(handler=_trainSegment, dryRun=True)


def _segment(args) -> int:
    from DLCommon.cohort import CohortItem, cohortItems, isCohortSource, runCohortCommand
    from DLCommon.storage import checkWritable

    from .logic import resolveModel

    cohort = isCohortSource(args.input)
    for option in ("output", "probabilities"):  # before any work: a typo in an output path costs no run
        if getattr(args, option) and not args.dry_run:
            checkWritable(Path(getattr(args, option)) / "manifest.csv" if cohort else getattr(args, option))
    model = resolveModel(args.model)
    if args.dry_run:
        return _segmentDryRun(model, args)

    def process(item: CohortItem, output: Path) -> None:
        _segmentFile(model, item.inputs["input"], output, args, item.name)

    if not isCohortSource(args.input):
        process(CohortItem(Path(args.input).name, {"input": Path(args.input)}, Path(args.output)), Path(args.output))
        return 0
    folder = Path(args.output)
    items = cohortItems(args.input, lambda name: folder / f"{name}.seg.nrrd")
    return runCohortCommand(items, process, folder / "manifest.csv", "segment")


def _segmentDryRun(model, args) -> int:
    """Print each input's resource estimate (as JSON lines); 2 when one would not fit this machine."""
    import slicer

    from DLCommon import DLError, tensorFromVolume
    from DLCommon.resources import planInference
    from DLCommon.cohort import inputFiles
    from DLCommon.storage import loadVolume

    from .segmenter import checkModelInput

    status = 0
    for path in inputFiles(args.input):
        scene = slicer.vtkMRMLScene()
        try:
            image = tensorFromVolume(loadVolume(path, scene))
            checkModelInput(model, image)
            # the command computes class probabilities for the whole volume (_segmentFile): estimate that run
            plan = planInference(model.network, image, model.spec, args.device, labelsOnly=False,
                                 node=f"Volume '{path.name}'")
            print(json.dumps({"input": str(path), **plan.toDict()}))
        except DLError as exc:
            print(json.dumps({"input": str(path), "fits": False, "text": str(exc)}))
            status = 2
        finally:
            scene.Clear(1)
    return status


def _segmentFile(model, path: Path, output: Path, args, name: str) -> None:
    """Segment one volume file into ``output`` (.seg.nrrd), with its probabilities if asked."""
    import slicer
    from tqdm import tqdm

    from DLCommon import saveNode, segmentationFromTensor, tensorFromVolume, volumeFromTensor
    from DLCommon.cohort import isCohortSource
    from DLCommon.segmentations import labelsFromScores
    from DLCommon.selfcheck import checkOutputGeometry, foregroundMask, orientationWarning
    from DLCommon.storage import loadVolume

    from .segmenter import predictProbabilities

    scene = slicer.vtkMRMLScene()
    try:
        volume = loadVolume(path, scene)
        image = tensorFromVolume(volume)
        foreground = foregroundMask(image)
        with tqdm(total=100, desc=Path(path).name, unit="%", leave=False) as bar:
            probabilities = predictProbabilities(model, image, device=args.device,
                                                 progress=lambda f, m: bar.update(100 * f - bar.n),
                                                 mirror=args.mirror)
        names = model.spec.labelNames or [f"label {i}" for i in range(1, probabilities.shape[0])]
        segmentation = segmentationFromTensor(probabilities, volume, scene, names, model.spec.labelColors or None,
                                              nodeName=f"{volume.GetName()} {model.spec.name}")
        checkOutputGeometry(volume, segmentation)
        warning = orientationWarning(labelsFromScores(probabilities), foreground)
        if warning:
            print(f"meddl: warning: {Path(path).name}: {warning}", file=sys.stderr)
        if args.probabilities:
            target = (Path(args.probabilities) / f"{name}_probabilities.nrrd" if isCohortSource(args.input)
                      else Path(args.probabilities))
            saveNode(volumeFromTensor(probabilities, volume, scene, "probabilities"), target)
        saveNode(segmentation, output)
        print(f"{Path(path).name}: {', '.join(names)}")
    finally:
        scene.Clear(1)


def _trainSegment(args) -> int:
    from tqdm import tqdm

    from DLCommon.distributed import isMainProcess
    from DLCommon.plots import historyCurves, saveCurvesPng

    from .data import samplesFromFiles
    from .logic import resolveModel
    from .trainer import SegmentationTrainingConfig, trainSegmentationModel

    samples, names, colors = samplesFromFiles(args.images, args.labels)
    options = {}
    if args.intensity_range:
        low, high = args.intensity_range
        options["normalization"] = {"type": "range", "aMin": low, "aMax": high, "bMin": 0.0, "bMax": 1.0, "clip": False}
    config = SegmentationTrainingConfig(network=args.network, loss=args.loss, epochs=args.epochs,
                                        patchSize=args.patch, spacing=args.spacing, features=args.features,
                                        batchesPerEpoch=args.batches_per_epoch, batchSize=args.batch_size,
                                        norm=args.norm, seed=args.seed, device=args.device, **options)
    base = resolveModel(args.fine_tune) if args.fine_tune else None
    if args.dry_run:
        from DLCommon.resources import printEstimate

        from .trainer import estimateSegmentationTraining

        estimate = estimateSegmentationTraining(samples, len(names), config, base)
        return 0 if printEstimate(estimate, images=len(samples)) else 2
    output = Path(args.output_model)
    with tqdm(total=args.epochs, desc=f"train {args.name}", unit="epoch") as bar:
        def progress(fraction, message):
            bar.set_postfix_str(message.split(": ", 1)[-1][:50])
            bar.update(round(fraction * args.epochs) - bar.n)

        result = trainSegmentationModel(samples, names, colors, config, output, args.name, baseModel=base,
                                        register=args.register, progress=progress)
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
