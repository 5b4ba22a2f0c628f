"""Consent before a MONAI bundle's code runs: what a bundle executes, its code checksum, and the user's trust.

A bundle config is a program: ``$`` expressions are evaluated with ``eval``, ``imports`` are executed, ``_target_``
may name any importable callable, and a bundle's ``scripts/`` package is imported from the bundle folder. MedDL
therefore runs a bundle only once its user has seen that code and agreed, for exactly that code:

- :func:`bundleCode` lists, without running anything (the config files are read as JSON / YAML, nothing parsed by
  MONAI), the ``imports``, every ``$`` expression with its config key, every ``_target_`` outside MONAI and PyTorch,
  and every Python file the bundle ships; and the SHA-256 of its code: the config files and all ``.py`` files
  (relative paths and contents). The weights are not part of it: they are read with ``weights_only=True``.
- :func:`trustBundle` records the user's consent for that checksum (``trusted-bundles.json`` beside the catalog,
  private to the user); a bundle whose code changed is a new checksum, so it asks again.
- :func:`checkTrusted` refuses an untrusted bundle with a :class:`~DLCommon.errors.DLError` that shows the code and
  says how to consent: ``--trust-bundle`` (or ``--trust-bundle <sha256>``) on the command line, the import dialog in
  Slicer, :func:`trustBundle` in Python.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import DLError
from .locations import defaultCatalogPath, privateFolder

__all__ = ["BundleCode", "bundleCode", "checkTrusted", "isTrusted", "trustBundle", "TRUST_FILE_NAME"]

TRUST_FILE_NAME = "trusted-bundles.json"
SAFE_TARGET_PREFIXES = ("monai.", "torch.")  # installed libraries the user already runs


@dataclasses.dataclass
class BundleCode:
    """What a bundle executes when MedDL loads and runs it (see the module docstring)."""

    name: str
    sha256: str
    imports: list[str] = dataclasses.field(default_factory=list)
    expressions: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (config key, "$...")
    targets: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (config key, target outside MONAI)
    pythonFiles: list[str] = dataclasses.field(default_factory=list)  # relative paths

    @property
    def runsCode(self) -> bool:
        return bool(self.imports or self.expressions or self.targets or self.pythonFiles)

    def summary(self) -> str:
        """One paragraph: counts and the first items of each kind."""
        parts = []
        if self.imports:
            parts.append(f"imports {', '.join(_short(i) for i in self.imports)}")
        if self.expressions:
            key, text = self.expressions[0]
            parts.append(f"{len(self.expressions)} '$' expression(s) (e.g. {key}: {_short(text)})")
        if self.targets:
            parts.append(f"{len(self.targets)} target(s) outside MONAI ({', '.join(sorted({t for _, t in self.targets}))})")
        if self.pythonFiles:
            parts.append(f"Python files {', '.join(self.pythonFiles)}")
        return "; ".join(parts) if parts else "no code beyond MONAI's own classes"

    def report(self) -> str:
        """The whole listing, for a dialog or ``meddl models inspect``."""
        lines = [f"Bundle '{self.name}', code SHA-256 {self.sha256}"]
        lines += [f"  import      {i}" for i in self.imports]
        lines += [f"  expression  {key}: {text}" for key, text in self.expressions]
        lines += [f"  target      {key}: {target}" for key, target in self.targets]
        lines += [f"  file        {path}" for path in self.pythonFiles]
        if not self.runsCode:
            lines.append("  (no code beyond MONAI's own classes)")
        return "\n".join(lines)


def bundleCode(root: str | Path) -> BundleCode:
    """List what the bundle in ``root`` (its folder, or a zip) executes, and its code SHA-256 (nothing is run)."""
    root = _folder(root)
    code = BundleCode(name=root.name, sha256=codeSha256(root))
    from .bundles import CONFIG_NAMES  # the config MedDL runs (the checksum covers every file of configs/)

    config = next((root / "configs" / n for n in CONFIG_NAMES if (root / "configs" / n).exists()), None)
    content = _read(config) if config is not None else {}
    if isinstance(content, dict):
        code.imports = [str(entry) for entry in content.get("imports") or []]
        for key, value in content.items():
            if key != "imports":
                _walk(value, key, code)
    code.pythonFiles = [p.relative_to(root).as_posix() for p in _codeFiles(root) if p.suffix == ".py"]
    return code


def codeSha256(root: str | Path) -> str:
    """SHA-256 of a bundle's code: the relative path and content of every config file and Python file, sorted."""
    root = _folder(root)
    digest = hashlib.sha256()
    for path in _codeFiles(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def isTrusted(root: str | Path, trustFile: Path | None = None) -> bool:
    return codeSha256(root) in _trusted(trustFile)


def trustBundle(root: str | Path, sha256: str | None = None, trustFile: Path | None = None) -> BundleCode:
    """Record the user's consent to run the bundle in ``root`` (its folder, or a zip). ``sha256``: the code checksum
    the user reviewed; a bundle whose code differs is refused (:class:`DLError`), so a checksum pins exactly what was
    reviewed."""
    code = bundleCode(root)
    if sha256 and sha256.strip().lower() != code.sha256:
        raise DLError(f"has code SHA-256 {code.sha256}, not the {sha256.strip().lower()} given to trust it: its code "
                      "is not the code that was reviewed", node=f"Bundle '{code.name}'",
                      fix="review this bundle's code (meddl models inspect PATH) before trusting it")
    path = trustFile or _trustFile()
    entries = _trusted(path)
    entries[code.sha256] = {"name": code.name, "folder": str(Path(root).resolve()),
                            "trusted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    privateFolder(path.parent)
    temporary = path.with_suffix(".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as stream:
        json.dump(entries, stream, indent=2)
    os.replace(temporary, path)
    return code


def checkTrusted(root: str | Path, label: str | None = None, trustFile: Path | None = None) -> None:
    """Raise :class:`DLError` (showing the code and how to consent) unless the bundle's code is trusted; a bundle
    whose config runs nothing beyond MONAI's classes needs no consent."""
    code = bundleCode(root)
    if not code.runsCode or code.sha256 in _trusted(trustFile):
        return
    raise DLError(f"runs Python code when it is loaded: {code.summary()}. It is not trusted yet (code SHA-256 "
                  f"{code.sha256}); MedDL runs a bundle's code only with your consent",
                  node=label or f"Bundle '{code.name}'",
                  fix=f"review it (meddl models inspect {root}), then trust it: on the command line add --trust-bundle "
                      f"(or --trust-bundle {code.sha256}); in Slicer, Import model file... asks; in Python, "
                      "DLCommon.bundletrust.trustBundle(folder)")


# --- helpers ---------------------------------------------------------------------------------------------------

def _folder(root: str | Path) -> Path:
    """A bundle folder; a zip is read from its extraction in the model cache (the folder MedDL runs)."""
    root = Path(root).expanduser()
    if root.is_file():
        from .models import _bundleRoot  # extracts once, keyed by the zip's checksum

        return _bundleRoot(root)
    return root


def _trustFile() -> Path:
    return defaultCatalogPath().parent / TRUST_FILE_NAME


def _trusted(trustFile: Path | None) -> dict:
    path = trustFile or _trustFile()
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _codeFiles(root: Path) -> list[Path]:
    configs = [p for p in (root / "configs").rglob("*") if p.is_file()] if (root / "configs").is_dir() else []
    python = [p for p in root.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(set(configs) | set(python))


def _read(path: Path) -> Any:
    try:
        if path.suffix.lower() == ".json":
            return json.loads(path.read_text())
        import yaml

        return yaml.safe_load(path.read_text())
    except Exception as exc:  # noqa: BLE001 - OSError, JSON and YAML syntax errors
        raise DLError(f"is not a readable bundle config ({' '.join(str(exc).split())[:200]})", file=path,
                      fix="repair the file (JSON / YAML syntax)") from None


def _walk(value: Any, key: str, code: BundleCode) -> None:
    if isinstance(value, dict):
        target = value.get("_target_")
        if isinstance(target, str) and "." in target and not target.startswith(SAFE_TARGET_PREFIXES):
            code.targets.append((key, target))
        for name, item in value.items():
            _walk(item, f"{key}#{name}", code)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{key}#{index}", code)
    elif isinstance(value, str) and value.startswith("$"):
        code.expressions.append((key, value))


def _short(text: str, length: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= length else text[:length - 3] + "..."
