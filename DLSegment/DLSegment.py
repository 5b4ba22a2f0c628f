"""DLSegment: train, fine-tune and run segmentation models in 3D Slicer (thin shell over DLSegmentLib)."""

import logging
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
from DLSegmentLib import parameters  # the settings' names, defaults and ranges, shared with `meddl web`


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

DLSegmentParameterNode = parameterNodeWrapper(parameterNodeClass("DLSegmentParameterNode", parameters.PARAMETERS))

#
# DLSegmentWidget
#

class DLSegmentWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    modelTask = "segmentation"

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupModuleUi(DLSegmentLogic(), qt.QTimer())
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.cancelTrainButton.connect("clicked(bool)", self.onCancel)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.addPairButton.connect("clicked(bool)", self.onAddPair)
        self.ui.clearPairsButton.connect("clicked(bool)", self.onClearPairs)
        self.setupBatch()
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelSelected)
        self.initializeParameterNode()
        self.refreshModels()  # after the parameter node exists: the shown model is adopted

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        self.syncModelSelector()
        self.showModelInputs()
        self.ui.applyButton.enabled = self.isIdle and bool(p and p.inputVolume and p.modelId)
        self.ui.trainButton.enabled = self.isIdle and bool(p and p.trainingVolumes and p.modelName)
        self.ui.cancelButton.enabled = self.ui.cancelTrainButton.enabled = not self.isIdle
        self.updateBatchButtons(bool(p and p.modelId))
        self.ui.pairsListWidget.clear()
        if p:
            for volume, segmentation in zip(p.trainingVolumes, p.trainingSegmentations):
                if volume is not None and segmentation is not None:  # a deleted node reads None
                    self.ui.pairsListWidget.addItem(f"{volume.GetName()}  +  {segmentation.GetName()}")

    def showModelInputs(self) -> None:
        """Name the input rows after the selected model's inputs (a bundle's T1c, T1, T2, FLAIR); hide the rows it
        does not use."""
        modelId = self._parameterNode.modelId if self._parameterNode else ""
        if getattr(self, "_inputsShownFor", None) == modelId:
            return
        self._inputsShownFor = modelId
        try:
            names = parameters.modelInputNames(modelId)
        except Exception:  # noqa: BLE001 - an unreadable catalog: the plain rows (Apply reports the error)
            names = []
        self.ui.label_1.text = f"{names[0]}:" if names else _("Input volume:")
        for n in parameters.OTHER_INPUTS:
            label, selector = getattr(self.ui, f"inputVolume{n}Label"), getattr(self.ui, f"inputVolume{n}Selector")
            label.visible = selector.visible = len(names) >= n
            if len(names) >= n:
                label.text = f"{names[n - 1]}:"

    # --- actions -------------------------------------------------------------------------------------------
    def onImportModel(self) -> None:
        self.importModelFile(qt.QFileDialog.getOpenFileName(
            self.parent, _("Import model"), "", _("Models (*.pt *.ts *.pth *.zip *.json);;All files (*)")))

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

    def jobActions(self) -> list:
        return [(_("Apply"), self.ui.applyButton, "apply"), (_("Train"), self.ui.trainButton, "train")]

    def onApply(self) -> None:
        self.startAction("apply", self.ui.progressBar, _("Segmentation could not start."))

    def onTrain(self) -> None:
        self.startAction("train", self.ui.trainProgressBar, _("Training could not start."))

    def ensureDependencies(self) -> None:
        if ensureDependencies():
            self.dependenciesInstalled()


def ensureDependencies() -> bool:
    """Install PyTorch and Resources/DLSegment-requirements.txt on first use, asking first; True if it installed."""
    from DLCommon.slicerdeps import ensureDependencies as ensure

    return ensure(os.path.join(os.path.dirname(__file__), "Resources", "DLSegment-requirements.txt"), "DL Segment")


#
# DLSegmentLogic
#

class DLSegmentLogic(ScriptedLoadableModuleLogic):
    """The Python-console API: the node-level methods of :class:`DLSegmentLib.logic.SegmentationLogic` (Qt-free;
    see its docstrings): ``segment(volume, model, ...)``, ``segmentJob``, ``train(pairs, config, ...)``,
    ``trainJob``. Created on first use so that this module loads before PyTorch is installed. Every method raises
    ``DLError`` on bad input and leaves the scene unchanged when it fails or is cancelled.
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

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine(), name)  # the engine's API, with its signatures and docstrings


#
# DLSegmentTest
#

class DLSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()
        # every test imports torch / MONAI and reads the MNI152 sample: install them before anything is imported
        from DLCommon.slicerdeps import ensureSampleDependencies

        ensureDependencies()
        ensureSampleDependencies()

    def runTest(self):
        self.setUp()
        self.test_trainAndSegmentMNI152()

    def test_trainAndSegmentMNI152(self):
        """Train a tiny tissue model for a few epochs on the embedded MNI152 T1, then segment it."""
        import torch

        from DLCommon import segmentationFromTensor, tensorFromSegmentation, tensorFromVolume
        from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, loadMNI152, tissueLabels
        from DLSegmentLib.trainer import SegmentationTrainingConfig

        self.delayDisplay("Loading MNI152 sample data")
        nodes = loadMNI152(slicer.mrmlScene)
        labels = tissueLabels(tensorFromVolume(nodes["gm"])[0], tensorFromVolume(nodes["wm"])[0])
        reference = segmentationFromTensor(labels, nodes["t1"], slicer.mrmlScene, TISSUE_NAMES, TISSUE_COLORS,
                                           nodeName="MNI152 tissue")
        self.delayDisplay("Training (a few epochs at 4 mm)")
        logic = DLSegmentLogic()
        config = SegmentationTrainingConfig(epochs=4, batchesPerEpoch=8, patchSize=(32, 32, 32), features=8,
                                            spacing=(4.0, 4.0, 4.0), device="cpu")
        result = logic.train([(nodes["t1"], reference)], config, modelName="DLSegmentSelfTest", addToCatalog=False)
        self.delayDisplay("Segmenting")
        output = logic.segment(nodes["t1"], result.model)
        predicted, names, _ = tensorFromSegmentation(output.segmentation, nodes["t1"])
        self.assertEqual(names, TISSUE_NAMES)
        whiteMatter = 2 * int(((predicted == 2) & (labels == 2)).sum()) / int((predicted == 2).sum() + (labels == 2).sum())
        logging.info(f"DLSegment self-test: white matter Dice {whiteMatter:.3f}")
        self.assertGreater(whiteMatter, 0.5)
        self.assertTrue(torch.equal(torch.tensor(predicted.shape), torch.tensor(labels.shape)))
        self.delayDisplay("Test passed")
