"""DLRegister's panel for the Slicer widget and the web page: sections, actions and what a finished run shows."""

from __future__ import annotations

from DLCommon.frontend import Action, Outcome, Section, trainedOutcome

ICON = "mdi-vector-arrange-below"
MODEL_TASK = "registration"
DESKTOP_ONLY = ("trainingVolume", "trainingSegmentation")  # the Slicer widget's "add volume" pickers


def registered(p, out) -> Outcome:
    from .logic import formatReport

    saved = [node for node in (out.transform, out.warpedVolume, out.warpedSegmentation, out.jacobian) if node]
    return Outcome(formatReport(out.report), background=p.fixedVolume, foreground=out.warpedVolume, saved=saved,
                   settings={"outputTransform": out.transform, "outputVolume": out.warpedVolume},
                   warnings=list(out.warnings))


def trained(p, result) -> Outcome:
    return trainedOutcome(p, result, method="model")  # the new network registers the next pair


SECTIONS = (
    Section("Register", "apply", (Action("apply", "Apply", registered, ("fixedVolume", "movingVolume")),)),
    Section("Train", "train", (Action("train", "Train", trained, ("trainingVolumes", "modelName")),)),
)
SAMPLES: dict = {}
