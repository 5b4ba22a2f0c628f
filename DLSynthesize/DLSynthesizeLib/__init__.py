"""DLSynthesize's engines (Qt-free): image synthesis on tensors and MRML nodes.

- :mod:`.superresolution`: self-supervised through-plane super-resolution of thick-slice volumes.
- :mod:`.imagetoimage`: paired image-to-image U-Net (2D slice-wise or 3D patch-wise).
- :mod:`.qualitytransfer`: image-quality transfer (3D patch regression from paired low / high resolution).
- :mod:`.pix2pix`: conditional GAN (U-Net generator, PatchGAN discriminator).
- :mod:`.denoise`: self-supervised denoising autoencoder (Recorrupted-to-Recorrupted) and anomaly map.
- :mod:`.ultrasound`: B-mode ultrasound simulation from tissue labels or CT / MR and a probe pose.
- :mod:`.config`: the engines' settings, defined once for every face (torch-free).
- :mod:`.logic`: the node-level API and its jobs, which the Slicer module, the web panel and ``meddl`` run.
- :mod:`.cli`: ``meddl super-resolve``, ``train-synthesis``, ``synthesize``, ``simulate-us`` and the demo part.

Importing the package registers the module with MedDL (:mod:`DLCommon.modules`); it imports no torch.
"""

from DLCommon.modules import ModuleDescription, registerModule

from . import frontend, parameters

MODULE = registerModule(ModuleDescription(
    key="synthesize", package=__name__, title="Synthesize", parameters=parameters.PARAMETERS, order=4,
    actions={"apply": parameters.applyJob,
             "batch": lambda logic, p, volumeNode: parameters.selfSupervisedJob(logic, p, volumeNode),
             "ultrasound": parameters.ultrasoundJob},  # the panel's Simulate runs this job at once
    engine=f"{__name__}.logic:SynthesisLogic", cli=f"{__name__}.cli",
    sections=frontend.SECTIONS, icon=frontend.ICON, modelTask=frontend.MODEL_TASK, desktopOnly=frontend.DESKTOP_ONLY,
    samples=frontend.SAMPLES))
