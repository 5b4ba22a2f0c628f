"""DLSynthesize's settings, defined once for the Slicer parameter node and the web panel, and what they run.

``p`` below is anything with these settings as attributes: the Slicer parameter node wrapper, or the web
panel's values. Imports neither torch nor qt (the Slicer shell imports it at module level).
"""

from __future__ import annotations

from DLCommon.errors import SettingError
from DLCommon.parameters import Parameter

VOLUME = ("vtkMRMLScalarVolumeNode",)
TASKS = ("super-resolution", "denoise", "image-to-image", "ultrasound")
SELF_SUPERVISED = ("super-resolution", "denoise")  # each trains on the volume it processes

PARAMETERS = (
    Parameter("task", "choice", "super-resolution", label="Task", choices=TASKS,
              tooltip="super-resolution: thin slices from a thick-slice volume (self-supervised); denoise: a "
                      "denoising autoencoder trained on the noisy input itself; image-to-image: a U-Net trained on "
                      "(source, target) pairs; ultrasound: a B-mode image from tissue labels and a probe pose."),
    Parameter("inputVolume", "node", label="Input volume", nodeClasses=VOLUME,
              tooltip="The volume to process (ultrasound: the volume the tissue segmentation is drawn on)."),
    Parameter("outputVolume", "node", output=True, label="Output volume", nodeClasses=VOLUME,
              tooltip="Volume to write (none: a new one)."),
    Parameter("trainingSteps", "int", 600, label="Training steps", minimum=10, maximum=100000,
              tooltip="Training iterations (super-resolution, denoising and image-to-image)."),
    Parameter("anomalyMap", "bool", False, label="Anomaly map",
              tooltip="Denoise: also create |x - AE(x)|, the autoencoder's reconstruction error."),
    Parameter("sourceVolume", "node", label="Source volume", nodeClasses=VOLUME, group="pairs"),
    Parameter("targetVolume", "node", label="Target volume", nodeClasses=VOLUME, group="pairs",
              tooltip="Its target (resampled onto the source if on another grid)."),
    Parameter("sourceVolumes", "nodes", label="Sources", nodeClasses=VOLUME, group="pairs"),
    Parameter("targetVolumes", "nodes", label="Targets", nodeClasses=VOLUME, group="pairs"),
    Parameter("network", "choice", "U-Net", label="Network", choices=("U-Net", "pix2pix"), group="pairs",
              tooltip="U-Net: supervised regression; pix2pix: conditional GAN (2D)."),
    Parameter("dimensions", "choice", "2D", label="Dimensions", choices=("2D", "3D"), group="pairs",
              tooltip="2D: slice-wise U-Net (fast); 3D: patch-wise (U-Net only)."),
    Parameter("loss", "choice", "l1", label="Loss", choices=("l1", "l2", "l1ssim"), group="pairs",
              tooltip="L1, L2, or L1 + SSIM."),
    Parameter("tissueSegmentation", "node", label="Tissue segmentation", nodeClasses=("vtkMRMLSegmentationNode",),
              group="ultrasound", tooltip="Segments named like 'bone', 'fat', 'white matter' get those acoustic "
                                          "properties; others soft tissue."),
    Parameter("probeTransform", "node", label="Probe", group="ultrasound",
              nodeClasses=("vtkMRMLLinearTransformNode", "vtkMRMLMarkupsFiducialNode"),
              tooltip="A linear transform (origin at the transducer, +Y into the body) or markups points."),
    Parameter("probeGeometry", "choice", "sector", label="Probe geometry", choices=("sector", "linear"),
              group="ultrasound"),
    Parameter("depth", "float", 120.0, label="Depth (mm)", minimum=10.0, maximum=300.0, group="ultrasound"),
    Parameter("frequency", "float", 5.0, label="Frequency (MHz)", minimum=1.0, maximum=20.0, group="ultrasound"),
)


def selfSupervisedJob(logic, p, volumeNode, outputVolume=None):
    """Super-resolution or denoising of ``volumeNode`` (trained on the volume itself)."""
    if p.task not in SELF_SUPERVISED:
        raise SettingError("task", p.task, "super-resolution or denoise to run volume by volume (Apply to all)")
    if p.task == "super-resolution":
        from DLSynthesizeLib.superresolution import SuperResolutionConfig

        return logic.superResolveJob(volumeNode, SuperResolutionConfig(steps=p.trainingSteps), outputVolume)
    from DLSynthesizeLib.denoise import DenoiseConfig

    return logic.denoiseJob(volumeNode, DenoiseConfig(steps=p.trainingSteps), outputVolume, anomalyVolume=p.anomalyMap)


def applyJob(logic, p):
    """The job Apply starts for ``p.task`` (training on the scene's data, then applying); not for ultrasound."""
    if p.task in SELF_SUPERVISED:
        return selfSupervisedJob(logic, p, p.inputVolume, p.outputVolume)
    if p.task == "ultrasound":
        raise SettingError("task", p.task, "another task for Apply: ultrasound simulation runs at once (Simulate)")
    pairs = list(zip(p.sourceVolumes, p.targetVolumes))
    if p.network == "pix2pix":  # conditional GAN, 2D
        from DLSynthesizeLib.pix2pix import Pix2PixConfig

        return logic.imageToImageJob(pairs, p.inputVolume, Pix2PixConfig(steps=p.trainingSteps), p.outputVolume,
                                     method="pix2pix")
    from DLSynthesizeLib.imagetoimage import ImageToImageConfig

    config = ImageToImageConfig(dimensions=3 if p.dimensions == "3D" else 2, loss=p.loss, steps=p.trainingSteps,
                                patchSize=32 if p.dimensions == "3D" else 64)
    return logic.imageToImageJob(pairs, p.inputVolume, config, p.outputVolume)


def simulateUltrasound(logic, p):
    """A B-mode frame (takes well under a second: no job) from ``p.tissueSegmentation`` at ``p.probeTransform``."""
    from DLSynthesizeLib.ultrasound import UltrasoundConfig

    config = UltrasoundConfig(geometry=p.probeGeometry, depth=p.depth, frequency=p.frequency)
    return logic.simulateUltrasound(p.tissueSegmentation, p.probeTransform, p.inputVolume, config,
                                    outputVolume=p.outputVolume)
