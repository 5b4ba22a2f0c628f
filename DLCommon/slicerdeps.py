"""Install a module's Python dependencies inside the Slicer application, on first use (asks first).

Only the module shells call this (it needs the running Slicer application); DLCommon's engines never do.

- PyTorch comes from the PyTorch extension (``PyTorchUtils``), which picks the CUDA or CPU build for this machine.
- Other packages come from the module's requirements file (``Resources/<Module>-requirements.txt``: module
  resources are installed flat into ``qt-scripted-modules/Resources/``, so each module's file has its own name):
  through ``slicer.packaging.pip_ensure`` in Slicer releases that have it (5.12 and later:
  ``Base/Python/slicer/packaging.py``; it checks version specifiers, asks, and raises RuntimeError when the user
  declines), else through ``slicer.util.pip_install`` (5.8, 5.10) after our own check of the specifiers.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

__all__ = ["ensureDependencies", "ensureSampleDependencies", "missingRequirements", "readRequirements",
           "SAMPLE_REQUIREMENTS"]

# nilearn ships the MNI152 template the samples and self-tests use; only installed when a sample is asked for
SAMPLE_REQUIREMENTS = ["nilearn>=0.10"]


def readRequirements(path: str | Path) -> list[str]:
    """The requirement lines of a requirements file (comments, blank lines and pip options skipped, as
    ``slicer.packaging.load_requirements`` does)."""
    lines = [line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def _requirementClass():
    try:
        from packaging.requirements import Requirement
    except ImportError:  # Slicer's Python always has pip, which vendors packaging
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def missingRequirements(requirements: list[str]) -> list[str]:
    """The requirements that are not installed at an allowed version (environment markers honoured)."""
    from importlib import metadata

    Requirement = _requirementClass()
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


def _ensureTorch(title: str) -> bool:
    """PyTorch from the PyTorch extension; True if it was installed now."""
    if importlib.util.find_spec("torch") is not None:
        return False
    try:
        import PyTorchUtils
    except ImportError:
        raise RuntimeError(f"{title} needs PyTorch, which the 'PyTorch' extension installs. Install that extension "
                           "from the Extensions Manager, restart Slicer, and try again.") from None
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
        raise RuntimeError(f"{title} needs PyTorch: it was not installed. Install it from the PyTorch module "
                           "(Utilities > PyTorch Utils), then try again.")
    return True


def _ensurePackages(requirements: list[str], title: str) -> bool:
    """Install the missing ``requirements`` (asking first); True if something was installed."""
    import slicer

    missing = missingRequirements(requirements)
    if not missing:
        return False
    try:
        from slicer import packaging  # Slicer 5.12 and later
    except ImportError:
        packaging = None
    if packaging is not None:
        # skip_in_testing=False: the self-tests need these packages; without them they cannot run at all
        packaging.pip_ensure(missing, requester=title, skip_in_testing=False)
        return True
    if not slicer.util.confirmOkCancelDisplay(f"{title} needs these Python packages, which will be installed into "
                                              "Slicer's Python:\n\n" + "\n".join(missing),
                                              windowTitle=f"{title} - Install Python Packages"):
        raise RuntimeError(f"{title} cannot run without: {', '.join(missing)} (the installation was declined).")
    slicer.util.pip_install(missing)  # a list: each requirement (with its version specifier) is one argument
    importlib.invalidate_caches()
    still = missingRequirements(missing)
    if still:
        raise RuntimeError(f"{title}: installing {', '.join(still)} did not succeed; see the Python console.")
    return True


def ensureDependencies(requirementsPath: str | Path, title: str, torch: bool = True) -> bool:
    """Install PyTorch (through the PyTorch extension) and the requirements file's packages if missing.

    Args:
        requirementsPath: the module's ``Resources/<Module>-requirements.txt``.
        title: the module's title, named in the messages.
        torch: also make sure PyTorch is there.

    Returns:
        True if something was installed now (a shell then refreshes what needed it, e.g. the model list).

    Raises:
        RuntimeError: the user declined, or the PyTorch extension is missing (the message says what to do).
    """
    installed = _ensureTorch(title) if torch else False
    return _ensurePackages(readRequirements(requirementsPath), title) or installed


def ensureSampleDependencies(title: str = "The MNI152 sample") -> bool:
    """Install what the embedded sample data needs (:data:`SAMPLE_REQUIREMENTS`) when a sample is first asked for."""
    return _ensurePackages(SAMPLE_REQUIREMENTS, title)
