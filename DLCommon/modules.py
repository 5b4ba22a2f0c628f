"""The module registry: each MedDL module describes itself once, and every face iterates over what registered.

A module library (``<Module>Lib/__init__.py``) calls :func:`registerModule` with a :class:`ModuleDescription`
when it is imported, as Slicer's SegmentStatistics plugins register themselves: its settings, the jobs they
make (by action key), its Qt-free logic class and its command-line part. DLCommon names no module: the
``meddl`` command finds the installed modules through the ``meddl.modules`` entry points (``pyproject.toml``),
a Slicer shell imports its own library, and a ``meddl job`` child process imports the library its recipe names.
Importing a module library is cheap (no torch): the engine and the command-line part are imported on use.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

__all__ = ["ModuleDescription", "registerModule", "registeredModules", "moduleByPackage", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "meddl.modules"


@dataclasses.dataclass(frozen=True)
class ModuleDescription:
    """What a module tells every face (Slicer widget, ``meddl``, ``meddl job`` child, web page).

    Args:
        key: short name (``"segment"``), unique.
        package: the library package (``"<Module>Lib"``), imported by a child process to find the module.
        title: shown to users (``"Segment"``).
        parameters: its settings (:class:`~DLCommon.parameters.Parameter`), defined in ``<Module>Lib/parameters.py``.
        actions: ``{key: make(logic, p, **nodes) -> Job}``: the jobs its buttons start, built from settings ``p``
            (the parameter node, the web panel's values, or a child's copy). ``"batch"``, if present, takes a
            ``volumeNode`` and makes the job Apply runs on one more volume (new output nodes).
        engine: ``"package.module:Class"``: the Qt-free logic class taking ``scene``.
        cli: the module with ``addCommands(subparsers)`` and ``demo(scene, outputDir, progress)``, or None.
        carry: ``carry(p, action) -> nodes``: further nodes a child process needs besides the settings it reads
            (e.g. the volumes a training table names), or None.
        order: position in lists (the Slicer module order).
        sections: the panel (:class:`~DLCommon.frontend.Section` s with their actions and outcomes), read by the
            Slicer widget (what a finished run shows) and the web page (the whole panel).
        icon: the web page's icon name (Material Design Icons).
        modelTask: which catalog models its model selector lists (None: it has none).
        desktopOnly: settings only the Slicer widget has (e.g. its "add pair" pickers).
        samples: ``{name: add(scene) -> nodes}``: sample data its workflows use, offered by ``meddl web``.
        modelInputs: ``modelInputs(modelId) -> names``: the volumes a selected model takes when it takes several (a
            bundle's ``T1c``, ``T1``, ...), naming the input rows (``inputVolume``, ``inputVolume2``...) of the Slicer
            widget and the web panel; ``[]`` for one input. None: its models take one volume.
    """

    key: str
    package: str
    title: str
    parameters: tuple
    actions: Mapping[str, Callable]
    engine: str
    cli: str | None = None
    carry: Callable[[Any, str], list] | None = None
    order: int = 0
    sections: tuple = ()
    icon: str = ""
    modelTask: str | None = None
    desktopOnly: tuple[str, ...] = ()
    samples: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    modelInputs: Callable[[str], list] | None = None

    def makeEngine(self, scene):
        """The module's Qt-free logic on ``scene`` (imports the engine: PyTorch loads then)."""
        moduleName, className = self.engine.split(":")
        return getattr(importlib.import_module(moduleName), className)(scene)

    def makeJob(self, action: str, logic, p, **nodes):
        """The job of ``action`` (the prepare phase: cheap, no estimate)."""
        if action not in self.actions:
            raise KeyError(f"Module '{self.key}' has no action '{action}' (it has: {', '.join(self.actions)})")
        return self.actions[action](logic, p, **nodes)

    def action(self, key: str):
        """The :class:`~DLCommon.frontend.Action` ``key`` of the panel and its section's condition."""
        for section in self.sections:
            for action in section.actions:
                if action.key == key:
                    return action, section.when
        raise KeyError(f"Module '{self.key}' shows no action '{key}'")

    def settingsOf(self, group: str) -> list[str]:
        """The names of a section's settings: those of ``group``, in definition order (desktop-only ones left out)."""
        return [p.name for p in self.parameters if p.group == group and p.name not in self.desktopOnly]

    def cliModule(self):
        return importlib.import_module(self.cli) if self.cli else None


_REGISTRY: dict[str, ModuleDescription] = {}
_discovered = False


def registerModule(description: ModuleDescription) -> ModuleDescription:
    """Add (or replace, on a reload) a module's description."""
    _REGISTRY[description.key] = description
    return description


def _discover() -> None:
    """Import every module library installed with an ``meddl.modules`` entry point (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    from importlib import metadata

    try:
        points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python 3.9 (Slicer 5.8): entry_points() takes no arguments
        points = metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    for point in points:
        try:
            importlib.import_module(point.value.split(":")[0])
        except ModuleNotFoundError as exc:  # listed by an older install but no longer there
            if not point.value.startswith(exc.name or "\0"):
                raise


def registeredModules() -> list[ModuleDescription]:
    """Every registered module (installed ones discovered first), in module order."""
    _discover()
    return sorted(_REGISTRY.values(), key=lambda d: (d.order, d.key))


def moduleByPackage(package: str) -> ModuleDescription:
    """The description registered by library ``package`` (importing it registers it)."""
    importlib.import_module(package)
    for description in _REGISTRY.values():
        if description.package == package:
            return description
    raise LookupError(f"'{package}' registered no MedDL module (its __init__ calls DLCommon.modules.registerModule)")
