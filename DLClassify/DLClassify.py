"""DLClassify: classification in 3D Slicer (thin shell over DLClassifyLib)."""

import logging
import os

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from DLClassifyLib import parameters  # the settings' names, defaults and ranges, shared with `meddl web`
from DLCommon.parameters import parameterNodeClass  # these three import neither torch nor qt
from DLCommon.shell import ModuleWidgetMixin


#
# DLClassify
#

class DLClassify(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DL Classify")
        self.parent.categories = [_("Deep Learning")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedDL contributors"]
        self.parent.helpText = _("""
Classify volumes, slices and slice views with deep learning (MONAI DenseNet, ResNet, SEResNet, EfficientNet, ViT).
<b>Classify</b>: pick a volume and a model; the results table lists the class and the calibrated probability of
every class; optionally a Grad-CAM saliency volume shows where the network looked.
<b>Slice view</b>: with a 2D model (e.g. the standard-plane recogniser) the plane shown in a slice view is
classified as you scroll or rotate it; or plot each class's probability along the volume's slices.
<b>Train</b>: from a table of labelled volumes (columns 'volume' and 'label'), or the standard-plane recogniser
from a brain in MNI152 space (load the MNI152 sample). Encodings (UCL MPHY0041 "output encoding"): nominal
(one-hot, softmax), binary, ordinal (ordered classes such as grades: cumulative thresholds). Probabilities are
calibrated by temperature scaling on held-out data.
Python console: <code>DLClassifyLogic().classify([volume], "model-id", saliency=True)</code>.
""")
        self.parent.acknowledgementText = _("""
Built on PyTorch and MONAI. Follows UCL MPHY0041 Deep Learning (classification: output encodings, architectures,
standard-plane recognition); ordinal encoding after CORN (Shi et al. 2021), calibration after Guo et al. 2017.
""")


#
# DLClassifyParameterNode
#

DLClassifyParameterNode = parameterNodeWrapper(parameterNodeClass("DLClassifyParameterNode", parameters.PARAMETERS))

#
# DLClassifyWidget
#

class DLClassifyWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    modelTask = "classification"

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedSliceNode = None
        self._saliencyNode = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupModuleUi(DLClassifyLogic(), qt.QTimer())
        self._sliceTimer = qt.QTimer()  # coalesces a burst of slice moves into one classification
        self._sliceTimer.setSingleShot(True)
        self._sliceTimer.setInterval(150)
        self._sliceTimer.connect("timeout()", self.onClassifySlice)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.cancelTrainButton.connect("clicked(bool)", self.onCancel)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.plotButton.connect("clicked(bool)", self.onPlot)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.ui.architectureTableButton.connect("clicked(bool)", self.onArchitectureTable)
        self.ui.saliencyCheckBox.connect("toggled(bool)", self.onSaliencyToggled)
        self.setupBatch()
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelSelected)
        self.initializeParameterNode()
        self.refreshModels()  # after the parameter node exists: the shown model is adopted

    def cleanup(self) -> None:
        self._sliceTimer.stop()
        self._observeSliceNode(None)
        ModuleWidgetMixin.cleanup(self)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        self.syncModelSelector()
        self.ui.applyButton.enabled = self.isIdle and bool(p and p.inputVolume and p.modelId)
        self.ui.plotButton.enabled = self.isIdle and bool(p and p.inputVolume and p.modelId)
        tableTraining = bool(p and p.trainingData == "labelled volumes")
        self.ui.trainingTableSelector.enabled = self.ui.classNamesLineEdit.enabled = tableTraining
        ready = bool(p and p.modelName and (p.trainingTable if tableTraining else p.inputVolume))
        self.ui.trainButton.enabled = self.isIdle and ready
        self.ui.cancelButton.enabled = self.ui.cancelTrainButton.enabled = not self.isIdle
        self.updateBatchButtons(bool(p and p.modelId))
        self._observeSliceNode(self._sliceNode() if p and p.liveClassify else None)

    # --- live slice view classification ---------------------------------------------------------------
    def _sliceNode(self):
        widget = slicer.app.layoutManager().sliceWidget(self._parameterNode.sliceView)
        return widget.mrmlSliceNode() if widget else None

    def _observeSliceNode(self, sliceNode) -> None:
        if sliceNode is self._observedSliceNode:
            return
        if self._observedSliceNode is not None:
            self.removeObserver(self._observedSliceNode, vtk.vtkCommand.ModifiedEvent, self.onSliceModified)
        self._observedSliceNode = sliceNode
        if sliceNode is not None:
            self.addObserver(sliceNode, vtk.vtkCommand.ModifiedEvent, self.onSliceModified)
            self._sliceTimer.start()

    def onSliceModified(self, caller=None, event=None) -> None:
        self._sliceTimer.start()

    def onClassifySlice(self) -> None:
        """Classify the observed slice view's plane; problems go to the label, not to pop-ups (it runs on
        every scroll step)."""
        p = self._parameterNode
        if not (p and p.liveClassify and p.modelId and self._observedSliceNode):
            return
        volume = p.inputVolume or slicer.app.layoutManager().sliceWidget(p.sliceView).sliceLogic() \
            .GetBackgroundLayer().GetVolumeNode()
        try:
            name, probability, _ = self.logic.classifySlice(self._observedSliceNode, volume, p.modelId)
            self.ui.sliceResultLabel.text = f"<b>{name}</b> ({100 * probability:.0f}%)"
        except Exception as error:  # noqa: BLE001 - shown, never raised, while browsing
            self.ui.sliceResultLabel.text = str(error)

    # --- actions -------------------------------------------------------------------------------------------
    def onImportModel(self) -> None:
        self.importModelFile(qt.QFileDialog.getOpenFileName(
            self.parent, _("Import model"), "", _("Models (*.pt *.ts *.pth *.zip *.json);;All files (*)")))

    def onLoadSample(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the MNI152 sample."), waitCursor=True):
            self.ensureDependencies()
            from DLCommon.slicerdeps import ensureSampleDependencies

            ensureSampleDependencies()  # nilearn ships the MNI152 template: installed when first asked for
            from DLCommon.sampledata import loadMNI152

            t1 = loadMNI152(slicer.mrmlScene)["t1"]
            self._parameterNode.inputVolume = t1
            slicer.util.setSliceViewerLayers(background=t1, fit=True)

    def onArchitectureTable(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not build the architectures."), waitCursor=True):
            self.ensureDependencies()
            from DLClassifyLib.architectures import architectureTable

            p = self._parameterNode
            dimensions = 2 if p.dimensions == "2D" else 3
            rows = architectureTable(dimensions, inputSize=[p.inputSize] * dimensions)
            table = self.ui.architectureTableWidget
            headers = ["architecture", "parameters", "size (MB)", "depth", "description"]
            table.setColumnCount(len(headers))
            table.setHorizontalHeaderLabels(headers)
            table.setRowCount(len(rows))
            for r, row in enumerate(rows):
                values = [row["name"], f"{row['parameters']:,}", f"{row['sizeMB']:.1f}", str(row["depth"]),
                          row["description"]]
                for c, value in enumerate(values):
                    table.setItem(r, c, qt.QTableWidgetItem(value))
            table.resizeColumnsToContents()

    def jobActions(self) -> list:
        return [(_("Apply"), self.ui.applyButton, "apply"), (_("Train"), self.ui.trainButton, "train")]

    def onApply(self) -> None:
        self.startAction("apply", self.ui.progressBar, _("Classification could not start."))

    def onPlot(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not classify the slices."), waitCursor=True):
            self.ensureDependencies()
            chart = self.logic.plotSliceProbabilities(p.inputVolume, p.modelId)
            slicer.modules.plots.logic().ShowChartInLayout(chart)

    def onTrain(self) -> None:
        self.startAction("train", self.ui.trainProgressBar, _("Training could not start."))

    def ensureDependencies(self) -> None:
        if ensureDependencies():
            self.dependenciesInstalled()

    def onSaliencyToggled(self, checked) -> None:
        if self._saliencyNode is not None and slicer.mrmlScene.IsNodePresent(self._saliencyNode):
            slicer.util.setSliceViewerLayers(foreground=self._saliencyNode, foregroundOpacity=0.4 if checked else 0.0)

    def onOutcome(self, actionKey: str, outcome, output) -> None:
        if actionKey == "apply":
            self._saliencyNode = outcome.foreground  # the Saliency check box shows / hides it


def ensureDependencies() -> bool:
    """Install PyTorch and Resources/DLClassify-requirements.txt on first use, asking first; True if it installed."""
    from DLCommon.slicerdeps import ensureDependencies as ensure

    return ensure(os.path.join(os.path.dirname(__file__), "Resources", "DLClassify-requirements.txt"), "DL Classify")


#
# DLClassifyLogic
#

class DLClassifyLogic(ScriptedLoadableModuleLogic):
    """The Python-console API: the node-level methods of :class:`DLClassifyLib.logic.ClassificationLogic` (Qt-free;
    see its docstrings): ``classify``, ``classifyJob``, ``train``, ``trainJob``, ``trainPlanes``, ``trainPlanesJob``,
    ``classifySlice``, ``sliceProbabilities``, ``sliceProbabilitiesJob``, ``plotSliceProbabilities``. Created on first
    use so that this module loads before PyTorch is installed. Every method raises ``DLError`` on bad input and leaves
    the scene unchanged when it fails or is cancelled.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._engine = None

    def getParameterNode(self):
        return DLClassifyParameterNode(super().getParameterNode())

    def engine(self):
        if self._engine is None:
            from DLClassifyLib.logic import ClassificationLogic

            self._engine = ClassificationLogic(slicer.mrmlScene)
        return self._engine

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine(), name)  # the engine's API, with its signatures and docstrings


#
# DLClassifyTest
#

class DLClassifyTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()
        # every test imports torch / MONAI and reads the MNI152 sample: install them before anything is imported
        from DLCommon.slicerdeps import ensureSampleDependencies

        ensureDependencies()
        ensureSampleDependencies()

    def runTest(self):
        self.setUp()
        self.test_standardPlaneRecogniser()

    def test_standardPlaneRecogniser(self):
        """Train a tiny plane classifier on the MNI152 T1, check it on held-out planes of deformed copies and on
        the Red slice view."""
        import torch

        from DLCommon.sampledata import loadMNI152, mni152Tissue, randomCopy
        from DLClassifyLib.classifier import classProbabilities
        from DLClassifyLib.data import normaliseImages
        from DLClassifyLib.planes import planeDataset
        from DLClassifyLib.trainer import ClassificationTrainingConfig

        self.delayDisplay("Loading MNI152 sample data")
        t1 = loadMNI152(slicer.mrmlScene)["t1"]
        self.delayDisplay("Training a tiny standard-plane classifier")
        logic = DLClassifyLogic()
        result = logic.trainPlanes(t1, ClassificationTrainingConfig(epochs=10, device="cpu"), addToCatalog=False,
                                   modelName="DLClassifySelfTest")
        self.delayDisplay("Held-out planes of deformed copies")
        image, labels = mni152Tissue(2.0)
        heldOut = [(randomCopy(image, labels, seed)[0].as_tensor(), image.affine) for seed in (100, 101)]
        planes, truth = planeDataset(heldOut, 20, seed=5)
        predicted = classProbabilities(result.model, normaliseImages(planes, 2), "cpu").argmax(1)
        accuracy = float((predicted == truth).float().mean())
        logging.info(f"DLClassify self-test: held-out plane accuracy {accuracy:.3f}")
        self.assertGreaterEqual(accuracy, 0.9)
        self.delayDisplay("Classifying the Red slice view at the trans-ventricular level")
        slicer.util.setSliceViewerLayers(background=t1, fit=True)
        sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        sliceNode.SetOrientationToAxial()
        sliceNode.JumpSliceByCentering(0.0, -18.0, 18.0)
        name, probability, probabilities = logic.classifySlice(sliceNode, t1, result.model)
        self.assertEqual(name, "axial trans-ventricular")
        self.assertAlmostEqual(float(probabilities.sum()), 1.0, places=4)
        self.assertTrue(torch.isfinite(probabilities).all())
        self.delayDisplay("Test passed")
