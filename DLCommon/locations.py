"""Where MedDL keeps its files: the model catalog (``$MEDDL_HOME/catalog.json``) and the model cache (``$MEDDL_CACHE``).

Its own module so that the model loaders (``models``) and the catalog (``catalog``) both read it and neither imports
the other's module back.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["defaultCacheDir", "defaultCatalogPath"]


def defaultCacheDir() -> Path:
    """The model cache: ``$MEDDL_CACHE``, default ``~/.cache/meddl``."""
    return Path(os.environ.get("MEDDL_CACHE", Path.home() / ".cache" / "meddl")).expanduser()


def defaultCatalogPath() -> Path:
    """The catalog file: ``$MEDDL_HOME/catalog.json``, default ``~/.meddl/catalog.json``."""
    return Path(os.environ.get("MEDDL_HOME", Path.home() / ".meddl")).expanduser() / "catalog.json"
