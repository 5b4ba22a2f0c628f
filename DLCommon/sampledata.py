"""Real sample data shipped inside pip packages (no download): the MNI152 2009 template from nilearn.

``mni152Paths()`` -> paths of the T1 template and its grey / white matter probability maps
(197 x 233 x 189 voxels, 1 mm, uint8 0-255, RAS).
"""

from __future__ import annotations

from pathlib import Path

from .errors import DLError

__all__ = ["mni152Paths", "loadMNI152"]


def mni152Paths() -> dict[str, Path]:
    """``{"t1": ..., "gm": ..., "wm": ...}`` NIfTI paths inside the installed nilearn package."""
    try:
        import nilearn.datasets
    except ImportError:
        raise DLError("nilearn is not installed, so the MNI152 sample data is missing", node="Sample data",
                      fix="pip install nilearn (the README's setup command installs it)") from None
    folder = Path(nilearn.datasets.__file__).parent / "data"
    paths = {key: folder / f"mni_icbm152_{key}_tal_nlin_sym_09a_converted.nii.gz" for key in ("t1", "gm", "wm")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DLError(f"is missing files {missing}", node="nilearn's MNI152 data", fix="reinstall nilearn")
    return paths


def loadMNI152(scene) -> dict[str, object]:
    """Load the T1 template and GM / WM maps as volume nodes ``MNI152_T1``, ``MNI152_GM``, ``MNI152_WM``."""
    from .storage import loadVolume

    return {key: loadVolume(path, scene, name=f"MNI152_{key.upper()}") for key, path in mni152Paths().items()}
