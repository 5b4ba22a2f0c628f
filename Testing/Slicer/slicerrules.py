"""Slicer's parameter-node rules, re-implemented for the field types MedDL's settings produce.

Slicer cannot run here, so what ``@parameterNodeWrapper`` does with a field is re-stated from its source
(Slicer/Slicer ``Base/Python/slicer/parameterNodeWrapper/`` at v5.8.0, the oldest release MedDL supports; the
same on main unless noted):

- ``serializers.py``: ``NumberSerializer`` (int: ``IsInstance(int)``; float: ``IsInstance((int, float))``, both
  ``NotNone``; default 0), ``BoolSerializer`` / ``StringSerializer`` (``IsInstance``; default False / ""),
  ``NodeSerializer`` (None or an instance of the class; default None), ``ListSerializer`` (default []; each item
  through the item serializer), ``UnionSerializer`` (default: None for ``Optional[X]``, else the first member's
  default; a write goes to the first member whose ``canSerialize(type(value))`` holds and whose validators pass,
  else ``TypeError("Unable to write value ...")``: None needs a ``NoneType`` member).
- ``wrapper.py``: every default is written (so validated) the first time a class wraps a fresh parameter node,
  i.e. in the module's ``getParameterNode()``, ``setup()`` and ``enter()``.
- ``validators.py``: ``WithinRange(a, b)`` raises ValueError unless ``a <= value <= b``; ``Choice(c)`` unless
  ``value in c``.
- ``guiConnectors.py``: which widget class can show which field type (matched on the exact widget class).

:func:`problems` lists what would raise for a class built by ``DLCommon.parameters.parameterNodeClass``;
:func:`connectorProblem` what ``connectGui`` would refuse.
"""

from __future__ import annotations

import typing

__all__ = ["Choice", "WithinRange", "writeError", "defaultOf", "problems", "connectorProblem"]


class Choice:
    """Stand-in for ``slicer.parameterNodeWrapper.Choice`` (validators.py)."""

    def __init__(self, choices):
        self.choices = list(choices)

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"Value '{value}' is not a valid choice: {self.choices}")


class WithinRange:
    """Stand-in for ``slicer.parameterNodeWrapper.WithinRange`` (validators.py): ``minimum <= value <= maximum``
    (a None bound raises TypeError there, as Python does comparing None)."""

    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value {value} is not within [{self.minimum}, {self.maximum}]")


def _split(annotation):
    """``(type, validators)`` of a possibly ``Annotated`` type."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        return base, [e for e in extras if hasattr(e, "validate")]
    return annotation, []


def _isNodeClass(t) -> bool:
    import slicer

    return isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)


def writeError(annotation, value) -> str | None:
    """Why Slicer's serializer for ``annotation`` would refuse to write ``value`` (None: it writes it)."""
    base, validators = _split(annotation)
    origin = typing.get_origin(base)
    if origin is typing.Union:
        for member in typing.get_args(base):
            memberBase, _ = _split(member)
            accepts = (value is None) if memberBase is type(None) else (
                _isNodeClass(memberBase) and value is not None and isinstance(value, memberBase)
                if _isNodeClass(memberBase) else isinstance(value, memberBase))
            if accepts and writeError(member, value) is None:
                break
        else:
            return f"TypeError: Unable to write value '{value}' of type '{type(value)}'"
    elif origin is list:
        if not isinstance(value, list):
            return f"TypeError: {value!r} is not a list"
        (item,) = typing.get_args(base)
        for element in value:
            error = writeError(item, element)
            if error:
                return error
    elif base is type(None):  # NoneSerializer
        if value is not None:
            return f"TypeError: {value!r} is not None"
    elif _isNodeClass(base):
        if value is not None and not isinstance(value, base):
            return f"TypeError: {value!r} is not a {base.__name__}"
    elif base is bool:
        if not isinstance(value, bool):
            return f"TypeError: {value!r} is not a bool"
    elif base is int:
        if value is None or not isinstance(value, int):
            return f"TypeError: {value!r} is not an int"
    elif base is float:
        if value is None or not isinstance(value, (int, float)):
            return f"TypeError: {value!r} is not a float"
    elif base is str:
        if not isinstance(value, str):
            return f"TypeError: {value!r} is not a str"
    else:
        return f"Exception: Unable to create serializer for type {base}"
    for validator in validators:
        try:
            validator.validate(value)
        except (ValueError, TypeError) as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


def defaultOf(annotation, classDefault=...):
    """The value the wrapper writes first: the class attribute if any, else the serializer's default."""
    if classDefault is not ...:
        return classDefault
    base, _ = _split(annotation)
    origin = typing.get_origin(base)
    if origin is typing.Union:
        members = typing.get_args(base)
        if len(members) == 2 and members[1] is type(None):
            return None  # Optional[X]
        return defaultOf(members[0])
    if origin is list:
        return []
    if _isNodeClass(base) or base is type(None):
        return None
    return {bool: False, int: 0, float: 0, str: ""}.get(base)


def problems(cls) -> list[str]:
    """What would raise when ``parameterNodeWrapper(cls)`` wraps a fresh parameter node (one line per field)."""
    found = []
    for name, annotation in typing.get_type_hints(cls, include_extras=True).items():
        default = defaultOf(annotation, getattr(cls, name, ...))
        error = writeError(annotation, default)
        if error:
            found.append(f"{cls.__name__}.{name}: default {default!r}: {error}")
        base, _ = _split(annotation)
        inner = typing.get_args(base)[0] if typing.get_origin(base) is list else base
        if typing.get_origin(inner) is typing.Union:
            members = typing.get_args(inner)
            if all(_isNodeClass(m) or m is type(None) for m in members) and members[-1] is not type(None):
                found.append(f"{cls.__name__}.{name}: a union of nodes needs None as its last member")
    return found


# guiConnectors.py at v5.8.0: the field types each widget class can show (exact class match)
_CONNECTORS = {
    "QCheckBox": ("bool",), "ctkCheckBox": ("bool",), "QPushButton": ("bool",),
    "QSpinBox": ("int",), "QSlider": ("int",),
    "QDoubleSpinBox": ("float",), "ctkSliderWidget": ("float",), "qMRMLSliderWidget": ("float",),
    "ctkDoubleSlider": ("float",), "ctkDoubleSpinBox": ("float",), "qMRMLSpinBox": ("float",),
    "QComboBox": ("choice",), "ctkComboBox": ("choice",),
    "QLineEdit": ("str",), "QLabel": ("str",), "QTextEdit": ("str",),
    "ctkPathLineEdit": ("path",), "ctkDirectoryButton": ("path",),
    "qMRMLNodeComboBox": ("node",),
}


def connectorProblem(annotation, widgetClass: str) -> str | None:
    """Why ``connectGui`` would find no connector for a field of ``annotation`` on a ``widgetClass`` (None: fine).

    Notes from guiConnectors.py: a combo box needs a ``Choice`` (its items are replaced by the choices); a
    ``ctkSliderWidget`` a bounded float; node fields bind to ``qMRMLNodeComboBox`` only, and ``list[Node]`` to no
    widget at all.
    """
    base, validators = _split(annotation)
    if typing.get_origin(base) is list:
        return f"a list field has no GUI connector ({widgetClass})"
    if typing.get_origin(base) is typing.Union or _isNodeClass(base):
        kind = "node"
    elif any(isinstance(v, Choice) for v in validators):
        kind = "choice"
    else:
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(base, str(base))
    allowed = _CONNECTORS.get(widgetClass, ())
    if kind == "choice" and "choice" not in allowed and "str" in allowed:
        return None  # a Choice on a str field: a line edit still shows it
    if kind not in allowed:
        return f"a {kind} field cannot be shown on a {widgetClass} in Slicer 5.8 (guiConnectors.py)"
    if widgetClass in ("ctkSliderWidget", "qMRMLSliderWidget") and not any(isinstance(v, WithinRange)
                                                                            for v in validators):
        return f"a {widgetClass} needs a bounded float (WithinRange)"
    return None
