"""Static checks of what Slicer does with MedDL's module folders (Slicer cannot run here).

Each check returns a list of problem strings (empty: fine) and is re-stated from the source named below.

:func:`uiPropertyProblems`: a ``<property>`` of a ``<widget>`` in a .ui must be a writable Q_PROPERTY of the
widget's class or one of its bases, per ``widget_properties.json`` (built from Qt 5.15 ``qwidget.h`` etc., CTK
``Libs/Widgets/ctk*.h`` at Slicer 5.8's CTK tag, Slicer ``Libs/MRML/Widgets/qMRML*.h`` at v5.8.0). ``slicer.util.
loadUI`` -> QUiLoader/QFormBuilder applies each one with ``QObject::setProperty``, which for an unknown name
silently creates a dynamic property that has no effect (``stdset="0"`` properties such as ``SlicerParameterName``
are meant to be dynamic and are skipped).

:func:`installLayout` / :func:`installCollisions`: where every script and resource of a CMakeLists.txt lands.
``slicerMacroBuildScriptedModule`` (Slicer ``CMake/SlicerMacroBuildScriptedModule.cmake`` at v5.8.0) forwards
SCRIPTS and RESOURCES to ``ctkMacroCompilePythonScript`` with ``DESTINATION_DIR
${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}`` plus ``/<source folder name>`` only ``WITH_SUBDIR``
(which also drops ``NO_INSTALL_SUBDIR``); it requires each listed ``value`` or ``value.py`` to exist. CTK
``CMake/ctkMacroCompilePythonScript.cmake`` (CTK 82cae57, Slicer 5.8's) copies ``${SOURCE_DIR}/${file}`` to
``${DESTINATION_DIR}/${file}``, the path *as listed* (a script gets ``.py`` appended when its extension does not
match ``py``; SOURCE_DIR defaults to the current source dir), and installs the destination's contents
(``NO_INSTALL_SUBDIR``) or the destination folder itself into ``INSTALL_DIR``.

:func:`logicAttributeProblems`: every ``self.logic.<name>`` a shell uses, and every ``logic.<name>`` the shared
parameter definitions use, exists on the shell's logic class, on Slicer's ``ScriptedLoadableModuleLogic``
(``Base/Python/slicer/ScriptedLoadableModule.py`` at v5.8.0: ``__init__`` sets ``moduleName`` and
``isSingletonParameterNode``; methods ``getParameterNode``, ``getAllParameterNodes``, ``createParameterNode``),
or, when the logic delegates with ``__getattr__``, on the engine class named by the module's registration.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import posixpath
import re
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODULES = ("DLClassify", "DLSegment", "DLRegister", "DLSynthesize")
WIDGET_PROPERTIES = HERE / "widget_properties.json"

# --------------------------------------------------------------------------------------------------------------
# 1. .ui properties
# --------------------------------------------------------------------------------------------------------------

# Written by Qt Designer and handled by QFormBuilder itself, not through a Q_PROPERTY (widget_properties.json
# "_about"): QLabel's buddy.
FORM_BUILDER_PROPERTIES = {"QLabel": {"buddy"}}


def loadWidgetTable(path: Path = WIDGET_PROPERTIES) -> dict:
    return json.loads(Path(path).read_text())["classes"]


def _chain(table: dict, className: str) -> list[str]:
    """``className`` and its bases, nearest first (only those in the table)."""
    chain = []
    while className and className in table and className not in chain:
        chain.append(className)
        className = table[className].get("base")
    return chain


def classProperties(table: dict, className: str) -> tuple[set[str], set[str]]:
    """(writable properties, read-only properties) of ``className`` with everything it inherits."""
    writable, readOnly = set(), set()
    for name in _chain(table, className):
        writable |= set(table[name].get("properties", ()))
        writable |= FORM_BUILDER_PROPERTIES.get(name, set())
        readOnly |= set(table[name].get("read_only", ()))
    return writable, readOnly


def uiPropertyProblems(uiFile: Path, table: dict | None = None, label: str | None = None) -> list[str]:
    """Every ``<property name=P>`` directly under a ``<widget class=C>`` (not ``stdset="0"``) must be a writable
    property of C or a base of C. ``<layout>`` and ``<item>`` elements are not widgets; their properties are not
    looked at."""
    table = loadWidgetTable() if table is None else table
    label = label or str(uiFile)
    problems = []
    for widget in ElementTree.parse(uiFile).getroot().iter("widget"):
        className, objectName = widget.get("class"), widget.get("name")
        if className not in table:
            problems.append(f"{label}: widget {objectName} ({className}): class {className} is not in "
                            f"widget_properties.json; its properties cannot be checked")
            continue
        writable, readOnly = classProperties(table, className)
        header = table[className].get("header", "?")
        for prop in widget.findall("property"):
            if prop.get("stdset") == "0":
                continue
            name = prop.get("name")
            if name in writable:
                continue
            if name in readOnly:
                problems.append(f"{label}: widget {objectName} ({className}): property {name} is read-only on "
                                f"{className} or its bases (header {header}); the loader cannot set it")
            else:
                problems.append(f"{label}: widget {objectName} ({className}): property {name} is not a property "
                                f"of {className} or its bases (header {header})")
    return problems


def uiPropertyCount(uiFile: Path) -> int:
    """How many widget properties :func:`uiPropertyProblems` looks at (to show it is not vacuous)."""
    return sum(1 for w in ElementTree.parse(uiFile).getroot().iter("widget")
               for p in w.findall("property") if p.get("stdset") != "0")


# --------------------------------------------------------------------------------------------------------------
# 2. CMake: where scripts and resources are installed
# --------------------------------------------------------------------------------------------------------------

BINARY_DIR = "<build>"
QTSCRIPTEDMODULES_LIB_DIR = "lib/Slicer-X.Y/qt-scripted-modules"  # Slicer_QTSCRIPTEDMODULES_LIB_DIR
INSTALL_QTSCRIPTEDMODULES_LIB_DIR = "<install>/" + QTSCRIPTEDMODULES_LIB_DIR


class CMakeError(ValueError):
    pass


_TOKEN = re.compile(r"""
    (?P<bracketcomment>\#\[(?P<eq1>=*)\[.*?\](?P=eq1)\])
  | (?P<comment>\#[^\n]*)
  | (?P<bracket>\[(?P<eq2>=*)\[.*?\](?P=eq2)\])
  | (?P<quoted>"(?:\\.|[^"\\])*")
  | (?P<open>\()
  | (?P<close>\))
  | (?P<space>\s+)
  | (?P<word>(?:\\.|[^\s()"\#\\])+)
""", re.S | re.X)


def parseCMake(text: str) -> list[tuple[str, list[tuple[str, bool]]]]:
    """The command invocations of a CMake file: ``[(name, [(argument, quoted), ...]), ...]`` with comments
    removed (``#...`` and ``#[[...]]``); nested parentheses inside arguments stay as words."""
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise CMakeError(f"cannot tokenize CMake at offset {pos}: {text[pos:pos + 40]!r}")
        pos = m.end()
        kind = next(k for k in ("bracketcomment", "comment", "bracket", "quoted", "open", "close", "space", "word")
                    if m.group(k) is not None)
        if kind in ("bracketcomment", "comment", "space"):
            continue
        tokens.append((kind, m.group(kind)))
    commands, i = [], 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind != "word" or i + 1 >= len(tokens) or tokens[i + 1][0] != "open":
            raise CMakeError(f"expected a command, found {value!r}")
        i += 2
        depth, args = 1, []
        while True:
            if i >= len(tokens):
                raise CMakeError(f"unterminated command {value}(")
            k, v = tokens[i]
            i += 1
            if k == "open":
                depth += 1
                args.append(("(", False))
            elif k == "close":
                depth -= 1
                if depth == 0:
                    break
                args.append((")", False))
            elif k == "quoted":
                args.append((v[1:-1], True))
            elif k == "bracket":
                args.append((v[v.index("[", 1) + 1: v.rindex("]", 0, -1)], True))
            else:
                args.append((v, False))
        commands.append((value.lower(), args))
    return commands


def _expand(text: str, variables: dict, where: str) -> str:
    """``${VAR}`` references, innermost first; an undefined variable is an error (never silently empty)."""
    pattern = re.compile(r"\$\{([^${}]*)\}")
    while True:
        m = pattern.search(text)
        if m is None:
            return text
        name = m.group(1)
        if name not in variables:
            raise CMakeError(f"{where}: ${{{name}}} is not defined")
        text = text[:m.start()] + variables[name] + text[m.end():]


def _arguments(args, variables, where) -> list[str]:
    """Expanded arguments as a macro receives them in ARGN (a ``;`` list, so a quoted list splits too); empty
    elements of an unquoted argument vanish, as in CMake."""
    out = []
    for value, quoted in args:
        expanded = _expand(value, variables, where)
        parts = expanded.split(";")
        out.extend(parts if quoted else [p for p in parts if p != ""])
    return out


def _parseKeywords(argv, options, keywords) -> tuple[set[str], dict[str, list[str]]]:
    flags, values, current = set(), {}, None
    for arg in argv:
        if arg in options:
            flags.add(arg)
            current = None
        elif arg in keywords:
            current = arg
            values.setdefault(arg, [])
        elif current is None:
            raise CMakeError(f"unexpected argument {arg!r}")
        else:
            values[current].append(arg)
    return flags, values


def _isAbs(path: str) -> bool:
    return path.startswith("/") or path.startswith("<")


def _norm(path: str) -> str:
    return posixpath.normpath(path)


def _compilePythonScript(target, scripts, resources, sourceDir, destinationDir, installDir, noInstallSubdir,
                         listedIn, binaryDir):
    """ctkMacroCompilePythonScript: one entry per listed file."""
    entries = []
    installRoot = installDir if noInstallSubdir else posixpath.join(installDir, posixpath.basename(destinationDir))
    for kind, files in (("script", scripts), ("resource", resources)):
        for file in files:
            if kind == "script":
                name = posixpath.basename(file)
                ext = name[name.index("."):] if "." in name else ""  # get_filename_component(EXT): from the 1st dot
                if not re.search("py", ext):  # if(NOT "${file_ext}" MATCHES "py")
                    file = f"{file}.py"
            src = file if _isAbs(file) else posixpath.join(sourceDir, file)
            tgtFile = posixpath.relpath(file, binaryDir) if (kind == "script" and _isAbs(file)) else file
            build = _norm(posixpath.join(destinationDir, tgtFile))
            installed = _norm(posixpath.join(installRoot, tgtFile))
            entries.append({"kind": kind, "listed": file, "source": _norm(src), "build": build, "install": installed,
                            "target": target, "cmake": listedIn})
    return entries


def installLayout(cmakeFile: Path, root: Path = ROOT) -> list[dict]:
    """Where every script and resource listed in ``cmakeFile`` is copied (``build``) and installed (``install``),
    as ``slicerMacroBuildScriptedModule`` / ``ctkMacroCompilePythonScript`` compute it. ``source`` is an absolute
    path on this machine; ``build`` / ``install`` use ``<build>`` / ``<install>`` placeholders."""
    cmakeFile = Path(cmakeFile).resolve()
    sourceDir = cmakeFile.parent.as_posix()
    rel = os.path.relpath(cmakeFile.parent, root).replace(os.sep, "/")
    binaryDir = _norm(posixpath.join(BINARY_DIR, rel))
    label = os.path.relpath(cmakeFile, root).replace(os.sep, "/")
    variables = {
        "CMAKE_CURRENT_SOURCE_DIR": sourceDir, "CMAKE_CURRENT_BINARY_DIR": binaryDir,
        "CMAKE_SOURCE_DIR": Path(root).resolve().as_posix(), "CMAKE_BINARY_DIR": BINARY_DIR,
        "Slicer_QTSCRIPTEDMODULES_LIB_DIR": QTSCRIPTEDMODULES_LIB_DIR,
        "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR": INSTALL_QTSCRIPTEDMODULES_LIB_DIR,
    }
    entries = []
    for name, args in parseCMake(cmakeFile.read_text()):
        where = f"{label}: {name}()"
        if name == "set":
            argv = _arguments(args, variables, where)
            if not argv:
                raise CMakeError(f"{where} without a variable")
            values = argv[1:]
            if "PARENT_SCOPE" in values or "CACHE" in values:
                values = values[:values.index("PARENT_SCOPE" if "PARENT_SCOPE" in values else "CACHE")]
            variables[argv[0]] = ";".join(values)
        elif name == "list":
            argv = _arguments(args, variables, where)
            if argv[:1] == ["APPEND"]:
                old = [v for v in variables.get(argv[1], "").split(";") if v]
                variables[argv[1]] = ";".join(old + argv[2:])
        elif name == "slicermacrobuildscriptedmodule":
            flags, values = _parseKeywords(_arguments(args, variables, where),
                                           {"WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE"},
                                           {"NAME", "SCRIPTS", "RESOURCES"})
            subdir = "/" + posixpath.basename(sourceDir) if "WITH_SUBDIR" in flags else ""
            entries += _compilePythonScript(
                values["NAME"][0], values.get("SCRIPTS", []), values.get("RESOURCES", []), sourceDir,
                _norm(f"{BINARY_DIR}/{QTSCRIPTEDMODULES_LIB_DIR}{subdir}"), INSTALL_QTSCRIPTEDMODULES_LIB_DIR,
                "WITH_SUBDIR" not in flags, label, binaryDir)
        elif name == "ctkmacrocompilepythonscript":
            flags, values = _parseKeywords(
                _arguments(args, variables, where), {"NO_INSTALL_SUBDIR", "GLOBAL_TARGET"},
                {"TARGET_NAME", "SCRIPTS", "RESOURCES", "SOURCE_DIR", "DESTINATION_DIR", "INSTALL_DIR"})
            src = ";".join(values.get("SOURCE_DIR", [])) or sourceDir
            src = _norm(src if _isAbs(src) else posixpath.join(sourceDir, src))  # REALPATH
            entries += _compilePythonScript(
                values["TARGET_NAME"][0], values.get("SCRIPTS", []), values.get("RESOURCES", []), src,
                _norm(";".join(values["DESTINATION_DIR"])), ";".join(values["INSTALL_DIR"]),
                "NO_INSTALL_SUBDIR" in flags, label, binaryDir)
    return entries


def subdirectories(cmakeFile: Path) -> list[str]:
    """The folders a CMakeLists.txt adds with ``add_subdirectory``."""
    return [args[0][0] for name, args in parseCMake(Path(cmakeFile).read_text()) if name == "add_subdirectory"]


def installCollisions(entries: list[dict]) -> list[str]:
    """Two listings that are copied to the same build path or installed to the same path."""
    problems = []
    for key in ("build", "install"):
        byPath = {}
        for e in entries:
            byPath.setdefault(e[key], []).append(e)
        for path, same in sorted(byPath.items()):
            if len(same) > 1:
                who = ", ".join(f"{e['cmake']} ({e['target']}) {e['kind']} {e['listed']}" for e in same)
                problems.append(f"{key} path {path} is produced by {len(same)} listings: {who}")
    return problems


def missingSources(entries: list[dict]) -> list[str]:
    return [f"{e['cmake']} ({e['target']}): {e['kind']} {e['listed']} does not exist ({e['source']})"
            for e in entries if not Path(e["source"]).is_file()]


# --------------------------------------------------------------------------------------------------------------
# 3. what the shells call on their logic
# --------------------------------------------------------------------------------------------------------------

# ScriptedLoadableModuleLogic at Slicer v5.8.0 (Base/Python/slicer/ScriptedLoadableModule.py): its methods and the
# attributes its __init__ sets. Pinned against the source by a test when the Slicer mirror is present.
SLICER_LOGIC_METHODS = frozenset({"__init__", "getParameterNode", "getAllParameterNodes", "createParameterNode"})
SLICER_LOGIC_ATTRIBUTES = frozenset({"moduleName", "isSingletonParameterNode"})
SLICER_LOGIC_BASES = {"ScriptedLoadableModuleLogic": SLICER_LOGIC_METHODS | SLICER_LOGIC_ATTRIBUTES}


def attributeUses(path: Path, owner: tuple[str, ...]) -> list[tuple[str, int]]:
    """``(name, line)`` of every ``<owner>.<name>`` in ``path``: owner ``("self", "logic")`` is ``self.logic``,
    ``("logic",)`` a variable ``logic``."""
    uses = []
    for node in ast.walk(ast.parse(Path(path).read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        chain, value = [], node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if isinstance(value, ast.Name) and tuple([value.id, *chain]) == owner:
            uses.append((node.attr, node.lineno))
    return sorted(set(uses), key=lambda u: (u[1], u[0]))


def _selfAssignments(functions) -> set[str]:
    names = set()
    for function in functions:
        for node in ast.walk(function):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        names.add(t.attr)
    return names


def classMembers(classNode: ast.ClassDef) -> set[str]:
    """Methods, class attributes and ``self.<x> = ...`` assignments of a class (ast)."""
    names, functions = set(), []
    for item in classNode.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(item.name)
            functions.append(item)
        elif isinstance(item, ast.Assign):
            names |= {t.id for t in item.targets if isinstance(t, ast.Name)}
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
        elif isinstance(item, ast.ClassDef):
            names.add(item.name)
    return names | _selfAssignments(functions)


def findClass(path: Path, className: str) -> ast.ClassDef | None:
    for node in ast.parse(Path(path).read_text(), str(path)).body:
        if isinstance(node, ast.ClassDef) and node.name == className:
            return node
    return None


def engineMembers(engineClass: type) -> set[str]:
    """``dir()`` of the engine class (so ``hasattr``), plus the ``self.<x> = ...`` attributes its classes' methods
    set (instance attributes that no ``hasattr`` on the class sees)."""
    names = set(dir(engineClass))
    for cls in engineClass.__mro__:
        if cls is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        node = ast.parse(source).body[0]
        names |= _selfAssignments([n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))])
    return names


def _delegation(classNode: ast.ClassDef) -> tuple[bool, bool]:
    """(delegates unknown names with ``__getattr__``, refuses names starting with ``_`` there)."""
    getattrs = [n for n in classNode.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
    if not getattrs:
        return False, False
    source = ast.unparse(getattrs[0])
    return True, bool(re.search(r"\.startswith\(\s*['\"]_['\"]\s*\)", source))


def engineImports(classNode: ast.ClassDef) -> list[str]:
    """``"module:Class"`` of every ``from module import Class`` inside the logic class (its ``engine()``)."""
    return [f"{n.module}:{alias.name}" for n in ast.walk(classNode) if isinstance(n, ast.ImportFrom) and n.module
            for alias in n.names]


def logicAttributeProblems(shellFiles, logicFile: Path, logicClassName: str, engineClass: type | None,
                           engineName: str = "", parameterFiles=(), root: Path = ROOT) -> list[str]:
    """Every ``self.logic.<name>`` in ``shellFiles`` must exist on ``logicClassName`` (in ``logicFile``), its
    Slicer base, or (when it delegates with ``__getattr__``) the engine; every ``logic.<name>`` in
    ``parameterFiles`` must exist on the engine class (those functions receive the engine)."""
    def label(path):
        try:
            return os.path.relpath(path, root).replace(os.sep, "/")
        except ValueError:
            return str(path)

    problems = []
    classNode = findClass(logicFile, logicClassName)
    if classNode is None:
        return [f"{label(logicFile)} does not define class {logicClassName}"]
    own = classMembers(classNode)
    inherited = set()
    for base in classNode.bases:
        baseName = base.id if isinstance(base, ast.Name) else getattr(base, "attr", ast.unparse(base))
        if baseName in SLICER_LOGIC_BASES:
            inherited |= SLICER_LOGIC_BASES[baseName]
        elif baseName != "object":
            problems.append(f"{label(logicFile)}: {logicClassName} derives from {baseName}, whose members are not "
                            f"known here")
    inherited |= set(dir(object))
    delegates, refusesPrivate = _delegation(classNode)
    engine = engineMembers(engineClass) if engineClass is not None else set()
    if delegates and engineName:
        imported = engineImports(classNode)
        if imported and engineName not in imported:
            problems.append(f"{label(logicFile)}: {logicClassName} imports {', '.join(imported)}, but the module "
                            f"registers the engine {engineName}")
    engineText = f"its engine {engineName or getattr(engineClass, '__qualname__', '?')}"

    def onLogic(name):
        if name in own or name in inherited:
            return True
        return delegates and not (refusesPrivate and name.startswith("_")) and name in engine

    for shellFile in shellFiles:
        for name, line in attributeUses(shellFile, ("self", "logic")):
            if not onLogic(name):
                if delegates:
                    problems.append(f"{label(shellFile)}:{line}: self.logic.{name}: not defined by {logicClassName}, "
                                    f"its base ScriptedLoadableModuleLogic, nor {engineText}")
                else:
                    problems.append(f"{label(shellFile)}:{line}: self.logic.{name}: not defined by {logicClassName} "
                                    f"or its base ScriptedLoadableModuleLogic, and {logicClassName} has no "
                                    f"__getattr__ forwarding to an engine")
    for parameterFile in parameterFiles:
        for name, line in attributeUses(parameterFile, ("logic",)):
            if name not in engine:
                problems.append(f"{label(parameterFile)}:{line}: logic.{name}: not an attribute of {engineText}")
    return problems
