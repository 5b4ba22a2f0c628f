"""One definition of each module's settings: the parameter node class built from it, value checks, no torch."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest
from shellcheck import ROOT

from DLCommon.errors import DLError
from DLCommon.parameters import Parameter, checkValue, defaults, parameterNodeClass

MODULES = ("DLClassify", "DLRegister", "DLSegment", "DLSynthesize")


def _parameters(module):
    return __import__(f"{module}Lib.parameters", fromlist=["PARAMETERS"]).PARAMETERS


def test_parameter_node_class_has_each_field_with_its_type_range_and_default():
    import slicer

    choice = lambda values: ("Choice", tuple(values))  # noqa: E731 - stand-ins for slicer.parameterNodeWrapper's
    within = lambda low, high: ("WithinRange", low, high)  # noqa: E731
    from DLSynthesizeLib.parameters import PARAMETERS

    cls = parameterNodeClass("DLSynthesizeParameterNode", PARAMETERS, choice, within)
    hints = typing.get_type_hints(cls, include_extras=True)  # what parameterNodeWrapper reads
    assert list(hints) == [p.name for p in PARAMETERS]
    assert hints["inputVolume"] is slicer.vtkMRMLScalarVolumeNode and not hasattr(cls, "inputVolume")
    assert hints["sourceVolumes"] == list[slicer.vtkMRMLScalarVolumeNode]
    # a union of nodes ends with None: Slicer writes the None default through it (Testing/Slicer/slicerrules.py)
    assert typing.get_args(hints["probeTransform"]) == (slicer.vtkMRMLLinearTransformNode,
                                                         slicer.vtkMRMLMarkupsFiducialNode, type(None))
    assert hints["depth"].__metadata__ == (("WithinRange", 10.0, 300.0),) and cls.depth == 120.0
    assert hints["task"].__metadata__[0][1][0] == "super-resolution" and cls.task == "super-resolution"
    assert hints["anomalyMap"] is bool and cls.anomalyMap is False


@pytest.mark.parametrize("module", MODULES)
def test_every_module_defines_unique_valid_settings(module):
    parameters = _parameters(module)
    names = [p.name for p in parameters]
    assert len(names) == len(set(names))
    for p in parameters:
        if p.kind in ("int", "float"):
            assert p.minimum <= checkValue(p, p.default) <= p.maximum
    assert defaults(parameters)[names[0]] is None or isinstance(defaults(parameters)[names[0]], str)


def test_values_out_of_range_or_not_offered_are_refused_with_the_allowed_ones():
    epochs = Parameter("epochs", "int", 50, label="Epochs", minimum=1, maximum=10000)
    assert checkValue(epochs, "12") == 12
    with pytest.raises(DLError, match=r"Epochs: 0 is out of range.*from 1 to 10000"):
        checkValue(epochs, 0)
    with pytest.raises(DLError, match="Epochs: 'many' is not a number"):
        checkValue(epochs, "many")
    loss = Parameter("loss", "choice", "dice", label="Loss", choices=("dice", "ce"))
    with pytest.raises(DLError, match="Loss: 'focal' is not an option.*dice, ce"):
        checkValue(loss, "focal")
    with pytest.raises(ValueError, match="default 'x' is not one of"):
        Parameter("loss", "choice", "x", choices=("dice",))


def test_the_definitions_import_neither_torch_nor_qt():
    """The Slicer shells import them at module level, before PyTorch may be installed."""
    code = ("import sys; sys.path[:0] = [%r] + [%r + '/' + m for m in %r]\n"
            "for m in %r: __import__(m + 'Lib.parameters')\n"
            "print(sorted(m for m in ('torch', 'monai', 'qt') if m in sys.modules))") % (
        str(ROOT), str(ROOT), MODULES, MODULES)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_the_panels_show_every_setting_of_the_slicer_widgets():
    """Each module's panel (its registered front-end description, which the web page is built from) shows every
    setting once, or names it as one only the Slicer widget has; every action's required settings are shown, and
    every job action is one the module can make."""
    from DLCommon.modules import registeredModules

    modules = [m for m in registeredModules() if m.key in ("classify", "segment", "register", "synthesize")]
    assert len(modules) == 4
    for module in modules:
        names = [name for section in module.sections for name in module.settingsOf(section.group)]
        assert len(names) == len(set(names)), module.key
        assert set(names) | set(module.desktopOnly) == {p.name for p in module.parameters}, module.key
        assert not set(names) & set(module.desktopOnly), module.key
        for section in module.sections:
            for action in section.actions:
                assert set(action.required) <= set(names), (module.key, action.key)
                assert action.immediate == (action.run is not None), (module.key, action.key)
                assert action.immediate or action.key in module.actions, (module.key, action.key)


def test_a_page_condition_reads_the_same_in_the_browser_and_on_the_server():
    import types

    from DLCommon.frontend import When

    notUltrasound = When("task", "ultrasound", not_=True)
    assert notUltrasound.holds(types.SimpleNamespace(task="denoise"))
    assert not notUltrasound.holds(types.SimpleNamespace(task="ultrasound"))
    assert notUltrasound.javascript("synthesize_task") == "synthesize_task !== 'ultrasound'"
    assert When("task", "image-to-image").javascript("t") == "t === 'image-to-image'"
