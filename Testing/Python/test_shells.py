"""Every module shell present is well-formed; the checker itself is tested on a module it builds."""

from __future__ import annotations


import pytest
from shellcheck import checkModuleShell, moduleFolders


@pytest.mark.parametrize("folder", moduleFolders(), ids=lambda p: p.name)
def test_module_shell(folder):
    assert checkModuleShell(folder) == []


GOOD_MODULE = '''
from slicer.ScriptedLoadableModule import *
from slicer.parameterNodeWrapper import parameterNodeWrapper

@parameterNodeWrapper
class DLFooParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    epochs: int = 10
    loss: str = "dice"

class DLFoo(ScriptedLoadableModule):
    pass

class DLFooWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    pass

class DLFooLogic(ScriptedLoadableModuleLogic):
    pass

class DLFooTest(ScriptedLoadableModuleTest):
    pass
'''

UI = '''<?xml version="1.0" encoding="UTF-8"?>
<ui version="4.0"><class>DLFoo</class><widget class="qMRMLWidget" name="DLFoo"><layout class="QFormLayout">
 <item row="0" column="1"><widget class="qMRMLNodeComboBox" name="inputSelector">
  <property name="SlicerParameterName" stdset="0"><string>{field}</string></property></widget></item>
</layout></widget>{connections}</ui>'''

CONNECTIONS = '''<connections><connection><sender>DLFoo</sender><signal>mrmlSceneChanged(vtkMRMLScene*)</signal>
<receiver>inputSelector</receiver><slot>setMRMLScene(vtkMRMLScene*)</slot></connection></connections>'''


def makeModule(root, field="inputVolume", libImport="", connections=CONNECTIONS):
    folder = root / "DLFoo"
    (folder / "Resources" / "UI").mkdir(parents=True)
    (folder / "DLFooLib").mkdir()
    (folder / "DLFoo.py").write_text(GOOD_MODULE)
    (folder / "Resources" / "UI" / "DLFoo.ui").write_text(UI.format(field=field, connections=connections))
    (folder / "DLFooLib" / "__init__.py").write_text(libImport)
    return folder


def test_checker_accepts_a_good_shell(tmp_path):
    folder = makeModule(tmp_path)
    assert moduleFolders(tmp_path) == [folder]
    assert checkModuleShell(folder) == []


def test_checker_finds_problems(tmp_path):
    folder = makeModule(tmp_path, field="outputVolume", libImport="import qt\n")
    (folder / "DLFoo.py").write_text("import torch\n" + GOOD_MODULE.replace("class DLFooTest(ScriptedLoadableModuleTest)",
                                                                            "class Other(object)"))
    problems = checkModuleShell(folder)
    assert "DLFoo.py does not define class DLFooTest" in problems
    assert any("SlicerParameterName 'outputVolume' is not a field of DLFooParameterNode" in p for p in problems)
    assert any("imports qt/ctk" in p for p in problems)
    assert "DLFoo.py imports torch at module level; import it inside methods" in problems


def test_checker_requires_choice_for_combo_boxes(tmp_path):
    folder = makeModule(tmp_path, field="loss")
    ui = folder / "Resources" / "UI" / "DLFoo.ui"
    ui.write_text(ui.read_text().replace('class="qMRMLNodeComboBox"', 'class="QComboBox"'))
    assert any("needs Annotated[..., Choice([...])]" in p for p in checkModuleShell(folder))


def test_checker_requires_scene_connections_for_node_selectors(tmp_path):
    folder = makeModule(tmp_path, connections="")
    assert any("'inputSelector' gets no mrmlSceneChanged connection" in p for p in checkModuleShell(folder))


def test_checker_finds_widgets_the_shell_uses_but_the_ui_lacks(tmp_path):
    folder = makeModule(tmp_path)
    source = folder / "DLFoo.py"
    source.write_text(source.read_text().replace("class DLFooWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):\n"
                                                 "    pass", "class DLFooWidget(ScriptedLoadableModuleWidget, "
                                                 "VTKObservationMixin):\n    def setup(self):\n"
                                                 "        self.ui.inputSelector.enabled = self.ui.applyButton.enabled\n"))
    assert checkModuleShell(folder) == ["DLFoo.py uses self.ui.applyButton, which DLFoo.ui does not define"]


LIB_PARAMETERS = '''
from DLCommon.parameters import Parameter

PARAMETERS = (
    Parameter("inputVolume", "node", nodeClasses=("vtkMRMLScalarVolumeNode",)),
    Parameter("epochs", "int", 10, minimum=1, maximum=500),
    Parameter("loss", "choice", "dice", choices=("dice", "ce")),
)
'''

SPIN_AND_COMBO = '''<item row="1" column="1"><widget class="QSpinBox" name="epochsSpinBox">
  <property name="minimum"><number>{minimum}</number></property><property name="maximum"><number>500</number></property>
  <property name="value"><number>10</number></property>
  <property name="SlicerParameterName" stdset="0"><string>epochs</string></property></widget></item>
 <item row="2" column="1"><widget class="QComboBox" name="lossComboBox">
  <property name="SlicerParameterName" stdset="0"><string>loss</string></property>
  <item><property name="text"><string>dice</string></property></item>
  <item><property name="text"><string>{second}</string></property></item></widget></item>
</layout>'''


def makeDefinedModule(root, minimum=1, second="ce"):
    """DLFoo whose parameter node is built from DLFooLib/parameters.py, with a spin box and a combo box."""
    folder = makeModule(root)
    source = folder / "DLFoo.py"
    source.write_text(source.read_text().replace(
        "@parameterNodeWrapper\nclass DLFooParameterNode:\n    inputVolume: vtkMRMLScalarVolumeNode\n"
        "    epochs: int = 10\n    loss: str = \"dice\"\n",
        "from DLCommon.parameters import parameterNodeClass\nfrom DLFooLib import parameters\n\n"
        "DLFooParameterNode = parameterNodeWrapper(parameterNodeClass('DLFooParameterNode', parameters.PARAMETERS))\n"))
    (folder / "DLFooLib" / "parameters.py").write_text(LIB_PARAMETERS)
    ui = folder / "Resources" / "UI" / "DLFoo.ui"
    ui.write_text(ui.read_text().replace("</layout>", SPIN_AND_COMBO.format(minimum=minimum, second=second)))
    return folder


def test_checker_reads_fields_from_the_shared_definitions(tmp_path):
    folder = makeDefinedModule(tmp_path)
    assert checkModuleShell(folder) == []
    ui = folder / "Resources" / "UI" / "DLFoo.ui"
    ui.write_text(ui.read_text().replace("<string>epochs</string>", "<string>iterations</string>"))
    assert checkModuleShell(folder) == ["DLFoo.ui: SlicerParameterName 'iterations' is not a field of DLFooParameterNode"]


def test_checker_finds_designer_ranges_and_items_that_differ_from_the_definitions(tmp_path):
    folder = makeDefinedModule(tmp_path, minimum=0, second="wce")
    assert checkModuleShell(folder) == [
        "DLFoo.ui: 'epochsSpinBox' (epochs) has minimum 0; the definition says 1",
        "DLFoo.ui: 'lossComboBox' (loss) lists ['dice', 'wce']; the choices are ['dice', 'ce']"]
