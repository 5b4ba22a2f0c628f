"""``meddl super-resolve`` and DLSynthesize's part of ``meddl demo``."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["addCommands", "demo"]


def addCommands(commands) -> None:
    resolve = commands.add_parser("super-resolve",
                                  help="restore thin slices of a thick-slice volume (self-supervised, no training data)")
    resolve.add_argument("--input", required=True, help="thick-slice volume file")
    resolve.add_argument("--output", required=True, help="super-resolved volume file (.nrrd, .nii.gz)")
    resolve.add_argument("--factor", type=int, help="slice spacing / pixel size (default: from the geometry)")
    resolve.add_argument("--steps", type=int, default=600, help="training iterations")
    resolve.add_argument("--device", default="auto")
    resolve.set_defaults(handler=_superResolve, dryRun=True)

    train = commands.add_parser("train-synthesis", help="train an image-to-image model on (source, target) pairs")
    train.add_argument("--mode", choices=("unet", "pix2pix", "autoencoder", "iqt"), default="unet",
                       help="unet: supervised U-Net; pix2pix: conditional GAN (2D); autoencoder: self-supervised "
                            "denoiser trained on the sources alone (no targets); iqt: image-quality transfer from "
                            "low-resolution sources to high-resolution targets (any grids)")
    train.add_argument("--sources", nargs="+", required=True, help="source volumes")
    train.add_argument("--targets", nargs="+", help="target volumes, one per source (same grid); not for autoencoder")
    train.add_argument("--dimensions", type=int, choices=(2, 3), default=2)
    train.add_argument("--loss", choices=("l1", "l2", "l1ssim"), default="l1")
    train.add_argument("--steps", type=int, default=600)
    train.add_argument("--output-model", required=True, help="folder for the model (.ts) and its curves PNG")
    train.add_argument("--name", default="synthesis", help="model name (and catalog id with --add-to-catalog)")
    train.add_argument("--add-to-catalog", "--register", dest="add_to_catalog", action="store_true",
                       help="add the model to the catalog (--register: its former name)")
    train.add_argument("--device", default="auto")
    train.set_defaults(handler=_trainSynthesis, dryRun=True)

    apply = commands.add_parser("synthesize", help="apply an image-to-image model to a volume")
    apply.add_argument("--model", required=True, help="catalog id or model file")
    apply.add_argument("--input", required=True,
                       help="volume file, or a cohort: a folder of volumes or a CSV with an 'input' column "
                            "(sharded over torchrun processes, resumable)")
    apply.add_argument("--output", required=True, help="volume file (for a cohort: a folder, with manifest.csv)")
    apply.set_defaults(handler=_synthesize, dryRun=True)

    simulate = commands.add_parser("simulate-us", help="simulate a B-mode ultrasound image from labels or a CT / MR")
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", help="segmentation (.seg.nrrd; tissue from segment names) or labelmap")
    source.add_argument("--volume", help="CT or MR volume (see --modality)")
    simulate.add_argument("--reference", help="the volume a .seg.nrrd is rasterised on")
    simulate.add_argument("--modality", choices=("mr", "ct"), default="mr")
    simulate.add_argument("--pose", help="transform file (.h5 / .tfm): probe to world (+Y = beam direction)")
    simulate.add_argument("--position", type=float, nargs=3, help="transducer centre (RAS mm), with --target")
    simulate.add_argument("--target", type=float, nargs=3, help="a point on the beam axis (RAS mm)")
    simulate.add_argument("--normal", type=float, nargs=3, default=[0.0, 1.0, 0.0], help="image plane normal")
    simulate.add_argument("--geometry", choices=("sector", "linear"), default="sector")
    simulate.add_argument("--depth", type=float, default=120.0, help="mm")
    simulate.add_argument("--frequency", type=float, default=5.0, help="MHz")
    simulate.add_argument("--output", required=True, help="the image as a volume file (.nrrd), in the probe plane")
    simulate.add_argument("--png", help="also write the image as a PNG")
    simulate.set_defaults(handler=_simulateUs)


def _superResolve(args) -> int:
    import slicer
    from tqdm import tqdm

    from DLCommon import saveNode
    from DLCommon.storage import checkWritable, loadVolume

    from .logic import SynthesisLogic
    from .superresolution import SuperResolutionConfig

    if not args.dry_run:
        checkWritable(args.output)
    scene = slicer.vtkMRMLScene()
    volume = loadVolume(args.input, scene)
    config = SuperResolutionConfig(factor=args.factor, steps=args.steps, device=args.device)
    if args.dry_run:  # the job's estimate: of the run as asked, or on the CPU when that is where it would run
        from DLCommon.resources import printEstimate

        estimate = SynthesisLogic(scene).superResolveJob(volume, config).resourceEstimate()
        scene.Clear(1)
        return 0 if printEstimate(estimate, input=str(args.input)) else 2
    with tqdm(total=100, desc="super-resolve", unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]") as bar:
        result = SynthesisLogic(scene).superResolve(volume, config, progress=lambda f, m: bar.update(100 * f - bar.n))
    saveNode(result.volume, args.output)
    details = result.details
    print(f"{Path(args.input).name}: slice axis {details['axis']}, x{details['factor']} -> {args.output}")
    scene.Clear(1)
    return 0


def _trainSynthesis(args) -> int:
    import slicer
    from tqdm import tqdm

    from DLCommon import DLError, ModelCatalog, tensorFromVolume
    from DLCommon.distributed import isMainProcess
    from DLCommon.plots import historyCurves, saveCurvesPng
    from DLCommon.storage import loadVolume

    from .imagetoimage import ImageToImageConfig, saveImageToImageModel, trainImageToImage
    from .pix2pix import Pix2PixConfig, trainPix2Pix

    if args.mode == "autoencoder":
        return _trainDenoiser(args)
    if len(args.sources) != len(args.targets or []):
        raise DLError(f"got {len(args.sources)} sources and {len(args.targets or [])} targets", node="Command line",
                      fix="give one target per source, in the same order")
    scene = slicer.vtkMRMLScene()
    pairs = [(tensorFromVolume(loadVolume(s, scene)), tensorFromVolume(loadVolume(t, scene)))
             for s, t in zip(args.sources, args.targets)]
    scene.Clear(1)
    if args.mode == "iqt":
        from .qualitytransfer import trainQualityTransfer

        args.dimensions = 3
    options = dict(steps=args.steps, loss=args.loss, device=args.device,
                   patchSize=32 if args.dimensions == 3 else 64)
    if args.dry_run:
        from DLCommon.resources import printEstimate

        from .estimates import estimateImageToImageTraining

        estimate = estimateImageToImageTraining([s.shape[1:] for s, _ in pairs],
                                                ImageToImageConfig(dimensions=args.dimensions, **options),
                                                f"Synthesis training ({args.mode})")
        return 0 if printEstimate(estimate, pairs=len(pairs)) else 2
    with tqdm(total=100, desc=f"train {args.name}", unit="%", bar_format="{l_bar}{bar}| {n:.0f}%") as bar:
        def progress(fraction, message):
            bar.update(100 * fraction - bar.n)

        if args.mode == "pix2pix":
            model = trainPix2Pix(pairs, Pix2PixConfig(**options), progress=progress)
        elif args.mode == "iqt":
            model = trainQualityTransfer(pairs, ImageToImageConfig(dimensions=3, **dict(options, patchSize=32)),
                                         progress=progress)
        else:
            model = trainImageToImage(pairs, ImageToImageConfig(dimensions=args.dimensions, **options), progress=progress)
    if not isMainProcess():  # under torchrun rank 0 writes the outputs
        return 0
    output = Path(args.output_model)
    path = saveImageToImageModel(model, output / f"{args.name}.ts", args.name,
                                 f"{args.mode} trained by MedDL on {len(pairs)} pair(s)")
    saveCurvesPng(historyCurves(model.history), output / f"{args.name}_curves.png", title=f"{args.name} ({args.mode})")
    message = f"Model: {path}"
    if args.add_to_catalog:
        message += f" (catalog id '{ModelCatalog().importFile(path, modelId=args.name, title=args.name).id}')"
    print(message)
    return 0


def _trainDenoiser(args) -> int:
    import slicer

    from DLCommon import DLError, ModelCatalog, tensorFromVolume
    from DLCommon.distributed import isMainProcess
    from DLCommon.storage import loadVolume

    from .denoise import DenoiseConfig, denoise
    from .imagetoimage import saveImageToImageModel

    if len(args.sources) != 1:
        raise DLError(f"got {len(args.sources)} volumes; the autoencoder is trained on one noisy volume",
                      node="Command line", fix="give one --sources volume (then apply it to others with synthesize)")
    scene = slicer.vtkMRMLScene()
    image = tensorFromVolume(loadVolume(args.sources[0], scene))
    config = DenoiseConfig(steps=args.steps, device=args.device)
    if args.dry_run:
        from DLCommon.resources import printEstimate

        from .estimates import estimateDenoise

        scene.Clear(1)
        return 0 if printEstimate(estimateDenoise(image, config), sources=1) else 2
    result = denoise(image, config)
    if not isMainProcess():  # under torchrun rank 0 writes the outputs
        return 0
    path = saveImageToImageModel(result.model, Path(args.output_model) / f"{args.name}.ts", args.name,
                                 f"self-supervised denoiser (noise level {result.noiseLevel:.3g})")
    message = f"Model: {path} (noise level {result.noiseLevel:.3g})"
    if args.add_to_catalog:
        message += f" (catalog id '{ModelCatalog().importFile(path, modelId=args.name, title=args.name).id}')"
    print(message)
    scene.Clear(1)
    return 0


def _synthesize(args) -> int:
    from DLCommon.catalog import resolveModel
    from DLCommon.cohort import CohortItem, cohortItems, isCohortSource, runCohortCommand
    from DLCommon.storage import checkWritable

    from .imagetoimage import imageToImageModelFrom

    if not args.dry_run:
        checkWritable(Path(args.output) / "manifest.csv" if isCohortSource(args.input) else args.output)
    model = imageToImageModelFrom(resolveModel(args.model, task="synthesis"))
    if args.dry_run:
        return _synthesizeDryRun(model, args)
    if not isCohortSource(args.input):
        _synthesizeFile(model, Path(args.input), Path(args.output))
        print(f"{Path(args.input).name} -> {args.output}")
        return 0
    folder = Path(args.output)
    items = cohortItems(args.input, lambda name: folder / f"{name}.nrrd")

    def process(item: CohortItem, partial: Path) -> None:
        _synthesizeFile(model, item.inputs["input"], partial)

    return runCohortCommand(items, process, folder / "manifest.csv", "synthesize")


def _synthesizeDryRun(model, args) -> int:
    """Print each input's estimate: whole-volume buffers + the network on a slice batch (2D) or window batch (3D)."""
    import slicer

    from DLCommon import tensorFromVolume
    from DLCommon.resources import printEstimate
    from DLCommon.cohort import inputFiles
    from DLCommon.storage import loadVolume

    from .estimates import estimateImageToImageApply

    status = 0
    for path in inputFiles(args.input):
        scene = slicer.vtkMRMLScene()
        shape = list(tensorFromVolume(loadVolume(path, scene)).shape[1:])
        scene.Clear(1)
        estimate = estimateImageToImageApply(model.network, model.config, shape, next(model.network.parameters()).device)
        status = max(status, 0 if printEstimate(estimate, input=str(path)) else 2)
    return status


def _synthesizeFile(model, path: Path, output: Path) -> None:
    """Apply an image-to-image / denoising / quality-transfer model to one volume file."""
    import slicer

    from DLCommon import saveNode, tensorFromVolume, volumeFromTensor
    from DLCommon.storage import loadVolume

    from .imagetoimage import applyImageToImage

    scene = slicer.vtkMRMLScene()
    try:
        volume = loadVolume(path, scene)
        if model.options.get("denoise"):
            from .denoise import applyDenoiser

            result = applyDenoiser(model, tensorFromVolume(volume))
        elif model.options.get("qualityTransfer"):
            from .qualitytransfer import applyQualityTransfer

            result = applyQualityTransfer(model, tensorFromVolume(volume))  # on a finer grid: placed by its affine
        else:
            result = applyImageToImage(model, tensorFromVolume(volume))
        reference = volume if tuple(result.shape[1:]) == tuple(volume.GetImageData().GetDimensions()) else None
        saveNode(volumeFromTensor(result, reference, scene, "synthesized"), output)
    finally:
        scene.Clear(1)


def _simulateUs(args) -> int:
    import slicer

    from DLCommon import DLError, saveNode
    from DLCommon.geometry import vtkMatrixFromArray
    from DLCommon.storage import loadSegmentation, loadTransform, loadVolume

    from .logic import SynthesisLogic
    from .ultrasound import UltrasoundConfig, probePose

    scene = slicer.vtkMRMLScene()
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
        probe.SetMatrixTransformToParent(vtkMatrixFromArray(probePose(args.position, args.target, args.normal).numpy()))
    else:
        raise DLError("has no probe pose", node="Command line", fix="give --pose FILE, or --position and --target")
    config = UltrasoundConfig(geometry=args.geometry, depth=args.depth, frequency=args.frequency)
    result = SynthesisLogic(scene).simulateUltrasound(source, probe, reference, config, modality=args.modality)
    saveNode(result.volume, args.output)
    if args.png:
        _savePng(result.volume, args.png)
    print(f"Simulated ultrasound -> {args.output}")
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

    from .logic import SynthesisLogic
    from .superresolution import SuperResolutionConfig, degradeAlongAxis, upsampleAlongAxis

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
