"""Engine settings defined once, on the engine's config dataclass, for every face.

A config field made with :func:`setting` carries its default and what a user needs to choose it: label, tooltip,
unit, range, choices. From it come the Slicer parameter node's and the web panel's
:class:`~DLCommon.parameters.Parameter` (:func:`parameterOf`) and the ``meddl`` flag (:func:`addArguments`:
``learningRate`` -> ``--learning-rate``, help from the tooltip, default and choices from the field), as Slicer's
``parameterNodeWrapper`` makes a field's annotation its one definition. Only what is truly one face's (a cubic
patch-size spin box, a "0 means keep" spacing) is written by hand, and its default is read from the field.

Torch-free: config modules that use it (``<Module>Lib/config.py``) load in Slicer before PyTorch is installed, and
``meddl --help`` stays fast.

Example::

    @dataclasses.dataclass
    class TrainingConfig:
        epochs: int = setting(20, label="Epochs", minimum=1, maximum=10000, tooltip="Passes over the data.")

    PARAMETERS = (parameterOf(TrainingConfig, "epochs", group="train"),)
    addArguments(trainParser, TrainingConfig, ["epochs"])     # --epochs, default 20
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from typing import Any, Sequence

from .errors import SettingError
from .parameters import Parameter

__all__ = ["setting", "settingOf", "defaultOf", "parameterOf", "addArguments", "valuesFrom", "flagOf",
           "checkSettings"]

_KEY = "meddl"


def setting(default: Any = dataclasses.MISSING, *, label: str = "", tooltip: str = "", unit: str = "",
            minimum: float | None = None, maximum: float | None = None, choices: Sequence[str] = (),
            flag: str | None = None, factory=dataclasses.MISSING) -> Any:
    """A config dataclass field with what the faces show of it.

    Args:
        default: the value (``factory`` instead for a mutable one).
        label: short name beside the control (default: the field name).
        tooltip: one sentence on what it does; the flag's help.
        unit: e.g. ``"mm"``, appended to the label and the help.
        minimum, maximum: inclusive range of a number.
        choices: the allowed values of a string.
        flag: the command-line flag, when not ``--`` + the field name in kebab case.
    """
    metadata = {_KEY: {"label": label, "tooltip": tooltip, "unit": unit, "minimum": minimum, "maximum": maximum,
                       "choices": tuple(choices), "flag": flag}}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _field(configClass, name: str) -> dataclasses.Field:
    for field in dataclasses.fields(configClass):
        if field.name == name:
            return field
    raise KeyError(f"{configClass.__name__} has no setting '{name}'")


def settingOf(configClass, name: str) -> dict:
    """What :func:`setting` recorded for field ``name`` (empty values for a plain field)."""
    return dict(_field(configClass, name).metadata.get(_KEY, {}))


def defaultOf(configClass, name: str) -> Any:
    """Field ``name``'s default (a factory's value for a mutable one)."""
    field = _field(configClass, name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _kind(default, meta: dict) -> str:
    if meta.get("choices"):
        return "choice"
    for kind, types in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if isinstance(default, types):
            return kind
    raise TypeError(f"a setting of type {type(default).__name__} has no control; write its Parameter by hand")


def parameterOf(configClass, name: str, group: str = "apply", parameterName: str | None = None,
                **overrides) -> Parameter:
    """The :class:`~DLCommon.parameters.Parameter` of config field ``name`` (kind, default, range, choices, label
    and tooltip from the field); ``parameterName`` when the parameter node calls it otherwise."""
    meta, default = settingOf(configClass, name), defaultOf(configClass, name)
    label = (meta.get("label") or name) + (f" ({meta['unit']})" if meta.get("unit") else "")
    values = dict(name=parameterName or name, kind=_kind(default, meta), default=default, label=label,
                  minimum=meta.get("minimum"), maximum=meta.get("maximum"), choices=meta.get("choices", ()),
                  tooltip=meta.get("tooltip", ""), group=group, configField=f"{configClass.__name__}.{name}")
    values.update(overrides)
    return Parameter(**values)


def flagOf(configClass, name: str) -> str:
    """``--learning-rate`` for ``learningRate`` (or the field's own ``flag``)."""
    return settingOf(configClass, name).get("flag") or "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def addArguments(parser, configClass, names: Sequence[str]) -> None:
    """An argparse option per config field: flag, type, default, choices and help from the field. The parser
    records them (``parser.get_default("configFields")``), so a test can check every face's default."""
    parser.set_defaults(configFields=(parser.get_default("configFields") or []) + [(configClass, tuple(names))])
    for name in names:
        meta, default = settingOf(configClass, name), defaultOf(configClass, name)
        kind = _kind(default, meta)
        help = (meta.get("tooltip") or meta.get("label") or name).rstrip(".")
        if meta.get("unit"):
            help += f" ({meta['unit']})"
        if meta.get("minimum") is not None:
            help += f"; {meta['minimum']:g} to {meta['maximum']:g}"
        options = {"dest": name, "default": default, "help": f"{help} (default {default})"}
        if kind not in ("bool", "choice"):
            options["metavar"] = flagOf(configClass, name)[2:].replace("-", "_").upper()
        if kind == "bool":
            parser.add_argument(flagOf(configClass, name), action="store_true" if not default else "store_false",
                                **options)
            continue
        if kind == "choice":
            options["choices"] = list(meta["choices"])
        parser.add_argument(flagOf(configClass, name), type={"int": int, "float": float}.get(kind, str), **options)


def valuesFrom(args, configClass, names: Sequence[str]) -> dict:
    """``{field: value}`` of the options :func:`addArguments` made, for ``configClass(**values)``."""
    return {name: getattr(args, name) for name in names}


def checkSettings(config) -> None:
    """Refuse a value of a :func:`setting` field of ``config`` outside its choices or range (each value of a
    sequence); ``None`` passes where the default is None ("automatic"). A config's ``validate()`` calls it, so a
    user's out-of-range choice from any face is a :class:`~DLCommon.errors.SettingError`, not a traceback.

    Raises:
        SettingError: names the setting, the value and what is allowed.
    """
    for field in dataclasses.fields(config):
        meta, value = settingOf(type(config), field.name), getattr(config, field.name)
        if not meta or (value is None and field.default is None):
            continue
        if meta["choices"] and value not in meta["choices"]:
            raise SettingError(field.name, value, f"one of {', '.join(map(str, meta['choices']))}")
        low, high = meta["minimum"], meta["maximum"]
        if (low is None and high is None) or isinstance(value, (bool, str)):
            continue
        sequence = isinstance(value, (list, tuple))
        inRange = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and (low is None or v >= low)
                      and (high is None or v <= high) for v in (value if sequence else [value]))
        if not inRange:
            bounds = (f"from {_number(low)} to {_number(high)}" if low is not None and high is not None
                      else f"at least {_number(low)}" if low is not None else f"at most {_number(high)}")
            raise SettingError(field.name, value, bounds + (" (each value)" if sequence else ""))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
