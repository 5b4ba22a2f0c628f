"""Static checks of a Slicer scripted-module shell (Slicer itself cannot run here).

A module folder ``<Name>/`` holds ``<Name>.py`` and ``Resources/UI/<Name>.ui``. The checks: the module file
defines the module, widget, logic and test classes (and a parameter node: a ``@parameterNodeWrapper`` class, or
one built from the settings in ``<Name>Lib/parameters.py``); every ``SlicerParameterName`` used in the .ui is a
field of that parameter node, and a spin box's range, first value and a combo box's items equal the setting's
definition; every MRML widget receives the scene; every ``self.ui.<widget>`` the shell (or the shared
DLCommon.shell mixin) uses exists in the .ui; nothing below the shell (``<Name>Lib/``) imports ``qt``, ``ctk`` or
``slicer.app``.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from DLCommon.parameters import annotationText

ROOT = Path(__file__).resolve().parents[2]


def moduleFolders(root: Path = ROOT) -> list[Path]:
    """Top-level folders that are scripted modules (``X/X.py`` exists)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / f"{p.name}.py").is_file())


def _baseNames(node: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases]


def _decoratorNames(node: ast.ClassDef) -> list[str]:
    names = []
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        names.append(target.id if isinstance(target, ast.Name) else getattr(target, "attr", ""))
    return names


SLICER_CALLS = {"setup", "enter", "exit", "cleanup", "onSceneStartClose", "onSceneEndClose"}  # Slicer calls these


def _selfNames(tree: ast.AST) -> set[str]:
    """Every ``self.<name>`` in ``tree``."""
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and getattr(n.value, "id", "") == "self"}


def _uiNames(tree: ast.AST) -> set[str]:
    """Every ``<name>`` of ``self.ui.<name>`` in ``tree``."""
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)
            and n.value.attr == "ui" and getattr(n.value.value, "id", "") == "self"}


def _baseNamesIn(tree: ast.AST) -> set[str]:
    return {name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for name in _baseNames(c)}


def _uiGuard(statement) -> str | None:
    """``X`` for ``if hasattr(self.ui, "X"):`` or ``if ... and hasattr(self.ui, "X"):`` (the mixin's code for
    widgets only some modules have), else None."""
    test = getattr(statement, "test", None) if isinstance(statement, ast.If) else None
    tests = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
    for test in tests:
        if isinstance(test, ast.Call) and getattr(test.func, "id", "") == "hasattr" and len(test.args) == 2 \
                and isinstance(test.args[0], ast.Attribute) and test.args[0].attr == "ui" \
                and isinstance(test.args[1], ast.Constant):
            return test.args[1].value
    return None


def _withoutGuardedBlocks(function: ast.FunctionDef, widgets: set[str]) -> ast.FunctionDef:
    """``function`` without the bodies of ``if hasattr(self.ui, "X")`` for an ``X`` that ``widgets`` lacks."""
    import copy

    pruned = copy.deepcopy(function)
    for node in ast.walk(pruned):
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                kept = []
                for statement in block:
                    guard = _uiGuard(statement)
                    if guard is not None and guard not in widgets:
                        kept += statement.orelse
                    else:
                        kept.append(statement)
                setattr(node, field, kept)
    return pruned


def _reachedUiNames(mixinTree: ast.AST, roots: set[str], widgets: set[str] | None = None) -> set[str]:
    """The ``self.ui`` names used by the mixin's methods reachable (through ``self.<method>``) from ``roots``; code
    under ``if hasattr(self.ui, "X")`` counts only when ``widgets`` (the .ui's) has X."""
    methods = {f.name: f for f in ast.walk(mixinTree) if isinstance(f, ast.FunctionDef)}
    if widgets is not None:
        methods = {name: _withoutGuardedBlocks(f, widgets) for name, f in methods.items()}
    reached, todo = set(), [r for r in roots if r in methods]
    while todo:
        method = todo.pop()
        if method not in reached:
            reached.add(method)
            todo += [n for n in _selfNames(methods[method]) if n in methods]
    return set().union(*(_uiNames(methods[m]) for m in reached)) if reached else set()


def _parameterNode(tree: ast.AST, classes: dict, folder: Path):
    """``(class name, Parameter list or None)`` of the shell's parameter node: a ``@parameterNodeWrapper`` class
    (fields read from its annotations), or ``X = parameterNodeWrapper(parameterNodeClass(..., PARAMETERS))``
    built from ``<Name>Lib/parameters.py`` (fields read from there); ``(None, None)`` if neither."""
    for c in classes.values():
        if "parameterNodeWrapper" in _decoratorNames(c):
            return c.name, None
    for statement in tree.body:
        call = getattr(statement, "value", None)
        if isinstance(statement, ast.Assign) and isinstance(call, ast.Call) \
                and getattr(call.func, "id", "") == "parameterNodeWrapper":
            return statement.targets[0].id, _libraryParameters(folder)
    return None, None


def _libraryParameters(folder: Path) -> list:
    """The ``PARAMETERS`` of ``<folder>/<Name>Lib/parameters.py`` (imports neither torch nor qt)."""
    import importlib.util
    import sys

    path = folder / f"{folder.name}Lib" / "parameters.py"
    if str(ROOT) not in sys.path:  # it imports DLCommon.parameters
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(f"_shellcheck_{folder.name}_parameters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.PARAMETERS)


def _definitionMismatches(widget, parameter, uiName: str) -> list[str]:
    """Where a Designer widget's range, combo items or default differ from the parameter's definition."""
    problems = []
    properties = {prop.get("name"): prop for prop in widget.findall("property")}

    def number(name):
        prop = properties.get(name)
        text = None if prop is None else (prop.findtext("number") or prop.findtext("double"))
        return None if text is None else float(text)

    label = f"{uiName}: '{widget.get('name')}' ({parameter.name})"
    if parameter.kind in ("int", "float"):
        for bound, expected in (("minimum", parameter.minimum), ("maximum", parameter.maximum)):
            found = number(bound)
            if found is not None and expected is not None and found != float(expected):
                problems.append(f"{label} has {bound} {found:g}; the definition says {expected:g}")
        found = number("value")
        if found is not None and found != float(parameter.default):
            problems.append(f"{label} shows {found:g} at first; the default is {parameter.default:g}")
    if parameter.kind == "choice" and widget.get("class") == "QComboBox":
        items = [item.findtext("property/string") for item in widget.findall("item")]
        if items and tuple(items) != tuple(parameter.choices):
            problems.append(f"{label} lists {items}; the choices are {list(parameter.choices)}")
    return problems


def checkModuleShell(folder: Path) -> list[str]:
    """Problems found in the module at ``folder`` (empty list: the shell is well-formed)."""
    name = folder.name
    problems = []
    tree = ast.parse((folder / f"{name}.py").read_text())
    classes = {c.name: c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)}
    expected = {name: "ScriptedLoadableModule", f"{name}Widget": "ScriptedLoadableModuleWidget",
                f"{name}Logic": "ScriptedLoadableModuleLogic", f"{name}Test": "ScriptedLoadableModuleTest"}
    for className, base in expected.items():
        if className not in classes:
            problems.append(f"{name}.py does not define class {className}")
        elif base not in _baseNames(classes[className]):
            problems.append(f"{className} does not derive from {base}")
    heavy = ("torch", "monai", "DLCommon", f"{name}Lib")
    light = ("DLCommon.shell", "DLCommon.parameters", f"{name}Lib.parameters")  # import neither torch nor qt
    for statement in tree.body:  # module level: the module must load in Slicer before PyTorch is installed
        imported = ([a.name for a in statement.names] if isinstance(statement, ast.Import)
                    else [f"{statement.module}.{a.name}" if statement.module == f"{name}Lib" else statement.module
                          for a in statement.names] if isinstance(statement, ast.ImportFrom) else [])
        if any((m or "").split(".")[0] in heavy and m not in light for m in imported):
            problems.append(f"{name}.py imports {', '.join(imported)} at module level; import it inside methods")
    parameterNodeName, parameters = _parameterNode(tree, classes, folder)
    if parameterNodeName is None:
        problems.append(f"{name}.py has no @parameterNodeWrapper class")
        return problems
    annotations = {p.name: annotationText(p) for p in parameters} if parameters is not None else {
        stmt.target.id: ast.unparse(stmt.annotation) for stmt in classes[parameterNodeName].body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)}
    fields = set(annotations)
    uiFile = folder / "Resources" / "UI" / f"{name}.ui"
    if not uiFile.is_file():
        problems.append(f"{uiFile.relative_to(folder.parent)} is missing")
        return problems
    for widget in ElementTree.parse(uiFile).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") != "SlicerParameterName":
                continue
            value = prop.findtext("string") or ""
            if value not in fields:
                problems.append(f"{uiFile.name}: SlicerParameterName '{value}' is not a field of {parameterNodeName}")
            elif widget.get("class") == "QComboBox" and "Choice(" not in annotations[value] \
                    and annotations[value].split("[")[0] in ("str", "int", "float", "bool", "Annotated"):
                # Slicer's QComboBox connector refuses plain str/int/float/bool without a Choice annotation
                problems.append(f"{uiFile.name}: QComboBox '{widget.get('name')}' is bound to '{value}', "
                                "which needs Annotated[..., Choice([...])]")
            elif annotations[value].startswith(("list[", "tuple[", "dict[")):
                problems.append(f"{uiFile.name}: '{value}' is a container; no widget connector exists for it")
            elif parameters is not None:
                problems += _definitionMismatches(widget, next(p for p in parameters if p.name == value), uiFile.name)
    # node selectors get the scene through <connections> from the module widget's mrmlSceneChanged signal
    tree = ElementTree.parse(uiFile)
    connected = {c.findtext("receiver") for c in tree.iter("connection")
                 if (c.findtext("signal") or "").startswith("mrmlSceneChanged")}
    for widget in tree.iter("widget"):
        if widget.get("class", "").startswith("qMRML") and widget.get("class") != "qMRMLWidget" \
                and widget.get("name") not in connected:
            problems.append(f"{uiFile.name}: '{widget.get('name')}' gets no mrmlSceneChanged connection "
                            "(it would list no nodes)")
    # every self.ui.<name> the shell, or a method of the shared mixin (DLCommon/shell.py) it reaches, uses exists
    widgets = {w.get("name") for w in tree.iter("widget")}
    shellTree = ast.parse((folder / f"{name}.py").read_text())
    used = {(folder / f"{name}.py").name: _uiNames(shellTree)}
    mixin = ROOT / "DLCommon" / "shell.py"
    if mixin.is_file() and "ModuleWidgetMixin" in _baseNamesIn(shellTree):
        used[mixin.name] = _reachedUiNames(ast.parse(mixin.read_text()), _selfNames(shellTree) | SLICER_CALLS, widgets)
    for source, names in used.items():
        problems += [f"{source} uses self.ui.{n}, which {uiFile.name} does not define" for n in sorted(names - widgets)]
    for libFile in sorted((folder / f"{name}Lib").rglob("*.py")) if (folder / f"{name}Lib").is_dir() else []:
        for node in ast.walk(ast.parse(libFile.read_text())):
            imported = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m.split(".")[0] in ("qt", "ctk") for m in imported):
                problems.append(f"{libFile.relative_to(folder.parent)} imports qt/ctk (only the shell may)")
            if isinstance(node, ast.Attribute) and node.attr == "app" and getattr(node.value, "id", "") == "slicer":
                problems.append(f"{libFile.relative_to(folder.parent)} uses slicer.app (only the shell may)")
    return problems
