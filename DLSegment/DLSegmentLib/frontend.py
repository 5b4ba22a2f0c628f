"""DLSegment's panel for the Slicer widget and the web page: sections, actions and what a finished run shows."""

from __future__ import annotations

from DLCommon.frontend import Action, Outcome, Section, trainedOutcome

ICON = "mdi-brain"
MODEL_TASK = "segmentation"  # the catalog models its model selector lists
DESKTOP_ONLY = ("trainingVolume", "trainingSegmentation")  # the Slicer widget's "add pair" pickers


def segmented(p, out) -> Outcome:
    segmentation = out.segmentation
    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    return Outcome(f"'{segmentation.GetName()}': {len(names)} segments ({', '.join(names)}).",
                   background=p.inputVolume, settings={"outputSegmentation": segmentation},
                   saved=[segmentation] + list(out.probabilities) + ([out.entropy] if out.entropy else []),
                   warnings=list(out.warnings))


SECTIONS = (
    Section("Segment", "apply", (Action("apply", "Apply", segmented, ("inputVolume", "modelId")),)),
    Section("Train", "train", (Action("train", "Train", trainedOutcome,
                                      ("trainingVolumes", "trainingSegmentations", "modelName")),)),
)
SAMPLES: dict = {}
