"""DLClassify's node-level API (Qt-free): train classifiers from labelled volumes, classify volumes and slice
views, plot class probabilities along a volume.

What the Slicer module's logic class exposes in the Python console::

    logic = DLClassifyLogic()
    model = logic.train([(volume1, "healthy"), (volume2, "lesion"), ...], modelName="my-classifier")
    result = logic.classify([volume3], "my-classifier", saliency=True)     # a table node + saliency volumes
    planes = logic.trainPlanes(mniVolume)                                  # standard-plane recogniser
    label, probability, _ = logic.classifySlice(sliceNode, mniVolume, "standard-planes")

Long work is available as :class:`DLCommon.Job` objects (``trainJob``, ``trainPlanesJob``, ``classifyJob``,
``sliceProbabilitiesJob``) that read their inputs first, compute without touching the scene, and add nodes only on
success. ``meddl classify`` / ``train-classify`` run these same jobs on the volumes they load from files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import torch

from DLCommon.selfcheck import checkOutputGeometry
from DLCommon import DLError, Job, tensorFromVolume, volumeFromTensor
from DLCommon.catalog import defaultCacheDir, resolveModel
from DLCommon.settings import defaultOf
from DLCommon.geometry import arrayFromVTKMatrix, ijkToRasMatrix
from DLCommon.jobs import keepHistory
from DLCommon.errors import nodeLabel
from DLCommon.resources import fitOrSwitch
from DLCommon.transfer import withoutNetwork
from DLCommon.scene import sceneTransaction
from DLCommon.scenelogic import SceneLogic
from DLCommon.volumes import checkFinite, checkVolume

from .classifier import (checkClassifier, classProbabilities, estimateClassification, inputSizeOf, prepareFor,
                         saliencyMap, temperatureOf)
from .config import PlaneTrainingConfig
from .data import checkImage, normaliseImages, prepareImage
from .planes import (BRAIN_CENTRE, PLANE_CLASSES, PLANE_SIZE, PLANE_SPACING, planeDataset, planePose, samplePlane,
                     slicePoses, smoothForPlanes)
from .trainer import (ClassificationTrainingConfig, ClassificationTrainingResult, checkLabels,
                      estimateClassifierTraining, trainClassifier)

__all__ = ["ClassificationLogic", "ClassifyResult", "SliceProbabilities", "resolveLabels", "resultRows",
           "writeResultsTable"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class ClassifyResult:
    """What :meth:`ClassificationLogic.classify` made: the results table, saliency volumes (one per input, in
    order), per input ``(class name, probability, all class probabilities)``, and the table's rows as dicts
    (:func:`resultRows`)."""

    table: object
    saliency: list = dataclasses.field(default_factory=list)
    predictions: list = dataclasses.field(default_factory=list)
    rows: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SliceProbabilities:
    """What :meth:`ClassificationLogic.sliceProbabilitiesJob` computed: each slice's position (mm along the world
    axis closest to the slice normal), the class probabilities ``(N, K)``, the class names, and a row per slice
    (:func:`resultRows` with ``position_mm`` after ``input``)."""

    positions: list
    probabilities: torch.Tensor
    classNames: list
    rows: list = dataclasses.field(default_factory=list)


def resolveLabels(labels: Sequence, classNames: Sequence[str] | None, encoding: str,
                  sources: Sequence[str] | None = None) -> tuple[torch.Tensor, list[str]]:
    """Class indices for label strings, and the class list.

    ``classNames`` given: every label must be one of them (ordinal: in their order). Not given: nominal and
    binary classes are the sorted distinct labels; ordinal labels must be integers (their numeric order).

    Raises:
        DLError: an unknown label (naming where it came from), or ordinal labels without an order.
    """
    labels = [str(label).strip() for label in labels]
    sources = list(sources or [])
    sources += [f"Sample {i + 1}" for i in range(len(sources), len(labels))]
    if classNames:
        classNames = [str(c) for c in classNames]
        for label, source in zip(labels, sources):
            if label not in classNames:
                raise DLError(f"has label '{label}', which is not one of the classes {classNames}", node=source,
                              fix="correct the label, or add it to the class list")
    elif encoding == "ordinal":
        try:
            values = sorted({int(label) for label in labels})
        except ValueError:
            raise DLError("has ordinal labels that are not integers, so their order is unknown",
                          node="Training data", fix="give the classes in order (e.g. --classes low medium high)") from None
        classNames = [str(v) for v in range(min(values), max(values) + 1)]
        labels = [str(int(label)) for label in labels]
    else:
        classNames = sorted(set(labels))
    index = {name: i for i, name in enumerate(classNames)}
    return torch.tensor([index[label] for label in labels]), list(classNames)


def resultRows(names: Sequence[str], probabilities: torch.Tensor, classNames: Sequence[str],
               temperature: float) -> list[dict]:
    """One row per input: ``input``, ``class``, ``probability``, ``p(<class>)`` ..., ``temperature``."""
    rows = []
    for name, p in zip(names, probabilities):
        best = int(p.argmax())
        row = {"input": name, "class": classNames[best], "probability": round(float(p[best]), 4)}
        row.update({f"p({c})": round(float(v), 4) for c, v in zip(classNames, p)})
        row["temperature"] = round(temperature, 4)
        rows.append(row)
    return rows


def writeResultsTable(scene, rows: list[dict], name: str, tableNode=None):
    """Rows into a new table node (or ``tableNode``, replaced); text columns for names, numbers for the rest."""
    import vtk

    with sceneTransaction(scene):
        node = tableNode or scene.AddNewNodeByClass("vtkMRMLTableNode", name)
        table = vtk.vtkTable()
        for column in rows[0]:
            numeric = isinstance(rows[0][column], (int, float))
            array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
            array.SetName(column)
            for row in rows:
                array.InsertNextValue(float(row[column]) if numeric else str(row[column]))
            table.AddColumn(array)
        node.SetAndObserveTable(table)
    return node


_TRAINING_FIX = "train with a smaller input size or batch size, or a smaller architecture"


class ClassificationLogic(SceneLogic):
    """Train and apply classifiers; methods take nodes and plain values and raise :class:`DLError` on bad input."""

    def __init__(self, scene=None):
        super().__init__(scene)
        self._planeCache: dict[str, tuple] = {}
        self._modelCache: tuple = (None, None)

    def classifier(self, model):
        """A loaded classifier from a catalog id, file or LoadedModel; the last one is kept, so browsing a
        slice view does not re-read (and re-hash) the model file at every step."""
        if not isinstance(model, (str, Path)):
            loaded = resolveModel(model, task="classification")
        else:
            from DLCommon.catalog import ModelCatalog

            entries = ModelCatalog().entries
            path = Path(str(model)).expanduser()
            key = (str(model), entries[str(model)].sha256 if str(model) in entries
                   else path.stat().st_mtime if path.exists() else None)
            if self._modelCache[0] != key:
                self._modelCache = (key, resolveModel(model, task="classification"))
            loaded = self._modelCache[1]
        checkClassifier(loaded)
        return loaded

    # --- training data ------------------------------------------------------------------------------------
    def samplesFromTable(self, tableNode) -> list[tuple]:
        """``[(volumeNode, label), ...]`` from a table node with columns ``volume`` (node name or ID) and
        ``label`` (or ``class``)."""
        if tableNode is None or not tableNode.IsA("vtkMRMLTableNode"):
            raise DLError("No training table was selected", fix="select a table with columns 'volume' and 'label'")
        columns = {tableNode.GetColumnName(i).strip().lower(): i for i in range(tableNode.GetNumberOfColumns())}
        labelColumn = columns.get("label", columns.get("class"))
        if "volume" not in columns or labelColumn is None:
            raise DLError(f"has columns {sorted(columns)}; it needs 'volume' and 'label'", node=tableNode,
                          fix="name the columns 'volume' (node name) and 'label' (class)")
        scene, samples = tableNode.GetScene(), []
        for row in range(tableNode.GetNumberOfRows()):
            reference = tableNode.GetCellText(row, columns["volume"]).strip()
            if not reference:
                continue
            volume = scene.GetNodeByID(reference) or scene.GetFirstNodeByName(reference)
            if volume is None:
                raise DLError(f"row {row + 1} names volume '{reference}', which is not in the scene", node=tableNode,
                              fix="load that volume or correct its name")
            samples.append((volume, tableNode.GetCellText(row, labelColumn)))
        return samples

    # --- training -----------------------------------------------------------------------------------------
    def trainJob(self, labelled, classNames: Sequence[str] | None = None,
                 config: ClassificationTrainingConfig | None = None, modelName: str = "classifier",
                 outputDir: str | Path | None = None, addToCatalog: bool = True) -> Job:
        """A :class:`Job` training a classifier on ``[(volumeNode, label), ...]`` or a table node (see
        :meth:`samplesFromTable`); 2D models take single-slice volumes. It adds no node."""
        config = config or ClassificationTrainingConfig()
        config.validate()
        if hasattr(labelled, "IsA"):
            labelled = self.samplesFromTable(labelled)
        if not labelled:
            raise DLError("No labelled volume was given", fix="add volumes with their class")
        volumes = [volume for volume, _ in labelled]
        indices, classNames = resolveLabels([label for _, label in labelled], classNames, config.encoding,
                                            [f"Volume '{v.GetName()}'" for v in volumes])
        checkLabels(indices, classNames)
        images = []
        for volume in volumes:  # read (and check) every input before the job starts
            checkVolume(volume)
            image = tensorFromVolume(volume)
            checkFinite(image, volume)
            checkImage(image, config.inputSize, int(images[0].shape[0]) if images else None, volume.GetName())
            images.append(image)
        channels = int(images[0].shape[0])
        subject, names = nodeLabel(volumes[0]), [v.GetName() for v in volumes]  # the worker reads no node
        directory = Path(outputDir) if outputDir else defaultCacheDir() / "trained" / modelName

        def plan():
            return fitOrSwitch(lambda device: estimateClassifierTraining(
                len(images), channels, len(classNames), dataclasses.replace(config, device=str(device)),
                sum(4 * image.numel() for image in images)), config.device, subject, _TRAINING_FIX)

        def work(context) -> ClassificationTrainingResult:
            prepared = torch.stack([prepareImage(image, config.inputSize, channels, name).as_tensor()
                                    for image, name in zip(images, names)])
            context.report(0.02, "prepared the images")
            return trainClassifier(prepared, indices, classNames, dataclasses.replace(config, device=context.plan.device),
                                   directory, modelName, addToCatalog=addToCatalog,
                                   progress=lambda f, m: context.report(0.02 + 0.98 * f, m),
                                   onEpoch=keepHistory(job))

        job = Job(work, None, name=f"Train {modelName}", plan=plan, transfer=withoutNetwork)
        return job

    def train(self, labelled, classNames: Sequence[str] | None = None,
              config: ClassificationTrainingConfig | None = None, modelName: str = "classifier",
              outputDir: str | Path | None = None, addToCatalog: bool = True,
              progress: Progress | None = None) -> ClassificationTrainingResult:
        """Train a classifier on labelled volumes (see :meth:`trainJob`)."""
        return self.trainJob(labelled, classNames, config, modelName, outputDir, addToCatalog).run(progress)

    def trainPlanesJob(self, volumeNode, config: ClassificationTrainingConfig | None = None,
                       perClass: int = defaultOf(PlaneTrainingConfig, "perClass"),
                       deformedCopies: int = defaultOf(PlaneTrainingConfig, "deformedCopies"),
                       modelName: str = "standard-planes", outputDir: str | Path | None = None,
                       addToCatalog: bool = True) -> Job:
        """A :class:`Job` training the standard-plane recogniser on ``perClass`` planes per class of ``volumeNode``
        (a brain in MNI152 space, e.g. the MNI152 T1 sample) and of each of ``deformedCopies`` randomly deformed
        copies of it (see :class:`~DLClassifyLib.config.PlaneTrainingConfig`)."""
        PlaneTrainingConfig(perClass, deformedCopies).validate()
        checkVolume(volumeNode)
        image = tensorFromVolume(volumeNode)
        checkFinite(image, volumeNode)
        _checkMniSpace(image, volumeNode)
        # plane classes are unordered, and planes are sampled at the recogniser's fixed size
        config = dataclasses.replace(config or ClassificationTrainingConfig(), encoding="nominal",
                                     inputSize=(PLANE_SIZE, PLANE_SIZE))
        config.validate()
        planes = len(PLANE_CLASSES) * perClass * (deformedCopies + 1)
        copies = 4 * image[:1].numel() // 8 * (deformedCopies + 2)  # 2 mm copies: an eighth of the 1 mm voxels each
        subject = nodeLabel(volumeNode)

        def plan():
            return fitOrSwitch(lambda device: estimateClassifierTraining(
                planes, 1, len(PLANE_CLASSES), dataclasses.replace(config, device=str(device)), copies), config.device,
                subject, _TRAINING_FIX)

        directory = Path(outputDir) if outputDir else defaultCacheDir() / "trained" / modelName

        def work(context) -> ClassificationTrainingResult:
            from DLCommon.sampledata import randomCopy
            from monai.transforms import Spacing

            context.report(0.0, "making deformed copies")
            coarse = Spacing(pixdim=(2.0, 2.0, 2.0), mode="bilinear")(image[:1])  # 2 mm is plenty for 3.5 mm planes
            volumes = [(coarse.as_tensor(), coarse.affine)]
            zeros = torch.zeros(coarse.shape[1:], dtype=torch.long)
            for seed in range(deformedCopies):
                copy, _ = randomCopy(coarse, zeros, seed=seed)
                volumes.append((copy.as_tensor(), coarse.affine))
                context.report(0.05 * (seed + 1) / max(deformedCopies, 1), "making deformed copies")
            images, labels = planeDataset(volumes, perClass, seed=config.seed)
            return trainClassifier(normaliseImages(images, 2), labels, PLANE_CLASSES,
                                   dataclasses.replace(config, device=context.plan.device), directory, modelName,
                                   addToCatalog=addToCatalog,
                                   options={"plane": {"size": PLANE_SIZE, "spacing": PLANE_SPACING}},
                                   description="standard-plane recogniser (MNI152 planes) trained by MedDL",
                                   progress=lambda f, m: context.report(0.06 + 0.94 * f, m), onEpoch=keepHistory(job))

        job = Job(work, None, name=f"Train {modelName}", plan=plan, transfer=withoutNetwork)
        return job

    def trainPlanes(self, volumeNode, config: ClassificationTrainingConfig | None = None,
                    perClass: int = defaultOf(PlaneTrainingConfig, "perClass"),
                    deformedCopies: int = defaultOf(PlaneTrainingConfig, "deformedCopies"),
                    modelName: str = "standard-planes", outputDir: str | Path | None = None,
                    addToCatalog: bool = True, progress: Progress | None = None) -> ClassificationTrainingResult:
        """Train the standard-plane recogniser (see :meth:`trainPlanesJob`)."""
        return self.trainPlanesJob(volumeNode, config, perClass, deformedCopies, modelName, outputDir,
                                   addToCatalog).run(progress)

    # --- inference ----------------------------------------------------------------------------------------
    def classifyJob(self, volumes: Sequence, model, outputTable=None, saliency: bool = False,
                    device: str = "auto") -> Job:
        """A :class:`Job` classifying ``volumes``; its ``apply`` writes the results table (new, or
        ``outputTable`` replaced) and, with ``saliency``, one saliency volume per input."""
        volumes = list(volumes) if isinstance(volumes, (list, tuple)) else [volumes]
        if not volumes or any(v is None for v in volumes):
            raise DLError("No input volume was selected", fix="select the volume(s) to classify")
        loaded = self.classifier(model)
        inputSize, channels = inputSizeOf(loaded), int(loaded.spec.inputChannels)
        images = []
        for volume in volumes:
            checkVolume(volume)
            image = tensorFromVolume(volume)
            checkFinite(image, volume)
            checkImage(image, inputSize, channels, volume.GetName())  # refuse misfits before the job starts
            images.append(image)
        scene = self.scene(volumes[0])
        classNames, temperature = loaded.spec.labelNames, temperatureOf(loaded)
        subject, names = nodeLabel(volumes[0]), [v.GetName() for v in volumes]  # the worker reads no node

        def plan():
            return fitOrSwitch(lambda onDevice: estimateClassification(loaded, images, onDevice, saliency), device,
                               subject, "classify fewer volumes at once, or crop them")

        def work(context):
            device = context.plan.device
            prepared = [prepareFor(loaded, image, name) for image, name in zip(images, names)]
            context.report(0.3, "classifying")
            probabilities = classProbabilities(loaded, torch.stack([p.as_tensor() for p in prepared]), device)
            maps = []
            if saliency:
                for index, (p, image) in enumerate(zip(prepared, images)):
                    maps.append(saliencyMap(loaded, p, image, device=device))
                    context.report(0.4 + 0.6 * (index + 1) / len(images), "saliency")
            return probabilities, maps

        def apply(result) -> ClassifyResult:
            probabilities, maps = result
            rows = resultRows([v.GetName() for v in volumes], probabilities, classNames, temperature)
            saliencyNodes = [volumeFromTensor(m, volume, scene, f"{volume.GetName()} saliency ({row['class']})")
                             for m, volume, row in zip(maps, volumes, rows)]
            for node, volume in zip(saliencyNodes, volumes):
                checkOutputGeometry(volume, node)
            table = writeResultsTable(scene, rows, f"{loaded.spec.name} results", outputTable)
            predictions = [(row["class"], row["probability"], p) for row, p in zip(rows, probabilities)]
            return ClassifyResult(table=table, saliency=saliencyNodes, predictions=predictions, rows=rows)

        return Job(work, apply, scene=scene, name=f"Classify with {loaded.spec.name}", plan=plan)

    def classify(self, volumes, model, outputTable=None, saliency: bool = False, device: str = "auto",
                 progress: Progress | None = None) -> ClassifyResult:
        """Classify volume(s) with ``model`` (catalog id, path or LoadedModel); see :meth:`classifyJob`."""
        return self.classifyJob(volumes, model, outputTable, saliency, device).run(progress)

    # --- slice views --------------------------------------------------------------------------------------
    def _planeSource(self, volumeNode, spacing: float):
        """The volume smoothed for plane sampling, cached until its voxels or geometry change."""
        key = volumeNode.GetID() or str(id(volumeNode))
        stamp = (volumeNode.GetMTime(), volumeNode.GetImageData().GetMTime() if volumeNode.GetImageData() else 0,
                 spacing)
        cached = self._planeCache.get(key)
        if cached is None or cached[0] != stamp:
            checkVolume(volumeNode)
            image = tensorFromVolume(volumeNode)
            checkFinite(image, volumeNode)
            cached = (stamp, smoothForPlanes(image[:1], image.affine, spacing), image.affine, image.shape[1:])
            self._planeCache = {key: cached}  # one volume at a time: the one being browsed
        return cached[1:]

    def _planeGeometry(self, loaded, fieldOfView: float | None) -> tuple[int, float]:
        plane = (loaded.spec.options or {}).get("plane")
        size = inputSizeOf(loaded)[0]
        if plane:
            return int(plane["size"]), float(plane["spacing"])
        return size, float(fieldOfView or size * PLANE_SPACING) / size

    def _planeClassifier(self, model):
        loaded = self.classifier(model)
        if len(inputSizeOf(loaded)) != 2:
            raise DLError("classifies 3D volumes, not planes or slices", node=f"Model '{loaded.spec.name}'",
                          fix="pick a 2D model (e.g. the standard-plane recogniser)")
        return loaded

    def _planeImages(self, loaded, volumeNode, poses: list, fieldOfView: float | None = None) -> torch.Tensor:
        """``(N, 1, *inputSize)`` normalised images of ``volumeNode`` on plane ``poses``."""
        size, spacing = self._planeGeometry(loaded, fieldOfView)
        smooth, affine, _ = self._planeSource(volumeNode, spacing)
        return _planeImagesOf(loaded, smooth, affine, poses, size, spacing)

    def classifyPlane(self, volumeNode, pose: torch.Tensor, model, device: str = "cpu",
                      fieldOfView: float | None = None) -> tuple[str, float, torch.Tensor]:
        """Classify the plane ``pose`` (4x4 plane-to-world, columns u, v, normal, centre) of ``volumeNode``
        with a 2D model; returns ``(class name, probability, class probabilities (K,))``."""
        loaded = self._planeClassifier(model)
        probabilities = classProbabilities(loaded, self._planeImages(loaded, volumeNode, [pose], fieldOfView),
                                           device)[0]
        best = int(probabilities.argmax())
        return loaded.spec.labelNames[best], float(probabilities[best]), probabilities

    def classifySlice(self, sliceNode, volumeNode, model, device: str = "cpu") -> tuple[str, float, torch.Tensor]:
        """Classify the plane a slice view shows (its ``SliceToRAS``) through ``volumeNode``.

        The plane image is centred on the volume centre's projection onto the slice plane, so panning and
        zooming the view do not change the answer; scrolling and rotating do.
        """
        if sliceNode is None:
            raise DLError("No slice view was selected", fix="pick the slice view to classify")
        matrix = torch.from_numpy(arrayFromVTKMatrix(sliceNode.GetSliceToRAS()))
        checkVolume(volumeNode)
        affine = torch.from_numpy(ijkToRasMatrix(volumeNode))
        dims = volumeNode.GetImageData().GetDimensions()
        centre = affine[:3, :3] @ torch.tensor([(n - 1) / 2 for n in dims], dtype=torch.float64) + affine[:3, 3]
        pose = planePose(matrix[:3, 0], matrix[:3, 1], matrix[:3, 3])
        normal = pose[:3, 2]
        pose[:3, 3] = centre - ((centre - matrix[:3, 3]) @ normal) * normal
        return self.classifyPlane(volumeNode, pose, model, device, fieldOfView=max(sliceNode.GetFieldOfView()[:2]))

    def sliceProbabilities(self, volumeNode, model, axis: int | None = None, device: str = "auto"
                           ) -> tuple[list[float], torch.Tensor, list[str]]:
        """Class probabilities of every slice of ``volumeNode`` across voxel ``axis`` (default: the one
        closest to superior-inferior) with a 2D model: ``(positions mm, probabilities (N, K), class names)``."""
        loaded = self._planeClassifier(model)
        _, spacing = self._planeGeometry(loaded, None)
        _, affine, shape = self._planeSource(volumeNode, spacing)
        if axis is None:
            axis = int(torch.as_tensor(affine)[2, :3].abs().argmax())
        poses, positions = slicePoses(affine, shape, axis)
        images = self._planeImages(loaded, volumeNode, poses)
        return positions, classProbabilities(loaded, images, device), list(loaded.spec.labelNames)

    def sliceProbabilitiesJob(self, volumeNode, model, axis: int | None = None, device: str = "auto") -> Job:
        """A :class:`Job` computing :meth:`sliceProbabilities` (``meddl classify --slices``): every slice of
        ``volumeNode`` across voxel ``axis`` classified by a 2D model, with a plan (memory and time); its output
        is a :class:`SliceProbabilities`. It adds no node.

        (:meth:`sliceProbabilities` answers at once for the panel's plot and keeps the smoothed volume for the
        next call; this job smooths in its work phase.)
        """
        loaded = self._planeClassifier(model)
        checkVolume(volumeNode)
        image = tensorFromVolume(volumeNode)
        checkFinite(image, volumeNode)
        size, spacing = self._planeGeometry(loaded, None)
        affine, shape = image.affine, image.shape[1:]
        if axis is None:
            axis = int(torch.as_tensor(affine)[2, :3].abs().argmax())
        if axis not in (0, 1, 2):
            raise DLError(f"has no voxel axis {axis}", node=volumeNode, fix="give axis 0, 1 or 2 (or none)")
        poses, positions = slicePoses(affine, shape, axis)
        classNames, temperature, name = list(loaded.spec.labelNames), temperatureOf(loaded), volumeNode.GetName()
        subject = nodeLabel(volumeNode)  # the worker reads no node

        def plan():
            # a network input per slice (one plane image each); the volume and its smoothed copy are held too
            planes = [torch.empty(int(loaded.spec.inputChannels), *inputSizeOf(loaded))] * len(poses)
            return fitOrSwitch(lambda onDevice: estimateClassification(loaded, planes, onDevice,
                                                                       heldBytes=8 * image[:1].numel()),
                               device, subject, "classify a cropped or coarser volume")

        def work(context) -> SliceProbabilities:
            context.report(0.0, "smoothing the volume for its slices")
            smooth = smoothForPlanes(image[:1], affine, spacing)
            context.report(0.3, f"classifying {len(poses)} slices")
            probabilities = classProbabilities(loaded, _planeImagesOf(loaded, smooth, affine, poses, size, spacing),
                                               context.plan.device)
            rows = [{"input": row.pop("input"), "position_mm": round(position, 2), **row}
                    for row, position in zip(resultRows([name] * len(poses), probabilities, classNames, temperature),
                                             positions)]
            return SliceProbabilities(positions, probabilities, classNames, rows)

        return Job(work, None, name=f"Classify the slices of {name}", plan=plan)

    def plotSliceProbabilities(self, volumeNode, model, axis: int | None = None, chartNode=None,
                               device: str = "auto"):
        """A plot chart of each class's probability per slice along ``volumeNode`` (see
        :meth:`sliceProbabilities`); pass ``chartNode`` to update an existing chart."""
        from DLCommon.plots import updateCurvePlot

        positions, probabilities, names = self.sliceProbabilities(volumeNode, model, axis, device)
        curves = {name: (positions, probabilities[:, i].tolist()) for i, name in enumerate(names)}
        return updateCurvePlot(self.scene(volumeNode), curves, f"{volumeNode.GetName()} slice classes", chartNode,
                               xName="position (mm)", yName="probability")


def _planeImagesOf(loaded, smooth: torch.Tensor, affine: torch.Tensor, poses: list, size: int,
                   spacing: float) -> torch.Tensor:
    """``(N, 1, *inputSize)`` normalised plane images of a volume smoothed for sampling at ``spacing`` mm
    (:func:`~.planes.smoothForPlanes`), on ``poses``, resized to the model's input if it differs."""
    images = torch.stack([normaliseImages(samplePlane(smooth, affine, pose, size, spacing), 2) for pose in poses])
    if tuple(images.shape[2:]) != tuple(inputSizeOf(loaded)):
        images = torch.nn.functional.interpolate(images, size=inputSizeOf(loaded), mode="bilinear")
    return images


def _checkMniSpace(image, volumeNode) -> None:
    """Refuse a volume whose field of view does not hold the MNI152 brain (the standard planes live there)."""
    affine = image.affine.double()
    shape = torch.tensor(image.shape[1:], dtype=torch.float64)
    corners = torch.stack([torch.zeros(3, dtype=torch.float64), shape - 1])
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    low, high = world.min(0).values, world.max(0).values
    centre = torch.tensor(BRAIN_CENTRE, dtype=torch.float64)
    if bool(((centre - 50 < low) | (centre + 50 > high)).any()):
        raise DLError(f"spans {low.round().tolist()} to {high.round().tolist()} mm, which does not hold the MNI152 "
                      "brain", node=volumeNode,
                      fix="use a brain registered to MNI152 space (e.g. the MNI152 T1 sample: meddl demo, or "
                          "DLCommon.loadMNI152)")
