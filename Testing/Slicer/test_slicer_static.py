"""Static checks of the Slicer layer of the four modules (DLClassify, DLSegment, DLRegister, DLSynthesize), each
also run on a small bad example built in tmp_path to show it catches its defect class. Helpers: slicerchecks.py.

Facts, and the files they were read from (Slicer v5.8.0 = d20ee94ceeaf; CTK 82cae57816, the CTK GIT_TAG of
Slicer v5.8.0 ``SuperBuild/External_CTK.cmake``):

1. .ui properties: ``slicer.util.loadUI`` applies each ``<property>`` with ``QObject::setProperty``; a name that is
   no Q_PROPERTY of the class silently becomes a dynamic property with no effect. The Q_PROPERTY table
   ``widget_properties.json`` was read from Qt 5.15 ``src/widgets/**/q*.h`` (qwidget.h, qabstractspinbox.h, ...),
   CTK ``Libs/Widgets/ctkSliderWidget.h``, ``ctkCollapsibleButton.h``, ``ctkPathLineEdit.h``, ``ctkComboBox.h``
   and Slicer ``Libs/MRML/Widgets/qMRMLNodeComboBox.h``, ``qMRMLCheckableNodeComboBox.h``, ``qMRMLWidget.h``.
   ``ctkSliderWidget`` has no ``specialValueText`` (``ctkSliderWidget.h`` L51-67).
2. Install paths: Slicer ``CMake/SlicerMacroBuildScriptedModule.cmake`` (not ``Extensions/CMake/``: no such
   file at v5.8.0) passes SCRIPTS/RESOURCES to CTK ``CMake/ctkMacroCompilePythonScript.cmake`` with DESTINATION_DIR
   ``${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}`` (+ ``/<folder>`` only WITH_SUBDIR); CTK copies each
   ``${SOURCE_DIR}/${file}`` to ``${DESTINATION_DIR}/${file}`` (the path as listed; ``.py`` appended to a script
   whose extension does not match ``py``) and installs the destination's contents (NO_INSTALL_SUBDIR). So every
   module's ``Resources/...`` lands in one shared ``qt-scripted-modules/Resources/``.
3. Logic calls: Slicer ``Base/Python/slicer/ScriptedLoadableModule.py`` ``class ScriptedLoadableModuleLogic``
   (``__init__`` sets ``moduleName``, ``isSingletonParameterNode``; methods ``getParameterNode``,
   ``getAllParameterNodes``, ``createParameterNode``). MedDL's ``<X>Logic`` adds its own methods and forwards other
   public names to the engine ``<X>Lib.MODULE.engine`` (``"package.module:Class"``) with ``__getattr__``.

``test_pinned_facts_match_slicer_and_ctk_source`` re-reads these facts from the Slicer and CTK mirrors when they
are on this machine (skipped elsewhere).
"""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _folder in (Path(__file__).resolve().parent, ROOT, ROOT / "DLSegment", ROOT / "DLRegister",
                ROOT / "DLSynthesize", ROOT / "DLClassify"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import slicerchecks  # noqa: E402
from slicerchecks import (MODULES, SLICER_LOGIC_ATTRIBUTES, SLICER_LOGIC_METHODS, attributeUses,  # noqa: E402
                          installCollisions, installLayout, logicAttributeProblems, missingSources, subdirectories,
                          uiPropertyCount, uiPropertyProblems)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --------------------------------------------------------------------------------------------------------------
# 1. every property a .ui sets exists on the widget's class
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", MODULES)
def test_ui_properties_exist_on_their_widget_class(module):
    ui = ROOT / module / "Resources" / "UI" / f"{module}.ui"
    assert ui.is_file(), f"{_rel(ui)} is missing"
    assert uiPropertyCount(ui) > 50  # the check looks at the real properties, not at nothing
    assert uiPropertyProblems(ui, label=_rel(ui)) == []


BAD_UI = """<?xml version="1.0" encoding="UTF-8"?>
<ui version="4.0"><class>DLFoo</class>
 <widget class="qMRMLWidget" name="DLFoo">
  <layout class="QFormLayout">
   <property name="spacing"><number>4</number></property>
   <item row="0" column="0"><widget class="QLabel" name="weightLabel">
    <property name="text"><string>Weight:</string></property>
    <property name="buddy"><cstring>regularisationWeightSlider</cstring></property></widget></item>
   <item row="0" column="1"><widget class="ctkSliderWidget" name="regularisationWeightSlider">
    <property name="toolTip"><string>auto: -1</string></property>
    <property name="minimum"><double>-1.0</double></property>
    <property name="value"><double>-1.0</double></property>
    <property name="specialValueText"><string>auto</string></property>
    <property name="SlicerParameterName" stdset="0"><string>regularisationWeight</string></property>
   </widget></item>
   <item row="1" column="1"><widget class="QComboBox" name="lossComboBox">
    <property name="currentIndex"><number>0</number></property>
    <item><property name="text"><string>lncc</string></property></item>
   </widget></item>
   <item row="2" column="1"><widget class="QDoubleSpinBox" name="spacingSpinBox">
    <property name="specialValueText"><string>keep</string></property></widget></item>
   {extra}
  </layout>
 </widget>
</ui>"""


def test_ui_checker_flags_a_property_the_class_lacks(tmp_path):
    """The old DLRegister.ui: ``specialValueText`` on a ctkSliderWidget (only QAbstractSpinBox has it)."""
    ui = tmp_path / "DLFoo.ui"
    ui.write_text(BAD_UI.format(extra=""))
    table = slicerchecks.loadWidgetTable()
    header = table["ctkSliderWidget"]["header"]
    # exactly one problem: stdset="0", the layout's spacing, the combo's <item> text, QLabel buddy and
    # QDoubleSpinBox specialValueText (inherited from QAbstractSpinBox) are all fine
    assert uiPropertyProblems(ui, table, label="DLFoo.ui") == [
        "DLFoo.ui: widget regularisationWeightSlider (ctkSliderWidget): property specialValueText is not a property "
        f"of ctkSliderWidget or its bases (header {header})"]
    assert uiPropertyCount(ui) == 8  # QLabel 2, slider 4, combo 1, spin box 1

    ui.write_text(BAD_UI.format(extra='<item row="3" column="1"><widget class="QProgressBar" name="bar">'
                                      '<property name="text"><string>x</string></property></widget></item>'
                                      '<item row="4" column="1"><widget class="ctkFancyWidget" name="fancy">'
                                      '<property name="value"><double>1</double></property></widget></item>'))
    problems = uiPropertyProblems(ui, table, label="DLFoo.ui")
    assert len(problems) == 3
    assert any("widget bar (QProgressBar): property text is read-only" in p for p in problems)
    assert any("widget fancy (ctkFancyWidget): class ctkFancyWidget is not in widget_properties.json" in p
               for p in problems)

    fixed = tmp_path / "fixed.ui"
    fixed.write_text(BAD_UI.format(extra="").replace('<property name="specialValueText"><string>auto</string>'
                                                     '</property>', ""))
    assert uiPropertyProblems(fixed, table) == []


# --------------------------------------------------------------------------------------------------------------
# 2. no two listings install to the same path; every listed file exists
# --------------------------------------------------------------------------------------------------------------

def _extensionLayout(root: Path) -> list[dict]:
    entries = []
    for folder in subdirectories(root / "CMakeLists.txt"):
        entries += installLayout(root / folder / "CMakeLists.txt", root)
    return entries


def test_no_two_listings_install_to_the_same_path():
    folders = subdirectories(ROOT / "CMakeLists.txt")
    assert set(folders) >= {"DLCommon", *MODULES}
    entries = _extensionLayout(ROOT)
    installed = {e["install"] for e in entries}
    qsm = slicerchecks.INSTALL_QTSCRIPTEDMODULES_LIB_DIR
    for module in MODULES:  # the layout is the real one: each module's shell, library and .ui are in it
        assert f"{qsm}/{module}.py" in installed
        assert f"{qsm}/{module}Lib/__init__.py" in installed
        assert f"{qsm}/Resources/UI/{module}.ui" in installed
    assert f"{qsm}/DLCommon/shell.py" in installed
    assert installCollisions(entries) == []


def test_every_listed_script_and_resource_exists():
    entries = _extensionLayout(ROOT)
    assert len(entries) > 40
    assert missingSources(entries) == []


MODULE_CMAKE = """#-----------------------------------------------------------------------------
set(MODULE_NAME {name})

set(MODULE_PYTHON_SCRIPTS
  ${{MODULE_NAME}}     # a script listed without .py gets it appended
  ${{MODULE_NAME}}Lib/__init__.py
  )

set(MODULE_PYTHON_RESOURCES
  Resources/UI/${{MODULE_NAME}}.ui
  {requirements}  # Resources/not-listed.txt (a comment)
  )

slicerMacroBuildScriptedModule(
  NAME ${{MODULE_NAME}}
  SCRIPTS ${{MODULE_PYTHON_SCRIPTS}}
  RESOURCES ${{MODULE_PYTHON_RESOURCES}}
  WITH_GENERIC_TESTS {subdir}
  )

if(BUILD_TESTING)
  slicer_add_python_unittest(SCRIPT ${{MODULE_NAME}}.py)
endif()
"""

COMMON_CMAKE = """set(DLCommon_PYTHON_SCRIPTS
  DLCommon/__init__.py
  DLCommon/shell.py
  )
ctkMacroCompilePythonScript(
  TARGET_NAME DLCommon
  SCRIPTS "${DLCommon_PYTHON_SCRIPTS}"
  SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/..
  DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
  INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
  NO_INSTALL_SUBDIR
  )
"""


def _makeExtension(root: Path, requirements: str, subdir: str = "", createFiles: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "CMakeLists.txt").write_text("project(MedDL)\nadd_subdirectory(DLCommon)\n"
                                         + "".join(f"add_subdirectory({m})\n" for m in MODULES))
    (root / "DLCommon").mkdir()
    (root / "DLCommon" / "CMakeLists.txt").write_text(COMMON_CMAKE)
    for name in ("__init__.py", "shell.py"):
        (root / "DLCommon" / name).write_text("")
    for module in MODULES:
        folder = root / module
        (folder / "Resources" / "UI").mkdir(parents=True)
        (folder / f"{module}Lib").mkdir()
        (folder / "CMakeLists.txt").write_text(MODULE_CMAKE.format(name=module, requirements=requirements,
                                                                   subdir=subdir))
        if createFiles:
            for path in (f"{module}.py", f"{module}Lib/__init__.py", f"Resources/UI/{module}.ui",
                         requirements.replace("${MODULE_NAME}", module)):
                (folder / path).write_text("")


def test_install_checker_flags_four_modules_sharing_requirements_txt(tmp_path):
    """Four modules each listing ``Resources/requirements.txt`` all copy it to one shared path."""
    _makeExtension(tmp_path, "Resources/requirements.txt")
    entries = _extensionLayout(tmp_path)
    qsm, build = slicerchecks.INSTALL_QTSCRIPTEDMODULES_LIB_DIR, f"<build>/{slicerchecks.QTSCRIPTEDMODULES_LIB_DIR}"
    assert missingSources(entries) == []
    assert {e["install"] for e in entries if e["target"] == "DLSegment"} == {
        f"{qsm}/DLSegment.py", f"{qsm}/DLSegmentLib/__init__.py", f"{qsm}/Resources/UI/DLSegment.ui",
        f"{qsm}/Resources/requirements.txt"}
    assert {e["install"] for e in entries if e["target"] == "DLCommon"} == {
        f"{qsm}/DLCommon/__init__.py", f"{qsm}/DLCommon/shell.py"}
    problems = installCollisions(entries)
    assert len(problems) == 2
    assert problems[0].startswith(f"build path {build}/Resources/requirements.txt is produced by 4 listings: ")
    assert problems[1].startswith(f"install path {qsm}/Resources/requirements.txt is produced by 4 listings: ")
    assert all(f"{m}/CMakeLists.txt ({m}) resource Resources/requirements.txt" in problems[1] for m in MODULES)


def test_install_checker_accepts_per_module_names_and_subfolders(tmp_path):
    _makeExtension(tmp_path / "named", "Resources/${MODULE_NAME}-requirements.txt")
    assert installCollisions(_extensionLayout(tmp_path / "named")) == []
    _makeExtension(tmp_path / "subdir", "Resources/requirements.txt", subdir="WITH_SUBDIR")
    entries = _extensionLayout(tmp_path / "subdir")
    qsm = slicerchecks.INSTALL_QTSCRIPTEDMODULES_LIB_DIR
    assert f"{qsm}/DLSegment/Resources/requirements.txt" in {e["install"] for e in entries}
    assert installCollisions(entries) == []


def test_install_checker_flags_listed_files_that_do_not_exist(tmp_path):
    _makeExtension(tmp_path, "Resources/${MODULE_NAME}-requirements.txt", createFiles=False)
    (tmp_path / "DLSegment" / "DLSegment.py").write_text("")
    missing = missingSources(_extensionLayout(tmp_path))
    assert len(missing) == 4 * 4 - 1
    assert "DLSegment/CMakeLists.txt (DLSegment): resource Resources/DLSegment-requirements.txt does not exist " \
           f"({(tmp_path / 'DLSegment/Resources/DLSegment-requirements.txt').as_posix()})" in missing
    assert not any("DLSegment.py does not exist" in p for p in missing)


# --------------------------------------------------------------------------------------------------------------
# 3. every method a shell calls on its logic exists
# --------------------------------------------------------------------------------------------------------------

def _engine(module: str):
    registration = importlib.import_module(f"{module}Lib").MODULE.engine
    moduleName, className = registration.split(":")
    return registration, getattr(importlib.import_module(moduleName), className)


@pytest.mark.parametrize("module", MODULES)
def test_every_logic_attribute_the_shell_and_parameters_use_exists(module):
    folder = ROOT / module
    shells = [folder / f"{module}.py", ROOT / "DLCommon" / "shell.py"]
    parameterFiles = [folder / f"{module}Lib" / "parameters.py", folder / f"{module}Lib" / "__init__.py"]
    # not vacuous: the shared mixin asks the logic for its parameter node, the actions call engine jobs
    assert "getParameterNode" in {name for name, _ in attributeUses(shells[1], ("self", "logic"))}
    assert attributeUses(parameterFiles[0], ("logic",))
    registration, engineClass = _engine(module)
    assert logicAttributeProblems(shells, folder / f"{module}.py", f"{module}Logic", engineClass, registration,
                                  parameterFiles) == []


BAD_SHELL = '''
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget


class DLFooWidget(ScriptedLoadableModuleWidget):
    def onApply(self):
        self.logic.segmentJob(self.volume).start()
        self.logic.getParameterNode()
        print(self.logic.moduleName)

    def onBatchApply(self):
        self.startJob(self.logic.batchJob(self.inputs), self.bar)


class DLFooLogic(ScriptedLoadableModuleLogic):
    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._engine = None

    def engine(self):
        if self._engine is None:
            from DLFooLib.logic import FooLogic

            self._engine = FooLogic(None)
        return self._engine

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine(), name)
'''


class FooEngine:
    """Stands for DLFooLib.logic.FooLogic."""

    def __init__(self, scene):
        self.scene = scene

    def segmentJob(self, volume):
        return None


def test_logic_checker_flags_a_call_neither_logic_nor_engine_has(tmp_path):
    """The old defect: a shell calling ``self.logic.batchJob`` (a method of the widget mixin, not of the logic)."""
    shell = tmp_path / "DLFoo.py"
    shell.write_text(BAD_SHELL)
    problems = logicAttributeProblems([shell], shell, "DLFooLogic", FooEngine, "DLFooLib.logic:FooLogic",
                                      root=tmp_path)
    assert problems == ["DLFoo.py:12: self.logic.batchJob: not defined by DLFooLogic, its base "
                        "ScriptedLoadableModuleLogic, nor its engine DLFooLib.logic:FooLogic"]

    class BatchingEngine(FooEngine):
        def batchJob(self, inputs):
            return None

    assert logicAttributeProblems([shell], shell, "DLFooLogic", BatchingEngine, "DLFooLib.logic:FooLogic") == []
    # without __getattr__ nothing reaches the engine: segmentJob is flagged too
    noForward = tmp_path / "noForward.py"
    noForward.write_text(BAD_SHELL.replace("def __getattr__", "def _unused"))
    flagged = {p.split(": ")[1] for p in logicAttributeProblems([noForward], noForward, "DLFooLogic",
                                                                 BatchingEngine, root=tmp_path)}
    assert flagged == {"self.logic.segmentJob", "self.logic.batchJob"}
    # the logic imports another engine than the module registers
    assert any("imports DLFooLib.logic:FooLogic, but the module registers the engine DLBarLib.logic:BarLogic" in p
               for p in logicAttributeProblems([shell], shell, "DLFooLogic", BatchingEngine,
                                               "DLBarLib.logic:BarLogic"))


def test_logic_checker_flags_a_parameter_action_calling_a_missing_engine_method(tmp_path):
    parameters = tmp_path / "parameters.py"
    parameters.write_text("def applyJob(logic, p):\n    return logic.segmentJob(p.inputVolume)\n\n\n"
                          "def batch(logic, p, volumeNode):\n    return logic.batchJob([volumeNode])\n")
    shell = tmp_path / "DLFoo.py"
    shell.write_text(BAD_SHELL.replace("self.logic.batchJob", "self.batchJob"))
    assert logicAttributeProblems([shell], shell, "DLFooLogic", FooEngine, "DLFooLib.logic:FooLogic",
                                  [parameters], root=tmp_path) == [
        "parameters.py:6: logic.batchJob: not an attribute of its engine DLFooLib.logic:FooLogic"]


# --------------------------------------------------------------------------------------------------------------
# the facts slicerchecks.py states, re-read from Slicer's and CTK's source where the mirrors exist
# --------------------------------------------------------------------------------------------------------------

SLICER_MIRROR = Path("/work/.mirror/Slicer+Slicer/repo")
CTK_MIRROR = Path("/work/.mirror/commontk+CTK/repo")
SLICER_58 = "d20ee94ceeaf3da1d67042059c6c125c82626005"  # tag v5.8.0
CTK_58 = "82cae5781621845486bad2697aed095f04cfbe76"  # the CTK GIT_TAG of v5.8.0 SuperBuild/External_CTK.cmake


def _show(repo: Path, ref: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def test_pinned_facts_match_slicer_and_ctk_source():
    if shutil.which("git") is None or not (SLICER_MIRROR.is_dir() and CTK_MIRROR.is_dir()):
        pytest.skip("the Slicer and CTK git mirrors are not on this machine")
    module = ast.parse(_show(SLICER_MIRROR, SLICER_58, "Base/Python/slicer/ScriptedLoadableModule.py"))
    logic = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "ScriptedLoadableModuleLogic")
    assert {n.name for n in logic.body if isinstance(n, ast.FunctionDef)} == SLICER_LOGIC_METHODS
    assert slicerchecks.classMembers(logic) == SLICER_LOGIC_METHODS | SLICER_LOGIC_ATTRIBUTES
    assert [ast.unparse(b) for b in logic.bases] == []

    macro = _show(SLICER_MIRROR, SLICER_58, "CMake/SlicerMacroBuildScriptedModule.cmake")
    for line in ('set(_no_install_subdir_option NO_INSTALL_SUBDIR)',
                 'get_filename_component(_destination_subdir ${CMAKE_CURRENT_SOURCE_DIR} NAME)',
                 'set(_destination_subdir "/${_destination_subdir}")',
                 'RESOURCES "${MY_SLICER_RESOURCES}"',
                 'DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}${_destination_subdir}',
                 'if(NOT EXISTS ${value_absolute} AND NOT EXISTS ${value_absolute}.py)'):
        assert line in macro
    ctk = _show(CTK_MIRROR, CTK_58, "CMake/ctkMacroCompilePythonScript.cmake")
    for line in ('if(NOT "${file_ext}" MATCHES "py")', 'set(file "${file}.py")', 'set(src "${MY_SOURCE_DIR}/${file}")',
                 '_CTK_${target}_PYTHON_RESOURCES "${src}|${file}|${MY_DESTINATION_DIR}")',
                 'set(tgt ${dest_dir}/${tgt_file})', 'set(MY_DIRECTORY_TO_INSTALL ${MY_DESTINATION_DIR}/)'):
        assert line in ctk
    slider = _show(CTK_MIRROR, CTK_58, "Libs/Widgets/ctkSliderWidget.h")
    assert "Q_PROPERTY" in slider and "specialValueText" not in slider
