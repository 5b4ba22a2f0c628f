"""Fixtures and helpers for tests directly under Testing/ (e.g. the bad-input catalogue): Testing/Python's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("meddl_test_fixtures", Path(__file__).parent / "Python" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

# the same fixtures (scene, isolated MEDDL_HOME, quiet VTK) and helpers (makeVolume, obliqueAffine, ...)
globals().update({name: value for name, value in vars(_fixtures).items() if not name.startswith("__")})
