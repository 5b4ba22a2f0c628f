"""``meddl super-resolve | train-synthesis | synthesize | simulate-us`` and DLSynthesize's part of ``meddl demo``.

One path per job: each command loads its files into a slicer-core scene and runs the job the panels run
(:class:`~.logic.SynthesisLogic`'s ``superResolveJob``, ``imageToImageJob``, ``denoiseJob``, ``synthesizeJob``,
``simulateUltrasoundJob``), then saves its outputs; ``--dry-run`` prints that job's resource estimate (its plan)
as one JSON line per input. The flags of engine options are made from the config fields (``config.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from DLCommon.commands import printJobEstimate, runWithProgressBar  # torch-free: --help stays fast

__all__ = ["addCommands", "demo"]

# the flags made from the configs' fields (DLCommon.settings: one definition of each default, range and choice list)
SUPER_RESOLUTION_FLAGS = ("steps", "batchSize", "features", "seed", "device")
TRAINING_FLAGS = ("dimensions", "loss", "steps", "batchSize", "features", "seed", "device")  # ImageToImageConfig's
DENOISER_FLAGS = ("steps", "batchSize", "features", "seed", "device")  # --mode autoencoder: the same flags
ULTRASOUND_FLAGS = ("geometry", "depth", "frequency")


def _helpOf(configClass, name: str) -> str:
    """A hand-written flag's help from its config field (tooltip, unit, range)."""
    from DLCommon.settings import defaultOf, settingOf

    meta = settingOf(configClass, name)
    text = meta["tooltip"].rstrip(".") + (f" ({meta['unit']})" if meta["unit"] else "")
    if meta["minimum"] is not None:
        text += f"; {meta['minimum']:g} to {meta['maximum']:g}"
    return f"{text} (default {defaultOf(configClass, name)})"


def addCommands(commands) -> None:
    from DLCommon.settings import addArguments, defaultOf

    from .config import MODALITIES, TRAINING_MODES, ImageToImageConfig, SuperResolutionConfig, UltrasoundConfig

    resolve = commands.add_parser("super-resolve",
                                  help="restore thin slices of a thick-slice volume (self-supervised, no training data)")
    resolve.add_argument("--input", required=True, help="thick-slice volume file")
    resolve.add_argument("--output", required=True, help="super-resolved volume file (.nrrd, .nii.gz)")
    # by hand: its default (None: from the geometry) has no argparse type of its own; default and help from the field
    resolve.add_argument("--factor", type=int, default=defaultOf(SuperResolutionConfig, "factor"), metavar="FACTOR",
                         help=_helpOf(SuperResolutionConfig, "factor"))
    addArguments(resolve, SuperResolutionConfig, SUPER_RESOLUTION_FLAGS)
    resolve.set_defaults(handler=_superResolve, dryRun=True)

    train = commands.add_parser("train-synthesis", help="train an image-to-image model on (source, target) pairs")
    train.add_argument("--mode", choices=TRAINING_MODES, default=TRAINING_MODES[0],
                       help="unet: supervised U-Net; pix2pix: conditional GAN (2D); autoencoder: self-supervised "
                            "denoiser trained on the sources alone (no targets); iqt: image-quality transfer from "
                            "low-resolution sources to high-resolution targets (any grids)")
    train.add_argument("--sources", nargs="+", required=True, help="source volumes")
    train.add_argument("--targets", nargs="+",
                       help="target volumes, one per source (resampled onto its source if on another grid; iqt: "
                            "its own finer grid); not for autoencoder")
    # --steps starts from ImageToImageConfig's 600 for every mode (DenoiseConfig's own default is 1200)
    addArguments(train, ImageToImageConfig, TRAINING_FLAGS)
    train.add_argument("--output-model", required=True, help="folder for the model (.ts) and its curves PNG")
    train.add_argument("--name", default="synthesis", help="model name (and catalog id with --add-to-catalog)")
    train.add_argument("--add-to-catalog", "--register", dest="add_to_catalog", action="store_true",
                       help="add the model to the catalog (--register: its former name)")
    train.set_defaults(handler=_trainSynthesis, dryRun=True)

    apply = commands.add_parser("synthesize", help="apply an image-to-image model to a volume")
    apply.add_argument("--model", required=True, help="catalog id or model file")
    apply.add_argument("--input", required=True,
                       help="volume file, or a cohort: a folder of volumes or a CSV with an 'input' column "
                            "(sharded over torchrun processes, resumable)")
    apply.add_argument("--output", required=True, help="volume file (for a cohort: a folder, with manifest.csv)")
    addArguments(apply, ImageToImageConfig, ["device"])
    apply.set_defaults(handler=_synthesize, dryRun=True)

    simulate = commands.add_parser("simulate-us", help="simulate a B-mode ultrasound image from labels or a CT / MR")
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", help="segmentation (.seg.nrrd; tissue from segment names) or labelmap")
    source.add_argument("--volume", help="CT or MR volume (see --modality)")
    simulate.add_argument("--reference", help="the volume a .seg.nrrd is rasterised on")
    simulate.add_argument("--modality", choices=MODALITIES, default=MODALITIES[0],
                          help="how a --volume's intensities become tissue")
    simulate.add_argument("--pose", help="transform file (.h5 / .tfm): probe to world (+Y = beam direction)")
    simulate.add_argument("--position", type=float, nargs=3, help="transducer centre (RAS mm), with --target")
    simulate.add_argument("--target", type=float, nargs=3, help="a point on the beam axis (RAS mm)")
    simulate.add_argument("--normal", type=float, nargs=3, default=[0.0, 1.0, 0.0], help="image plane normal")
    addArguments(simulate, UltrasoundConfig, ULTRASOUND_FLAGS)
    simulate.add_argument("--output", required=True, help="the image as a volume file (.nrrd), in the probe plane")
    simulate.add_argument("--png", help="also write the image as a PNG")
    simulate.set_defaults(handler=_simulateUs, dryRun=True)


def _warn(result, name: str) -> None:
    for warning in result.warnings:
        print(f"meddl: warning: {name}: {warning}", file=sys.stderr)


# --- the commands -----------------------------------------------------------------------------------------------

def _superResolve(args) -> int:
    import slicer

    from DLCommon import saveNode
    from DLCommon.settings import valuesFrom
    from DLCommon.storage import checkWritable, loadVolume

    from .config import SuperResolutionConfig
    from .logic import SynthesisLogic

    if not args.dry_run:
        checkWritable(args.output)
    config = SuperResolutionConfig(factor=args.factor, **valuesFrom(args, SuperResolutionConfig, SUPER_RESOLUTION_FLAGS))
    scene = slicer.vtkMRMLScene()
    try:
        volume = loadVolume(args.input, scene)

        def makeJob():  # the panel's job (its "super-resolution" task), with the options only the command has
            return SynthesisLogic(scene).superResolveJob(volume, config)

        if args.dry_run:
            return printJobEstimate(makeJob, input=str(args.input))
        result = runWithProgressBar(makeJob(), "super-resolve")
        saveNode(result.volume, args.output)
        _warn(result, Path(args.input).name)
        details = result.details
        print(f"{Path(args.input).name}: slice axis {details['axis']}, x{details['factor']} -> {args.output}")
    finally:
        scene.Clear(1)
    return 0


def _trainSynthesis(args) -> int:
    import slicer

    from DLCommon import DLError
    from DLCommon.distributed import isMainProcess
    from DLCommon.plots import historyCurves, saveCurvesPng
    from DLCommon.settings import valuesFrom
    from DLCommon.storage import loadVolume

    from .config import ImageToImageConfig, Pix2PixConfig
    from .logic import SynthesisLogic

    if args.mode == "autoencoder":
        return _trainDenoiser(args)
    if len(args.sources) != len(args.targets or []):
        raise DLError(f"got {len(args.sources)} sources and {len(args.targets or [])} targets", node="Command line",
                      fix="give one target per source, in the same order")
    options = valuesFrom(args, ImageToImageConfig, TRAINING_FLAGS)
    if args.mode == "iqt":  # a 3D patch regression
        options["dimensions"] = 3
    config = (Pix2PixConfig if args.mode == "pix2pix" else ImageToImageConfig).forDimensions(**options)
    scene = slicer.vtkMRMLScene()
    try:
        pairs = [(loadVolume(s, scene), loadVolume(t, scene)) for s, t in zip(args.sources, args.targets)]

        def makeJob():  # the panel's image-to-image job, training only, saving the model
            return SynthesisLogic(scene).imageToImageJob(pairs, None, config, method=args.mode,
                                                         outputDir=args.output_model, modelName=args.name,
                                                         addToCatalog=args.add_to_catalog)

        if args.dry_run:
            return printJobEstimate(makeJob, pairs=len(pairs))
        result = runWithProgressBar(makeJob(), f"train {args.name}")
    finally:
        scene.Clear(1)
    if not isMainProcess():  # under torchrun rank 0 writes the outputs
        return 0
    saveCurvesPng(historyCurves(result.history), Path(args.output_model) / f"{args.name}_curves.png",
                  title=f"{args.name} ({args.mode})")
    _warn(result, args.name)
    print(f"Model: {result.modelPath}" + (f" (catalog id '{result.catalogId}')" if result.catalogId else ""))
    return 0


def _trainDenoiser(args) -> int:
    import slicer

    from DLCommon import DLError
    from DLCommon.distributed import isMainProcess
    from DLCommon.plots import historyCurves, saveCurvesPng
    from DLCommon.settings import valuesFrom
    from DLCommon.storage import loadVolume

    from .config import DenoiseConfig
    from .logic import SynthesisLogic

    if len(args.sources) != 1:
        raise DLError(f"got {len(args.sources)} volumes; the autoencoder is trained on one noisy volume",
                      node="Command line", fix="give one --sources volume (then apply it to others with synthesize)")
    config = DenoiseConfig(**valuesFrom(args, DenoiseConfig, DENOISER_FLAGS))
    scene = slicer.vtkMRMLScene()
    try:
        volume = loadVolume(args.sources[0], scene)

        def makeJob():  # the panel's denoising job, also saving its denoiser
            return SynthesisLogic(scene).denoiseJob(volume, config, outputDir=args.output_model, modelName=args.name,
                                                    addToCatalog=args.add_to_catalog)

        if args.dry_run:
            return printJobEstimate(makeJob, sources=1)
        result = runWithProgressBar(makeJob(), f"train {args.name}")
    finally:
        scene.Clear(1)
    if not isMainProcess():  # under torchrun rank 0 writes the outputs
        return 0
    saveCurvesPng(historyCurves(result.history), Path(args.output_model) / f"{args.name}_curves.png",
                  title=f"{args.name} (autoencoder)")
    _warn(result, args.name)
    catalog = f" (catalog id '{result.catalogId}')" if result.catalogId else ""
    print(f"Model: {result.modelPath} (noise level {result.details['noiseLevel']:.3g}){catalog}")
    return 0


def _synthesize(args) -> int:
    from DLCommon.catalog import resolveModel
    from DLCommon.cohort import CohortItem, cohortItems, isCohortSource, runCohortCommand
    from DLCommon.storage import checkWritable

    if not args.dry_run:
        checkWritable(Path(args.output) / "manifest.csv" if isCohortSource(args.input) else args.output)
    model = resolveModel(args.model, task="synthesis")  # loaded once for every input
    if args.dry_run:
        return _synthesizeDryRun(model, args)
    if not isCohortSource(args.input):
        _synthesizeFile(model, Path(args.input), Path(args.output), args)
        print(f"{Path(args.input).name} -> {args.output}")
        return 0
    folder = Path(args.output)
    items = cohortItems(args.input, lambda name: folder / f"{name}.nrrd")

    def process(item: CohortItem, partial: Path) -> None:
        _synthesizeFile(model, item.inputs["input"], partial, args)

    return runCohortCommand(items, process, folder / "manifest.csv", "synthesize")


def _synthesizeJob(model, path: Path, scene, args):
    """The logic's job applying ``model`` to the volume file ``path``, loaded into ``scene``."""
    from DLCommon.storage import loadVolume

    from .logic import SynthesisLogic

    volume = loadVolume(path, scene)
    return SynthesisLogic(scene).synthesizeJob(volume, model, device=args.device)


def _synthesizeDryRun(model, args) -> int:
    """Print each input's estimate (the job's plan: whole-volume buffers + the network on a slice batch (2D) or a
    window batch (3D), as many passes as the model makes); 2 when one would not fit here."""
    import slicer

    from DLCommon.cohort import inputFiles

    status = 0
    for path in inputFiles(args.input):
        scene = slicer.vtkMRMLScene()
        try:
            status = max(status, printJobEstimate(lambda path=path, scene=scene: _synthesizeJob(model, path, scene, args),
                                         input=str(path)))
        finally:
            scene.Clear(1)
    return status


def _synthesizeFile(model, path: Path, output: Path, args) -> None:
    """Apply a trained model (image-to-image, denoiser or quality transfer) to one volume file."""
    import slicer

    from DLCommon import saveNode

    scene = slicer.vtkMRMLScene()
    try:
        result = runWithProgressBar(_synthesizeJob(model, path, scene, args), Path(path).name, leave=False)
        _warn(result, Path(path).name)
        saveNode(result.volume, output)
    finally:
        scene.Clear(1)


def _simulateUs(args) -> int:
    import slicer

    from DLCommon import DLError, saveNode
    from DLCommon.geometry import vtkMatrixFromArray
    from DLCommon.settings import valuesFrom
    from DLCommon.storage import checkWritable, loadSegmentation, loadTransform, loadVolume

    from .config import UltrasoundConfig
    from .logic import SynthesisLogic
    from .ultrasound import probePose

    if not args.dry_run:
        checkWritable(args.output)
    scene = slicer.vtkMRMLScene()
    try:
        if args.labels and str(args.labels).lower().endswith(".seg.nrrd"):
            source = loadSegmentation(args.labels, scene)
            if not args.reference:
                raise DLError("needs --reference: the volume the segmentation is rasterised on", file=args.labels,
                              fix="add --reference VOLUME (e.g. the image it was drawn on)")
            reference = loadVolume(args.reference, scene)
        elif args.labels:
            source, reference = loadVolume(args.labels, scene, labelmap=True), None
        else:
            source = reference = loadVolume(args.volume, scene)
        if args.pose:
            probe = loadTransform(args.pose, scene)
        elif args.position and args.target:
            probe = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "probe")
            probe.SetMatrixTransformToParent(vtkMatrixFromArray(probePose(args.position, args.target,
                                                                          args.normal).numpy()))
        else:
            raise DLError("has no probe pose", node="Command line", fix="give --pose FILE, or --position and --target")
        config = UltrasoundConfig(**valuesFrom(args, UltrasoundConfig, ULTRASOUND_FLAGS))

        def makeJob():  # the panel's Simulate job
            return SynthesisLogic(scene).simulateUltrasoundJob(source, probe, reference, config, modality=args.modality)

        if args.dry_run:
            return printJobEstimate(makeJob, input=str(args.labels or args.volume))
        result = runWithProgressBar(makeJob(), "simulate-us", leave=False)
        saveNode(result.volume, args.output)
        if args.png:
            _savePng(result.volume, args.png)
        print(f"Simulated ultrasound -> {args.output}")
    finally:
        scene.Clear(1)
    return 0


def _savePng(volumeNode, path) -> None:
    """A 2D frame ``(X, Y, 1)`` as a PNG with depth downwards."""
    from PIL import Image

    from DLCommon import tensorFromVolume

    frame = tensorFromVolume(volumeNode)[0, :, :, 0]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame.T.clamp(0, 255).byte().numpy()).save(path)


def demo(scene, output: Path, progress) -> dict:
    """Super-resolve a 4 mm thick-slice copy of the MNI152 T1 (axial slices); PSNR against cubic interpolation."""
    import math

    import torch
    from monai.data import MetaTensor

    from DLCommon import tensorFromVolume, volumeFromTensor
    from DLCommon.montage import saveComparison
    from DLCommon.sampledata import mni152Paths
    from DLCommon.storage import loadVolume

    from .config import SuperResolutionConfig
    from .logic import SynthesisLogic
    from .superresolution import degradeAlongAxis, upsampleAlongAxis

    progress(0.02, "synthesize: making a 4 mm thick-slice T1")
    t1 = tensorFromVolume(loadVolume(mni152Paths()["t1"], scene, name="MNI152 T1 (synthesis demo)"))
    count = (t1.shape[3] - 1) // 4 * 4 + 1
    truth = t1.as_tensor()[0, :, :, :count]
    affine = torch.as_tensor(t1.affine).clone()
    affine[:3, 2] *= 4
    thick = volumeFromTensor(MetaTensor(degradeAlongAxis(truth, 2, 4)[None], affine=affine), None, scene,
                             "MNI152 T1 4 mm slices")
    result = SynthesisLogic(scene).superResolve(thick, SuperResolutionConfig(steps=200, device="cpu"),
                                                progress=lambda f, m: progress(0.05 + 0.85 * f, "synthesize: " + m))
    restored = tensorFromVolume(result.volume)[0]
    cubic = upsampleAlongAxis(tensorFromVolume(thick)[0], 2, 4)
    mask = truth > 10

    def psnr(estimate):
        return 10 * math.log10(255.0 ** 2 / float(((estimate - truth)[mask] ** 2).mean()))

    scores = {"cubic": round(psnr(cubic), 2), "superResolved": round(psnr(restored), 2)}
    progress(0.92, "synthesize: simulating ultrasound from the tissue labels")
    ultrasound = _demoUltrasound(scene, output)
    progress(0.95, "synthesize: writing the montage")
    saveComparison(output / "synthesize_montage.png", {"4 mm slices, cubic": cubic, "super-resolved": restored,
                                                        "1 mm original": truth}, axis=0,
                   title=f"DLSynthesize demo: sagittal slice across 4 mm axial slices (cubic {scores['cubic']} dB, "
                         f"super-resolved {scores['superResolved']} dB)")
    progress(1.0, "synthesize: done")
    summary = {"superResolutionPsnr": scores, "ultrasound": ultrasound,
               "files": ["synthesize_montage.png", "ultrasound_simulation.png"]}
    (output / "synthesize_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _demoUltrasound(scene, output: Path) -> dict:
    """A sector image through the MNI152 tissue labels, saved next to the label slice it came from."""
    import torch
    from PIL import Image

    from DLCommon import segmentationFromTensor, tensorFromVolume, volumeFromTensor
    from DLCommon.geometry import vtkMatrixFromArray
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, mni152Tissue
    from DLCommon.transforms import resampleVolume

    from .logic import SynthesisLogic
    from .ultrasound import probePose

    image, labels = mni152Tissue(1.0)
    volume = volumeFromTensor(image, None, scene, "MNI152 T1 (ultrasound demo)")
    segmentation = segmentationFromTensor(labels, volume, scene, TISSUE_NAMES, TISSUE_COLORS, nodeName="tissue")
    probe = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "ultrasound probe")
    probe.SetMatrixTransformToParent(vtkMatrixFromArray(probePose([0, -10, 75], [0, -10, 0], [0, 1, 0]).numpy()))
    frame = SynthesisLogic(scene).simulateUltrasound(segmentation, probe, referenceVolume=volume).volume
    labelNode = volumeFromTensor(labels, volume, scene, "tissue labels", labelmap=True)
    onFrame = resampleVolume(labelNode, frame, interpolation="nearest").as_tensor()[0, :, :, 0].long()
    palette = torch.tensor([[0, 0, 0]] + [[int(255 * c) for c in color] for color in TISSUE_COLORS], dtype=torch.uint8)
    us = tensorFromVolume(frame)[0, :, :, 0].T.clamp(0, 255).byte()
    side = torch.cat([palette[onFrame.T], us[..., None].expand(-1, -1, 3)], dim=1)
    Image.fromarray(side.numpy()).save(output / "ultrasound_simulation.png")
    return {"shape": list(us.shape), "probe": "above the vertex, coronal plane y = -10 mm"}
