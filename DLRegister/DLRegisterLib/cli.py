"""``meddl register`` / ``meddl train-register`` and DLRegister's part of ``meddl demo``."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["addCommands", "demo"]

# The choices of register / train-register, kept here so that building the parser imports no torch (``meddl
# --help`` stays fast); Testing/Python/test_cli_startup.py checks they equal the engine's lists.
SIMILARITIES = ("lncc", "ssd", "mi")  # similarity.SIMILARITIES
FIELD_MODELS = ("ddf", "svf")  # fields.FIELD_MODELS
REGULARISERS = ("bending", "diffusion")  # fields.REGULARISERS
REGISTRATION_NETWORKS = ("localnet", "globalnet", "regunet")  # network.REGISTRATION_NETWORKS


def addCommands(commands) -> None:
    register = commands.add_parser("register", help="register a moving volume to a fixed volume (affine + deformable)")
    register.add_argument("--fixed", help="fixed (reference) volume file; or a cohort of them (folder / CSV)")
    register.add_argument("--moving", help="moving volume file; or a cohort of them (folder / CSV)")
    register.add_argument("--pairs", help="a cohort of pairs: CSV with columns fixed,moving (optional name, output)")
    register.add_argument("--output-transform", required=True,
                          help="transform file (.h5): the moving volume under it aligns with the fixed one in Slicer "
                               "(for a cohort: a folder of <name>.h5, with manifest.csv; the other outputs are then "
                               "folders too)")
    register.add_argument("--output-warped", help="warped moving volume on the fixed grid (.nrrd, .nii.gz)")
    register.add_argument("--fixed-mask", help="mask file (.seg.nrrd or labelmap) on the fixed volume")
    register.add_argument("--moving-mask", help="mask file (.seg.nrrd or labelmap) on the moving volume")
    register.add_argument("--moving-labels", help="segmentation / labelmap of the moving volume to warp (atlas)")
    register.add_argument("--output-warped-labels", help="where to write the warped labels (.seg.nrrd or .nrrd)")
    register.add_argument("--fixed-labels", help="fixed labels: with --moving-labels adds the Dice term (weak supervision)")
    register.add_argument("--label-weight", type=float, default=1.0)
    register.add_argument("--initial-transform", help="transform file mapping fixed to moving space to start from")
    register.add_argument("--jacobian", help="Jacobian-determinant volume on the fixed grid (.nrrd)")
    register.add_argument("--similarity", choices=SIMILARITIES, default="lncc")
    register.add_argument("--field", choices=FIELD_MODELS, default="ddf", help="svf: diffeomorphic")
    register.add_argument("--regulariser", choices=REGULARISERS, default="bending")
    register.add_argument("--regularisation-weight", type=float,
                          help="bending-energy weight (default: 5 for lncc / ssd, 80 for mi)")
    register.add_argument("--iterations", type=int, nargs="+", default=[100, 80, 40],
                          help="deformable iterations per level, coarse to fine (levels 4, 2, 1 of the working grid)")
    register.add_argument("--affine-only", action="store_true", help="skip the deformable stage")
    register.add_argument("--no-affine", action="store_true", help="skip the affine stage")
    register.add_argument("--spacing", type=float, help="optimise on a grid of this voxel size (mm)")
    register.add_argument("--model", help="trained registration model (catalog id or file): one-pass prediction, "
                                          "refined by the iterations unless --iterations 0")
    register.add_argument("--report", help="write the run's report as JSON here")
    register.add_argument("--device", default="auto")
    register.set_defaults(handler=_register, dryRun=True)

    train = commands.add_parser("train-register", help="train a registration network (DeepReg style) on volumes")
    train.add_argument("--images", nargs="+", required=True,
                       help="training volumes, or a folder of them (all ordered pairs are used)")
    train.add_argument("--labels", nargs="+",
                       help="one .seg.nrrd / labelmap per image, or a folder (sorted like the images): label-driven")
    train.add_argument("--network", choices=REGISTRATION_NETWORKS, default="localnet")
    train.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], help="network grid (multiples of 8)")
    train.add_argument("--features", type=int, default=16)
    train.add_argument("--similarity", choices=SIMILARITIES, default="lncc")
    train.add_argument("--regularisation-weight", type=float, default=1.0)
    train.add_argument("--label-weight", type=float, default=1.0)
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument("--batch-size", type=int, default=2)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--output-model", required=True, help="folder for the model (+ curves PNG)")
    train.add_argument("--name", default="registration", help="model name (and catalog id with --add-to-catalog)")
    train.add_argument("--add-to-catalog", "--register", dest="add_to_catalog", action="store_true",
                       help="add the model to the catalog (--register: its former name)")
    train.add_argument("--device", default="auto")
    train.set_defaults(handler=_trainRegister, dryRun=True)


def _files(paths: list[str]) -> list[str]:
    """Paths as given, with a single folder expanded to its image / segmentation files (sorted)."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        suffixes = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")
        return sorted(str(p) for p in Path(paths[0]).iterdir() if p.name.lower().endswith(suffixes))
    return list(paths)


def _levels(count: int) -> tuple:
    return tuple(2 ** (count - 1 - i) for i in range(count))


def _loadLabels(path: str, scene):
    from DLCommon.storage import loadSegmentation, loadVolume

    if str(path).lower().endswith(".seg.nrrd"):
        return loadSegmentation(path, scene)
    return loadVolume(path, scene, labelmap=True)


def _saveLabels(node, fixedVolume, path: str) -> None:
    """Write warped labels as a .seg.nrrd, or as a labelmap volume for other extensions."""
    from DLCommon import saveNode
    from DLCommon.segmentations import tensorFromSegmentation
    from DLCommon.volumes import volumeFromTensor

    if str(path).lower().endswith(".seg.nrrd"):
        saveNode(node, path)
        return
    labels = tensorFromSegmentation(node, fixedVolume)[0]
    saveNode(volumeFromTensor(labels, fixedVolume, fixedVolume.GetScene(), "warped labels", labelmap=True), path)


def _register(args) -> int:
    from DLCommon import DLError
    from DLCommon.cohort import CohortItem, cohortItems, isCohortSource, runCohortCommand
    from DLCommon.storage import baseNameOf, checkWritable

    if bool(args.moving_labels) != bool(args.output_warped_labels) and not args.fixed_labels:
        raise DLError("--moving-labels and --output-warped-labels go together", node="Command line",
                      fix="give both (warp an atlas segmentation) or neither")
    roles = [role for role in ("fixed", "moving") if getattr(args, role) and isCohortSource(getattr(args, role))]
    cohort = bool(args.pairs or roles)
    if args.dry_run and cohort:
        raise DLError("estimates one pair at a time", node="--dry-run", fix="give --fixed and --moving files")
    for option in ("output_transform", "output_warped", "jacobian", "output_warped_labels", "report"):
        if getattr(args, option) and not args.dry_run:  # before any work: a typo in an output path costs no run
            checkWritable(Path(getattr(args, option)) / "manifest.csv" if cohort else getattr(args, option))
    if not args.pairs and not roles:
        if not (args.fixed and args.moving):
            raise DLError("needs --fixed and --moving (or --pairs CSV)", node="Command line",
                          fix="give both volumes, or a cohort: a folder / CSV as --fixed or --moving, or --pairs")
        _registerFiles(args, Path(args.fixed), Path(args.moving), {
            "transform": args.output_transform, "warped": args.output_warped, "jacobian": args.jacobian,
            "warpedLabels": args.output_warped_labels, "report": args.report})
        return 0
    if len(roles) > 1 or (args.pairs and roles):
        raise DLError("got more than one cohort (folder / CSV) among --fixed, --moving and --pairs", node="Command line",
                      fix="give one cohort; the other volume as a single file, or both as columns of --pairs")
    source = args.pairs or getattr(args, roles[0])
    defaults = {role: getattr(args, role) for role in ("fixed", "moving") if getattr(args, role) and role not in roles}
    columns = roles + [r for r in ("fixed", "moving") if r not in roles and r not in defaults]
    folder = Path(args.output_transform)
    if args.pairs:  # both vary: name an item after its pair
        def nameOf(inputs):
            return f"{baseNameOf(inputs['moving'])}_to_{baseNameOf(inputs['fixed'])}"
    else:
        def nameOf(inputs):
            return baseNameOf(inputs[roles[0]])
    items = cohortItems(source, lambda name: folder / f"{name}.h5", columns=columns, defaults=defaults,
                        nameOf=nameOf)

    def extra(option: str, name: str, suffix: str) -> str | None:  # further outputs: folders in a cohort
        return str(Path(getattr(args, option)) / f"{name}{suffix}") if getattr(args, option) else None

    def process(item: CohortItem, partial: Path) -> None:
        _registerFiles(args, item.inputs["fixed"], item.inputs["moving"], {
            "transform": partial, "warped": extra("output_warped", item.name, ".nrrd"),
            "jacobian": extra("jacobian", item.name, "_jacobian.nrrd"),
            "warpedLabels": extra("output_warped_labels", item.name, ".seg.nrrd"),
            "report": extra("report", item.name, ".json")})

    return runCohortCommand(items, process, folder / "manifest.csv", "register")


def _registerFiles(args, fixedPath: Path, movingPath: Path, outputs: dict) -> None:
    """Register one pair of volume files; ``outputs``: transform (required), warped, jacobian, warpedLabels, report.
    With ``--dry-run``: print the estimate instead."""
    import slicer
    from tqdm import tqdm

    from DLCommon import saveNode
    from DLCommon.storage import loadTransform, loadVolume

    from .logic import RegistrationLogic
    from .optimisation import RegistrationConfig

    scene = slicer.vtkMRMLScene()
    try:
        fixed, moving = loadVolume(fixedPath, scene), loadVolume(movingPath, scene)
        options = {}
        if args.fixed_mask:
            options["fixedMask"] = _loadLabels(args.fixed_mask, scene)
        if args.moving_mask:
            options["movingMask"] = _loadLabels(args.moving_mask, scene)
        if args.initial_transform:
            options["initialTransform"] = loadTransform(args.initial_transform, scene)
        movingLabels = _loadLabels(args.moving_labels, scene) if args.moving_labels else None
        if args.fixed_labels and movingLabels is not None:
            options["fixedLabels"], options["movingLabels"] = _loadLabels(args.fixed_labels, scene), movingLabels
        if outputs["warpedLabels"]:
            options["warpSegmentation"] = movingLabels
        iterations = [n for n in args.iterations if n > 0]
        config = RegistrationConfig(similarity=args.similarity, fieldModel=args.field, regulariser=args.regulariser,
                                    regularisationWeight=args.regularisation_weight, labelWeight=args.label_weight,
                                    levels=_levels(len(iterations)), iterations=tuple(iterations),
                                    deformable=not args.affine_only and bool(iterations), affine=not args.no_affine,
                                    spacing=args.spacing, device=args.device)
        if args.model:
            options["model"] = args.model
        if args.dry_run:
            from DLCommon import DLError, pickDevice, tensorFromVolume
            from DLCommon.resources import printEstimate

            from .optimisation import estimateRegistration

            estimate = estimateRegistration(tensorFromVolume(fixed), tensorFromVolume(moving), config,
                                            pickDevice(args.device), timed=True)
            if not printEstimate(estimate, fixed=str(fixedPath), moving=str(movingPath)):
                raise DLError("does not fit this machine: " + estimate.describe(), node=f"Volume '{movingPath}'",
                              fix="register on a coarser grid (--spacing) or use a machine with more memory")
            return
        with tqdm(total=100, desc="register", unit="%", leave=False,
                  bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]") as bar:
            def progress(fraction, message):
                bar.set_postfix_str(message.split(": ", 1)[-1][:40])
                bar.update(100 * fraction - bar.n)

            result = RegistrationLogic(scene).register(fixed, moving, config, progress=progress,
                                                       warpedVolume=bool(outputs["warped"]),
                                                       jacobianVolume=bool(outputs["jacobian"]), **options)
        if outputs["warped"]:
            saveNode(result.warpedVolume, outputs["warped"])
        if outputs["jacobian"]:
            saveNode(result.jacobian, outputs["jacobian"])
        if outputs["warpedLabels"]:
            _saveLabels(result.warpedSegmentation, fixed, outputs["warpedLabels"])
        report = result.report
        if outputs["report"]:
            Path(outputs["report"]).parent.mkdir(parents=True, exist_ok=True)
            Path(outputs["report"]).write_text(json.dumps(report, indent=2))
        saveNode(result.transform, outputs["transform"])  # last: in a cohort it marks the pair done
        print(f"{Path(movingPath).name} -> {Path(fixedPath).name}: {report['similarity']} {report['before']:.3f} -> "
              f"{report['after']:.3f} in {report['seconds']:.1f} s, folding {report['foldingPercent']:.3f}%")
    finally:
        scene.Clear(1)


def _trainRegister(args) -> int:
    import slicer
    from tqdm import tqdm

    from DLCommon import DLError, tensorFromVolume
    from DLCommon.distributed import isMainProcess
    from DLCommon.plots import historyCurves, saveCurvesPng
    from DLCommon.storage import loadVolume

    from .logic import labelsFromNode
    from .trainer import RegistrationTrainingConfig, trainRegistrationModel

    args.images, args.labels = _files(args.images), _files(args.labels) if args.labels else None
    if args.labels and len(args.labels) != len(args.images):
        raise DLError(f"got {len(args.labels)} label files for {len(args.images)} images", node="--labels",
                      fix="give one label file per image, in the same order")
    scene = slicer.vtkMRMLScene()
    volumes = [loadVolume(path, scene) for path in args.images]
    images = [tensorFromVolume(v) for v in volumes]
    labels = [labelsFromNode(_loadLabels(path, scene), volume)[0] for path, volume in zip(args.labels, volumes)] \
        if args.labels else None
    scene.Clear(1)
    config = RegistrationTrainingConfig(network=args.network, shape=tuple(args.shape), features=args.features,
                                        similarity=args.similarity, regularisationWeight=args.regularisation_weight,
                                        labelWeight=args.label_weight if labels else 0.0, epochs=args.epochs,
                                        batchSize=args.batch_size, learningRate=args.learning_rate, device=args.device)
    if args.dry_run:
        from DLCommon.resources import printEstimate

        from .trainer import estimateRegistrationTraining

        estimate = estimateRegistrationTraining(images, config)
        pairs = len(images) * (len(images) - 1)
        return 0 if printEstimate(estimate, images=len(images), pairs=pairs) else 2
    output = Path(args.output_model)
    with tqdm(total=args.epochs, desc=f"train {args.name}", unit="epoch") as bar:
        def progress(fraction, message):
            bar.set_postfix_str(message.split(": ", 1)[-1][:50])
            bar.update(round(fraction * args.epochs) - bar.n)

        result = trainRegistrationModel(images, config, output, args.name, labels=labels, addToCatalog=args.add_to_catalog,
                                        progress=progress)
    if not isMainProcess():  # under torchrun rank 0 writes the outputs
        return 0
    saveCurvesPng(historyCurves(result.history), output / f"{args.name}_curves.png", title=f"{args.name} ({args.network})")
    print(f"Model: {result.modelPath}" + (f" (catalog id '{result.catalogId}')" if result.catalogId else ""))
    return 0


def demo(scene, output: Path, progress) -> dict:
    """Register a deformed MNI152 copy (moving, with its tissue atlas) to another one (fixed)."""
    from DLCommon import saveNode, segmentationFromTensor, volumeFromTensor
    from DLCommon.montage import saveMontage
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, mni152Tissue, randomCopy
    from DLCommon.segmentations import tensorFromSegmentation

    from .logic import RegistrationLogic
    from .quality import labelDice

    progress(0.02, "register: preparing MNI152 at 2 mm")
    image, labels = mni152Tissue(2.0)
    movingImage, movingLabels = randomCopy(image, labels, 11, bias=False)
    fixedImage, fixedLabels = randomCopy(image, labels, 12, bias=False)
    fixed = volumeFromTensor(fixedImage, None, scene, "Register demo fixed")
    moving = volumeFromTensor(movingImage, None, scene, "Register demo moving")
    atlas = segmentationFromTensor(movingLabels, moving, scene, TISSUE_NAMES, TISSUE_COLORS, nodeName="moving atlas")
    result = RegistrationLogic(scene).register(fixed, moving, warpSegmentation=atlas, jacobianVolume=True,
                                               progress=lambda f, m: progress(0.05 + 0.85 * f, m))
    warpedLabels = tensorFromSegmentation(result.warpedSegmentation, fixed)[0]
    before = labelDice(movingLabels, fixedLabels, [1, 2])
    after = labelDice(warpedLabels, fixedLabels, [1, 2])
    progress(0.95, "register: writing results")
    saveNode(result.transform, output / "register_transform.h5")
    saveMontage(output / "register_montage.png", fixedImage[0], warpedLabels, TISSUE_COLORS,
                title=f"DLRegister demo: atlas warped onto a new image, WM Dice {before[1]:.2f} -> {after[1]:.2f}")
    progress(1.0, "register: done")
    summary = {"report": result.report,
               "atlasDice": {"before": dict(zip(TISSUE_NAMES, [round(d, 3) for d in before])),
                             "after": dict(zip(TISSUE_NAMES, [round(d, 3) for d in after]))},
               "files": ["register_transform.h5", "register_montage.png"]}
    (output / "register_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
