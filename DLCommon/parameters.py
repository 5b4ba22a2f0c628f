"""One definition of a module's settings for every front end: the Slicer parameter node and the web panel.

Each module lists its settings once, in ``<Module>Lib/parameters.py``, as :class:`Parameter` objects: name,
kind, default, range or choices, label and tooltip. The Slicer shell builds its ``@parameterNodeWrapper``
class from that list (:func:`parameterNodeClass`), ``meddl web`` builds its panel from it, and the static shell
check compares the Qt Designer file's ranges and combo-box items with it. Nothing here imports torch or qt.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from .errors import DLError

__all__ = ["Parameter", "parameterNodeClass", "defaults", "checkValue", "annotationText"]

KINDS = ("bool", "int", "float", "str", "choice", "node", "nodes")


@dataclass(frozen=True)
class Parameter:
    """One setting.

    Args:
        name: the parameter node field and the web state key (camelCase, as in the .ui's SlicerParameterName).
        kind: ``bool``, ``int``, ``float``, ``str``, ``choice`` (one of ``choices``), ``node`` (an MRML node of
            one of ``nodeClasses``; no default) or ``nodes`` (a list of them).
        default: value before the user changes it (``None`` for nodes).
        label: short text beside the control.
        minimum, maximum: inclusive range of ``int`` / ``float`` values.
        choices: the allowed values of a ``choice``.
        nodeClasses: MRML class names a ``node`` / ``nodes`` setting accepts.
        tooltip: one sentence on what it does (and its unit).
        group: the section of the panel it belongs to (e.g. ``"apply"``, ``"train"``; the web page shows each
            group as one section, in definition order).
        output: a ``node`` setting the job writes into (an existing node the user chose to overwrite); a child
            process gets an empty stand-in, and the result is written into the real node here.
        configField: ``"Config.field"`` when the setting is an engine config's field (made by
            :func:`DLCommon.settings.parameterOf`: the field is its one definition).
    """

    name: str
    kind: str
    default: Any = None
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nodeClasses: tuple[str, ...] = ()
    tooltip: str = ""
    group: str = "apply"
    output: bool = False
    configField: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Parameter {self.name}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == "choice" and self.default not in self.choices:
            raise ValueError(f"Parameter {self.name}: default {self.default!r} is not one of {self.choices}")
        if self.kind in ("node", "nodes") and not self.nodeClasses:
            raise ValueError(f"Parameter {self.name}: a node setting needs nodeClasses")


def defaults(parameters: typing.Iterable[Parameter]) -> dict[str, Any]:
    """``{name: default}`` (``[]`` for ``nodes``)."""
    return {p.name: [] if p.kind == "nodes" else p.default for p in parameters}


def checkValue(parameter: Parameter, value: Any) -> Any:
    """``value`` converted to the parameter's type, or a DLError naming the setting and its allowed values.

    For front ends whose controls do not enforce the range themselves (a browser's number field does not).
    """
    p = parameter
    label = p.label or p.name
    if p.kind in ("int", "float"):
        try:
            number = int(float(value)) if p.kind == "int" else float(value)
        except (TypeError, ValueError):
            raise DLError(f"{label}: '{value}' is not a number.",
                          fix=f"Enter a number from {p.minimum} to {p.maximum}.") from None
        if (p.minimum is not None and number < p.minimum) or (p.maximum is not None and number > p.maximum):
            raise DLError(f"{label}: {number} is out of range.", fix=f"Enter a number from {p.minimum} to {p.maximum}.")
        return number
    if p.kind == "choice" and value not in p.choices:
        raise DLError(f"{label}: '{value}' is not an option.", fix=f"Pick one of {', '.join(p.choices)}.")
    if p.kind == "bool":
        return bool(value)
    return value


def annotationText(parameter: Parameter) -> str:
    """The annotation :func:`parameterNodeClass` gives the field, as source text (for static checks)."""
    p = parameter
    if p.kind in ("node", "nodes"):
        text = p.nodeClasses[0] if len(p.nodeClasses) == 1 else f"Union[{', '.join(p.nodeClasses)}, None]"
        return f"list[{text}]" if p.kind == "nodes" else text
    if p.kind == "choice":
        return f"Annotated[str, Choice({list(p.choices)})]"
    if p.minimum is not None or p.maximum is not None:
        return f"Annotated[{p.kind}, WithinRange({p.minimum}, {p.maximum})]"
    return p.kind


def parameterNodeClass(className: str, parameters: typing.Iterable[Parameter], choice=None, withinRange=None) -> type:
    """A plain class for Slicer's ``parameterNodeWrapper``: one annotated field (with its default) per parameter.

    Use as ``DLFooParameterNode = parameterNodeWrapper(parameterNodeClass("DLFooParameterNode", PARAMETERS))``.
    ``choice`` / ``withinRange`` default to ``slicer.parameterNodeWrapper.Choice`` / ``WithinRange`` (only in
    Slicer); tests pass stand-ins.
    """
    import slicer

    if choice is None or withinRange is None:
        from slicer.parameterNodeWrapper import Choice, WithinRange

        choice, withinRange = choice or Choice, withinRange or WithinRange
    builtin = {"bool": bool, "int": int, "float": float, "str": str}
    annotations, values = {}, {}
    for p in parameters:
        if p.kind in ("node", "nodes"):
            classes = tuple(getattr(slicer, c) for c in p.nodeClasses)
            # a union of node classes needs None too: the wrapper writes every default when it wraps a node, and
            # UnionSerializer finds no arm that writes None otherwise (Base/Python/slicer/parameterNodeWrapper/
            # serializers.py, UnionSerializer._findBestSerializer; util.isNodeOrUnionOfNodes expects it)
            nodeType = classes[0] if len(classes) == 1 else typing.Union[classes + (type(None),)]
            annotations[p.name] = list[nodeType] if p.kind == "nodes" else nodeType
            continue  # node fields default to None / [] in the wrapper
        if p.kind == "choice":
            annotations[p.name] = typing.Annotated[str, choice(list(p.choices))]
        elif p.minimum is not None or p.maximum is not None:
            annotations[p.name] = typing.Annotated[builtin[p.kind], withinRange(p.minimum, p.maximum)]
        else:
            annotations[p.name] = builtin[p.kind]
        values[p.name] = p.default
    return type(className, (), {"__annotations__": annotations, "__module__": __name__, **values})
