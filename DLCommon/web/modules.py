"""What the web panel of each module shows and runs: the module's own settings and jobs, and its results.

Settings and the jobs they make come from ``<Module>Lib/parameters.py`` (the same definitions as the Slicer
widgets); this file adds only what a browser page needs: which settings a section shows, when it is visible, and
how a finished run is shown (:class:`Outcome`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

__all__ = ["Action", "Outcome", "WebModule", "webModules", "When"]


@dataclasses.dataclass(frozen=True)
class When:
    """A condition on one choice setting, for what the page shows: ``When("task", "ultrasound")``, or with
    ``not_=True`` its negation. Checked in the browser (:meth:`javascript`) and on the server (:meth:`holds`)."""

    setting: str
    value: str
    not_: bool = False

    def holds(self, p) -> bool:
        return (getattr(p, self.setting) == self.value) != self.not_

    def javascript(self, variable: str) -> str:
        return f"{variable} {'!==' if self.not_ else '==='} '{self.value}'"


@dataclasses.dataclass
class Outcome:
    """How a finished run is shown: a message, nodes for the views, rows for a table, files to save."""

    message: str
    background: Any = None  # volume node for the slice views' background (and the 3D view)
    foreground: Any = None  # volume node blended over it
    foregroundColors: str | None = None  # its color table node ID (e.g. a heat map for a saliency map)
    rows: list[dict] = dataclasses.field(default_factory=list)
    saved: list = dataclasses.field(default_factory=list)  # nodes written to the output folder
    modelId: str | None = None  # a newly trained catalog model, selected for Apply


@dataclasses.dataclass
class Action:
    """A button: ``run(logic, p)`` returns a Job, or for an ``immediate`` action its output at once; the
    ``required`` settings must be set first."""

    key: str
    title: str
    run: Callable
    finished: Callable[[Any, Any], Outcome]  # (p, job output or result) -> Outcome
    required: tuple[str, ...] = ()
    immediate: bool = False
    when: When | None = None  # shown (and run) only then


@dataclasses.dataclass
class WebModule:
    """One module's panel: its settings, sections, actions and engine."""

    key: str
    title: str
    icon: str
    parameters: tuple
    engine: Callable  # scene -> the module's Qt-free logic
    sections: list[tuple[str, str, When | None, tuple[Action, ...]]]  # (title, settings' group, shown if, actions)
    modelTask: str | None = None  # catalog filter of the modelId selector
    desktopOnly: tuple[str, ...] = ()  # settings only the Slicer widget has (e.g. its "add pair" pickers)

    def settings(self, group: str) -> list[str]:
        """The names of a section's settings: those of ``group``, in their definition order."""
        return [p.name for p in self.parameters if p.group == group and p.name not in self.desktopOnly]


def _engine(module: str, className: str) -> Callable:
    """``scene -> logic``: the module's Qt-free logic class, imported on first use (PyTorch loads then)."""
    return lambda scene: getattr(importlib.import_module(module), className)(scene)


def _trained(p, result) -> Outcome:
    model, history = result.catalogId or str(result.modelPath), result.history
    facts = [f"{len(history.trainLoss)} epochs in {history.seconds:.0f} s"]
    if history.bestMetric is not None:
        facts.append(f"best validation metric {history.bestMetric:.3f} (epoch {history.bestEpoch})")
    return Outcome(f"Trained '{model}': {', '.join(facts)}. It is selected for Apply.", modelId=model)


def segmentModule() -> WebModule:
    from DLSegmentLib import parameters

    def segmented(p, out) -> Outcome:
        segmentation = out.segmentation
        names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        message = f"'{segmentation.GetName()}': {len(names)} segments ({', '.join(names)})."
        return Outcome(" ".join([message] + list(out.warnings)), background=p.inputVolume,
                       saved=[segmentation] + list(out.probabilities) + ([out.entropy] if out.entropy else []))

    return WebModule(
        "segment", "Segment", "mdi-brain", parameters.PARAMETERS, _engine("DLSegmentLib.logic", "SegmentationLogic"),
        modelTask="segmentation",
        desktopOnly=("trainingVolume", "trainingSegmentation"),
        sections=[
            ("Segment", "apply", None,
             (Action("apply", "Apply", parameters.applyJob, segmented, ("inputVolume", "modelId")),)),
            ("Train", "train", None,
             (Action("train", "Train", parameters.trainJob, _trained, ("trainingVolumes", "trainingSegmentations",
                                                                       "modelName")),)),
        ])


def registerModule() -> WebModule:
    from DLRegisterLib import parameters

    def registered(p, out) -> Outcome:
        from DLRegisterLib.logic import formatReport

        saved = [node for node in (out.transform, out.warpedVolume, out.warpedSegmentation, out.jacobian) if node]
        return Outcome(formatReport(out.report), background=p.fixedVolume, foreground=out.warpedVolume, saved=saved)

    return WebModule(
        "register", "Register", "mdi-vector-arrange-below", parameters.PARAMETERS,
        _engine("DLRegisterLib.logic", "RegistrationLogic"), modelTask="registration",
        desktopOnly=("trainingVolume", "trainingSegmentation"),
        sections=[
            ("Register", "apply", None,
             (Action("apply", "Apply", parameters.applyJob, registered, ("fixedVolume", "movingVolume")),)),
            ("Train", "train", None,
             (Action("train", "Train", parameters.trainJob, _trained, ("trainingVolumes", "modelName")),)),
        ])


def synthesizeModule() -> WebModule:
    from DLSynthesizeLib import parameters

    def synthesized(p, out) -> Outcome:
        extra = [node for node in out.details.values() if hasattr(node, "GetID")]
        message = f"'{out.volume.GetName()}' written"
        if "finalLoss" in out.details:  # the self-supervised tasks train on the input itself
            message += f" (final training loss {out.details['finalLoss']:.4g})"
        return Outcome(message + ".", background=out.volume, saved=[out.volume] + extra)

    return WebModule(
        "synthesize", "Synthesize", "mdi-auto-fix", parameters.PARAMETERS,
        _engine("DLSynthesizeLib.logic", "SynthesisLogic"),
        desktopOnly=("sourceVolume", "targetVolume"),
        sections=[
            ("Synthesize", "apply", None,
             (Action("apply", "Apply", parameters.applyJob, synthesized, ("inputVolume",),
                     when=When("task", "ultrasound", not_=True)),)),
            ("Training pairs", "pairs", When("task", "image-to-image"),
             ()),
            ("Ultrasound", "ultrasound", When("task", "ultrasound"),
             (Action("ultrasound", "Simulate", parameters.simulateUltrasound, synthesized,
                     ("tissueSegmentation", "probeTransform", "inputVolume"), immediate=True),)),
        ])


def classifyModule() -> WebModule:
    from DLClassifyLib import parameters

    def classified(p, out) -> Outcome:
        name, probability, _ = out.predictions[0]
        rows = [{column: out.table.GetTable().GetValueByName(row, column).ToString()
                 for column in _columns(out.table)} for row in range(out.table.GetTable().GetNumberOfRows())]
        saliency = out.saliency[0] if out.saliency else None
        return Outcome(f"{p.inputVolume.GetName()}: {name} ({100 * probability:.0f}%)", background=p.inputVolume,
                       foreground=saliency, foregroundColors="vtkMRMLColorTableNodeRainbow", rows=rows,
                       saved=list(out.saliency))

    def classifySlice(logic, p):
        scene = p.inputVolume.GetScene() if p.inputVolume is not None else None
        sliceNode = next((n for n in _nodes(scene, "vtkMRMLSliceNode") if n.GetLayoutName() == p.sliceView), None)
        return logic.classifySlice(sliceNode, p.inputVolume, p.modelId)

    def sliceClassified(p, out) -> Outcome:
        name, probability, _ = out
        return Outcome(f"{p.sliceView} slice view: {name} ({100 * probability:.0f}%)")

    return WebModule(
        "classify", "Classify", "mdi-tag-multiple", parameters.PARAMETERS,
        _engine("DLClassifyLib.logic", "ClassificationLogic"), modelTask="classification",
        desktopOnly=("liveClassify",),  # the page classifies the slice view on request
        sections=[
            ("Classify", "apply", None,
             (Action("apply", "Apply", parameters.applyJob, classified, ("inputVolume", "modelId")),
              Action("slice", "Classify slice view", classifySlice, sliceClassified, ("inputVolume", "modelId"),
                     immediate=True))),
            ("Train", "train", None,
             (Action("train", "Train", parameters.trainJob, _trained, ("modelName",)),)),
        ])


def _nodes(scene, className: str) -> list:
    if scene is None:
        return []
    collection = scene.GetNodesByClass(className)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def _columns(table) -> list[str]:
    return [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]


def webModules() -> list[WebModule]:
    """The four panels, in the order of the Slicer module list."""
    return [classifyModule(), segmentModule(), registerModule(), synthesizeModule()]
