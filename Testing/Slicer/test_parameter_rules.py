"""Every setting of the four modules survives the rules Slicer's parameterNodeWrapper applies (slicerrules.py):
its default and every allowed value can be written, values outside the definition are refused, and each .ui
widget bound to a setting has a GUI connector for its type in Slicer 5.8."""

from __future__ import annotations

import typing
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from slicerrules import Choice, WithinRange, connectorProblem, problems, writeError

from DLCommon.parameters import parameterNodeClass

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("DLClassify", "DLRegister", "DLSegment", "DLSynthesize")


def _parameters(module):
    return __import__(f"{module}Lib.parameters", fromlist=["PARAMETERS"]).PARAMETERS


def _nodeClass(module, className: str):
    import slicer

    return getattr(slicer, className)()


def allowedValues(parameter):
    """The default and the edges of what the definition allows (each choice, the range's ends, both booleans,
    no node and a node of each allowed class, lists of them)."""
    import slicer

    p = parameter
    if p.kind == "choice":
        return list(p.choices)
    if p.kind == "bool":
        return [False, True]
    if p.kind in ("int", "float"):
        return [p.default, p.minimum, p.maximum]
    if p.kind == "str":
        return [p.default, "", "x y"]
    nodes = [getattr(slicer, c)() for c in p.nodeClasses]
    return [None, *nodes] if p.kind == "node" else [[], nodes, nodes[:1] * 2]


def refusedValues(parameter):
    p = parameter
    if p.kind == "choice":
        return ["not-an-option", None]
    if p.kind in ("int", "float"):
        return [p.minimum - 1, p.maximum + 1, None]
    if p.kind == "bool":
        return [None, "yes"]
    return []


@pytest.mark.parametrize("module", MODULES)
def test_every_default_and_allowed_value_is_written_and_others_refused(module):
    parameters = _parameters(module)
    cls = parameterNodeClass(f"{module}ParameterNode", parameters, Choice, WithinRange)
    assert problems(cls) == []  # wrapping a fresh parameter node (getParameterNode / setup / enter) succeeds
    hints = typing.get_type_hints(cls, include_extras=True)
    for p in parameters:
        for value in allowedValues(p):
            assert writeError(hints[p.name], value) is None, (p.name, value)
        for value in refusedValues(p):
            assert writeError(hints[p.name], value) is not None, (p.name, value)


def test_the_rules_catch_a_union_of_nodes_without_none():
    """DLSynthesize's probe setting (a linear transform or markups) was built as Union[A, B]: Slicer's
    UnionSerializer cannot write its None default, so the module's panel never opened."""
    import slicer

    class Old:
        __annotations__ = {"probeTransform": typing.Union[slicer.vtkMRMLLinearTransformNode,
                                                           slicer.vtkMRMLMarkupsFiducialNode]}

    assert problems(Old) == ["Old.probeTransform: default None: TypeError: Unable to write value 'None' of type "
                             "'<class 'NoneType'>'",
                             "Old.probeTransform: a union of nodes needs None as its last member"]

    class OutOfRange:
        __annotations__ = {"depth": typing.Annotated[float, WithinRange(10.0, 300.0)],
                           "task": typing.Annotated[str, Choice(["a", "b"])]}

    assert problems(OutOfRange) == ["OutOfRange.depth: default 0: ValueError: Value 0 is not within [10.0, 300.0]",
                                    "OutOfRange.task: default '': ValueError: Value '' is not a valid choice: "
                                    "['a', 'b']"]


def _boundWidgets(module):
    """``(objectName, widget class, SlicerParameterName)`` of every bound widget in the module's .ui."""
    tree = ElementTree.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                yield widget.get("name"), widget.get("class"), prop.find("string").text


@pytest.mark.parametrize("module", MODULES)
def test_every_bound_widget_has_a_connector_for_its_setting(module):
    parameters = _parameters(module)
    hints = typing.get_type_hints(parameterNodeClass(f"{module}ParameterNode", parameters, Choice, WithinRange),
                                  include_extras=True)
    found = [f"{name} ({widgetClass}) -> {field}: {connectorProblem(hints[field], widgetClass)}"
             for name, widgetClass, field in _boundWidgets(module) if connectorProblem(hints[field], widgetClass)]
    assert found == []


def test_the_connector_rules_catch_what_connectGui_refuses():
    import slicer

    assert connectorProblem(int, "ctkSliderWidget") is not None  # 5.8: no int connector on a slider widget
    assert connectorProblem(float, "ctkSliderWidget") == "a ctkSliderWidget needs a bounded float (WithinRange)"
    assert connectorProblem(str, "QComboBox") is not None  # a combo box needs a Choice
    assert connectorProblem(list[slicer.vtkMRMLScalarVolumeNode], "qMRMLCheckableNodeComboBox") is not None
    assert connectorProblem(typing.Annotated[float, WithinRange(0, 1)], "ctkSliderWidget") is None
