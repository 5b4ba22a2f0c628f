"""DLSynthesize's settings for the Slicer parameter node and the web panel, and the jobs they make.

A setting that is an engine option is made from its config field (``DLSynthesizeLib/config.py``: one definition of
its default, range, choices and tooltip); only what is the panel's own is written here, its default read from the
config. ``p`` below is anything with these settings as attributes: the Slicer parameter node wrapper, or the web
panel's values. Imports neither torch nor qt (the Slicer shell imports it at module level).
"""

from __future__ import annotations

from DLCommon.errors import SettingError
from DLCommon.parameters import Parameter
from DLCommon.settings import defaultOf, parameterOf

# absolute: the shell check loads this file alone
from DLSynthesizeLib.config import (DIMENSIONS, NETWORKS, SELF_SUPERVISED, TASKS, DenoiseConfig, ImageToImageConfig,
                                    Pix2PixConfig, SuperResolutionConfig, UltrasoundConfig)

VOLUME = ("vtkMRMLScalarVolumeNode",)

PARAMETERS = (
    Parameter("task", "choice", TASKS[0], label="Task", choices=TASKS,
              tooltip="super-resolution: thin slices from a thick-slice volume (self-supervised); denoise: a "
                      "denoising autoencoder trained on the noisy input itself; image-to-image: a U-Net trained on "
                      "(source, target) pairs; ultrasound: a B-mode image from tissue labels and a probe pose."),
    Parameter("inputVolume", "node", label="Input volume", nodeClasses=VOLUME,
              tooltip="The volume to process (ultrasound: the volume the tissue segmentation is drawn on)."),
    Parameter("outputVolume", "node", output=True, label="Output volume", nodeClasses=VOLUME,
              tooltip="Volume to write (none: a new one)."),
    # one control for the three trained tasks: its default and range are super-resolution's (the first task);
    # image-to-image's and pix2pix's configs have the same default (600), DenoiseConfig's own is 1200
    parameterOf(SuperResolutionConfig, "steps", parameterName="trainingSteps"),
    Parameter("anomalyMap", "bool", False, label="Anomaly map",
              tooltip="Denoise: also create |x - AE(x)|, the autoencoder's reconstruction error."),
    Parameter("sourceVolume", "node", label="Source volume", nodeClasses=VOLUME, group="pairs"),
    Parameter("targetVolume", "node", label="Target volume", nodeClasses=VOLUME, group="pairs",
              tooltip="Its target (resampled onto the source if on another grid)."),
    Parameter("sourceVolumes", "nodes", label="Sources", nodeClasses=VOLUME, group="pairs"),
    Parameter("targetVolumes", "nodes", label="Targets", nodeClasses=VOLUME, group="pairs"),
    Parameter("network", "choice", next(iter(NETWORKS)), label="Network", choices=tuple(NETWORKS), group="pairs",
              tooltip="U-Net: supervised regression; pix2pix: conditional GAN (2D)."),
    # the panel's own "2D" / "3D" for the config's 2 / 3
    Parameter("dimensions", "choice", f"{defaultOf(ImageToImageConfig, 'dimensions')}D", label="Dimensions",
              choices=tuple(f"{n}D" for n in DIMENSIONS), group="pairs",
              tooltip="2D: slice-wise U-Net (fast); 3D: patch-wise (U-Net only)."),
    parameterOf(ImageToImageConfig, "loss", group="pairs"),
    Parameter("tissueSegmentation", "node", label="Tissue segmentation", nodeClasses=("vtkMRMLSegmentationNode",),
              group="ultrasound", tooltip="Segments named like 'bone', 'fat', 'white matter' get those acoustic "
                                          "properties; others soft tissue."),
    Parameter("probeTransform", "node", label="Probe", group="ultrasound",
              nodeClasses=("vtkMRMLLinearTransformNode", "vtkMRMLMarkupsFiducialNode"),
              tooltip="A linear transform (origin at the transducer, +Y into the body) or markups points."),
    parameterOf(UltrasoundConfig, "geometry", group="ultrasound", parameterName="probeGeometry"),
    parameterOf(UltrasoundConfig, "depth", group="ultrasound"),
    parameterOf(UltrasoundConfig, "frequency", group="ultrasound"),
)


def selfSupervisedJob(logic, p, volumeNode, outputVolume=None):
    """Super-resolution or denoising of ``volumeNode`` (trained on the volume itself)."""
    if p.task not in SELF_SUPERVISED:
        raise SettingError("task", p.task, "super-resolution or denoise to run volume by volume (Apply to all)")
    if p.task == "super-resolution":
        return logic.superResolveJob(volumeNode, SuperResolutionConfig(steps=p.trainingSteps), outputVolume)
    return logic.denoiseJob(volumeNode, DenoiseConfig(steps=p.trainingSteps), outputVolume, anomalyVolume=p.anomalyMap)


def applyJob(logic, p):
    """The job Apply starts for ``p.task`` (training on the scene's data, then applying); not for ultrasound."""
    if p.task in SELF_SUPERVISED:
        return selfSupervisedJob(logic, p, p.inputVolume, p.outputVolume)
    if p.task == "ultrasound":
        raise SettingError("task", p.task, "another task for Apply: ultrasound simulation runs at once (Simulate)")
    if p.network not in NETWORKS:
        raise SettingError("network", p.network, f"one of {', '.join(NETWORKS)}")
    pairs, method = list(zip(p.sourceVolumes, p.targetVolumes)), NETWORKS[p.network]
    if method == "pix2pix":  # conditional GAN, 2D
        return logic.imageToImageJob(pairs, p.inputVolume, Pix2PixConfig(steps=p.trainingSteps), p.outputVolume,
                                     method=method)
    config = ImageToImageConfig.forDimensions(int(p.dimensions.rstrip("D")), loss=p.loss, steps=p.trainingSteps)
    return logic.imageToImageJob(pairs, p.inputVolume, config, p.outputVolume, method=method)


def ultrasoundJob(logic, p):
    """The B-mode frame job of ``p.tissueSegmentation`` (on ``p.inputVolume``'s grid) at ``p.probeTransform``."""
    config = UltrasoundConfig(geometry=p.probeGeometry, depth=p.depth, frequency=p.frequency)
    return logic.simulateUltrasoundJob(p.tissueSegmentation, p.probeTransform, p.inputVolume, config,
                                       outputVolume=p.outputVolume)


def simulateUltrasound(logic, p):
    """Simulate: the frame at once (well under a second), the same job as :func:`ultrasoundJob` run here."""
    return ultrasoundJob(logic, p).run()
