"""DLSegment: train, fine-tune and run segmentation models in 3D Slicer (thin shell over DLSegmentLib)."""

import logging
import os
from typing import Annotated

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


#
# DLSegment
#

class DLSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DL Segment")
        self.parent.categories = [_("Deep Learning")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedDL contributors"]
        self.parent.helpText = _("""
Train, fine-tune and apply deep-learning segmentation models (MONAI UNet, SegResNet, DynUNet, SwinUNETR).
<b>Segment</b>: pick a volume and a model from the verified catalog (or import a TorchScript file, MONAI bundle
or checkpoint); the result is a segmentation with the model's segment names and colors, optionally with a
probability volume per class and an uncertainty (entropy) volume.
<b>Train</b>: add volume + segmentation pairs drawn in Segment Editor and start training; loss curves update live.
Losses (UCL MPHY0041 "segmentation losses"): voxel cross-entropy (ce), weighted cross-entropy (wce), soft Dice
(dice), Dice with the background term (dl2), and Dice + cross-entropy (dicece).
Python console: <code>DLSegmentLogic().segment(volume, "model-id")</code>,
<code>DLSegmentLogic().train([(volume, segmentation)], modelName="my-model")</code>.
""")
        self.parent.acknowledgementText = _("""
Built on PyTorch and MONAI. The losses follow UCL MPHY0041 Deep Learning (segmentation losses).
""")


#
# DLSegmentParameterNode
#

@parameterNodeWrapper
class DLSegmentParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""  # catalog id; its combo box is filled from the catalog, so it is connected by hand
    outputSegmentation: vtkMRMLSegmentationNode
    probabilityVolumes: bool = False
    entropyVolume: bool = False
    trainingVolume: vtkMRMLScalarVolumeNode
    trainingSegmentation: vtkMRMLSegmentationNode
    trainingVolumes: list[vtkMRMLScalarVolumeNode]
    trainingSegmentations: list[vtkMRMLSegmentationNode]
    network: Annotated[str, Choice(["unet", "segresnet", "dynunet", "swinunetr"])] = "unet"
    loss: Annotated[str, Choice(["dicece", "ce", "wce", "dice", "dl2"])] = "dicece"
    epochs: Annotated[int, WithinRange(1, 10000)] = 50
    patchSize: Annotated[int, WithinRange(16, 256)] = 64
    trainingSpacing: Annotated[float, WithinRange(0.0, 20.0)] = 0.0
    modelName: str = "my-segmentation"
    fineTune: bool = False


#
# DLSegmentWidget
#

class DLSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._chartNode = None
        self._plottedEpochs = 0
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self._poll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DLSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DLSegmentLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.cancelTrainButton.connect("clicked(bool)", self.onCancel)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.addPairButton.connect("clicked(bool)", self.onAddPair)
        self.ui.clearPairsButton.connect("clicked(bool)", self.onClearPairs)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelSelected)
        self._refreshModels()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._timer.stop()
        if self._job is not None:
            self._job.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    def onModelSelected(self, text) -> None:
        if self._parameterNode and self._parameterNode.modelId != text:
            self._parameterNode.modelId = text

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p and p.modelId and self.ui.modelComboBox.currentText != p.modelId:
            self.ui.modelComboBox.setCurrentText(p.modelId)
        idle = self._job is None
        self.ui.applyButton.enabled = idle and bool(p and p.inputVolume and p.modelId)
        self.ui.trainButton.enabled = idle and bool(p and p.trainingVolumes and p.modelName)
        self.ui.cancelButton.enabled = self.ui.cancelTrainButton.enabled = not idle
        self.ui.pairsListWidget.clear()
        if p:
            for volume, segmentation in zip(p.trainingVolumes, p.trainingSegmentations):
                self.ui.pairsListWidget.addItem(f"{volume.GetName()}  +  {segmentation.GetName()}")

    def _refreshModels(self) -> None:
        try:
            from DLCommon import ModelCatalog

            entries = ModelCatalog().list()
        except ImportError:  # PyTorch / MONAI not installed yet: Apply or Train installs them
            self.ui.statusLabel.text = _("PyTorch and MONAI will be installed on first use.")
            return
        current = self.ui.modelComboBox.currentText
        self.ui.modelComboBox.clear()
        for entry in entries:
            self.ui.modelComboBox.addItem(entry.id)
        if current:
            self.ui.modelComboBox.setCurrentText(current)

    # --- actions -------------------------------------------------------------------------------------------
    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Import model"), "",
                                              _("Models (*.pt *.ts *.pth *.zip *.json);;All files (*)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to import the model."), waitCursor=True):
            from DLCommon import ModelCatalog

            entry = ModelCatalog().importFile(path)
            self._refreshModels()
            self._parameterNode.modelId = entry.id

    def onAddPair(self) -> None:
        p = self._parameterNode
        if not p.trainingVolume or not p.trainingSegmentation:
            slicer.util.errorDisplay(_("Select a volume and its segmentation first."))
            return
        p.trainingVolumes = list(p.trainingVolumes) + [p.trainingVolume]
        p.trainingSegmentations = list(p.trainingSegmentations) + [p.trainingSegmentation]

    def onClearPairs(self) -> None:
        self._parameterNode.trainingVolumes = []
        self._parameterNode.trainingSegmentations = []

    def onApply(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Segmentation could not start."), waitCursor=True):
            ensureDependencies()
            self._start(self.logic.segmentJob(p.inputVolume, p.modelId, p.outputSegmentation,
                                              p.probabilityVolumes, p.entropyVolume), self.ui.progressBar)

    def onTrain(self) -> None:
        from DLSegmentLib.trainer import SegmentationTrainingConfig

        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Training could not start."), waitCursor=True):
            ensureDependencies()
            config = SegmentationTrainingConfig(network=p.network, loss=p.loss, epochs=p.epochs,
                                                patchSize=(p.patchSize,) * 3,
                                                spacing=(p.trainingSpacing,) * 3 if p.trainingSpacing > 0 else None)
            pairs = list(zip(p.trainingVolumes, p.trainingSegmentations))
            job = self.logic.trainJob(pairs, config, modelName=p.modelName,
                                      baseModel=p.modelId if p.fineTune else None)
            self._chartNode, self._plottedEpochs = None, 0
            self._start(job, self.ui.trainProgressBar)

    def onCancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.text = _("Cancelling...")

    def _start(self, job, progressBar) -> None:
        self._job, self._progressBar = job, progressBar
        job.start()  # the worker thread never touches the scene; results are applied in _poll
        self._timer.start()
        self._updateButtons()

    def _poll(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        self._progressBar.value = int(100 * job.fraction)
        self.ui.statusLabel.text = job.statusText()
        history = getattr(job, "history", None)
        if history is not None and len(history.trainLoss) != self._plottedEpochs:
            self._plottedEpochs = len(history.trainLoss)
            from DLCommon.plots import historyCurves, updateCurvePlot

            first = self._chartNode is None
            self._chartNode = updateCurvePlot(slicer.mrmlScene, historyCurves(history), job.name, self._chartNode)
            if first:
                slicer.modules.plots.logic().ShowChartInLayout(self._chartNode)
        if not job.poll():
            return
        self._timer.stop()
        self._job = None
        self.ui.statusLabel.text = job.statusText()
        from DLCommon.jobs import JobState

        if job.state == JobState.FAILED:
            slicer.util.errorDisplay(str(job.error))
        elif job.state == JobState.SUCCEEDED and hasattr(job.output, "segmentation"):
            self._parameterNode.outputSegmentation = job.output.segmentation
        elif job.state == JobState.SUCCEEDED and job.result is not None:
            self._refreshModels()
            self._parameterNode.modelId = job.result.catalogId or self._parameterNode.modelId
        self._updateButtons()


def ensureDependencies() -> None:
    """Install PyTorch and Resources/requirements.txt on first use, asking first."""
    from DLCommon.slicerdeps import ensureDependencies as ensure

    ensure(os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt"), "DLSegment")


#
# DLSegmentLogic
#

class DLSegmentLogic(ScriptedLoadableModuleLogic):
    """The Python-console API: ``segment(volume, model, ...)``, ``train(pairs, config, ...)`` and their Jobs.

    Thin delegation to :class:`DLSegmentLib.logic.SegmentationLogic` (Qt-free; see its docstrings), created
    on first use so that this module loads before PyTorch is installed. Every method raises ``DLError`` on
    bad input and leaves the scene unchanged when it fails or is cancelled.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._engine = None

    def getParameterNode(self):
        return DLSegmentParameterNode(super().getParameterNode())

    def engine(self):
        if self._engine is None:
            from DLSegmentLib.logic import SegmentationLogic

            self._engine = SegmentationLogic(slicer.mrmlScene)
        return self._engine

    def segment(self, inputVolume, model, outputSegmentation=None, probabilityVolumes=False, entropyVolume=False,
                device="auto", overlap=0.25, progress=None):
        """Segment ``inputVolume`` with ``model`` (catalog id, file path or LoadedModel)."""
        return self.engine().segment(inputVolume, model, outputSegmentation, probabilityVolumes, entropyVolume,
                                     device, overlap, progress)

    def segmentJob(self, *args, **kwargs):
        return self.engine().segmentJob(*args, **kwargs)

    def train(self, pairs, config=None, modelName="segmentation", validationPairs=(), baseModel=None,
              outputDir=None, register=True, progress=None):
        """Train (or fine-tune ``baseModel``) on ``[(volumeNode, segmentationNode), ...]``."""
        return self.engine().train(pairs, config, modelName, validationPairs, baseModel, outputDir, register,
                                   progress)

    def trainJob(self, *args, **kwargs):
        return self.engine().trainJob(*args, **kwargs)


#
# DLSegmentTest
#

class DLSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_trainAndSegmentMNI152()

    def test_trainAndSegmentMNI152(self):
        """Train a tiny tissue model for a few epochs on the embedded MNI152 T1, then segment it."""
        import torch

        from DLCommon import segmentationFromTensor, tensorFromSegmentation, tensorFromVolume
        from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, loadMNI152, tissueLabels
        from DLSegmentLib.trainer import SegmentationTrainingConfig

        ensureDependencies()
        self.delayDisplay("Loading MNI152 sample data")
        nodes = loadMNI152(slicer.mrmlScene)
        labels = tissueLabels(tensorFromVolume(nodes["gm"])[0], tensorFromVolume(nodes["wm"])[0])
        reference = segmentationFromTensor(labels, nodes["t1"], slicer.mrmlScene, TISSUE_NAMES, TISSUE_COLORS,
                                           nodeName="MNI152 tissue")
        self.delayDisplay("Training (a few epochs at 4 mm)")
        logic = DLSegmentLogic()
        config = SegmentationTrainingConfig(epochs=4, batchesPerEpoch=8, patchSize=(32, 32, 32), features=8,
                                            spacing=(4.0, 4.0, 4.0), device="cpu")
        result = logic.train([(nodes["t1"], reference)], config, modelName="DLSegmentSelfTest", register=False)
        self.delayDisplay("Segmenting")
        output = logic.segment(nodes["t1"], result.model)
        predicted, names, _ = tensorFromSegmentation(output.segmentation, nodes["t1"])
        self.assertEqual(names, TISSUE_NAMES)
        whiteMatter = 2 * int(((predicted == 2) & (labels == 2)).sum()) / int((predicted == 2).sum() + (labels == 2).sum())
        logging.info(f"DLSegment self-test: white matter Dice {whiteMatter:.3f}")
        self.assertGreater(whiteMatter, 0.5)
        self.assertTrue(torch.equal(torch.tensor(predicted.shape), torch.tensor(labels.shape)))
        self.delayDisplay("Test passed")
