"""A verified catalog of models: JSON entries with URL + SHA-256, a download cache, offline import.

The catalog is one JSON file (default ``$MEDDL_HOME/catalog.json``, ``MEDDL_HOME`` defaulting to
``~/.meddl``)::

    {"models": [{"id": "brain-seg", "title": "...", "description": "...", "format": "checkpoint",
                 "url": "https://.../model.pt" | "file:///..." | "/local/path",
                 "sha256": "<64 hex>", "spec": {...ModelSpec...}}]}

Downloads go to the cache (``$MEDDL_CACHE``, default ``~/.cache/meddl``) under ``models/<sha256>/``;
a file is hashed while it downloads and only renamed into place (atomically) when the checksum matches,
so the cache never holds a partial or wrong file. Machines without internet import a file they were
given (:meth:`ModelCatalog.importFile`); it is copied into the cache and listed with a ``file://`` URL.

Every load (:meth:`ModelCatalog.load`, :func:`resolveModel`) re-hashes the cached file first (:meth:`fetch`): a
model whose file changed since it was imported or downloaded is refused, and so is a checkpoint whose JSON spec
(its network definition, beside the weights) changed (``specSha256``, recorded at import). The catalog file and
the cache are made for the user only (folders 700, files 600): they decide what a model id loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

from .errors import DLError
from .locations import defaultCacheDir, defaultCatalogPath, privateFolder
from .models import LoadedModel, ModelSpec, detectFormat, loadModel, sha256Of, verifySha256

__all__ = ["CatalogEntry", "ModelCatalog", "defaultCacheDir", "defaultCatalogPath", "resolveModel"]

ProgressCallback = Callable[[float, str], None]


@dataclasses.dataclass
class CatalogEntry:
    """One model of the catalog (see module docstring)."""

    id: str
    url: str
    sha256: str
    title: str = ""
    description: str = ""
    format: str = ""
    fileName: str = ""
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    specSha256: str = ""  # a checkpoint's JSON spec beside its weights (recorded at import; "": not recorded)

    def validate(self) -> None:
        if not self.id or any(c in self.id for c in "/\\ ") or self.id in (".", "..") or not self.id.isprintable():
            raise ValueError(f"catalog id must be a non-empty name without slashes or spaces, got {self.id!r}.")
        for what, digest in (("SHA-256", self.sha256), ("spec SHA-256", self.specSha256 or "0" * 64)):
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
                raise DLError(f"has no valid {what} ({digest!r})", node=f"Catalog entry '{self.id}'",
                              fix="give the 64-hex-digit SHA-256 of the file (sha256sum FILE)")
        name = self.name
        if name in (".", "..") or "/" in name or "\\" in name or not name.isprintable():
            raise DLError(f"names its file {name!r}, which is not a plain file name (the cache holds it under that "
                          "name)", node=f"Catalog entry '{self.id}'", fix="set fileName to the model file's name")

    @property
    def name(self) -> str:
        return self.fileName or Path(urllib.parse.urlparse(self.url).path).name or self.id


class ModelCatalog:
    """Models listed in a catalog JSON, fetched into a checksum-verified cache.

    Args:
        catalogPath: the catalog JSON (created on first save).
        cacheDir: download cache.
    """

    def __init__(self, catalogPath: str | Path | None = None, cacheDir: str | Path | None = None):
        self.catalogPath = Path(catalogPath) if catalogPath else defaultCatalogPath()
        self.cacheDir = Path(cacheDir) if cacheDir else defaultCacheDir()
        self.entries: dict[str, CatalogEntry] = {}
        if self.catalogPath.exists():
            try:
                data = json.loads(self.catalogPath.read_text())
            except json.JSONDecodeError as exc:
                raise DLError(f"is not valid JSON ({exc})", file=self.catalogPath,
                              fix="repair or delete the catalog file") from None
            for item in data.get("models", []):
                known = {f.name for f in dataclasses.fields(CatalogEntry)}
                entry = CatalogEntry(**{k: v for k, v in item.items() if k in known})
                entry.validate()
                self.entries[entry.id] = entry

    def list(self) -> list[CatalogEntry]:
        return list(self.entries.values())

    def get(self, modelId: str) -> CatalogEntry:
        if modelId not in self.entries:
            raise DLError(f"is not in the catalog {self.catalogPath} (known: {sorted(self.entries) or 'none'})",
                          node=f"Model '{modelId}'", fix="import it first: meddl models import FILE --id ID")
        return self.entries[modelId]

    def add(self, entry: CatalogEntry) -> None:
        entry.validate()
        self.entries[entry.id] = entry
        self.save()

    def save(self) -> None:
        privateFolder(self.catalogPath.parent)
        self.catalogPath.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"models": [dataclasses.asdict(e) for e in self.entries.values()]}, indent=2)
        _atomicWriteText(self.catalogPath, text)

    def cachedPath(self, modelId: str) -> Path:
        entry = self.get(modelId)
        return self.cacheDir / "models" / entry.sha256.lower() / entry.name

    def fetch(self, modelId: str, progress: ProgressCallback | None = None) -> Path:
        """Path of the verified model file in the cache, downloading it first if needed. A cached file that
        changed since (or a checkpoint spec that did) is refused."""
        entry = self.get(modelId)
        target = self.cachedPath(modelId)
        if target.exists():
            verifySha256(target, entry.sha256)
            _verifySpec(entry, target)
            return target
        privateFolder(self.cacheDir)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partialName = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        partial = Path(partialName)
        try:
            with os.fdopen(handle, "wb") as out:
                actual = _copyUrl(entry.url, out, progress)
            if actual != entry.sha256.lower():
                raise DLError(f"downloaded with SHA-256 {actual}, but the catalog expects {entry.sha256.lower()}",
                              file=entry.url, fix="check the URL or the checksum; the file was not kept")
            os.replace(partial, target)  # atomic: the cache only ever holds verified files
        finally:
            partial.unlink(missing_ok=True)
        _verifySpec(entry, target)
        return target

    def load(self, modelId: str, device="cpu", progress: ProgressCallback | None = None) -> LoadedModel:
        """Fetch (verified) and load a catalog model; the catalog's spec overrides the file's."""
        entry = self.get(modelId)
        path = self.fetch(modelId, progress)
        model = loadModel(path, sha256=entry.sha256, device=device)
        if entry.spec:
            model.spec = ModelSpec.fromDict(entry.spec)
        return model

    def verify(self, modelId: str) -> str:
        """Re-hash the cached file; returns its SHA-256 or raises :class:`DLError`."""
        path = self.cachedPath(modelId)
        if not path.exists():
            raise DLError("is not in the cache", node=f"Model '{modelId}'", fix=f"fetch it: meddl models fetch {modelId}")
        verifySha256(path, self.get(modelId).sha256)
        _verifySpec(self.get(modelId), path)
        return self.get(modelId).sha256

    def importFile(self, path: str | Path, modelId: str | None = None, title: str = "",
                   sha256: str | None = None, spec: ModelSpec | dict | None = None,
                   trustBundle: bool | str = False) -> CatalogEntry:
        """Copy a local model file (TorchScript, bundle zip, checkpoint .pt) into the cache and list it.

        A checkpoint's ``.json`` spec beside the ``.pt`` is copied too. ``sha256``, if given, is
        checked first (so a file received over an untrusted channel is verified before it is trusted).
        A bundle is loaded first (a bundle that cannot run is not listed) and its spec recorded (names, inputs);
        its code runs only when trusted (:mod:`DLCommon.bundletrust`): ``trustBundle`` True records the user's
        consent, a code SHA-256 pins the code the user reviewed.
        """
        source = Path(path).expanduser()
        if not source.is_file():
            raise DLError("is not a file", file=source, fix="give a TorchScript, bundle .zip or checkpoint .pt file")
        digest = sha256Of(source)
        if sha256:
            verifySha256(source, sha256)
        kind = detectFormat(source)
        if kind == "bundle":
            from .bundletrust import trustBundle as trust

            if trustBundle:
                trust(source, trustBundle if isinstance(trustBundle, str) else None)
            loaded = loadModel(source)  # refuses an untrusted or broken bundle before anything is listed
            spec = spec or loaded.spec
        entry = CatalogEntry(id=modelId or source.stem, url=source.resolve().as_uri(), sha256=digest,
                             title=title or source.stem, format=kind, fileName=source.name,
                             spec=(spec.toDict() if isinstance(spec, ModelSpec) else dict(spec or {})))
        entry.validate()
        target = self.cacheDir / "models" / digest / source.name
        privateFolder(self.cacheDir)
        target.parent.mkdir(parents=True, exist_ok=True)
        sidecar = source.with_suffix(".json")
        if kind == "checkpoint" and sidecar.exists() and sidecar != source:
            entry.specSha256 = sha256Of(sidecar)
            _privateCopy(sidecar, target.with_suffix(".json"))
        if not target.exists():
            _privateCopy(source, target)
        entry.url = target.resolve().as_uri()
        self.add(entry)
        return entry


def resolveModel(model, device="cpu", task: str | None = None):
    """A :class:`~DLCommon.models.LoadedModel` from a LoadedModel, a catalog id, or a model file / bundle path.

    ``task`` (e.g. ``"registration"``): refuse a model whose spec declares another task.
    """
    if isinstance(model, LoadedModel):
        return _checkTask(model, task)
    if model is None or model == "":
        raise DLError("No model was selected", fix="pick a model from the catalog or import a model file")
    catalog = ModelCatalog()
    if str(model) in catalog.entries:
        return _checkTask(catalog.load(str(model), device=device), task)
    if Path(str(model)).expanduser().exists():
        return _checkTask(loadModel(model, device=device), task)
    raise DLError(f"is neither a catalog model ({sorted(catalog.entries) or 'catalog empty'}) nor an existing file",
                  node=f"Model '{model}'", fix="import it with 'meddl models import FILE' or give a valid path")


def _checkTask(loaded, task: str | None):
    if task and loaded.spec.task not in (task, "other"):
        raise DLError(f"is a {loaded.spec.task} model, not a {task} model", node=f"Model '{loaded.spec.name}'",
                      fix=f"pick a {task} model")
    return loaded


def _copyUrl(url: str, out, progress: ProgressCallback | None) -> str:
    """Stream ``url`` (http(s), file:// or a local path) into ``out``; return its SHA-256."""
    parsed = urllib.parse.urlparse(url)
    digest = hashlib.sha256()
    if parsed.scheme in ("", "file"):
        local = Path(urllib.request.url2pathname(parsed.path) if parsed.scheme == "file" else url)
        if not local.is_file():
            raise DLError("does not exist", file=local, fix="correct the catalog URL")
        stream, total = open(local, "rb"), local.stat().st_size
    elif parsed.scheme in ("http", "https"):
        try:
            stream = urllib.request.urlopen(url, timeout=60)  # noqa: S310 - scheme checked above
        except OSError as exc:
            raise DLError(f"could not be downloaded ({exc})", file=url,
                          fix="check the network, or download it elsewhere and use 'meddl models import'") from None
        total = int(stream.headers.get("Content-Length") or 0)
    else:
        raise DLError(f"has unsupported scheme {parsed.scheme!r}", file=url, fix="use https://, file:// or a path")
    done = 0
    with stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            out.write(block)
            digest.update(block)
            done += len(block)
            if progress:
                progress(done / total if total else 0.0, f"downloaded {done / 1e6:.1f} MB")
    return digest.hexdigest()


def _verifySpec(entry: CatalogEntry, path: Path) -> None:
    """Refuse a checkpoint whose JSON spec beside ``path`` (its network and settings) changed since import."""
    if not entry.specSha256:
        return
    spec = path.with_suffix(".json")
    if not spec.is_file():
        raise DLError("is missing: it was imported with the model", file=spec,
                      fix=f"import the model again: meddl models import FILE --id {entry.id}")
    verifySha256(spec, entry.specSha256)


def _privateCopy(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (this user only: 600) through a partial file renamed into place."""
    partial = target.with_name(".partial-" + target.name)
    partial.unlink(missing_ok=True)
    with open(source, "rb") as stream, os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                                          | getattr(os, "O_BINARY", 0), 0o600), "wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
    os.replace(partial, target)


def _atomicWriteText(path: Path, text: str) -> None:
    """Write ``path`` (this user only: 600) through a partial file renamed into place."""
    partial = path.with_name("." + path.name + ".partial")
    partial.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # Windows: no second newline translation
    with os.fdopen(os.open(partial, flags, 0o600), "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(partial, path)
