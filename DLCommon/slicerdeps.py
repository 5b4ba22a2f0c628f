"""Install a module's Python dependencies inside the Slicer application, on first use (asks first).

Only the module shells call this (it needs the running Slicer application); DLCommon itself never does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["ensureDependencies"]


def ensureDependencies(requirementsPath: str | Path, moduleTitle: str) -> None:
    """Install PyTorch (through the PyTorch extension) and the requirements file's packages if missing.

    Args:
        requirementsPath: the module's ``Resources/requirements.txt``.
        moduleTitle: named in the messages.

    Raises:
        RuntimeError: the user declined to install PyTorch.
    """
    import slicer

    try:
        import torch  # noqa: F401
    except ImportError:
        import PyTorchUtils

        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
            raise RuntimeError(f"{moduleTitle} needs PyTorch. Install it from the PyTorch module, then retry.")
    if hasattr(slicer, "pydeps"):  # Slicer >= 5.11
        slicer.pydeps.pip_ensure(slicer.pydeps.load_requirements(str(requirementsPath)), requester="MedDL")
        return
    with open(requirementsPath) as stream:
        wanted = [line.strip() for line in stream if line.strip() and not line.startswith("#")]
    missing = [w for w in wanted if importlib.util.find_spec(w.split(">")[0].split("=")[0]) is None]
    if missing and slicer.util.confirmOkCancelDisplay(f"{moduleTitle} will install: " + ", ".join(missing)):
        slicer.util.pip_install(missing)
