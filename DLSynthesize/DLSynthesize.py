"""DLSynthesize: image synthesis in 3D Slicer (thin shell over DLSynthesizeLib)."""

import logging
import math
import os

import qt

import slicer
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from DLCommon.parameters import parameterNodeClass  # these three import neither torch nor qt
from DLCommon.shell import ModuleWidgetMixin
from DLSynthesizeLib import parameters  # the settings' names, defaults and ranges, shared with `meddl web`


#
# DLSynthesize
#

class DLSynthesize(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DL Synthesize")
        self.parent.categories = [_("Deep Learning")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedDL contributors"]
        self.parent.helpText = _("""
Synthesize images with deep learning and physics.
<b>Super-resolution</b>: restores thin slices of a thick-slice volume; a U-Net learns from the volume's own
in-plane slices (no training data), then sharpens across slices.
<b>Denoise</b>: a denoising autoencoder trained on the noisy volume itself (no clean data), optionally with
an anomaly map |x - AE(x)|.
<b>Image-to-image</b>: trains a U-Net (L1 / L2 / L1+SSIM) or a conditional GAN (pix2pix: U-Net generator +
PatchGAN discriminator, both players' loss curves shown live) on (source, target) volume pairs, e.g. one MR
contrast to another, and applies it to the input volume (the output keeps its geometry).
<b>Ultrasound</b>: simulates a B-mode image (speckle, reflections and shadows, attenuation, time-gain
compensation, sector or linear probe) from a tissue segmentation and a probe pose (a linear transform, or
markups: transducer centre, a point on the beam, optionally a point in the image plane); the image is placed in
the probe's plane. Python console: <code>DLSynthesizeLogic().superResolve(volume)</code>.
""")
        self.parent.acknowledgementText = _("""
Built on PyTorch and MONAI. Follows UCL MPHY0041 Deep Learning (image synthesis); super-resolution after SMORE
(Zhao et al., IEEE TMI 2021).
""")


#
# DLSynthesizeParameterNode
#

DLSynthesizeParameterNode = parameterNodeWrapper(parameterNodeClass("DLSynthesizeParameterNode", parameters.PARAMETERS))

#
# DLSynthesizeWidget
#

class DLSynthesizeWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupModuleUi(DLSynthesizeLogic(), qt.QTimer())
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.addPairButton.connect("clicked(bool)", self.onAddPair)
        self.ui.clearPairsButton.connect("clicked(bool)", self.onClearPairs)
        self.setupBatch()
        self.initializeParameterNode()

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        task = p.task if p else parameters.TASKS[0]
        self.ui.pairsCollapsibleButton.visible = task == "image-to-image"
        self.ui.ultrasoundCollapsibleButton.visible = task == "ultrasound"
        self.ui.stepsSpinBox.enabled = task != "ultrasound"
        self.ui.anomalyCheckBox.visible = task == "denoise"
        ready = {"super-resolution": bool(p and p.inputVolume), "denoise": bool(p and p.inputVolume),
                 "image-to-image": bool(p and p.inputVolume and len(p.sourceVolumes)),
                 "ultrasound": bool(p and p.tissueSegmentation and p.probeTransform and p.inputVolume)}[task]
        self.ui.applyButton.enabled = self.isIdle and ready
        self.ui.cancelButton.enabled = not self.isIdle
        self.updateBatchButtons(task in parameters.SELF_SUPERVISED)  # the per-volume (self-supervised) tasks
        self.ui.pairsListWidget.clear()
        if p:
            for source, target in zip(p.sourceVolumes, p.targetVolumes):
                if source is not None and target is not None:  # a deleted node reads None
                    self.ui.pairsListWidget.addItem(f"{source.GetName()}  ->  {target.GetName()}")

    def onAddPair(self) -> None:
        p = self._parameterNode
        if not p.sourceVolume or not p.targetVolume:
            slicer.util.errorDisplay(_("Select a source and a target volume first."))
            return
        p.sourceVolumes = list(p.sourceVolumes) + [p.sourceVolume]
        p.targetVolumes = list(p.targetVolumes) + [p.targetVolume]

    def onClearPairs(self) -> None:
        self._parameterNode.sourceVolumes = []
        self._parameterNode.targetVolumes = []

    def jobActions(self) -> list:
        if self._parameterNode and self._parameterNode.task == "ultrasound":  # immediate, no job
            return []
        return [(_("Apply"), self.ui.applyButton, "apply")]

    def onApply(self) -> None:
        p = self._parameterNode
        if p.task != "ultrasound":  # training on the scene's data, then applying: a child process
            self.startAction("apply", self.ui.progressBar, _("Synthesis could not start."))
            return
        with slicer.util.tryWithErrorDisplay(_("Synthesis could not start."), waitCursor=True):
            self.ensureDependencies()  # a frame takes well under a second: at once, in Slicer
            self.showOutcome("ultrasound", parameters.simulateUltrasound(self.logic, p))

    def ensureDependencies(self) -> None:
        if ensureDependencies():
            self.dependenciesInstalled()


def ensureDependencies() -> bool:
    """Install PyTorch and Resources/DLSynthesize-requirements.txt on first use, asking first; True if it installed."""
    from DLCommon.slicerdeps import ensureDependencies as ensure

    return ensure(os.path.join(os.path.dirname(__file__), "Resources", "DLSynthesize-requirements.txt"),
                  "DL Synthesize")


#
# DLSynthesizeLogic
#

class DLSynthesizeLogic(ScriptedLoadableModuleLogic):
    """The Python-console API: the node-level methods of :class:`DLSynthesizeLib.logic.SynthesisLogic` (Qt-free;
    see its docstrings): ``superResolve``, ``superResolveJob``, ``denoiseJob``, ``imageToImageJob``,
    ``synthesize`` / ``synthesizeJob`` (a trained model), ``simulateUltrasound`` / ``simulateUltrasoundJob``: the jobs
    this module's panel and ``meddl`` run. Created on first use so that this module loads before PyTorch is installed. Bad input
    raises ``DLError`` and leaves the scene unchanged.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._engine = None

    def getParameterNode(self):
        return DLSynthesizeParameterNode(super().getParameterNode())

    def engine(self):
        if self._engine is None:
            from DLSynthesizeLib.logic import SynthesisLogic

            self._engine = SynthesisLogic(slicer.mrmlScene)
        return self._engine

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine(), name)  # the engine's API, with its signatures and docstrings


#
# DLSynthesizeTest
#

class DLSynthesizeTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()
        # every test imports torch / MONAI and reads the MNI152 sample: install them before anything is imported
        from DLCommon.slicerdeps import ensureSampleDependencies

        ensureDependencies()
        ensureSampleDependencies()

    def runTest(self):
        self.setUp()
        self.test_superResolution()
        self.setUp()
        self.test_imageToImage()
        self.setUp()
        self.test_ultrasound()
        self.setUp()
        self.test_denoise()

    def _mni(self, spacing):
        from DLCommon.sampledata import mni152Tissue

        return mni152Tissue(spacing)

    def test_superResolution(self):
        """4 mm slices of the MNI152 T1 (2 mm) restored: PSNR above cubic interpolation."""
        import torch
        from monai.data import MetaTensor

        from DLCommon import tensorFromVolume, volumeFromTensor
        from DLSynthesizeLib.superresolution import SuperResolutionConfig, degradeAlongAxis, upsampleAlongAxis

        image, _ = self._mni(2.0)
        count = (image.shape[3] - 1) // 2 * 2 + 1
        truth = image.as_tensor()[0, :, :, :count]
        affine = torch.as_tensor(image.affine).clone()
        affine[:3, 2] *= 2
        thick = volumeFromTensor(MetaTensor(degradeAlongAxis(truth, 2, 2)[None], affine=affine), None,
                                 slicer.mrmlScene, "thick")
        result = DLSynthesizeLogic().superResolve(thick, SuperResolutionConfig(steps=150, device="cpu"))
        mask = truth > 10

        def psnr(estimate):
            return 10 * math.log10(255.0 ** 2 / float(((estimate - truth)[mask] ** 2).mean()))

        gain = psnr(tensorFromVolume(result.volume)[0]) - psnr(upsampleAlongAxis(tensorFromVolume(thick)[0], 2, 2))
        logging.info(f"DLSynthesize self-test: super-resolution gain {gain:.2f} dB over cubic")
        self.assertGreater(gain, 0.3)

    def test_imageToImage(self):
        """A T1 -> T2-like U-Net on one pair: lower error on another copy than the source itself."""
        import torch
        from monai.data import MetaTensor

        from DLCommon import tensorFromVolume, volumeFromTensor
        from DLCommon.sampledata import randomCopy
        from DLSynthesizeLib.imagetoimage import ImageToImageConfig

        image, labels = self._mni(4.0)

        def t2(t):
            return torch.where(t > 30, 255.0 * (1.0 - t / 255.0).clamp(0, 1) ** 2, torch.zeros_like(t))

        source = randomCopy(image, labels, 0, bias=False, contrast=False)[0]
        test = randomCopy(image, labels, 50, bias=False, contrast=False)[0]
        nodes = [volumeFromTensor(t, None, slicer.mrmlScene, name) for t, name in (
            (source, "T1"), (MetaTensor(t2(source.as_tensor()), affine=source.affine), "T2"), (test, "new T1"))]
        job = DLSynthesizeLogic().imageToImageJob([(nodes[0], nodes[1])], nodes[2],
                                                  ImageToImageConfig(steps=150, patchSize=48, features=16,
                                                                     device="cpu"))
        output = tensorFromVolume(job.run().volume)
        truth, mask = t2(test.as_tensor()), test.as_tensor() > 10
        self.assertLess(float((output - truth)[mask].abs().mean()), float((test.as_tensor() - truth)[mask].abs().mean()))

    def test_ultrasound(self):
        """A sector image through the MNI152 tissue segmentation: a fan with bright tissue and dark outside."""
        from DLCommon import segmentationFromTensor, tensorFromVolume, volumeFromTensor
        from DLCommon.geometry import vtkMatrixFromArray
        from DLCommon.sampledata import TISSUE_NAMES
        from DLSynthesizeLib.ultrasound import probePose

        image, labels = self._mni(2.0)
        volume = volumeFromTensor(image, None, slicer.mrmlScene, "T1")
        segmentation = segmentationFromTensor(labels, volume, slicer.mrmlScene, TISSUE_NAMES)
        probe = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "probe")
        probe.SetMatrixTransformToParent(vtkMatrixFromArray(probePose([0, -10, 75], [0, -10, 0], [0, 1, 0]).numpy()))
        frame = tensorFromVolume(DLSynthesizeLogic().simulateUltrasound(segmentation, probe, volume).volume)
        self.assertGreater(float(frame.max()), 200)
        self.assertGreater(float((frame == 0).float().mean()), 0.2)
        self.delayDisplay("Test passed")

    def test_denoise(self):
        """A noisy block of the MNI152 T1: the self-trained denoiser raises PSNR."""
        import torch
        from monai.data import MetaTensor

        from DLCommon import tensorFromVolume, volumeFromTensor
        from DLSynthesizeLib.denoise import DenoiseConfig

        image, _ = self._mni(None)
        truth = image.as_tensor()[0, 66:130, 90:154, 70:118].contiguous()
        generator = torch.Generator().manual_seed(0)
        noisy = torch.sqrt((truth + 12.75 * torch.randn(truth.shape, generator=generator)) ** 2
                           + (12.75 * torch.randn(truth.shape, generator=generator)) ** 2)
        node = volumeFromTensor(MetaTensor(noisy[None], affine=torch.eye(4)), None, slicer.mrmlScene, "noisy")
        job = DLSynthesizeLogic().denoiseJob(node, DenoiseConfig(steps=300, features=16, batchSize=8, patchSize=48,
                                                                 draws=2, device="cpu"))
        denoised = tensorFromVolume(job.run().volume)[0]
        mask = truth > 10

        def psnr(estimate):
            return 10 * math.log10(255.0 ** 2 / float(((estimate - truth)[mask] ** 2).mean()))

        self.assertGreater(psnr(denoised), psnr(noisy) + 1.0)
        self.delayDisplay("Test passed")
