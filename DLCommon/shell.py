"""What the modules' Slicer widget shells share: parameter-node plumbing, jobs run as ``meddl`` child processes
with progress, cancel and live curves, the Batch section, and the catalog model selector.

It imports neither qt nor torch at import time (a shell imports it at module level, before PyTorch may be
installed): the shell creates its ``qt.QTimer`` and widgets and hands them over. Used as::

    class DLFooWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
        modelTask = "segmentation"                  # which catalog models the model selector lists

        def setup(self):
            ScriptedLoadableModuleWidget.setup(self)
            self.setupModuleUi(DLFooLogic(), qt.QTimer())   # Resources/UI/DLFoo.ui, the poll timer
            self.ui.applyButton.connect("clicked(bool)", lambda: self.startAction("apply", self.ui.progressBar))
            self.initializeParameterNode()

        def onOutcome(self, actionKey, outcome, output): ...  # optional: what only this panel shows of a result

Jobs: the shell names an *action* of its module (``<Module>Lib``'s registered
:class:`~DLCommon.modules.ModuleDescription`); :meth:`ModuleWidgetMixin.startAction` makes that job here (the
prepare phase) and runs its plan and work in a ``meddl`` child process (:class:`~DLCommon.process.ProcessJob`):
Slicer's PythonQt keeps the GIL on the main thread while Qt idles, so a Python worker thread would crawl. The
poll timer reads the child's progress and applies the result on the main thread; Cancel ends the child at
once. The Estimate button (:meth:`ModuleWidgetMixin.onEstimate`) runs prepare + plan here, without a child.

The shell defines ``_updateButtons()`` (enable / disable from the parameter node and ``self.isIdle``; it calls
``updateBatchButtons(ready)``), ``jobActions()``: ``[(name, button, action), ...]``, the actions its buttons
start, and ``ensureDependencies()``. The Batch section (``setupBatch()``) runs the module's ``"batch"`` action
over checked scene volumes or a folder as one :class:`~DLCommon.batch.BatchJob`.
"""

from __future__ import annotations

__all__ = ["ModuleWidgetMixin", "slicerPython"]


def slicerPython() -> str:
    """The Python a job's child process runs: Slicer's ``PythonSlicer`` launcher (it sets up Slicer's paths and
    libraries, as ``slicer.util.launchConsoleProcess`` users such as SlicerMONAIAuto3DSeg rely on), found next to
    the application (``slicer.app.applicationDirPath()``: Slicer's ``bin`` folder) or on the PATH; outside
    Slicer this interpreter."""
    import os
    import shutil
    import sys

    import slicer

    app = getattr(slicer, "app", None)
    if app is None:
        return sys.executable
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    candidate = os.path.join(app.applicationDirPath(), name)
    if os.path.isfile(candidate):
        return candidate
    return shutil.which("PythonSlicer") or sys.executable


class ModuleWidgetMixin:
    """Shared widget behaviour; see the module docstring for what the shell provides."""

    modelTask: str | None = None  # catalog filter of the model selector (None: every model)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def setupModuleUi(self, logic, timer) -> None:
        """Load ``Resources/UI/<module>.ui`` into the panel, give it the scene, keep ``logic``, set up jobs."""
        import slicer

        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        self.setupJobs(timer)
        self.ui.estimateButton.connect("clicked(bool)", self.onEstimate)

    def setupJobs(self, timer) -> None:
        """Adopt the shell's poll timer and observe the scene closing."""
        import slicer

        self._job = None
        self._progressBar = None
        self._chartNode = None
        self._plottedEpochs = 0
        self._timer = timer
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self._poll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    @property
    def isIdle(self) -> bool:
        return getattr(self, "_job", None) is None

    @property
    def description(self):
        """This module's registered :class:`~DLCommon.modules.ModuleDescription` (``<moduleName>Lib``)."""
        from DLCommon.modules import moduleByPackage

        return moduleByPackage(f"{self.moduleName}Lib")

    def cleanup(self) -> None:
        self._timer.stop()
        self._stopJob()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            import vtk

            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        # a running job would apply its result into the next scene: it ends with this one
        self._stopJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def _stopJob(self) -> None:
        job, self._job = getattr(self, "_job", None), None
        if job is not None:
            job.cancel()
            self._timer.stop()
            self.ui.statusLabel.text = job.statusText()

    # --- parameter node ---------------------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        import vtk

        if getattr(self, "_parameterNode", None):
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self.connectParameterNodeGui()
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            if hasattr(self.ui, "modelComboBox"):
                self.adoptShownModel()
            self._updateButtons()

    def connectParameterNodeGui(self):
        """Bind every ``.ui`` widget with a ``SlicerParameterName`` to the parameter node; returns the tag for
        ``disconnectGui``. The mapping is made here, as ``connectGui`` makes it, because Slicer 5.8's ``connectGui``
        returns no tag (``Base/Python/slicer/parameterNodeWrapper/wrapper.py`` at v5.8.0: ``_connectGui`` drops
        the tag of ``_connectParametersToGui``; fixed in 5.10), so the bindings piled up on every enter."""
        mapping = {}
        for widget in vars(self.ui).values():
            name = widget.property("SlicerParameterName") if hasattr(widget, "property") else None
            if name:
                mapping[name] = widget
        return self._parameterNode.connectParametersToGui(mapping)

    # --- model selector (a combo box filled from the catalog, bound to the parameter ``modelId``) ----------
    def onModelSelected(self, text) -> None:
        if self._parameterNode and self._parameterNode.modelId != text:
            self._parameterNode.modelId = text

    def adoptShownModel(self) -> None:
        """The parameter node and the selector agree: a model the node names is shown; a node that names none (or
        one no longer in the catalog) takes the model the selector shows. Qt emits no signal for an item that was
        current before the node existed, so this is not left to ``currentTextChanged``."""
        p, combo = self._parameterNode, self.ui.modelComboBox
        if not p:
            return
        shown = combo.currentText
        if p.modelId and combo.findText(p.modelId) >= 0:
            if shown != p.modelId:
                combo.setCurrentText(p.modelId)
        elif shown != p.modelId:
            p.modelId = shown

    def syncModelSelector(self) -> None:
        """Show the parameter node's ``modelId`` in the combo box (call from ``_updateButtons``)."""
        p = self._parameterNode
        if p and p.modelId and self.ui.modelComboBox.currentText != p.modelId \
                and self.ui.modelComboBox.findText(p.modelId) >= 0:
            self.ui.modelComboBox.setCurrentText(p.modelId)

    def refreshModels(self) -> None:
        """Fill the selector from the catalog (PyTorch not installed yet: a note, and again after installing)."""
        try:
            from DLCommon import ModelCatalog

            entries = [e for e in ModelCatalog().list()
                       if self.modelTask is None or (e.spec or {}).get("task", "other") in (self.modelTask, "other")]
        except ImportError:  # PyTorch / MONAI not installed yet: ensureDependencies() refreshes after installing
            self.ui.statusLabel.text = "PyTorch and MONAI will be installed on first use."
            return
        combo = self.ui.modelComboBox
        current = combo.currentText
        combo.blockSignals(True)  # filling the list is no user choice
        try:
            combo.clear()
            for entry in entries:
                combo.addItem(entry.id)
            if current and combo.findText(current) >= 0:
                combo.setCurrentText(current)
        finally:
            combo.blockSignals(False)
        self.adoptShownModel()

    def importModelFile(self, path: str) -> None:
        """Import a model file into the catalog and select it (the shell asks for the path)."""
        import slicer

        if not path:
            return
        with slicer.util.tryWithErrorDisplay("Failed to import the model.", waitCursor=True):
            self.ensureDependencies()  # the catalog reads models with torch
            from DLCommon import ModelCatalog

            if not self.consentToBundleCode(path):
                return
            entry = ModelCatalog().importFile(path)
            self.refreshModels()
            self._parameterNode.modelId = entry.id

    def consentToBundleCode(self, path: str) -> bool:
        """For a MONAI bundle whose code is not trusted yet: show what it runs (its imports, '$' expressions,
        targets and scripts, in the dialog's details) and record the user's consent; False if declined."""
        import slicer

        from DLCommon.bundletrust import bundleCode, isTrusted, trustBundle
        from DLCommon.models import detectFormat

        if detectFormat(path) != "bundle" or isTrusted(path):
            return True
        code = bundleCode(path)
        if not code.runsCode:
            return True
        # Base/Python/slicer/util.py: confirmYesNoDisplay passes detailedText to ctkMessageBox (and answers Yes in
        # testing mode, so self-tests import without a click)
        if not slicer.util.confirmYesNoDisplay(
                f"The MONAI bundle '{code.name}' runs Python code when it is loaded: {code.summary()}.\n\n"
                "Run it only if you trust its source. Trust this bundle's code and import it?",
                windowTitle="Trust MONAI bundle code", detailedText=code.report()):
            return False
        trustBundle(path, code.sha256)
        return True

    def ensureDependencies(self) -> None:
        """Override: install PyTorch and the module's requirements if missing (the shell knows its file)."""

    def dependenciesInstalled(self) -> None:
        """Called by the shell's ``ensureDependencies`` once it installed something: the catalog can be read now."""
        if hasattr(self.ui, "modelComboBox"):
            self.refreshModels()

    # --- jobs ---------------------------------------------------------------------------------------------
    def makeJob(self, action: str, **nodes):
        """The job of ``action`` made here (prepare), for the Estimate button and the Python console."""
        self.ensureDependencies()
        return self.description.makeJob(action, self.logic, self._parameterNode, **nodes)

    def childJob(self, action: str, **nodes):
        """The job of ``action``, to run in a ``meddl`` child process (:class:`~DLCommon.process.ProcessJob`)."""
        from DLCommon.process import childProcessJob

        self.ensureDependencies()
        return childProcessJob(self.description, action, self.logic, self._parameterNode, python=slicerPython(),
                               **nodes)

    def startAction(self, action: str, progressBar, failure: str = "The job could not start.") -> None:
        """Make the job of ``action`` and run it in a child process; problems with the inputs are shown at once."""
        import slicer

        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            self.startJob(self.childJob(action), progressBar)

    def startJob(self, job, progressBar) -> None:
        """Start ``job`` (a ProcessJob, a BatchJob or an in-process Job); ``_poll`` shows progress and applies the
        result on this thread."""
        job.start()  # first: if writing its inputs fails, the panel stays idle (the caller shows the error)
        self._job, self._progressBar = job, progressBar
        self._chartNode, self._plottedEpochs = None, 0
        self._shownPlan = None
        self._timer.start()
        self._updateButtons()

    def onCancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.text = "Cancelling..."

    def _poll(self) -> None:
        import slicer

        job = self._job
        if job is None:
            self._timer.stop()
            return
        finished = job.poll()  # reads the child's new progress lines; applies the result once it is done
        self._progressBar.value = int(100 * job.fraction)
        self.ui.statusLabel.text = job.statusText()
        plan = getattr(job, "measuredEstimate", None)
        if plan is not None and plan is not self._shownPlan:  # what the run was planned with (maybe the CPU)
            self._shownPlan = plan
            self.showEstimates([("Running", plan)])
        history = getattr(job, "history", None)
        if history is not None and len(history.trainLoss) != self._plottedEpochs:
            from DLCommon.plots import historyCurves, updateCurvePlot

            self._plottedEpochs = len(history.trainLoss)
            first = self._chartNode is None
            self._chartNode = updateCurvePlot(slicer.mrmlScene, historyCurves(history), job.name, self._chartNode)
            if first:
                slicer.modules.plots.logic().ShowChartInLayout(self._chartNode)
        if not finished:
            return
        self._timer.stop()
        self._job = None
        self.ui.statusLabel.text = job.statusText()
        from DLCommon.batch import BatchJob
        from DLCommon.jobs import JobState

        if self._parameterNode is None:  # the scene closed meanwhile: nothing to show
            return
        if isinstance(job, BatchJob):
            self.onBatchFinished(job)
        elif job.state == JobState.FAILED:
            slicer.util.errorDisplay(str(job.error))
        elif job.state == JobState.SUCCEEDED:
            self._progressBar.value = 100
            self.onJobFinished(job)
        self._updateButtons()

    def onJobFinished(self, job) -> None:
        """Show what a succeeded job produced, as the module's front end describes it (``<Module>Lib/frontend.py``:
        the same :class:`~DLCommon.frontend.Outcome` the web page shows)."""
        self.showOutcome(job.recipe.action, job.output if job.output is not None else job.result)

    def showOutcome(self, actionKey: str, output) -> None:
        """Fill in the settings the run produced (output nodes, the new model), show its volumes, table, message
        and warnings; then the shell's :meth:`onOutcome` for what only its panel has."""
        import slicer

        action, _ = self.description.action(actionKey)
        p = self._parameterNode
        outcome = action.finished(p, output)
        if outcome.modelId and hasattr(self.ui, "modelComboBox"):
            self.refreshModels()
        for name, value in outcome.settings.items():
            setattr(p, name, value)
        layers = {} if outcome.background is None else {"background": outcome.background}
        if outcome.foreground is not None:
            if outcome.foregroundColors:
                outcome.foreground.GetDisplayNode().SetAndObserveColorNodeID(outcome.foregroundColors)
            layers.update(foreground=outcome.foreground, foregroundOpacity=0.5)
        if layers:  # a layer not named keeps what it shows (setSliceViewerLayers: "keep-current")
            slicer.util.setSliceViewerLayers(**layers)
        if outcome.table is not None:
            self.showTable(outcome.table)
        self.ui.statusLabel.text = outcome.message
        if outcome.warnings:  # e.g. the model reads the axes in another order than this volume
            slicer.util.warningDisplay("\n\n".join(outcome.warnings), windowTitle="Check the result")
        self.onOutcome(actionKey, outcome, output)

    def onOutcome(self, actionKey: str, outcome, output) -> None:
        """Override: what only this module's panel shows of a finished run (e.g. a report label)."""

    def showTable(self, tableNode) -> None:
        """Show ``tableNode`` in a table view, switching to a layout that has one if the current layout has none
        (``PropagateTableSelection`` only fills table views that exist, it never changes the layout:
        Base/Logic/vtkSlicerApplicationLogic.cxx; the recipe is Slicer's script repository's)."""
        import slicer

        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:  # None without a main window (Slicer's generic tests)
            # the current layout if it has a table view, else the nearest one that does (vtkSlicerTablesLogic)
            layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()

    # --- resource estimate: memory and time of what the buttons would start, before starting it --------------
    def jobActions(self) -> list:
        """Override: ``[(name, button, action), ...]``: the action (key of the module's actions) ``button`` starts."""
        return []

    def onEstimate(self) -> None:
        """Make (never start) the job of every enabled action and show its estimate; a refusal is shown too."""
        import slicer

        from DLCommon.errors import DLError

        estimates = []
        with slicer.util.tryWithErrorDisplay("The estimate failed.", waitCursor=True):
            for name, button, action in self.jobActions():
                if not button.enabled:
                    continue
                try:
                    estimates.append((name, self.makeJob(action).resourceEstimate()))
                except DLError as error:  # e.g. too large for this machine: the message is the estimate
                    estimates.append((name, error))
        self.showEstimates(estimates)

    def showEstimates(self, estimates: list) -> None:
        """One line per ``(name, ResourceEstimate or DLError)``; red when something does not fit."""
        lines = [f"{name}: {item.describe() if hasattr(item, 'describe') else item}" for name, item in estimates
                 if item is not None]
        fits = all(getattr(item, "fits", item is None) for _, item in estimates)
        self.ui.estimateLabel.text = "\n".join(lines) or "Select the inputs first."
        self.ui.estimateLabel.setStyleSheet("" if fits else "color: #c0392b;")

    # --- batch: the current model and settings over many volumes (the module's "batch" action) ---------------
    def setupBatch(self) -> None:
        self.ui.batchApplyButton.connect("clicked(bool)", self.onBatchApply)
        self.ui.batchCancelButton.connect("clicked(bool)", self.onCancel)

    def updateBatchButtons(self, ready: bool) -> None:
        """The shared buttons (Estimate, the Batch section); ``ready``: the current settings can run."""
        self.ui.estimateButton.enabled = self.isIdle
        self.ui.batchApplyButton.enabled = self.isIdle and ready
        self.ui.batchCancelButton.enabled = not self.isIdle

    def batchJob(self, inputs, outputFolder=None):
        """One :class:`~DLCommon.batch.BatchJob` of the module's ``"batch"`` action over ``inputs`` (volume nodes,
        or a folder of volume files), each item in its own child process."""
        import slicer

        from DLCommon.batch import BatchJob, batchItems

        return BatchJob(batchItems(inputs), lambda volumeNode: self.childJob("batch", volumeNode=volumeNode),
                        slicer.mrmlScene, outputFolder, f"{self.moduleName} batch")

    def onBatchApply(self) -> None:
        """Checked scene volumes, or every volume file of the input folder (which then needs an output folder)."""
        import slicer

        with slicer.util.tryWithErrorDisplay("The batch could not start.", waitCursor=True):
            folder = self.ui.batchInputFolderLineEdit.currentPath.strip()
            inputs = folder or list(self.ui.batchVolumesComboBox.checkedNodes())
            outputFolder = self.ui.batchOutputFolderLineEdit.currentPath.strip() or None
            self.startJob(self.batchJob(inputs, outputFolder), self.ui.batchProgressBar)

    def onBatchFinished(self, job) -> None:
        """List every volume's status in a table shown in the layout."""
        import slicer

        from DLCommon.batch import batchTable

        self.showTable(batchTable(slicer.mrmlScene, job.outcomes, f"{self.moduleName} batch"))
        self.ui.statusLabel.text = job.statusText()
