"""The parts of the Slicer application the module shells touch, as stand-ins, so the real shells (``DLx/DLx.py``)
run here on slicer-core: setup, the parameter node, buttons, jobs in real ``meddl`` child processes, results,
batches, a closing scene.

Everything below Qt is real: the MRML scene, nodes, ``slicer.util.VTKObservationMixin``, DLCommon and the
engines. The stand-ins follow Slicer's source (v5.8.0, the oldest supported release):

- ``slicer.ScriptedLoadableModule`` (Base/Python/slicer/ScriptedLoadableModule.py): ``moduleName`` from the class
  name, ``resourcePath`` under the module's folder, ``getParameterNode`` the scene's singleton
  ``vtkMRMLScriptedModuleNode`` tagged with the module name.
- ``slicer.parameterNodeWrapper`` (Base/Python/slicer/parameterNodeWrapper/): defaults written when a fresh node
  is wrapped, every write checked by the rules of ``slicerrules.py``, node fields stored as node references (a
  deleted node reads None), ``connectParametersToGui`` returning a tag.
- ``slicer.util.loadUI`` / ``childWidgetVariables``: a widget per ``<widget>`` of the .ui with its properties;
  signals are recorded and can be emitted (``widget.emit("clicked(bool)")``).
- ``qt.QTimer``: started and stopped by the shell, fired by the test (:meth:`FakeSlicer.runTimers`).
"""

from __future__ import annotations

import contextlib
import sys
import types
import typing
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from slicerrules import Choice, WithinRange, defaultOf, writeError

ROOT = Path(__file__).resolve().parents[2]


# --- Qt widgets from the .ui ------------------------------------------------------------------------------------

class FakeWidget:
    """A .ui widget: its Designer properties as attributes, recorded signal connections, what the shells call."""

    def __init__(self, className: str, name: str, properties: dict):
        self.className, self.objectName = className, name
        self.enabled, self.visible, self.checked = True, True, False
        self.text, self.value, self.currentPath, self.toolTip = "", 0, "", ""
        self.items: list[str] = []
        self.currentIndex = -1
        self.style = ""
        self._dynamic: dict = {}
        self._slots: dict[str, list] = {}
        self._blocked = False
        self.checkedNodeList: list = []
        self.currentNode = None
        self.scene = None
        for key, value in properties.items():
            setattr(self, key, value)

    # signals
    def connect(self, signal: str, slot) -> None:
        self._slots.setdefault(signal, []).append(slot)

    def emit(self, signal: str, *args) -> None:
        if self._blocked:
            return
        for slot in self._slots.get(signal, []):
            slot(*args[:_positionalCount(slot, len(args))])

    def blockSignals(self, blocked: bool) -> bool:
        previous, self._blocked = self._blocked, bool(blocked)
        return previous

    # QWidget
    def setStyleSheet(self, style: str) -> None:
        self.style = style

    def setMRMLScene(self, scene) -> None:
        self.scene = scene

    # QComboBox
    @property
    def currentText(self) -> str:
        return self.items[self.currentIndex] if 0 <= self.currentIndex < len(self.items) else ""

    def clear(self) -> None:
        self.items, self.currentIndex = [], -1
        self.emit("currentTextChanged(QString)", "")

    def addItem(self, text: str) -> None:
        self.items.append(text)
        if self.currentIndex < 0 and self.className in ("QComboBox", "ctkComboBox"):
            self.currentIndex = 0  # Qt makes the first item current
            self.emit("currentTextChanged(QString)", text)

    def findText(self, text: str) -> int:
        return self.items.index(text) if text in self.items else -1

    def setCurrentText(self, text: str) -> None:
        index = self.findText(text)
        if index >= 0 and index != self.currentIndex:
            self.currentIndex = index
            self.emit("currentTextChanged(QString)", text)

    def count(self) -> int:
        return len(self.items)

    # qMRMLCheckableNodeComboBox
    def checkedNodes(self) -> list:
        return list(self.checkedNodeList)

    # QObject (last: the name would hide the builtin ``property`` in the class body above)
    def property(self, name: str):
        return self._dynamic.get(name)


def _positionalCount(slot, available: int) -> int:
    """PythonQt calls a slot with as many of the signal's arguments as it accepts (a ``clicked(bool)`` slot may
    take none; PythonQtSignalTarget)."""
    import inspect

    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return available
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return available
    return min(available, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters))


def loadUI(path: str) -> FakeWidget:
    """Every ``<widget>`` of a Designer file as a :class:`FakeWidget` (children in ``root.children``)."""
    root = ElementTree.parse(path).getroot().find("widget")
    top = FakeWidget(root.get("class"), root.get("name"), {})
    top.children = []
    for element in root.iter("widget"):
        properties, dynamic = {}, {}
        for prop in element.findall("property"):
            value = next(iter(prop), None)
            text = None if value is None else value.text
            if value is not None and value.tag == "bool":
                text = text == "true"
            elif value is not None and value.tag in ("number", "double"):
                text = float(text) if value.tag == "double" else int(text)
            (dynamic if prop.get("stdset") == "0" else properties)[prop.get("name")] = text
        if element.get("class") in ("QComboBox", "ctkComboBox"):
            properties["items"] = [item.find("property/string").text for item in element.findall("item")]
            properties["currentIndex"] = 0 if properties["items"] else -1
        widget = FakeWidget(element.get("class"), element.get("name"), properties)
        widget._dynamic = dynamic
        top.children.append(widget)
    return top


def childWidgetVariables(widget: FakeWidget):
    ui = types.SimpleNamespace()
    for child in widget.children:
        setattr(ui, child.objectName, child)
    return ui


# --- the parameter node wrapper ------------------------------------------------------------------------------------

def parameterNodeWrapper(cls):
    """A wrapper class over a ``vtkMRMLScriptedModuleNode``, applying Slicer's rules (slicerrules.py) to every write."""
    hints = typing.get_type_hints(cls, include_extras=True)

    def _isNodeField(annotation) -> bool:
        base = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
        inner = typing.get_args(base)[0] if typing.get_origin(base) is list else base
        import slicer

        args = typing.get_args(inner) if typing.get_origin(inner) is typing.Union else (inner,)
        return all(a is type(None) or (isinstance(a, type) and issubclass(a, slicer.vtkMRMLNode)) for a in args)

    class Wrapper:
        def __init__(self, parameterNode):
            object.__setattr__(self, "parameterNode", parameterNode)
            object.__setattr__(self, "_guis", {})
            for name, annotation in hints.items():  # wrapper.py: defaults are written to a fresh node
                if parameterNode.GetParameter(f"{name}.set") != "1":
                    setattr(self, name, defaultOf(annotation, getattr(cls, name, ...)))

        def __getattr__(self, name):
            if name not in hints:
                raise AttributeError(name)
            node = self.parameterNode
            if _isNodeField(hints[name]):
                if typing.get_origin(hints[name]) is list:
                    count = int(node.GetParameter(f"{name}.len") or 0)
                    return [node.GetNodeReference(f"{name}.{i}") for i in range(count)]
                return node.GetNodeReference(name)
            return _values(node).get(name)

        def __setattr__(self, name, value):
            if name not in hints:
                raise AttributeError(f"{cls.__name__} has no parameter '{name}'")
            error = writeError(hints[name], value)
            if error:
                kind, _, text = error.partition(": ")
                raise (TypeError if kind == "TypeError" else ValueError)(text)
            node = self.parameterNode
            if _isNodeField(hints[name]):
                if typing.get_origin(hints[name]) is list:
                    for i, item in enumerate(value):
                        node.SetNodeReferenceID(f"{name}.{i}", item.GetID() if item is not None else None)
                    node.SetParameter(f"{name}.len", str(len(value)))
                else:
                    node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                _values(node)[name] = value
            node.SetParameter(f"{name}.set", "1")
            node.Modified()

        def AddObserver(self, event, callback, priority=0.0):
            return self.parameterNode.AddObserver(event, callback, priority)

        def RemoveObserver(self, tag):
            self.parameterNode.RemoveObserver(tag)

        def connectParametersToGui(self, mapping):
            tag = len(self._guis) + 1
            self._guis[tag] = mapping
            return tag

        def connectGui(self, ui):  # as at v5.8.0: no tag is returned (the shells must not rely on it)
            self.connectParametersToGui({})

        def disconnectGui(self, tag):
            self._guis.pop(tag, None)

        def __bool__(self):
            return True

    Wrapper.__name__ = cls.__name__
    return Wrapper


_VALUES: dict[str, dict] = {}


def _values(node) -> dict:
    """Plain values of a parameter node (Slicer serialises them as strings; their Python values are kept here)."""
    return _VALUES.setdefault(node.GetID(), {})


# --- the application -----------------------------------------------------------------------------------------

class FakeTimer:
    instances: list["FakeTimer"] = []

    def __init__(self):
        self.running, self.interval, self.singleShot, self.slots = False, 0, False, []
        FakeTimer.instances.append(self)

    def setInterval(self, milliseconds):
        self.interval = milliseconds

    def setSingleShot(self, flag):
        self.singleShot = flag

    def connect(self, signal, slot):
        self.slots.append(slot)

    def start(self):
        self.running = True

    def stop(self):
        self.running = False

    def fire(self):
        if self.running:
            if self.singleShot:
                self.running = False
            for slot in self.slots:
                slot()


class FakeSlicer:
    """Installs the stand-ins; ``open(moduleName)`` makes a module's widget as Slicer does (``setup`` + ``enter``)."""

    def __init__(self, scene, monkeypatch):
        import slicer

        self.scene, self.monkeypatch = scene, monkeypatch
        self.errors, self.warnings, self.layouts, self.shownTables, self.charts = [], [], [], [], []
        self.confirm = True
        self.questions = []
        self.widgets = []
        FakeTimer.instances = []
        _VALUES.clear()
        qt = types.ModuleType("qt")
        qt.QTimer = FakeTimer
        qt.QFileDialog = types.SimpleNamespace(getOpenFileName=lambda *args: self.fileToOpen)
        qt.QTableWidgetItem = lambda text: text
        self.fileToOpen = ""
        wrapperModule = types.ModuleType("slicer.parameterNodeWrapper")
        wrapperModule.parameterNodeWrapper, wrapperModule.Choice = parameterNodeWrapper, Choice
        wrapperModule.WithinRange = WithinRange
        i18n = types.ModuleType("slicer.i18n")
        i18n.tr = lambda text: text
        scripted = types.ModuleType("slicer.ScriptedLoadableModule")
        scripted.ScriptedLoadableModule = _Module
        scripted.ScriptedLoadableModuleWidget = _Widget
        scripted.ScriptedLoadableModuleLogic = _Logic
        scripted.ScriptedLoadableModuleTest = _Test
        for name, module in (("qt", qt), ("ctk", types.ModuleType("ctk")), ("slicer.parameterNodeWrapper", wrapperModule),
                             ("slicer.i18n", i18n), ("slicer.ScriptedLoadableModule", scripted)):
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
        monkeypatch.setattr(slicer, "app", _App(self), raising=False)
        monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
            plots=types.SimpleNamespace(logic=lambda: types.SimpleNamespace(ShowChartInLayout=self.charts.append)),
            tables=types.SimpleNamespace(logic=lambda: types.SimpleNamespace(
                GetLayoutWithTable=lambda layout: layout if layout in (34, 35, 38) else 34))), raising=False)
        util = slicer.util
        monkeypatch.setattr(util, "loadUI", loadUI)
        monkeypatch.setattr(util, "childWidgetVariables", childWidgetVariables)
        monkeypatch.setattr(util, "errorDisplay", lambda text, *a, **k: self.errors.append(str(text)))
        monkeypatch.setattr(util, "warningDisplay", lambda text, *a, **k: self.warnings.append(str(text)))
        monkeypatch.setattr(util, "confirmOkCancelDisplay", lambda *a, **k: self.confirm)
        monkeypatch.setattr(util, "confirmYesNoDisplay", self._confirmYesNo)
        monkeypatch.setattr(util, "setSliceViewerLayers", lambda **kwargs: None)
        monkeypatch.setattr(util, "tryWithErrorDisplay", self._tryWithErrorDisplay)
        for name in [n for n in sys.modules if n.split(".")[0] in ("DLSegment", "DLRegister", "DLSynthesize",
                                                                     "DLClassify")]:
            monkeypatch.delitem(sys.modules, name)  # each test imports the shells against these stand-ins

    def _confirmYesNo(self, text, windowTitle=None, parent=None, **kwargs):
        """slicer.util.confirmYesNoDisplay (util.py): the question and its details are kept; answers ``confirm``."""
        self.questions.append({"text": str(text), "windowTitle": windowTitle, **kwargs})
        return self.confirm

    @contextlib.contextmanager
    def _tryWithErrorDisplay(self, message=None, show=True, waitCursor=False):
        """slicer.util.tryWithErrorDisplay (util.py): an exception becomes an error message, not a traceback."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{message}\n{exc}" if message else str(exc))

    def open(self, moduleName: str):
        """Import the shell, make its module object and widget, ``setup()`` and ``enter()`` it."""
        import importlib

        shell = importlib.import_module(moduleName)
        module = getattr(shell, moduleName)(types.SimpleNamespace())
        widget = getattr(shell, f"{moduleName}Widget")(types.SimpleNamespace(isEntered=True))
        self.widgets.append(widget)
        widget.setup()
        widget.enter()
        return shell, module, widget

    def close(self) -> None:
        """Slicer's exit: every module widget's ``cleanup()`` (observers removed, a running job stopped)."""
        for widget in self.widgets:
            widget.cleanup()
        self.widgets = []

    def runTimers(self, widget, timeout: float = 300) -> None:
        """Fire the widget's poll timer until it stops (the Qt event loop, for the test)."""
        import time

        deadline = time.monotonic() + timeout
        while widget._timer.running:
            if time.monotonic() > deadline:
                raise TimeoutError("the job did not finish")
            widget._timer.fire()
            time.sleep(0.05)


class _Layout:
    def addWidget(self, widget):
        self.widget = widget


class _Module:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = type(self).__name__


class _Widget:
    def __init__(self, parent=None):
        self.parent = parent or types.SimpleNamespace(isEntered=True)
        self.moduleName = type(self).__name__[: -len("Widget")]
        self.layout = _Layout()

    def resourcePath(self, filename):
        return str(ROOT / self.moduleName / "Resources" / filename)

    def setup(self):
        pass


class _Logic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__[: -len("Logic")]

    def getParameterNode(self):
        import slicer

        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            slicer.mrmlScene.AddNode(node)
        return node


class _Test:
    def delayDisplay(self, message, msec=None):
        pass


class _App:
    def __init__(self, fake: FakeSlicer):
        self.fake = fake
        self._layout = _LayoutManager(fake)

    def applicationDirPath(self):
        return str(Path(sys.executable).parent)

    def layoutManager(self):
        return self._layout

    def applicationLogic(self):
        import slicer

        fake = self.fake

        class Logic:
            def GetSelectionNode(self):
                node = fake.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
                if node is None:
                    node = fake.scene.AddNode(slicer.vtkMRMLSelectionNode())
                return node

            def PropagateTableSelection(self):
                fake.shownTables.append((fake.layouts[-1] if fake.layouts else None,
                                         self.GetSelectionNode().GetActiveTableID()))

        return Logic()

    def testingEnabled(self):
        return False


class _LayoutManager:
    def __init__(self, fake):
        self.fake, self.layout = fake, 3  # SlicerLayoutFourUpView: no table view

    def setLayout(self, layout):
        self.layout = layout
        self.fake.layouts.append(layout)

    def sliceWidget(self, name):
        return None
