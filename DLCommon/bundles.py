"""Run a MONAI bundle unchanged on a volume: the bundle's own preprocessing, network, inferer and postprocessing.

MedDL does for a bundle's inference config what MONAI's ``ConfigWorkflow`` (``python -m monai.bundle run``) does,
and what MONAI Label's ``BundleInferTask`` does in a server, with two changes at the edges only:

- **The loader step is bypassed** (``LoadImaged``): the volume node's voxels take its place, given as the loader
  would give them for the node's file: a MetaTensor ``(I, J, K)`` (scalar volume) or ``(I, J, K, C)`` (vector
  volume) in the loader's dtype, with ``affine`` = ``original_affine`` = the node's IJK-to-RAS (MONAI's NIfTI and
  ITK readers both give RAS affines, converting ITK's LPS), ``spatial_shape``, ``original_channel_dim`` (no
  channel / last) and ``space`` = RAS; then the loader's own ``ensure_channel_first``. So ``EnsureChannelFirstd``,
  ``Orientationd`` (which reads ``space``) and ``Invertd`` (which reads the image's ``applied_operations``) work
  as they do on the file, without a round trip through a file.
- **The writers are left out** (``SaveImaged`` and friends): the prediction is taken from the data instead. If the
  bundle leaves it on another grid (no ``Invertd``), it is resampled onto the input grid (nearest neighbour for
  labels, linear for probabilities), so the result always has the input's exact geometry.

In between, the bundle's own objects run as its evaluator runs them: the same transform instances (``Invertd``
finds the preprocessing it inverts by instance), the DataLoader's collation and the engine's decollation
(``list_data_collate`` / ``decollate_batch``), the bundle's ``inferer`` on its ``network_def`` with the weights of
``models/model.pt`` (read with ``torch.load(weights_only=True)``), without gradients, under CUDA autocast where the
bundle's evaluator asks for ``amp``.

Segment names come from the metadata's ``network_data_format.outputs.pred.channel_def`` (channel 0, background,
skipped); colours are stable per name (Slicer's ``GenericAnatomyColors`` where the scene has it and a name matches).

A bundle that cannot run says why, naming the bundle, the config key and the fix (:class:`~DLCommon.errors.DLError`):
an unknown ``_target_``, an argument the installed MONAI no longer takes (with the MONAI version the bundle's
``metadata.json`` names), a missing optional package (with its pip name and the version the bundle names), a
broken reference or expression.

Several inputs: a bundle's loader may read several keys (renalStructures_CECT_segmentation: ``artery``, ``vein``,
``excret``) or several files stacked as the channels of one key (brats_mri_segmentation: ``image`` = T1c, T1, T2,
FLAIR, named by the metadata's input ``channel_def``). :attr:`Bundle.inputs` lists them; the user maps each name to a
volume (:meth:`Bundle.run`'s ``others``), and the result is on the first volume's grid. A label key that an inference
config loads beside its images (renalStructures' ``label``) is optional.

2D bundles whose inferer works slice by slice (``SliceInferer``, e.g. ventricular_short_axis_3label) run on the volume
as they do on a NIfTI file: the inferer takes the slices.

Not yet run here (see issue 19): bundles of other tasks (classification, detection, registration, generation).
"""

from __future__ import annotations

import colorsys
import contextlib
import copy
import dataclasses
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .devices import isOutOfMemory
from .errors import DLError, JobCancelled
from .models import SPEC_FILE_NAME, ModelSpec, _loadState, _loadTorchScript, _safeTorchLoad, _stateDictFrom

__all__ = ["Bundle", "BundleInput", "BundleOutput", "loadBundle", "bundleColors", "stableColor", "CONFIG_NAMES"]

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
PREPROCESSING_KEYS = ("preprocessing", "pre_transforms")  # MONAI Label's BundleConstants
POSTPROCESSING_KEYS = ("postprocessing", "post_transforms")
IMAGE_KEY, PRED_KEY = "image", "pred"  # monai.utils.CommonKeys: what the evaluator infers on and writes

# import name -> pip name, where they differ
PIP_NAMES = {"skimage": "scikit-image", "ignite": "pytorch-ignite", "cv2": "opencv-python", "PIL": "pillow",
             "sklearn": "scikit-learn", "yaml": "pyyaml", "cucim": "cucim"}
# transforms that import an optional package only when called: checked when the bundle is loaded, not after the
# network has run (class name -> import name)
RUNTIME_PACKAGES = {"KeepLargestConnectedComponent": "skimage", "KeepLargestConnectedComponentd": "skimage",
                    "RemoveSmallObjects": "skimage", "RemoveSmallObjectsd": "skimage"}


@dataclasses.dataclass(frozen=True)
class BundleInput:
    """One image the bundle's loader reads (a ``LoadImaged`` key).

    Attributes:
        key: the loader's key (``image``; renalStructures_CECT_segmentation: ``artery``, ``vein``, ``excret``).
        names: the volumes mapped to it: one per channel when the key takes several files stacked as channels
            (brats_mri_segmentation's ``image``: ``T1c``, ``T1``, ``T2``, ``FLAIR``, from the metadata's input
            ``channel_def``), else ``(key,)``. One vector volume with ``len(names)`` components may stand for all.
        optional: a label key that an inference config loads beside its images (renalStructures' ``label``); left
            out unless mapped.
    """

    key: str
    names: tuple[str, ...]
    optional: bool = False


@dataclasses.dataclass
class BundleOutput:
    """What :meth:`Bundle.run` returns, on the grid of its first input (its affine, its shape).

    Attributes:
        labels: ``(I, J, K)`` uint8 (int16 past 255 labels), 0 = background, label ``n`` = ``names[n - 1]``.
        names: segment names, one per label: the metadata's output ``channel_def`` when its labels are the channels
            after a background channel 0; else (sigmoid channels merged by the bundle's own rule, e.g.
            brats_mri_segmentation's 1, 2, 4) ``label <value>`` per value present, the values renumbered 1..n.
        probabilities: ``(C, I, J, K)`` float32, or None when not asked for. Taken before the bundle's first
            discretisation (``AsDiscreted``), after its own activation (a softmax of the scores when it has none),
            and mapped to the input grid by the bundle's ``Invertd`` with linear interpolation.
        probabilityNames: the name of each channel of ``probabilities``; None for a background channel (softmax
            outputs have one; a single sigmoid channel gets ``1 - p`` as one; independent sigmoid channels none).
        classes: the network's output channels (2 for one sigmoid channel: background and foreground).
        warnings: what the user should know about this result (e.g. labels rounded, or resampled inputs).
    """

    labels: torch.Tensor
    names: list[str]
    probabilities: torch.Tensor | None
    classes: int
    probabilityNames: list[str | None] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    exclusive: bool = True  # the probabilities are of exclusive classes (they sum to 1); False: independent sigmoid
    # channels (brats_mri_segmentation, renalStructures_CECT_segmentation)


@dataclasses.dataclass
class _Components:
    """The bundle's parsed objects for one device."""

    preprocessing: Any  # Compose, the loader replaced
    inferer: Any
    postprocessing: Any  # Compose, the writers left out
    steps: list  # the postprocessing's transforms (writers left out)


class Bundle:
    """A MONAI bundle read from its folder: parser, metadata, network with weights; :meth:`run` runs it.

    Made by :func:`loadBundle` (through :func:`DLCommon.models.loadModel`); every part of the config that
    :meth:`run` uses has been built once, so a bundle that cannot run fails there, before any node is made.
    """

    def __init__(self, root: Path, configFile: Path, parser, metadata: dict, network: torch.nn.Module):
        self.root, self.configFile, self.parser, self.metadata = root, configFile, parser, metadata
        self.network = network
        self.name = root.name
        self.version = str(metadata.get("version", ""))
        self.monaiVersion = str(metadata.get("monai_version", ""))
        self.labelNames = channelNames(metadata)
        self.outputChannels = outputChannelNames(metadata)  # channel 0.. of the network's output, as named
        self.amp = _literal(parser, "evaluator", "amp") is True
        self._components: dict[str, _Components] = {}
        self.inputs: list[BundleInput] = []  # set while building, from the loader's keys
        self.reasonNotRunnable: str | None = None  # set while building: what MedDL cannot run yet
        self.hasPipeline = any(k in parser for k in PREPROCESSING_KEYS)  # False: only a network, run by the spec

    # --- what it is ------------------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return f"Bundle '{self.name}'"

    def spec(self) -> ModelSpec:
        """A :class:`ModelSpec` describing the bundle, read from its *parsed* objects: names and channels from the
        metadata, voxel size and axis codes from its ``Spacingd`` / ``Orientationd``, window from its inferer, and
        the last intensity transform MedDL knows. It is descriptive: MedDL plans memory with it and fine-tunes
        from it; running uses the bundle's own pipeline."""
        specFile = self.root / "configs" / SPEC_FILE_NAME
        if specFile.exists():
            return ModelSpec.fromDict(json.loads(specFile.read_text()))
        formats = self.metadata.get("network_data_format", {}) or {}
        image = next(iter((formats.get("inputs") or {}).values()), {}) or {}
        spec = ModelSpec(name=str(self.metadata.get("name", self.name)),
                         task="segmentation" if self.labelNames else "other",
                         inputChannels=int(image.get("num_channels", 1)), labelNames=list(self.labelNames),
                         labelColors=[stableColor(n) for n in self.labelNames],
                         description=str(self.metadata.get("description", "")),
                         options={"bundle": {"name": self.name, "version": self.version,
                                             "monaiVersion": self.monaiVersion}})
        components = self.components(torch.device("cpu"))
        if len(self.volumeNames) > 1:  # the panels name their input rows from the catalog's spec
            spec.options["bundle"]["inputs"] = self.volumeNames
            spec.options["bundle"]["requiredInputs"] = self.requiredVolumeNames
        from monai.transforms import NormalizeIntensityd, Orientationd, ScaleIntensityRanged, Spacingd

        for transform in components.preprocessing.transforms:
            if isinstance(transform, Orientationd) and isinstance(transform.ornt_transform.axcodes, str):
                spec.orientation = transform.ornt_transform.axcodes
            elif isinstance(transform, Spacingd):
                pixdim = np.atleast_1d(np.asarray(transform.spacing_transform.pixdim, dtype=float))
                if pixdim.size == 3 and (pixdim > 0).all():
                    spec.spacing = [float(v) for v in pixdim]
            elif isinstance(transform, ScaleIntensityRanged):
                scaler = transform.scaler
                spec.normalization = {"type": "range", "aMin": float(scaler.a_min), "aMax": float(scaler.a_max),
                                      "bMin": float(scaler.b_min), "bMax": float(scaler.b_max),
                                      "clip": bool(scaler.clip)}
            elif isinstance(transform, NormalizeIntensityd):
                spec.normalization = {"type": "zscore", "nonzero": bool(transform.normalizer.nonzero)}
        roi = getattr(components.inferer, "roi_size", None)
        if roi is not None and all(isinstance(r, (int, np.integer)) and r > 0 for r in roi):
            spec.roiSize = [int(r) for r in roi]
        spec.validate()
        return spec

    def windowSettings(self) -> tuple[int, float]:
        """The inferer's windows per network call and window overlap, for the resource plan (1 and 0.25 when it
        does not say)."""
        components = next(iter(self._components.values()), None) or self.components(torch.device("cpu"))
        batch = getattr(components.inferer, "sw_batch_size", 1)
        overlap = getattr(components.inferer, "overlap", 0.25)
        overlap = overlap[0] if isinstance(overlap, (list, tuple)) and overlap else overlap
        return (int(batch) if isinstance(batch, int) and batch > 0 else 1,
                float(overlap) if isinstance(overlap, (int, float)) and 0 <= overlap < 1 else 0.25)

    def checkRunnable(self) -> None:
        """Raise :class:`DLError` for a bundle MedDL cannot run yet (several inputs, 2D, another task)."""
        if self.reasonNotRunnable:
            raise DLError(self.reasonNotRunnable, node=self.label,
                          fix="use a 3D segmentation bundle with one input image (others: issue 19)")

    # --- building --------------------------------------------------------------------------------------------
    def components(self, device: torch.device) -> _Components:
        """The preprocessing, inferer and postprocessing parsed for ``device`` (the config's ``device`` key set to it,
        as ``--device`` does for ``monai.bundle run``); cached per device."""
        key = str(device)
        if key not in self._components:
            self.parser["device"] = device
            self.parser.parse(reset=True)
            self._components = {key: self._build()}
        return self._components[key]

    def _build(self) -> _Components:
        from monai.inferers import SimpleInferer

        with self.bundlePath():
            preKey = next((k for k in PREPROCESSING_KEYS if k in self.parser), None)
            postKey = next((k for k in POSTPROCESSING_KEYS if k in self.parser), None)
            pre = parsedContent(self, preKey) if preKey else None
            inferer = parsedContent(self, "inferer") if "inferer" in self.parser else SimpleInferer()
            post = parsedContent(self, postKey) if postKey else None
        for key, transforms in ((preKey, _transformsOf(pre, self, preKey)), (postKey, _transformsOf(post, self, postKey))):
            for index, transform in enumerate(transforms):
                self._checkPackages(transform, f"{key}#transforms#{index}" if len(transforms) > 1 else key)
        preTransforms = [self._standIn(t) for t in _transformsOf(pre, self, preKey)]
        steps = [t for t in _transformsOf(post, self, postKey) if not _isWriter(t)]
        if inferer is None or not callable(inferer):
            raise DLError(f"has an 'inferer' that is not callable ({type(inferer).__name__})", node=self.label,
                          fix="set 'inferer' to a MONAI inferer, e.g. SlidingWindowInferer")
        return _Components(_recompose(pre, preTransforms), inferer, _recompose(post, steps), steps)

    def _standIn(self, transform):
        """The volume stand-in for a loader step; other transforms unchanged (the same instances)."""
        from monai.transforms import LoadImage, LoadImaged

        if isinstance(transform, LoadImaged):
            self.inputs = self._inputsOf([str(k) for k in transform.keys])
            return _VolumeAsLoaded(transform)
        if isinstance(transform, LoadImage):
            self.reasonNotRunnable = "loads its image with an array transform (LoadImage), not LoadImaged"
        return transform

    def _inputsOf(self, keys: list[str]) -> list[BundleInput]:
        """The loader's keys as inputs: a label key is optional when there are image keys beside it; a lone image
        key that the metadata gives several channels takes one volume per channel (named by its ``channel_def``)."""
        optional = {k for k in keys if _isLabelKey(k)} if any(not _isLabelKey(k) for k in keys) else set()
        required = [k for k in keys if k not in optional]
        inputs = []
        formats = (self.metadata.get("network_data_format") or {}).get("inputs") or {}
        for key in keys:
            names: tuple[str, ...] = (key,)
            channels = int((formats.get(key) or {}).get("num_channels") or 1)
            if len(required) == 1 and key in required and channels > 1:
                defined = (formats.get(key) or {}).get("channel_def") or {}
                names = tuple(_unique([str(defined.get(str(c), f"{key} {c + 1}")) for c in range(channels)]))
            inputs.append(BundleInput(key, names, key in optional))
        return inputs

    @property
    def volumeNames(self) -> list[str]:
        """The names of the volumes the bundle takes, required ones first (``["image"]`` for one input)."""
        ordered = [i for i in self.inputs if not i.optional] + [i for i in self.inputs if i.optional]
        return [name for i in ordered for name in i.names]

    @property
    def requiredVolumeNames(self) -> list[str]:
        return [name for i in self.inputs if not i.optional for name in i.names]

    def inputData(self, image, others: dict | None = None) -> tuple[dict, list[str]]:
        """The data the loader stand-in reads: ``image`` (the first volume, whose grid the result is on) and
        ``others`` (volume name -> ``(C, I, J, K)`` MetaTensor) under the loader's keys; and warnings.

        A vector volume whose components are a key's channels stands for all of them. Volumes on another grid
        than ``image`` are resampled onto it (linear), as MONAI's loader would refuse them or the bundle's
        concatenation fail; a warning says so.

        Raises:
            DLError: a name the bundle does not take, or a required volume not given.
        """
        others = dict(others or {})
        required = self.requiredVolumeNames or [IMAGE_KEY]
        unknown = sorted(set(others) - set(self.volumeNames) - {required[0]})
        if unknown:
            raise DLError(f"takes no input named {', '.join(map(repr, unknown))}", node=self.label,
                          fix=f"name its inputs: {', '.join(self.volumeNames)}")
        first = next((i for i in self.inputs if not i.optional), BundleInput(IMAGE_KEY, (IMAGE_KEY,)))
        given = {required[0]: image, **others}
        if len(first.names) > 1 and int(image.shape[0]) == len(first.names):  # one vector volume: all its channels
            given.update({name: None for name in first.names[1:]})
        missing = [n for n in required if n not in given]
        if missing:
            raise DLError(f"takes {len(required)} input volumes ({', '.join(required)}); "
                          f"{', '.join(missing)} {'was' if len(missing) == 1 else 'were'} not given", node=self.label,
                          fix="map each to a volume: in DL Segment, the model's input rows; on the command line, "
                              f"--input {missing[0]}=FILE (one --input NAME=FILE per volume)")
        data, warnings = {}, []
        for entry in self.inputs:
            volumes = [given.get(name) for name in entry.names]
            if entry.optional and volumes[0] is None:
                continue
            volumes = [v for v in volumes if v is not None]
            placed = []
            for name, volume in zip(entry.names, volumes):
                if volume is not image and not _sameGrid(volume, image):
                    warnings.append(f"{self.label}: '{name}' ({volume.meta.get('name', name)}) is on another grid "
                                    f"than '{required[0]}' ({image.meta.get('name', required[0])}); resampled onto it "
                                    "(linear) before the bundle's preprocessing")
                    meta = dict(volume.meta)
                    volume = _onGrid(volume.float(), image, "bilinear")
                    volume.meta["name"] = meta.get("name", name)
                if len(volumes) > 1 and int(volume.shape[0]) != 1:
                    raise DLError(f"'{name}' has {int(volume.shape[0])} components; each of "
                                  f"{', '.join(entry.names)} is one scalar volume", node=self.label,
                                  fix="pick a scalar volume for each")
                placed.append(volume)
            data[entry.key] = placed[0] if len(placed) == 1 else placed
        if not self.inputs:
            data[IMAGE_KEY] = image
        return data, warnings

    def _checkPackages(self, transform, key: str) -> None:
        module = RUNTIME_PACKAGES.get(type(transform).__name__)
        if module and not _importable(module):
            raise packageError(self, key, module, f"{type(transform).__name__} needs it")

    @contextlib.contextmanager
    def bundlePath(self):
        """The bundle folder first on ``sys.path`` while its config is parsed or run (its ``scripts`` package, as
        ``ConfigWorkflow.run`` and MONAI Label do), another bundle's ``scripts`` unloaded first."""
        if not (self.root / "scripts").is_dir():
            yield
            return
        for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
            del sys.modules[name]
        sys.path.insert(0, str(self.root))
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(self.root))

    # --- running ---------------------------------------------------------------------------------------------
    def run(self, image, device: torch.device | str = "cpu", probabilities: bool = False,
            windowBatchSize: int | None = None, progress: Callable[[float, str], None] | None = None,
            others: dict | None = None) -> BundleOutput:
        """Run the bundle on ``image`` and return its labels (and probabilities) on ``image``'s grid.

        Args:
            image: ``(C, I, J, K)`` MetaTensor, affine = IJK-to-RAS (:func:`~DLCommon.volumes.tensorFromVolume`);
                it is not modified. The bundle's first input (:attr:`volumeNames`).
            others: the bundle's other inputs, volume name -> ``(C, I, J, K)`` MetaTensor (see :meth:`inputData`).
            device: where the network and the bundle's transforms run (the bundle's ``device`` key).
            probabilities: also return class probabilities ``(C, I, J, K)``.
            windowBatchSize: at most this many windows per network call (the bundle's ``sw_batch_size`` when
                smaller); halved on out-of-memory, then the CPU is used.
            progress: ``progress(fraction, message)``; may raise ``JobCancelled``.
        """
        from .devices import pickDevice, runWithOOMFallback

        self.checkRunnable()
        device = pickDevice(device) if isinstance(device, str) else device
        report = progress or (lambda fraction, message: None)
        own = getattr(self.components(device).inferer, "sw_batch_size", None)
        first = int(own) if isinstance(own, int) and own > 0 else 1
        if windowBatchSize:
            first = max(1, min(first, int(windowBatchSize)))

        data, warnings = self.inputData(image, others)

        def step(batchSize: int, stepDevice: torch.device) -> BundleOutput:
            return self._run(data, image, stepDevice, batchSize, probabilities, report)

        output, _ = runWithOOMFallback(step, first, device)
        output.warnings[:0] = warnings
        return output

    def _run(self, given: dict, image, device: torch.device, batchSize: int, probabilities: bool,
             report) -> BundleOutput:
        from monai.data import MetaTensor, decollate_batch, list_data_collate

        components = self.components(device)
        inferer = components.inferer
        if hasattr(inferer, "sw_batch_size"):
            inferer.sw_batch_size = batchSize
        if device.type == "cpu":  # an inferer the config put on a GPU by expression: run it where we run
            for attribute in ("device", "sw_device"):
                if getattr(inferer, attribute, None) is not None and torch.device(getattr(inferer, attribute)).type != "cpu":
                    setattr(inferer, attribute, None)
        network = self.network.to(device).eval()
        with self.bundlePath(), torch.no_grad():
            report(0.0, f"{self.name}: preprocessing")
            data = self._apply(components.preprocessing, dict(given), "preprocessing")
            if IMAGE_KEY not in data:
                raise DLError(f"has no '{IMAGE_KEY}' after its preprocessing, which its evaluator infers on",
                              node=self.label, fix="name the input image 'image' in the bundle's config")
            batch = list_data_collate([data])  # the DataLoader's collation, then the engine's prepare_batch
            inputs = batch[IMAGE_KEY].to(device)
            predictor = _countingPredictor(network, inputs, inferer, report, self.name)
            try:
                with torch.autocast("cuda", enabled=self.amp and device.type == "cuda"):  # the evaluator's amp
                    scores = inferer(inputs, predictor)
            except Exception as exc:  # noqa: BLE001 - out of memory and cancel pass; the rest names the bundle
                if isOutOfMemory(exc) or isinstance(exc, JobCancelled):
                    raise
                raise DLError(f"failed in its 'inferer' / 'network_def' on an input of shape {tuple(inputs.shape)} "
                              f"({type(exc).__name__}: {_firstLine(str(exc))})", node=self.label,
                              fix="check that the input is the kind of image the bundle expects"
                                  + _versionHint(self)) from None
            report(0.9, f"{self.name}: postprocessing")
            classes = max(2, int(scores.shape[1]))  # one channel: a sigmoid foreground, two classes
            item = dict(decollate_batch(batch, detach=True)[0])  # the engine's postprocessing input
            item.update(decollate_batch({IMAGE_KEY: inputs, PRED_KEY: scores}, detach=True)[0])
            del batch, inputs, scores, data
            labelsData, probabilityData = self._postprocess(item, components, probabilities)
        labels, warning = _labelsOnGrid(labelsData[PRED_KEY], image, self)
        labels, names, naming = self._namedLabels(labels)
        result = BundleOutput(labels=labels, names=names, probabilities=None, classes=classes,
                              warnings=[w for w in (warning, naming) if w])
        if probabilityData is not None:
            values = _onGrid(probabilityData[PRED_KEY], image, "bilinear").float()
            channels = list(self.outputChannels)
            if values.shape[0] == 1:  # one sigmoid channel: the foreground; background first, as for MedDL's models
                values = MetaTensor(torch.cat([1 - values.as_tensor(), values.as_tensor()]), affine=values.affine)
                channels = [None, (self.labelNames or channels[-1:] or ["foreground"])[0]]
            elif _isBackground(channels[0] if channels else "background"):
                channels = [None] + [channels[c] if c < len(channels) else f"label {c}" for c in range(1, len(values))]
            else:  # independent sigmoid channels, all foreground
                channels = [channels[c] if c < len(channels) else f"channel {c}" for c in range(len(values))]
            result.probabilities, result.probabilityNames = values, channels
            result.exclusive = len(values) == 2 or not _sigmoidBeforeDiscretising(components.steps)
        report(1.0, f"{self.name}: done")
        return result

    def _postprocess(self, item: dict, components: _Components, probabilities: bool) -> tuple[dict, dict | None]:
        """The labels (the whole postprocessing, writers left out) and, if asked, the probabilities: the steps before
        the first discretisation, a softmax if none of them was an activation, then the later ``Invertd`` steps
        with linear interpolation."""
        from monai.transforms import Activations, Activationsd, AsDiscrete, AsDiscreted, Compose, Invertd

        steps = components.steps
        if not probabilities:
            return self._apply(components.postprocessing, item, "postprocessing"), None
        cut = next((i for i, t in enumerate(steps) if isinstance(t, (AsDiscrete, AsDiscreted))), len(steps))
        prefix = self._apply(_recompose(components.postprocessing, steps[:cut]), item, "postprocessing")
        labels = self._apply(_recompose(components.postprocessing, steps[cut:]), dict(prefix), "postprocessing")
        scores = dict(prefix)
        if not any(isinstance(t, (Activations, Activationsd)) for t in steps[:cut]):  # what the argmax / threshold
            values = scores[PRED_KEY].float()                                      # reads, as probabilities
            scores[PRED_KEY] = torch.sigmoid(values) if values.shape[0] == 1 else torch.softmax(values, dim=0)
        for transform in steps[cut:]:
            if isinstance(transform, Invertd):
                linear = copy.copy(transform)
                linear.nearest_interp = (False,) * len(transform.nearest_interp)
                scores = self._apply(Compose([linear]), scores, "postprocessing")
        return labels, scores

    def _namedLabels(self, labels: torch.Tensor) -> tuple[torch.Tensor, list[str], str | None]:
        """Labels ``(I, J, K)`` with their segment names (see :class:`BundleOutput`), and a warning when the
        metadata does not name the values."""
        values = [int(v) for v in torch.unique(labels).tolist() if v > 0]
        top = max(values, default=0)
        dtype = torch.uint8 if max(top, len(self.labelNames)) <= 255 else torch.int16
        if self.labelNames and top <= len(self.labelNames):
            return labels.to(dtype), list(self.labelNames), None
        lookup = torch.zeros(top + 1, dtype=torch.int64)
        lookup[values] = torch.arange(1, len(values) + 1)
        named = ", ".join(self.outputChannels) if self.outputChannels else "none"
        warning = (f"{self.label} gives the label values {', '.join(map(str, values))}, which its metadata does not "
                   f"name one by one (its output channels: {named}); the segments are named by value "
                   "(see the bundle's documentation for their meaning)") if values else None
        compact = lookup[labels.long()].to(torch.uint8 if len(values) <= 255 else torch.int16)
        return compact, [f"label {v}" for v in values], warning

    def _apply(self, transform, data: dict, key: str) -> dict:
        """Run one of the bundle's transform chains; a failure names the bundle and the config key."""
        from monai.utils import OptionalImportError

        try:
            return transform(data)
        except DLError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bundle's transforms can fail in many ways
            cause = _rootCause(exc)
            if isOutOfMemory(exc) or isOutOfMemory(cause):  # runWithOOMFallback retries smaller / on the CPU
                raise
            if isinstance(cause, JobCancelled):
                raise cause from None
            text = str(cause)
            if isinstance(cause, (OptionalImportError, ModuleNotFoundError)) or "kimage" in text:
                module = getattr(cause, "name", None) or ("skimage" if "kimage" in text else _moduleIn(text))
                raise packageError(self, key, module or "an optional package", text) from None
            raise DLError(f"failed in its '{key}' ({type(cause).__name__}: {_firstLine(text)})", node=self.label,
                          fix="check that the input is the kind of image the bundle expects"
                              + _versionHint(self)) from None


class _VolumeAsLoaded:
    """Stands in for the bundle's ``LoadImaged``: gives, for the volume's tensor, what the loader gives for the
    volume's file (see the module docstring), the loader's dtype, channel handling and meta keys included."""

    def __init__(self, loader):
        self.loader = loader
        self.keys = tuple(loader.keys)

    def __call__(self, data: dict) -> dict:
        from monai.data import MetaTensor
        from monai.transforms import EnsureChannelFirst
        from monai.utils import convert_to_dst_type
        from monai.utils.enums import SpaceKeys

        d = dict(data)
        reader = self.loader._loader
        for key in self.keys:
            if key not in d:  # an optional input (a label key) not mapped: left out
                continue
            volumes = d[key] if isinstance(d[key], (list, tuple)) else [d[key]]
            for volume in volumes:
                if not isinstance(volume, MetaTensor) or volume.ndim != 4:
                    raise TypeError(f"'{key}' must be a (C, I, J, K) MetaTensor from a volume, got {type(volume)}")
            volume = volumes[0]  # the loader's meta is the first file's
            values = volume.as_tensor().detach().cpu()
            if len(volumes) > 1:  # several files: each (I, J, K), stacked as a new first (channel) axis
                array = torch.stack([v.as_tensor().detach().cpu()[0] for v in volumes])
                channelDim = 0
            else:  # a scalar file reads as (I, J, K) with no channel, a vector file with its components last
                array, channelDim = ((values[0], float("nan")) if values.shape[0] == 1
                                     else (values.permute(1, 2, 3, 0), -1))
            affine = _withoutRoundOff(np.asarray(volume.affine, dtype=np.float64))
            space = SpaceKeys.RAS
            if _readsLps(reader):  # an ITKReader with affine_lps_to_ras=False keeps ITK's LPS
                affine, space = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine, SpaceKeys.LPS
            meta = {"affine": affine.copy(), "original_affine": affine.copy(),
                    "spatial_shape": np.asarray(values.shape[1:]), "original_channel_dim": channelDim,
                    "space": space, "filename_or_obj": str(volume.meta.get("name", key))}
            # a copy in the loader's dtype: the transforms may work in place, and ``volume`` may view a node's voxels
            array = convert_to_dst_type(array.clone(), dst=array, dtype=reader.dtype)[0]
            image = MetaTensor.ensure_torch_and_prune_meta(array, meta, reader.simple_keys, pattern=reader.pattern,
                                                           sep=reader.sep)
            if reader.ensure_channel_first:
                image = EnsureChannelFirst()(image, meta_dict=meta)
            d[key] = image
            if not reader.image_only:
                index = self.keys.index(key)
                metaKey = (self.loader.meta_keys[index] if self.loader.meta_keys and self.loader.meta_keys[index]
                           else f"{key}_{self.loader.meta_key_postfix[index]}")
                d[metaKey] = image.meta if isinstance(image, MetaTensor) else meta
        return d


def loadBundle(root: Path, device: torch.device | str = "cpu", weightsOnly: bool = True,
               trusted: bool = False) -> Bundle:
    """Read the bundle in ``root`` (a folder with ``configs/`` and ``models/``): parse its inference config with
    ``bundle_root`` set, build its network (``network_def`` and ``models/model.pt``, or ``models/model.ts``) and
    the preprocessing, inferer and postprocessing :meth:`Bundle.run` uses. Its code must be trusted first
    (:mod:`DLCommon.bundletrust`; ``trusted``: the caller verified the checksum the user pinned): nothing of the
    config is evaluated before.

    Raises:
        DLError: naming the bundle, the config key and the fix, for a bundle that cannot be built; for a bundle
            whose code the user has not trusted, showing that code.
    """
    from monai.bundle import ConfigParser

    from .bundletrust import checkTrusted

    configs = root / "configs"
    configFile = next((configs / n for n in CONFIG_NAMES if (configs / n).exists()), None)
    if configFile is None:
        raise DLError("has no configs/inference.json or .yaml", file=root, fix="add the bundle's inference config")
    if not trusted:  # its code runs from here on (imports, '$' expressions, scripts): only with the user's consent
        checkTrusted(root)
    metadata: dict = {}
    metadataFile = configs / "metadata.json"
    parser = ConfigParser()
    try:
        if metadataFile.exists():
            metadata = json.loads(metadataFile.read_text())
            parser.read_meta(metadata)
        parser.read_config(str(configFile))
    except (ValueError, OSError) as exc:  # json.JSONDecodeError, yaml errors, duplicate keys
        raise DLError(f"is not a readable bundle config ({_firstLine(str(exc))})",
                      file=metadataFile if metadataFile.exists() and not metadata else configFile,
                      fix="repair the file (JSON / YAML syntax)") from None
    parser["bundle_root"] = str(root)
    parser["device"] = torch.device("cpu")
    bundle = Bundle(root, configFile, parser, metadata, torch.nn.Identity())
    models = root / "models"
    weights = models / "model.pt"
    if weights.exists():
        if "network_def" not in parser:
            raise DLError("has models/model.pt but no 'network_def' in its config", file=configFile,
                          fix="add the network_def the weights were trained with")
        with bundle.bundlePath():
            network = parsedContent(bundle, "network_def")
        if not isinstance(network, torch.nn.Module):
            raise DLError(f"config key 'network_def' gives a {type(network).__name__}, not a network", node=bundle.label,
                          fix="set network_def to a torch.nn.Module (a '_target_' network)")
    elif not (models / "model.ts").exists():
        raise DLError("has no models/model.pt or models/model.ts", file=root, fix="add the trained weights")
    if bundle.hasPipeline:
        bundle.components(torch.device("cpu"))  # build everything run() uses: a bad config fails before the weights
    if weights.exists():
        _loadState(network, _stateDictFrom(_safeTorchLoad(weights, weightsOnly), weights), weights)
    else:
        network, _ = _loadTorchScript(models / "model.ts", "cpu")
    bundle.network = network.to(device).eval()
    return bundle


def parsedContent(bundle: Bundle, key: str):
    """``parser.get_parsed_content(key)``; a failure becomes a :class:`DLError` naming the innermost config key
    that fails and the fix."""
    try:
        return bundle.parser.get_parsed_content(key, instantiate=True)
    except DLError:
        raise
    except Exception as exc:  # noqa: BLE001 - MONAI wraps what a component raises
        failing = _innermostFailing(bundle.parser, key)
        raise configError(bundle, failing, exc) from None


def _innermostFailing(parser, key: str) -> str:
    """The deepest config id under ``key`` whose parsing fails (children first), for the message."""
    raw = parser.get(key)
    children = (range(len(raw)) if isinstance(raw, list) else
                [k for k in raw if not str(k).startswith("_")] if isinstance(raw, dict) else [])
    for child in children:
        childId = f"{key}#{child}"
        try:
            parser.get_parsed_content(childId, instantiate=True)
        except Exception:  # noqa: BLE001
            return _innermostFailing(parser, childId)
    return key


def configError(bundle: Bundle, key: str, exc: BaseException) -> DLError:
    """A :class:`DLError` for a config item that cannot be built: which kind of failure, and its fix."""
    import monai
    from monai.utils import OptionalImportError

    cause = _meaningfulCause(exc)
    text = _firstLine(str(cause))
    raw = bundle.parser.get(key)
    target = raw.get("_target_") if isinstance(raw, dict) else None
    shown = key.replace("::", "#")
    if isinstance(cause, OptionalImportError) or (isinstance(cause, ModuleNotFoundError) and cause.name):
        module = getattr(cause, "name", None) or _moduleIn(text) or "an optional package"
        return packageError(bundle, shown, module, text)
    if isinstance(cause, ModuleNotFoundError) and "Cannot locate" in text:
        top = str(target or "").split(".")[0]
        if top and top not in ("monai", "scripts", "torch") and "." in str(target) and not _importable(top):
            return packageError(bundle, shown, top, f"_target_ {target!r} is in it")
        where = (" (a scripts module: the bundle's scripts/ folder is missing or incomplete)"
                 if str(target).startswith("scripts.") else "")
        return DLError(f"config key '{shown}' has an unknown _target_ {target!r}{where}: MONAI "
                       f"{monai.__version__} has no such class or function", node=bundle.label,
                       fix="use a bundle made for this MONAI version" + _versionHint(bundle, install=True))
    if isinstance(cause, TypeError) and "argument" in text:
        return DLError(f"config key '{shown}' cannot be built: {text}, in MONAI {monai.__version__}", node=bundle.label,
                       fix=f"use a version of the bundle made for MONAI {monai.__version__}"
                           + _versionHint(bundle, install=True))
    if isinstance(cause, (ValueError, KeyError, NameError, SyntaxError, AttributeError)):
        return DLError(f"config key '{shown}' is broken ({type(cause).__name__}: {text})", node=bundle.label,
                       fix="repair the bundle's inference config" + _versionHint(bundle))
    return DLError(f"config key '{shown}' cannot be built ({type(cause).__name__}: {text})", node=bundle.label,
                   fix="check the bundle's inference config" + _versionHint(bundle))


def packageError(bundle: Bundle, key: str, module: str, detail: str) -> DLError:
    """A missing optional package: its pip name, pinned to the version the bundle's metadata names."""
    top = module.split(".")[0]
    pip = PIP_NAMES.get(top, top)
    named = {**(bundle.metadata.get("optional_packages_version") or {}),
             **(bundle.metadata.get("required_packages_version") or {})}  # MONAI 1.5 renamed the key
    wanted = named.get(pip)
    spec = f"{pip}=={wanted}" if wanted else pip
    return DLError(f"config key '{key}' needs the Python package {pip} ({_firstLine(detail)}), which is not "
                   "installed", node=bundle.label,
                   fix=f"install it: pip install {spec} (in Slicer: slicer.util.pip_install('{spec}'))")


def _channelDef(metadata: dict) -> dict[int, str]:
    outputs = ((metadata.get("network_data_format") or {}).get("outputs") or {})
    pred = outputs.get(PRED_KEY) or next(iter(outputs.values()), {}) or {}
    return {int(k): str(v) for k, v in (pred.get("channel_def") or {}).items() if str(k).lstrip("-").isdigit()}


def channelNames(metadata: dict) -> list[str]:
    """Foreground names 1..n from ``network_data_format.outputs.pred.channel_def`` (gaps named ``label k``), when
    its channel 0 is the background (labels = channels); else none (independent sigmoid channels)."""
    channels = _channelDef(metadata)
    if not channels or max(channels) < 1 or not _isBackground(channels.get(0, "background")):
        return []
    return [channels.get(i, f"label {i}") for i in range(1, max(channels) + 1)]


def outputChannelNames(metadata: dict) -> list[str]:
    """The names of the network's output channels 0..n-1 from the metadata's ``channel_def`` (gaps: ``channel k``)."""
    channels = _channelDef(metadata)
    return [channels.get(i, f"channel {i}") for i in range(max(channels) + 1)] if channels else []


def stableColor(name: str) -> tuple[float, float, float]:
    """A colour for a segment name that is the same in every run and every bundle (RGB 0..1): a hue from the
    name's hash, fixed saturation and value."""
    hue = int(hashlib.sha256(name.strip().lower().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue, 0.6, 0.9))


def bundleColors(names: Sequence[str], scene=None) -> list[tuple[float, float, float]]:
    """Colours for segment names: Slicer's ``GenericAnatomyColors`` entry where the scene has that table and a
    name matches (case, spaces and underscores ignored), else :func:`stableColor`."""
    table = scene.GetFirstNodeByName("GenericAnatomyColors") if scene is not None else None
    known = {}
    if table is not None and hasattr(table, "GetNumberOfColors"):
        for index in range(table.GetNumberOfColors()):
            rgba = [0.0, 0.0, 0.0, 0.0]
            if table.GetColorName(index) and table.GetColor(index, rgba):
                known.setdefault(_key(table.GetColorName(index)), tuple(float(c) for c in rgba[:3]))
    return [known.get(_key(name), stableColor(name)) for name in names]


# --- helpers ---------------------------------------------------------------------------------------------------

def _sigmoidBeforeDiscretising(steps: list) -> bool:
    """True when the postprocessing applies a sigmoid before its first discretisation: its channels are independent
    probabilities, not exclusive classes."""
    from monai.transforms import Activations, Activationsd, AsDiscrete, AsDiscreted

    for step in steps:
        if isinstance(step, (AsDiscrete, AsDiscreted)):
            return False
        if isinstance(step, Activationsd) and any(step.sigmoid):  # one flag per key
            return True
        if isinstance(step, Activations) and step.sigmoid:
            return True
    return False


def _isBackground(name: str) -> bool:
    return _key(name) in {"background", "bg", "_background_", "backgroundclass"}


def _isLabelKey(key: str) -> bool:
    """A loader key holding a reference segmentation, not an image (``label``, ``seg``, ``label_1``, ``mask``)."""
    return _key(key).startswith(("label", "seg", "mask", "gt"))


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out


def _sameGrid(volume, image) -> bool:
    return (tuple(volume.shape[1:]) == tuple(image.shape[1:])
            and torch.allclose(torch.as_tensor(volume.affine, dtype=torch.float64).cpu(),
                               torch.as_tensor(image.affine, dtype=torch.float64).cpu(), atol=1e-4))


def _key(name: str) -> str:
    return "".join(name.lower().replace("_", " ").split())


def _literal(parser, *keys: str) -> Any:
    """A plain value in the raw config (no parsing), or None."""
    value = parser.get(keys[0])
    for key in keys[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _transformsOf(transform, bundle: Bundle, key: str | None) -> list:
    from monai.transforms import Compose

    if transform is None:
        return []
    if isinstance(transform, Compose):
        return list(transform.transforms)
    if isinstance(transform, (list, tuple)):
        return list(transform)
    if callable(transform):
        return [transform]
    raise DLError(f"config key '{key}' is a {type(transform).__name__}, not a transform", node=bundle.label,
                  fix="make it a Compose of MONAI transforms")


def _recompose(original, transforms: list):
    """A Compose of ``transforms`` with the original Compose's settings (map_items, lazy, ...)."""
    from monai.transforms import Compose

    if isinstance(original, Compose):
        return Compose(transforms, map_items=original.map_items, unpack_items=original.unpack_items,
                       log_stats=original.log_stats, lazy=original.lazy, overrides=original.overrides)
    return Compose(transforms)


def _isWriter(transform) -> bool:
    from monai.transforms import SaveImage, SaveImaged

    name = type(transform).__name__
    return isinstance(transform, (SaveImage, SaveImaged)) or name.startswith(("Save", "Write"))


def _countingPredictor(network, inputs, inferer, report, name: str):
    """``network`` wrapped to report progress per window (0.05..0.9 of the run); the window count is MONAI's for a
    sliding-window inferer, unknown otherwise."""
    total = None
    roi, overlap = getattr(inferer, "roi_size", None), getattr(inferer, "overlap", None)
    if roi is not None and isinstance(overlap, (int, float)):
        from .inference import countWindows

        with contextlib.suppress(Exception):
            spatial = [int(s) for s in inputs.shape[2:]]
            total = countWindows(spatial, [s if int(r) <= 0 else int(r) for s, r in zip(spatial, roi)], float(overlap))
    done = {"windows": 0}

    def predictor(patches, *args, **kwargs):
        output = network(patches, *args, **kwargs)
        done["windows"] += int(patches.shape[0])
        fraction = done["windows"] / total if total else 0.5
        report(0.05 + 0.85 * min(1.0, fraction), f"{name}: window {done['windows']}" + (f"/{total}" if total else ""))
        return output

    return predictor


def _labelsOnGrid(pred, image, bundle: Bundle) -> tuple[torch.Tensor, str | None]:
    """The label map ``(I, J, K)`` on ``image``'s grid from the bundle's final prediction (one channel of labels,
    or one-hot / probabilities over channels: argmax), and a warning when its labels had to be rounded."""
    from monai.data import MetaTensor

    values = pred.as_tensor() if isinstance(pred, MetaTensor) else torch.as_tensor(pred)
    values = values.detach().cpu()
    warning = None
    if values.ndim != 4:
        raise DLError(f"gives a prediction of shape {tuple(values.shape)}, not (C, I, J, K)", node=bundle.label,
                      fix="use a 3D segmentation bundle")
    if values.shape[0] == 1:
        labels = values[0].float()
        rounded = labels.round()  # half to even, as numpy.rint
        if not torch.equal(labels, rounded):
            # e.g. prostate_mri_anatomy: argmax, then Invertd with nearest_interp=false interpolates the label map
            # linearly; its written file holds the fractions, and the nearest label is what they mean
            warning = (f"{bundle.label} interpolates its label map linearly after the argmax (Invertd with "
                       f"nearest_interp false): {float((labels != rounded).float().mean()):.0%} of the voxels held "
                       "fractional labels, rounded to the nearest label")
        labels = rounded
        if labels.numel() and (float(labels.min()) < 0 or float(labels.max()) > 32767):
            raise DLError(f"gives labels {float(labels.min()):g}..{float(labels.max()):g}, not 0 (background) and "
                          "positive labels", node=bundle.label, fix="check the bundle's postprocessing")
    else:
        labels = values.argmax(0).float()
    labels = MetaTensor(labels[None], affine=_affineOf(pred, image))
    return _onGrid(labels, image, "nearest")[0].round().to(torch.int16), warning


def _affineOf(pred, image) -> torch.Tensor:
    affine = getattr(pred, "affine", None)
    return torch.as_tensor(affine if affine is not None else image.affine, dtype=torch.float64).cpu()


def _onGrid(tensor, image, mode: str) -> torch.Tensor:
    """``tensor`` ``(C, ...)`` on ``image``'s grid: as is when its shape and affine are the input's already (the
    bundle's ``Invertd``), else resampled (``mode``: ``"nearest"`` / ``"bilinear"``); returns a MetaTensor with
    exactly ``image``'s affine."""
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    target = torch.as_tensor(image.affine, dtype=torch.float64).cpu()
    values = tensor.as_tensor() if isinstance(tensor, MetaTensor) else torch.as_tensor(tensor)
    values = values.detach().cpu()
    affine = _affineOf(tensor, image)
    if tuple(values.shape[1:]) != tuple(image.shape[1:]) or not torch.allclose(affine, target, atol=1e-4):
        values = SpatialResample(mode=mode, padding_mode="zeros", dtype=torch.float32)(
            MetaTensor(values.float(), affine=affine), dst_affine=target, spatial_size=tuple(image.shape[1:])).as_tensor()
    return MetaTensor(values, affine=target.clone(), meta={"space": "RAS"})


def _withoutRoundOff(affine: np.ndarray) -> np.ndarray:
    """``affine`` with the last-bit round-off of Slicer's spacing x direction products removed: entries within
    1e-12 (relative) of a float32 value become that value, as a NIfTI reader gives them from the file's float32
    ``srow``. MONAI's ``Spacingd`` takes the ceiling of extents, so ``-0.7500000000000001`` instead of ``-0.75``
    would add a voxel to its grid (measured: 2% of the labels changed); the change is <= 1e-12 of each entry."""
    single = affine.astype(np.float32).astype(np.float64)
    return np.where(np.abs(affine - single) <= 1e-12 * np.maximum(1.0, np.abs(affine)), single, affine)


def _readsLps(reader) -> bool:
    readers = getattr(reader, "readers", []) or []
    chosen = readers[-1] if len(readers) == 1 else None  # a reader named in the config is the only one
    return chosen is not None and getattr(chosen, "affine_lps_to_ras", True) is False


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ValueError, ImportError):
        return False


def _rootCause(exc: BaseException) -> BaseException:
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return exc


def _meaningfulCause(exc: BaseException) -> BaseException:
    """The first exception of the chain that says what is wrong: past MONAI's "Failed to instantiate / evaluate"
    wrappers, but not down to a lookup helper's message (``@voxel_size`` is not defined, rather than "Unsupported
    option")."""
    seen = set()
    while (isinstance(exc, RuntimeError) and str(exc).startswith("Failed to")
           and (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen):
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return exc


def _moduleIn(text: str) -> str | None:
    import re

    match = re.search(r"No module named '([\w.]+)'|import (?:of )?'?([\w.]+)'?", text)
    return (match.group(1) or match.group(2)) if match else None


def _firstLine(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else "")[:300]


def _versionHint(bundle: Bundle, install: bool = False) -> str:
    if not bundle.monaiVersion:
        return ""
    import monai

    if install:
        return f", or install the MONAI it names in metadata.json: pip install monai=={bundle.monaiVersion}"
    return f" (it names MONAI {bundle.monaiVersion}; installed: {monai.__version__})"
