"""DLClassify's Qt-free engine: output encodings, MONAI architectures, training, calibration, saliency,
standard-plane recognition and image-quality grading.

Importing the package registers the module with MedDL (:mod:`DLCommon.modules`); it imports no torch.
"""

from DLCommon.modules import ModuleDescription, registerModule

from . import frontend, parameters

MODULE = registerModule(ModuleDescription(
    key="classify", package=__name__, title="Classify", parameters=parameters.PARAMETERS, order=1,
    actions={"apply": parameters.applyJob, "train": parameters.trainJob,
             "batch": lambda logic, p, volumeNode: parameters.applyJob(logic, p, volumeNode)},
    engine=f"{__name__}.logic:ClassificationLogic", cli=f"{__name__}.cli",
    sections=frontend.SECTIONS, icon=frontend.ICON, modelTask=frontend.MODEL_TASK, desktopOnly=frontend.DESKTOP_ONLY,
    samples=frontend.SAMPLES, carry=parameters.carriedNodes))
