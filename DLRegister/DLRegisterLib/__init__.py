"""DLRegister's engines (Qt-free): deep-learning image registration on tensors and MRML nodes.

- :mod:`.optimisation`: instance optimisation (affine + DDF / SVF, LNCC / SSD / MI, masks, label term).
- :mod:`.space`, :mod:`.similarity`, :mod:`.fields`, :mod:`.quality`: the pieces it is built from.
- :mod:`.logic`: the node-level API the Slicer module and the console use.
- :mod:`.cli`: ``meddl register`` / ``meddl train-register``.

Importing the package registers the module with MedDL (:mod:`DLCommon.modules`); it imports no torch.
"""

from DLCommon.modules import ModuleDescription, registerModule

from . import frontend, parameters

MODULE = registerModule(ModuleDescription(
    key="register", package=__name__, title="Register", parameters=parameters.PARAMETERS, order=3,
    actions={"apply": parameters.applyJob, "train": parameters.trainJob,
             "batch": lambda logic, p, volumeNode: parameters.applyJob(logic, p, movingVolume=volumeNode)},
    engine=f"{__name__}.logic:RegistrationLogic", cli=f"{__name__}.cli",
    sections=frontend.SECTIONS, icon=frontend.ICON, modelTask=frontend.MODEL_TASK, desktopOnly=frontend.DESKTOP_ONLY,
    samples=frontend.SAMPLES))
