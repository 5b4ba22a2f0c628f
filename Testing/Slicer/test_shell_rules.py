"""Rules of the Slicer layer that need no Slicer to check: node selectors list what their setting accepts, the
self-tests install their dependencies first and are registered with ctest, and the code Slicer loads parses and
imports on the oldest supported release's Python (Slicer 5.8: Python 3.9)."""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("DLClassify", "DLRegister", "DLSegment", "DLSynthesize")

# node classes whose instances Slicer makes as subclasses: vtkSlicerTransformLogic creates linear, B-spline or grid
# transform nodes; volumes are scalar / labelmap / vector... A selector of such a class that hides child types
# lists (almost) nothing.
SUBCLASSED_IN_PRACTICE = ("vtkMRMLTransformNode", "vtkMRMLVolumeNode", "vtkMRMLDisplayableNode", "vtkMRMLNode")


def listed(selector: dict, node) -> bool:
    """Whether a qMRMLNodeComboBox lists ``node``: qMRMLSortFilterProxyModel::filterAcceptsRow
    (Libs/MRML/Widgets/qMRMLSortFilterProxyModel.cxx at v5.8.0): ``node->IsA(type)`` for one of ``nodeTypes``,
    and with ``showChildNodeTypes`` false also ``type == node->GetClassName()``; ``hideChildNodeTypes`` drop."""
    if any(node.IsA(hidden) for hidden in selector["hideChildNodeTypes"]):
        return False
    return any(node.IsA(t) and (selector["showChildNodeTypes"] or t == node.GetClassName())
               for t in selector["nodeTypes"])


def selectors(module: str) -> dict[str, dict]:
    """``{objectName: {nodeTypes, showChildNodeTypes, hideChildNodeTypes}}`` of the module's node selectors
    (Designer omits properties left at their defaults: showChildNodeTypes true, no hidden types)."""
    tree = ElementTree.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    found = {}
    for widget in tree.iter("widget"):
        if widget.get("class") != "qMRMLNodeComboBox":
            continue
        entry = {"nodeTypes": [], "showChildNodeTypes": True, "hideChildNodeTypes": []}
        for prop in widget.findall("property"):
            name = prop.get("name")
            if name in ("nodeTypes", "hideChildNodeTypes"):
                entry[name] = [s.text for s in prop.iter("string")]
            elif name == "showChildNodeTypes":
                entry[name] = prop.find("bool").text == "true"
        found[widget.get("name")] = entry
    return found


@pytest.mark.parametrize("module", MODULES)
def test_selectors_of_base_classes_list_their_subclasses(module):
    import slicer

    problems = []
    for name, selector in selectors(module).items():
        for base in set(selector["nodeTypes"]) & set(SUBCLASSED_IN_PRACTICE):
            subclasses = [getattr(slicer, c)() for c in dir(slicer) if c.startswith("vtkMRML") and c.endswith("Node")
                          and isinstance(getattr(slicer, c), type) and issubclass(getattr(slicer, c), getattr(slicer, base))]
            hidden = [n.GetClassName() for n in subclasses if n.GetClassName() != base and not listed(selector, n)]
            if hidden:
                problems.append(f"{name}: hides {sorted(hidden)[:4]}... (showChildNodeTypes false)")
    assert problems == []


def test_the_initial_transform_selector_lists_linear_bspline_and_grid_transforms():
    import slicer

    selector = selectors("DLRegister")["initialTransformSelector"]
    for className in ("vtkMRMLLinearTransformNode", "vtkMRMLBSplineTransformNode", "vtkMRMLGridTransformNode"):
        assert listed(selector, getattr(slicer, className)()), className
    # what the rule reads: the old setting listed none of them
    old = dict(selector, showChildNodeTypes=False)
    assert not listed(old, slicer.vtkMRMLLinearTransformNode())


def _testClass(module: str) -> ast.ClassDef:
    tree = ast.parse((ROOT / module / f"{module}.py").read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{module}Test")


def _calls(function: ast.FunctionDef) -> list[str]:
    return [n.func.id for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]


@pytest.mark.parametrize("module", MODULES)
def test_self_tests_install_their_dependencies_before_anything_imports_them(module):
    """``setUp`` (run before every test method, by runTest and by unittest) installs PyTorch / MONAI and the sample
    data's packages; no test method imports anything heavy before it."""
    testClass = _testClass(module)
    setUp = next(f for f in testClass.body if isinstance(f, ast.FunctionDef) and f.name == "setUp")
    assert _calls(setUp)[:2] == ["ensureDependencies", "ensureSampleDependencies"], _calls(setUp)
    runTest = next(f for f in testClass.body if isinstance(f, ast.FunctionDef) and f.name == "runTest")
    tests = [f.name for f in testClass.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]
    called = [n.func.attr for n in ast.walk(runTest) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert set(tests) <= set(called), "runTest runs every test method"
    shell = ast.parse((ROOT / module / f"{module}.py").read_text())
    topImports = {alias.name.split(".")[0] for node in shell.body if isinstance(node, (ast.Import, ast.ImportFrom))
                  for alias in node.names} | {node.module.split(".")[0] for node in shell.body
                                               if isinstance(node, ast.ImportFrom) and node.module}
    assert not topImports & {"torch", "monai", "numpy", "nilearn"}


@pytest.mark.parametrize("module", MODULES)
def test_self_tests_are_registered_with_ctest(module):
    text = (ROOT / module / "CMakeLists.txt").read_text()
    assert re.search(r"if\(BUILD_TESTING\)\s*(#[^\n]*\n\s*)*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)",
                     text)


def _slicerLoadedFiles() -> list[Path]:
    """The Python files Slicer imports: the shells, their libraries and DLCommon (not the web app, which runs on
    the headless package only)."""
    files = [ROOT / m / f"{m}.py" for m in MODULES] + [ROOT / "meddl.py"]
    files += [p for m in MODULES for p in (ROOT / m / f"{m}Lib").rglob("*.py")]
    files += [p for p in (ROOT / "DLCommon").glob("*.py")]
    return sorted(files)


PY310_CALLS = re.compile(r"zip\([^)]*strict=|dataclass\([^)]*(slots|kw_only)=|\bisinstance\([^)]*\|")


@pytest.mark.parametrize("path", _slicerLoadedFiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_slicer_loads_parses_on_python_39(path):
    """Slicer 5.8 ships Python 3.9: no 3.10+ syntax, no ``X | Y`` evaluated at run time (annotations are strings
    under ``from __future__ import annotations``), no 3.10+ keyword arguments."""
    source = path.read_text()
    ast.parse(source, feature_version=(3, 9))
    tree = ast.parse(source)
    inAnnotations = {id(n) for annotation in _annotations(tree) for n in ast.walk(annotation)}
    unions = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
              and id(n) not in inAnnotations
              and any(isinstance(side, ast.Constant) and side.value is None or isinstance(side, ast.Name)
                      and side.id in ("str", "int", "float", "bool", "dict", "list", "Path") for side in (n.left, n.right))]
    annotated = any(isinstance(n, (ast.AnnAssign, ast.arg)) and getattr(n, "annotation", None) is not None
                    for n in ast.walk(tree)) or any(isinstance(n, ast.FunctionDef) and n.returns for n in ast.walk(tree))
    if annotated:
        assert "from __future__ import annotations" in source or not _hasPep604Annotation(tree), path
    assert not unions, f"{path}: 'X | Y' outside annotations needs Python 3.10"
    assert not PY310_CALLS.search(source), path


def _annotations(tree) -> list:
    found = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.AnnAssign, ast.arg)) and n.annotation]
    return found + [n.returns for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and n.returns]


def _hasPep604Annotation(tree) -> bool:
    return any(isinstance(a, ast.BinOp) for annotation in _annotations(tree) for a in ast.walk(annotation))


SCHEMA_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                     "dicom_support_rule", "build_subdirectory", "enabled", "tier"}  # schema v1.0.2: no others


def test_the_supported_slicer_releases_are_stated():
    """The catalog entry has no field for it (Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json:
    additionalProperties false; the Extensions Index branch per release says where it is built): README and the
    extension's description state it."""
    entry = json.loads((ROOT / "MedDL.json").read_text())
    assert set(entry) <= SCHEMA_PROPERTIES and {"$schema", "category", "scm_url"} <= set(entry)
    readme = (ROOT / "README.md").read_text()
    assert "Slicer 5.8" in readme and "Python 3.9" in readme
    assert "Slicer 5.8 or newer" in (ROOT / "CMakeLists.txt").read_text()
