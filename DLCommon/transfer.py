"""A job's work result on its way from a ``meddl`` child process to the parent (see :mod:`DLCommon.process`).

The child encodes the result into plain containers and tensors (:func:`saveResult`: ``torch.save``) and the
parent reads it with ``torch.load(weights_only=True)`` (:func:`loadResult`), so no pickled code crosses, and
rebuilds MedDL's own result dataclasses. Networks do not travel: a training job saves its network to disk and
declares ``transfer=withoutNetwork``; what the parent's ``apply`` and the widget use (paths, catalog ids,
histories, tensors) does.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["encode", "decode", "saveResult", "loadResult", "withoutNetwork"]

# result dataclasses are rebuilt only from MedDL's own packages: DLCommon and the module libraries
_TRUSTED_PREFIXES = ("DLCommon.",)
_TRUSTED_SUFFIX = "Lib"


def _trusted(moduleName: str) -> bool:
    top = moduleName.split(".")[0]
    return moduleName.startswith(_TRUSTED_PREFIXES) or (top.startswith("DL") and top.endswith(_TRUSTED_SUFFIX))


def _isMetaTensor(value) -> bool:
    """A MONAI MetaTensor (MONAI is not imported for it: no MetaTensor exists before MONAI is)."""
    monai = sys.modules.get("monai.data.meta_tensor")
    return monai is not None and isinstance(value, monai.MetaTensor)


def encode(value: Any) -> Any:
    """``value`` as nested dicts / lists / tensors / numbers / strings that ``torch.load(weights_only=True)`` reads.

    Handles tensors (a MetaTensor keeps its ``affine``), NumPy arrays and scalars, paths, devices, tuples, dicts
    and MedDL's dataclasses. Raises TypeError for anything else (e.g. a network: see :func:`withoutNetwork`).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if _isMetaTensor(value):
        return {"__metatensor__": value.as_tensor().detach().cpu(), "affine": torch.as_tensor(value.affine).cpu()}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return {"__numpy__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return {"__path__": str(value)}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not _trusted(cls.__module__):
            raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not a MedDL result class; it cannot leave the "
                            "child process")
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if isinstance(value, torch.nn.Module):
        raise TypeError("a network cannot leave the child process: save it, and give the job transfer=withoutNetwork")
    raise TypeError(f"a {type(value).__name__} cannot leave the child process")


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__metatensor__" in value:
        from monai.data import MetaTensor

        return MetaTensor(value["__metatensor__"], affine=value["affine"])
    if "__numpy__" in value:
        return value["__numpy__"].numpy()
    if "__path__" in value:
        return Path(value["__path__"])
    if "__device__" in value:
        return torch.device(value["__device__"])
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {decode(k): decode(v) for k, v in value["__dict__"]}
    if "__dataclass__" in value:
        moduleName, qualname = value["__dataclass__"].split(":")
        if not _trusted(moduleName):
            raise TypeError(f"{moduleName} is not a MedDL package")
        cls = importlib.import_module(moduleName)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{moduleName}:{qualname} is not a dataclass")
        instance = object.__new__(cls)  # no __init__ / __post_init__: the fields are restored as they were
        for name, field in value["fields"].items():
            object.__setattr__(instance, name, decode(field))
        return instance
    raise TypeError(f"unknown encoded value with keys {sorted(value)}")


def saveResult(result: Any, path: str | Path) -> Path:
    """Write a work result for :func:`loadResult` (in the child)."""
    torch.save(encode(result), str(path))
    return Path(path)


def loadResult(path: str | Path) -> Any:
    """Read a work result written by :func:`saveResult` (in the parent): tensors and plain data only."""
    return decode(torch.load(str(path), map_location="cpu", weights_only=True))


def withoutNetwork(result: Any) -> Any:
    """``result`` with every ``torch.nn.Module`` inside it (dataclass fields, tuples, lists, dicts) replaced by
    None: a job's ``transfer`` when its network is saved to disk (training) or not needed by ``apply``."""
    if isinstance(result, torch.nn.Module):
        return None
    if isinstance(result, tuple):
        return tuple(withoutNetwork(v) for v in result)
    if isinstance(result, list):
        return [withoutNetwork(v) for v in result]
    if isinstance(result, dict):
        return {k: withoutNetwork(v) for k, v in result.items()}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        stripped = copy.copy(result)
        for field in dataclasses.fields(result):
            object.__setattr__(stripped, field.name, withoutNetwork(getattr(result, field.name)))
        return stripped
    return result
