"""Where MedDL keeps its files: the model catalog (``$MEDDL_HOME/catalog.json``) and the model cache (``$MEDDL_CACHE``).

Its own module so that the model loaders (``models``) and the catalog (``catalog``) both read it and neither imports
the other's module back. Both folders are made for the user only (mode 700, :func:`privateFolder`): the catalog
decides which model file a model id loads, and the cache holds the models (and what they were trained on).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["defaultCacheDir", "defaultCatalogPath", "privateFolder"]


def privateFolder(path) -> Path:
    """``path``, a folder, made if missing with every folder it adds readable by this user only (mode 700);
    folders that exist are left as they are. Not made (no error) where it cannot be: whoever writes there next
    gives the error."""
    path = Path(path).expanduser()
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            pass
        except OSError:
            break
    return path


def defaultCacheDir() -> Path:
    """The model cache: ``$MEDDL_CACHE``, default ``~/.cache/meddl``; made for this user only on first use."""
    return privateFolder(os.environ.get("MEDDL_CACHE", Path.home() / ".cache" / "meddl"))


def defaultCatalogPath() -> Path:
    """The catalog file: ``$MEDDL_HOME/catalog.json``, default ``~/.meddl/catalog.json``; its folder is made for this
    user only on first use."""
    return privateFolder(os.environ.get("MEDDL_HOME", Path.home() / ".meddl")) / "catalog.json"
