"""DLRegister: deep-learning image registration in 3D Slicer (thin shell over DLRegisterLib)."""

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
from DLRegisterLib import parameters  # the settings' names, defaults and ranges, shared with `meddl web`


#
# DLRegister
#

class DLRegister(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DL Register")
        self.parent.categories = [_("Deep Learning")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedDL contributors"]
        self.parent.helpText = _("""
Align a <b>moving</b> volume with a <b>fixed</b> volume (any orientation, spacing and size; same or different
modality). <b>Optimisation</b> needs no training data: centre-of-mass start, affine, then a dense displacement
field (DDF) or a diffeomorphic stationary velocity field (SVF), coarse to fine, maximising LNCC, or mutual
information for different modalities, with bending-energy regularisation; optional masks and an atlas
segmentation to warp onto the fixed volume. <b>Model</b>: a registration network (MONAI LocalNet / GlobalNet /
RegUNet, DeepReg style) trained in the Train section predicts the field in one pass, optionally refined.
Outputs: a grid transform (the moving volume under it is shown aligned), the warped volume, the warped
segmentation, and the Jacobian determinant (values &lt;= 0 mark folding), with a report of the similarity before
and after. Python console: <code>DLRegisterLogic().register(fixed, moving)</code>.
""")
        self.parent.acknowledgementText = _("""
Built on PyTorch and MONAI. Methods follow UCL MPHY0041 Deep Learning (registration) and DeepReg
(Fu et al., JOSS 2020, doi:10.21105/joss.02705).
""")


#
# DLRegisterParameterNode
#

DLRegisterParameterNode = parameterNodeWrapper(parameterNodeClass("DLRegisterParameterNode", parameters.PARAMETERS))

#
# DLRegisterWidget
#

class DLRegisterWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    modelTask = "registration"

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupModuleUi(DLRegisterLogic(), qt.QTimer())
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.cancelTrainButton.connect("clicked(bool)", self.onCancel)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.addTrainingVolumeButton.connect("clicked(bool)", self.onAddTrainingVolume)
        self.ui.clearTrainingVolumesButton.connect("clicked(bool)", self.onClearTrainingVolumes)
        self.setupBatch()
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelSelected)
        self.initializeParameterNode()
        self.refreshModels()  # after the parameter node exists: the shown model is adopted

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        self.syncModelSelector()
        needsModel = bool(p and p.method == "model")
        self.ui.modelComboBox.enabled = self.ui.importModelButton.enabled = needsModel
        self.ui.applyButton.enabled = self.isIdle and bool(p and p.fixedVolume and p.movingVolume
                                                           and (p.modelId or not needsModel))
        self.ui.trainButton.enabled = self.isIdle and bool(p and len(p.trainingVolumes) >= 2 and p.modelName)
        self.ui.cancelButton.enabled = self.ui.cancelTrainButton.enabled = not self.isIdle
        self.updateBatchButtons(bool(p and p.fixedVolume and (p.modelId or not needsModel)))
        self.ui.trainingListWidget.clear()
        if p:
            segmentations = list(p.trainingSegmentations)
            for index, volume in enumerate(p.trainingVolumes):
                if volume is None:  # a deleted node reads None
                    continue
                labels = (f"  +  {segmentations[index].GetName()}"
                          if index < len(segmentations) and segmentations[index] is not None else "")
                self.ui.trainingListWidget.addItem(volume.GetName() + labels)

    # --- actions -------------------------------------------------------------------------------------------
    def onImportModel(self) -> None:
        self.importModelFile(qt.QFileDialog.getOpenFileName(
            self.parent, _("Import registration model"), "", _("Models (*.pt *.ts *.pth *.json);;All files (*)")))

    def onAddTrainingVolume(self) -> None:
        p = self._parameterNode
        if not p.trainingVolume:
            slicer.util.errorDisplay(_("Select a volume first."))
            return
        if p.trainingSegmentation is None and len(p.trainingSegmentations):
            slicer.util.errorDisplay(_("The volumes added so far have segmentations: select this volume's too."))
            return
        p.trainingVolumes = list(p.trainingVolumes) + [p.trainingVolume]
        if p.trainingSegmentation is not None:
            p.trainingSegmentations = list(p.trainingSegmentations) + [p.trainingSegmentation]

    def onClearTrainingVolumes(self) -> None:
        self._parameterNode.trainingVolumes = []
        self._parameterNode.trainingSegmentations = []

    def jobActions(self) -> list:
        return [(_("Apply"), self.ui.applyButton, "apply"), (_("Train"), self.ui.trainButton, "train")]

    def onApply(self) -> None:
        self.ui.reportLabel.text = ""
        self.startAction("apply", self.ui.progressBar, _("Registration could not start."))

    def onTrain(self) -> None:
        self.startAction("train", self.ui.trainProgressBar, _("Training could not start."))

    def ensureDependencies(self) -> None:
        if ensureDependencies():
            self.dependenciesInstalled()

    def onOutcome(self, actionKey: str, outcome, output) -> None:
        if actionKey == "apply":  # the report stays beside the Apply button
            self.ui.reportLabel.text = outcome.message


def ensureDependencies() -> bool:
    """Install PyTorch and Resources/DLRegister-requirements.txt on first use, asking first; True if it installed."""
    from DLCommon.slicerdeps import ensureDependencies as ensure

    return ensure(os.path.join(os.path.dirname(__file__), "Resources", "DLRegister-requirements.txt"), "DL Register")


#
# DLRegisterLogic
#

class DLRegisterLogic(ScriptedLoadableModuleLogic):
    """The Python-console API: the node-level methods of :class:`DLRegisterLib.logic.RegistrationLogic` (Qt-free;
    see its docstrings for the options and Slicer's direction convention): ``register(fixed, moving, ...)``,
    ``registerJob``, ``train(volumes, ...)``, ``trainJob``. Created on first use so that this module loads before
    PyTorch is installed. Every method raises ``DLError`` on bad input and leaves the scene unchanged when it
    fails or is cancelled.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._engine = None

    def getParameterNode(self):
        return DLRegisterParameterNode(super().getParameterNode())

    def engine(self):
        if self._engine is None:
            from DLRegisterLib.logic import RegistrationLogic

            self._engine = RegistrationLogic(slicer.mrmlScene)
        return self._engine

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine(), name)  # the engine's API, with its signatures and docstrings


#
# DLRegisterTest
#

class DLRegisterTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()
        # every test imports torch / MONAI and reads the MNI152 sample: install them before anything is imported
        from DLCommon.slicerdeps import ensureSampleDependencies

        ensureDependencies()
        ensureSampleDependencies()

    def runTest(self):
        self.setUp()
        self.test_registerDeformedMNI152()

    def test_registerDeformedMNI152(self):
        """Register a randomly deformed MNI152 T1 (moving) to another deformed copy (fixed); check the gain."""
        from DLCommon import segmentationFromTensor, tensorFromSegmentation, volumeFromTensor
        from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, mni152Tissue, randomCopy
        from DLRegisterLib.config import RegistrationConfig
        from DLRegisterLib.quality import labelDice

        self.delayDisplay("Making two deformed copies of the MNI152 T1 (4 mm)")
        image, labels = mni152Tissue(4.0)
        movingImage, movingLabels = randomCopy(image, labels, 1, bias=False)
        fixedImage, fixedLabels = randomCopy(image, labels, 2, bias=False)
        fixed = volumeFromTensor(fixedImage, None, slicer.mrmlScene, "fixed")
        moving = volumeFromTensor(movingImage, None, slicer.mrmlScene, "moving")
        atlas = segmentationFromTensor(movingLabels, moving, slicer.mrmlScene, TISSUE_NAMES, TISSUE_COLORS,
                                       nodeName="atlas")
        self.delayDisplay("Registering")
        result = DLRegisterLogic().register(fixed, moving, RegistrationConfig(iterations=(60, 40), levels=(2, 1)),
                                            warpSegmentation=atlas, applyToMoving=True)
        warped = tensorFromSegmentation(result.warpedSegmentation, fixed)[0]
        before = labelDice(movingLabels, fixedLabels, [2])[0]
        after = labelDice(warped, fixedLabels, [2])[0]
        logging.info(f"DLRegister self-test: white matter Dice {before:.3f} -> {after:.3f}, {result.report}")
        self.assertGreater(result.report["after"], result.report["before"])
        self.assertGreater(after, before + 0.1)
        self.assertLess(result.report["foldingPercent"], 1.0)
        self.assertIs(moving.GetParentTransformNode(), result.transform)
        self.delayDisplay("Test passed")
