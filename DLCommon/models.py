"""Load models from TorchScript files, MONAI bundles and checkpoints, safely.

Formats, detected from the file:

- **TorchScript** (``torch.jit.save``): the spec may be embedded as extra file ``meddl_spec.json``.
- **MONAI bundle**: a directory or zip with ``configs/`` (``metadata.json``, ``inference.json|yaml``) and
  ``models/model.pt`` (state dict) or ``models/model.ts``; the network is built with ``monai.bundle``'s
  ``ConfigParser`` from ``network_def``, and :mod:`DLCommon.bundles` runs the bundle's own preprocessing,
  inferer and postprocessing (``LoadedModel.bundle``).
- **Checkpoint**: a state dict (``.pt``) plus a JSON spec naming a ``monai.networks.nets`` class and its
  arguments (``{"network": {"name": "UNet", "args": {...}}, "weights": "model.pt", ...}``), given as
  the ``.json`` or as the ``.pt`` with the ``.json`` beside it.

Safety: checkpoints and bundle weights are read with ``torch.load(weights_only=True)``, which refuses
pickled code. TorchScript files and bundle configs *can* run code; verify them with ``sha256`` (the hex
digest of the file, or of a bundle directory's files, see :func:`sha256Of`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import DLError

__all__ = ["ModelSpec", "LoadedModel", "loadModel", "sha256Of", "verifySha256", "saveCheckpoint",
           "saveTorchScript", "detectFormat", "SPEC_FILE_NAME"]

SPEC_FILE_NAME = "meddl_spec.json"


@dataclasses.dataclass
class ModelSpec:
    """What a model expects and produces; stored as JSON beside / inside the model.

    Attributes:
        name: short name.
        task: ``"segmentation"``, ``"classification"``, ``"registration"``, ``"synthesis"`` or ``"other"``.
        inputChannels: number of input channels ``C`` of the ``(B, C, I, J, K)`` input.
        spacing: voxel size in mm the model was trained at (``None``: use the input's own).
        orientation: axis codes the model expects (e.g. ``"RAS"``; ``None``: the input's own voxel order).
        normalization: intensity normalisation, ``{"type": "none"}``, ``{"type": "zscore"}`` (per image,
            nonzero voxels if ``"nonzero": true``) or ``{"type": "range", "aMin", "aMax", "bMin", "bMax",
            "clip"}`` (MONAI ``ScaleIntensityRange``).
        roiSize: sliding-window patch size in voxels (``None``: whole image).
        labelNames: output label / class names (segmentation: foreground labels 1..n; classification:
            class 0..n-1).
        labelColors: RGB 0..1 per label name.
        description: free text.
        options: engine-specific settings a model needs to be applied (e.g. a synthesis model's output
            intensity range), JSON-serialisable.
    """

    name: str = "model"
    task: str = "other"
    inputChannels: int = 1
    spacing: Sequence[float] | None = None
    orientation: str | None = None
    normalization: dict[str, Any] = dataclasses.field(default_factory=lambda: {"type": "none"})
    roiSize: Sequence[int] | None = None
    labelNames: list[str] = dataclasses.field(default_factory=list)
    labelColors: list[Sequence[float]] = dataclasses.field(default_factory=list)
    description: str = ""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def toDict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def toJson(self) -> str:
        return json.dumps(self.toDict(), indent=2)

    @classmethod
    def fromDict(cls, data: dict[str, Any] | None) -> "ModelSpec":
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        spec = cls(**{k: v for k, v in data.items() if k in known})
        spec.validate()
        return spec

    def validate(self) -> None:
        if int(self.inputChannels) < 1:
            raise ValueError(f"inputChannels must be >= 1, got {self.inputChannels}.")
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise ValueError(f"spacing must be 3 positive numbers (mm), got {self.spacing}.")
        if self.orientation is not None and (len(self.orientation) != 3 or
                                             set(self.orientation.upper()) - set("RLAPSI")):
            raise ValueError(f"orientation must be 3 axis codes like 'RAS', got {self.orientation!r}.")
        kind = self.normalization.get("type", "none")
        if kind not in ("none", "zscore", "range"):
            raise ValueError(f"normalization type must be none, zscore or range, got {kind!r}.")
        if self.labelColors and len(self.labelColors) != len(self.labelNames):
            raise ValueError("labelColors must have one entry per label name.")


@dataclasses.dataclass
class LoadedModel:
    """A ready-to-run network (eval mode) and its spec."""

    network: torch.nn.Module
    spec: ModelSpec
    format: str
    path: Path
    networkDef: dict[str, Any] | None = None  # checkpoints: {"name": monai class, "args": {...}}, to re-save
    # MONAI bundles MedDL runs unchanged (DLCommon.bundles.Bundle): their own pre- / postprocessing and inferer;
    # None for a bundle with only a network (the spec's pipeline runs it) and for other formats
    bundle: Any = None


def sha256Of(path: str | Path) -> str:
    """SHA-256 hex digest of a file, or of a directory (its files' relative paths and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            _hashFile(file, digest)
    else:
        _hashFile(path, digest)
    return digest.hexdigest()


def _hashFile(path: Path, digest) -> None:
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)


def verifySha256(path: str | Path, sha256: str | None) -> None:
    """Raise :class:`DLError` unless ``path`` has the given SHA-256 (no-op when ``sha256`` is None)."""
    if not sha256:
        return
    actual = sha256Of(path)
    if actual.lower() != sha256.strip().lower():
        raise DLError(f"has SHA-256 {actual}, expected {sha256.strip().lower()}: the file is corrupt, "
                      "incomplete or not the model you meant", file=path,
                      fix="download it again from its trusted source, or correct the checksum in the catalog")


def detectFormat(path: str | Path) -> str:
    """``"torchscript"``, ``"bundle"`` or ``"checkpoint"`` for a model file or directory."""
    path = Path(path)
    if not path.exists():
        raise DLError("does not exist", file=path, fix="check the path")
    if path.is_dir():
        if (path / "configs").is_dir():
            return "bundle"
        raise DLError("is a directory without configs/, so not a MONAI bundle", file=path,
                      fix="point to the bundle root (the folder holding configs/ and models/)")
    if path.suffix.lower() == ".json":
        return "checkpoint"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.split("/")[-2:-1] == ["configs"] and n.endswith("metadata.json") for n in names):
            return "bundle"
        if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
            return "torchscript"
    return "checkpoint"


def loadModel(source: str | Path, sha256: str | None = None, device: torch.device | str = "cpu",
              weightsOnly: bool = True) -> LoadedModel:
    """Load a model from a TorchScript file, a MONAI bundle (dir / zip) or a checkpoint.

    Args:
        source: path (see module docstring for the formats).
        sha256: expected SHA-256; a mismatch raises before anything is deserialised. For a MONAI bundle, a
            verified checksum is also the consent to run its code (:mod:`DLCommon.bundletrust`): the catalog
            passes the checksum recorded when the user imported it.
        device: where to put the network.
        weightsOnly: keep ``True`` for files you did not make: ``torch.load(weights_only=True)`` refuses
            pickled code. Only set ``False`` for a file from a source you trust.

    Returns:
        :class:`LoadedModel` with the network in eval mode.
    """
    path = Path(source).expanduser()
    kind = detectFormat(path)
    bundle = None
    if kind != "checkpoint":
        verifySha256(path, sha256)  # a checkpoint's checksum is that of its weights file, checked below
    if kind == "torchscript":
        network, spec = _loadTorchScript(path, device)
    elif kind == "bundle":  # a verified checksum pins the bundle the user chose: consent to its code
        network, spec, bundle = _loadBundle(path, device, weightsOnly, trusted=bool(sha256))
    else:
        network, spec, networkDef = _loadCheckpoint(path, device, weightsOnly, sha256)
    network.eval()
    return LoadedModel(network=network, spec=spec, format=kind, path=path,
                       networkDef=networkDef if kind == "checkpoint" else None,
                       bundle=bundle if bundle is not None and bundle.hasPipeline else None)


def _loadTorchScript(path: Path, device) -> tuple[torch.nn.Module, ModelSpec]:
    extra = {SPEC_FILE_NAME: ""}
    try:
        network = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except RuntimeError as exc:
        raise DLError(f"is not a readable TorchScript file ({str(exc).splitlines()[0]})", file=path,
                      fix="export it with torch.jit.save") from None
    specText = extra.get(SPEC_FILE_NAME) or ""
    sidecar = path.with_suffix(".json")
    if not specText and sidecar.exists():
        specText = sidecar.read_text()
    spec = ModelSpec.fromDict(json.loads(specText)) if specText else ModelSpec(name=path.stem)
    return network, spec


def _safeTorchLoad(path: Path, weightsOnly: bool) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=weightsOnly)
    except pickle.UnpicklingError as exc:
        raise DLError("contains pickled Python objects (code), which MedDL refuses to load from an untrusted "
                      f"file ({str(exc).splitlines()[0][:160]})", file=path,
                      fix="save only the weights (torch.save(model.state_dict(), path)) and a JSON spec, "
                          "or pass weightsOnly=False if you fully trust the file's source") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise DLError(f"is not a readable PyTorch file ({str(exc).splitlines()[0][:160]})", file=path,
                      fix="check that the download completed; verify its SHA-256") from None


def _stateDictFrom(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in ("state_dict", "model", "network", "model_state_dict"):
            if isinstance(loaded.get(key), dict):
                return loaded[key]
        if all(isinstance(v, torch.Tensor) for v in loaded.values()):
            return loaded
    raise DLError("does not hold a state dict", file=path,
                  fix="save it with torch.save(model.state_dict(), path)")


def _buildMonaiNetwork(networkDef: dict[str, Any], path: Path) -> torch.nn.Module:
    import monai.networks.nets as nets

    name = networkDef.get("name") if isinstance(networkDef, dict) else None
    cls = getattr(nets, str(name), None) if name else None
    if cls is None or not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise DLError(f"names network {name!r}, which is not a monai.networks.nets class", file=path,
                      fix='set "network": {"name": "UNet", "args": {...}} to a MONAI network')
    try:
        return cls(**networkDef.get("args", {}))
    except TypeError as exc:
        raise DLError(f"has wrong arguments for {name}: {exc}", file=path,
                      fix=f"check the arguments against monai.networks.nets.{name}") from None


def _loadCheckpoint(path: Path, device, weightsOnly: bool, sha256: str | None
                    ) -> tuple[torch.nn.Module, ModelSpec, dict[str, Any]]:
    specPath = path if path.suffix.lower() == ".json" else path.with_suffix(".json")
    if not specPath.exists():
        raise DLError(f"has no spec: {specPath.name} is missing", file=path,
                      fix='write a JSON with "network": {"name": ..., "args": ...} beside the weights '
                          "(DLCommon.saveCheckpoint does this)")
    try:
        specData = json.loads(specPath.read_text())
    except json.JSONDecodeError as exc:
        raise DLError(f"is not valid JSON ({exc})", file=specPath, fix="repair the spec file") from None
    weights = path if path.suffix.lower() != ".json" else specPath.parent / specData.get("weights", specPath.stem + ".pt")
    verifySha256(weights, sha256)
    network = _buildMonaiNetwork(specData.get("network"), specPath)
    state = _stateDictFrom(_safeTorchLoad(weights, weightsOnly), weights)
    _loadState(network, state, weights)
    return network.to(device), ModelSpec.fromDict(specData.get("spec", specData)), specData["network"]


def _loadState(network: torch.nn.Module, state: dict, path: Path) -> None:
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise DLError(f"does not fit the network ({str(exc).splitlines()[0][:200]})", file=path,
                      fix="use the network spec the weights were trained with") from None


def _loadBundle(path: Path, device, weightsOnly: bool, trusted: bool = False):
    """A bundle's network, its descriptive spec and the :class:`~DLCommon.bundles.Bundle` that runs it unchanged
    (its own preprocessing, inferer and postprocessing; see :mod:`DLCommon.bundles`)."""
    from .bundles import loadBundle

    bundle = loadBundle(_bundleRoot(path), device, weightsOnly, trusted=trusted)
    return bundle.network, bundle.spec(), bundle


def _bundleRoot(path: Path) -> Path:
    """The bundle directory; a zip is extracted (once, keyed by its checksum) into the model cache."""
    if path.is_dir():
        return path
    from .locations import defaultCacheDir

    target = defaultCacheDir() / "bundles" / sha256Of(path)[:16]
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                resolved = (partial / member).resolve()
                if not str(resolved).startswith(str(partial.resolve())):
                    raise DLError(f"contains an unsafe path {member!r}", file=path, fix="do not use this archive")
            archive.extractall(partial)
        partial.replace(target)
    roots = [p.parent.parent for p in target.rglob("configs/metadata.json")] or \
            [p.parent for p in target.rglob("configs")]
    if not roots:
        raise DLError("has no configs/ folder", file=path, fix="zip the bundle root folder")
    return roots[0]


def saveCheckpoint(network: torch.nn.Module, path: str | Path, networkName: str,
                   networkArgs: dict[str, Any], spec: ModelSpec | None = None) -> Path:
    """Save ``network``'s state dict to ``path`` (.pt) and its JSON spec beside it (.json).

    ``networkName`` / ``networkArgs`` name the ``monai.networks.nets`` class that rebuilds it.
    Returns the path of the JSON, which :func:`loadModel` accepts (as does the ``.pt``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    specPath = path.with_suffix(".json")
    data = {"network": {"name": networkName, "args": networkArgs}, "weights": path.name,
            "spec": (spec or ModelSpec(name=path.stem)).toDict()}
    specPath.write_text(json.dumps(data, indent=2))
    return specPath


def saveTorchScript(network: torch.nn.Module, path: str | Path, spec: ModelSpec | None = None,
                    example: torch.Tensor | None = None) -> Path:
    """Script (or trace with ``example``) ``network`` and save it with the spec embedded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    network = network.eval()
    scripted = torch.jit.trace(network, example) if example is not None else torch.jit.script(network)
    torch.jit.save(scripted, str(path), _extra_files={SPEC_FILE_NAME: (spec or ModelSpec(name=path.stem)).toJson()})
    return path
