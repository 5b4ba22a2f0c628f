"""``meddl register`` / ``meddl train-register`` and DLRegister's part of ``meddl demo``.

Both commands run the job the DL Register panel runs (``RegistrationLogic.registerJob`` / ``trainJob`` on the files
loaded into a scene), and ``--dry-run`` prints that job's estimate (its plan phase). Their settings' flags are made
from the configs' fields (``config.py``), so their defaults, ranges and choices are the panel's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["addCommands", "demo", "registrationConfigFrom", "trainingConfigFrom"]

# the flags made from the configs' fields (DLCommon.settings: one definition of default, range, choices, help)
REGISTER_FLAGS = ("similarity", "fieldModel", "regulariser", "labelWeight", "deformable", "affine", "device")
TRAINING_FLAGS = ("network", "features", "similarity", "regularisationWeight", "labelWeight", "epochs", "batchSize",
                  "learningRate", "seed", "device")


def _addSetting(parser, configClass, name: str, **options) -> None:
    """A flag for a config field that :func:`~DLCommon.settings.addArguments` cannot make (a sequence, or None for
    "automatic"): flag, default, range and help from the field, as addArguments makes them."""
    from DLCommon.settings import defaultOf, flagOf, settingOf

    meta, default = settingOf(configClass, name), defaultOf(configClass, name)
    help = (meta["tooltip"] or meta["label"] or name).rstrip(".")
    if meta["unit"]:
        help += f" ({meta['unit']})"
    if meta["minimum"] is not None:
        help += f"; {meta['minimum']:g} to {meta['maximum']:g}"
    if isinstance(default, (tuple, list)):
        default = list(default)
        shown = " ".join(map(str, default))
    else:
        shown = "auto" if default is None else default
    parser.add_argument(flagOf(configClass, name), dest=name, default=default, help=f"{help} (default {shown})",
                        metavar=flagOf(configClass, name)[2:].replace("-", "_").upper(), **options)


def addCommands(commands) -> None:
    from DLCommon.settings import addArguments

    from .config import RegistrationConfig, RegistrationTrainingConfig

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
    register.add_argument("--initial-transform", help="transform file mapping fixed to moving space to start from")
    register.add_argument("--jacobian", help="Jacobian-determinant volume on the fixed grid (.nrrd)")
    addArguments(register, RegistrationConfig, REGISTER_FLAGS)
    _addSetting(register, RegistrationConfig, "regularisationWeight", type=float)
    _addSetting(register, RegistrationConfig, "iterations", type=int, nargs="+")
    _addSetting(register, RegistrationConfig, "spacing", type=float)
    register.add_argument("--model", help="trained registration model (catalog id or file): one-pass prediction, "
                                          "refined by the iterations unless --iterations 0")
    register.add_argument("--report", help="write the run's report as JSON here")
    register.set_defaults(handler=_register, dryRun=True)

    train = commands.add_parser("train-register", help="train a registration network (DeepReg style) on volumes")
    train.add_argument("--images", nargs="+", required=True,
                       help="training volumes, or a folder of them (all ordered pairs are used)")
    train.add_argument("--labels", nargs="+",
                       help="one .seg.nrrd / labelmap per image, or a folder (sorted like the images): label-driven")
    addArguments(train, RegistrationTrainingConfig, TRAINING_FLAGS)
    _addSetting(train, RegistrationTrainingConfig, "shape", type=int, nargs=3)
    train.add_argument("--output-model", required=True, help="folder for the model (+ curves PNG)")
    train.add_argument("--name", default="registration", help="model name (and catalog id with --add-to-catalog)")
    train.add_argument("--add-to-catalog", "--register", dest="add_to_catalog", action="store_true",
                       help="add the model to the catalog (--register: its former name)")
    train.set_defaults(handler=_trainRegister, dryRun=True)


def registrationConfigFrom(args):
    """The :class:`~DLRegisterLib.config.RegistrationConfig` of ``meddl register``'s flags. ``--iterations``: per
    level, coarse to fine, on levels ..., 4, 2, 1 of the working grid (0s dropped; none left: no deformable
    stage)."""
    from DLCommon.settings import valuesFrom

    from .config import RegistrationConfig

    values = valuesFrom(args, RegistrationConfig, REGISTER_FLAGS + ("regularisationWeight", "spacing"))
    iterations = tuple(n for n in args.iterations if n != 0)  # a negative count reaches validate(): refused
    values.update(iterations=iterations, levels=tuple(2 ** (len(iterations) - 1 - i) for i in range(len(iterations))),
                  deformable=values["deformable"] and bool(iterations))
    return RegistrationConfig(**values)


def trainingConfigFrom(args):
    """The :class:`~DLRegisterLib.config.RegistrationTrainingConfig` of ``meddl train-register``'s flags."""
    from DLCommon.settings import valuesFrom

    from .config import RegistrationTrainingConfig

    return RegistrationTrainingConfig(**valuesFrom(args, RegistrationTrainingConfig, TRAINING_FLAGS),
                                      shape=tuple(args.shape))


def _files(paths: list[str]) -> list[str]:
    """Paths as given, with a single folder expanded to its image / segmentation files (sorted)."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        suffixes = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")
        return sorted(str(p) for p in Path(paths[0]).iterdir() if p.name.lower().endswith(suffixes))
    return list(paths)


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
    registrationConfigFrom(args).validate()  # before any loading: a setting out of range costs no run
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
        outputs = {"transform": args.output_transform, "warped": args.output_warped, "jacobian": args.jacobian,
                   "warpedLabels": args.output_warped_labels, "report": args.report}
        if args.dry_run:
            return _registerDryRun(args, Path(args.fixed), Path(args.moving), outputs)
        _registerFiles(args, Path(args.fixed), Path(args.moving), outputs)
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


def _registerJob(args, fixedPath: Path, movingPath: Path, outputs: dict, scene):
    """The registration job of these flags, made by ``RegistrationLogic.registerJob`` (as the DL Register panel's,
    with the command's further options) on the files loaded into ``scene``: the command, its ``--dry-run`` and the
    Slicer widget run the same job. Returns ``(job, fixed volume node)``."""
    from DLCommon.storage import loadLabels, loadTransform, loadVolume

    from .logic import RegistrationLogic

    fixed, moving = loadVolume(fixedPath, scene), loadVolume(movingPath, scene)
    options = {}
    if args.fixed_mask:
        options["fixedMask"] = loadLabels(args.fixed_mask, scene)
    if args.moving_mask:
        options["movingMask"] = loadLabels(args.moving_mask, scene)
    if args.initial_transform:
        options["initialTransform"] = loadTransform(args.initial_transform, scene)
    movingLabels = loadLabels(args.moving_labels, scene) if args.moving_labels else None
    if args.fixed_labels and movingLabels is not None:
        options["fixedLabels"], options["movingLabels"] = loadLabels(args.fixed_labels, scene), movingLabels
    if outputs["warpedLabels"]:
        options["warpSegmentation"] = movingLabels
    job = RegistrationLogic(scene).registerJob(fixed, moving, registrationConfigFrom(args),
                                               warpedVolume=bool(outputs["warped"]),
                                               jacobianVolume=bool(outputs["jacobian"]), model=args.model, **options)
    return job, fixed


def _registerDryRun(args, fixedPath: Path, movingPath: Path, outputs: dict) -> int:
    """Print the pair's resource estimate (the job's, from a short timed run; one JSON line); 2 when it would not
    fit here."""
    import slicer

    from DLCommon.commands import printJobEstimate

    scene = slicer.vtkMRMLScene()
    try:
        return printJobEstimate(lambda: _registerJob(args, fixedPath, movingPath, outputs, scene)[0],
                                fixed=str(fixedPath), moving=str(movingPath))
    finally:
        scene.Clear(1)


def _registerFiles(args, fixedPath: Path, movingPath: Path, outputs: dict) -> None:
    """Register one pair of volume files with the panel's job; ``outputs``: transform (required), warped, jacobian,
    warpedLabels, report."""
    import slicer

    from DLCommon import saveNode
    from DLCommon.commands import runWithProgressBar

    scene = slicer.vtkMRMLScene()
    try:
        job, fixed = _registerJob(args, fixedPath, movingPath, outputs, scene)
        result = runWithProgressBar(job, "register", leave=False)
        for warning in result.warnings:
            print(f"meddl: warning: {Path(movingPath).name}: {warning}", file=sys.stderr)
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


def _trainJob(args, scene):
    """The training job of these flags, made by ``RegistrationLogic.trainJob`` (as the DL Register panel's, with
    the command's output folder and catalog choice) on the files loaded into ``scene``; ``(job, image count)``."""
    from DLCommon import DLError
    from DLCommon.storage import loadLabels, loadVolume

    from .logic import RegistrationLogic

    images = _files(args.images)
    labels = _files(args.labels) if args.labels else []
    if labels and len(labels) != len(images):
        raise DLError(f"got {len(labels)} label files for {len(images)} images", node="--labels",
                      fix="give one label file per image, in the same order")
    volumes = [loadVolume(path, scene) for path in images]
    segmentations = [loadLabels(path, scene) for path in labels] or None
    job = RegistrationLogic(scene).trainJob(volumes, segmentations, trainingConfigFrom(args), modelName=args.name,
                                            outputDir=args.output_model, addToCatalog=args.add_to_catalog)
    return job, len(volumes)


def _trainRegister(args) -> int:
    import slicer

    from DLCommon.commands import printJobEstimate, runWithProgressBar
    from DLCommon.distributed import isMainProcess
    from DLCommon.plots import historyCurves, saveCurvesPng

    trainingConfigFrom(args).validate()  # before any loading: a setting out of range costs no run
    scene = slicer.vtkMRMLScene()
    try:  # making the job read the inputs into tensors: the scene is not needed while it runs
        job, images = _trainJob(args, scene)
    finally:
        scene.Clear(1)
    if args.dry_run:  # the job's plan: one real training step, scaled to the epochs
        return printJobEstimate(lambda: job, images=images, pairs=images * (images - 1))
    output = Path(args.output_model)
    result = runWithProgressBar(job, f"train {args.name}", total=args.epochs, unit="epoch")
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
