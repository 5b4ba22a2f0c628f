"""DLSegment's Qt-free engine: segmentation losses (the seed's four), training and inference.

Importing the package registers the module with MedDL (:mod:`DLCommon.modules`); it imports no torch.
"""

from DLCommon.modules import ModuleDescription, registerModule

from . import frontend, parameters

MODULE = registerModule(ModuleDescription(
    key="segment", package=__name__, title="Segment", parameters=parameters.PARAMETERS, order=2,
    actions={"apply": parameters.applyJob, "train": parameters.trainJob,
             "batch": lambda logic, p, volumeNode: parameters.applyJob(logic, p, volumeNode)},
    engine=f"{__name__}.logic:SegmentationLogic", cli=f"{__name__}.cli",
    sections=frontend.SECTIONS, icon=frontend.ICON, modelTask=frontend.MODEL_TASK, desktopOnly=frontend.DESKTOP_ONLY,
    samples=frontend.SAMPLES, modelInputs=parameters.modelInputNames))
