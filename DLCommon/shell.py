"""What the modules' Slicer widget shells share: parameter-node plumbing, jobs with progress, cancel and
live curves, and the catalog model selector.

It imports neither qt nor torch (a shell imports it at module level, before PyTorch may be installed):
the shell creates its ``qt.QTimer`` and widgets and hands them over. Used as::

    class DLFooWidget(ModuleWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
        modelTask = "segmentation"                  # which catalog models the model selector lists

        def setup(self):
            ScriptedLoadableModuleWidget.setup(self)
            self.setupModuleUi(DLFooLogic(), qt.QTimer())   # Resources/UI/DLFoo.ui, the poll timer
            self.ui.applyButton.connect("clicked(bool)", self.onApply)
            self.initializeParameterNode()

        def onJobFinished(self, job): ...           # put job.output / job.result into the parameter node

The shell defines ``_updateButtons()`` (enable / disable from the parameter node and ``self.isIdle``; it calls
``updateBatchButtons(ready)``), ``batchJobFor(volumeNode)``: the job its Apply button would run on that
volume, with new output nodes, and ``jobActions()``: ``[(name, button, makeJob), ...]``, the jobs its buttons
start. The Batch section (``setupBatch()``) runs ``batchJobFor`` over checked scene volumes or a folder as one
:class:`~DLCommon.batch.BatchJob`; the Estimate button (wired in ``setupModuleUi``) shows the memory and time of
every enabled action's job on this machine, without starting it.
"""

from __future__ import annotations

__all__ = ["ModuleWidgetMixin"]


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

    def cleanup(self) -> None:
        self._timer.stop()
        if self._job is not None:
            self._job.cancel()
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
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

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
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    # --- model selector (a combo box filled from the catalog, bound to the parameter ``modelId``) ----------
    def onModelSelected(self, text) -> None:
        if self._parameterNode and self._parameterNode.modelId != text:
            self._parameterNode.modelId = text

    def syncModelSelector(self) -> None:
        """Show the parameter node's ``modelId`` in the combo box (call from ``_updateButtons``)."""
        p = self._parameterNode
        if p and p.modelId and self.ui.modelComboBox.currentText != p.modelId:
            self.ui.modelComboBox.setCurrentText(p.modelId)

    def refreshModels(self) -> None:
        try:
            from DLCommon import ModelCatalog

            entries = [e for e in ModelCatalog().list()
                       if self.modelTask is None or (e.spec or {}).get("task", "other") in (self.modelTask, "other")]
        except ImportError:  # PyTorch / MONAI not installed yet: the first run installs them
            self.ui.statusLabel.text = "PyTorch and MONAI will be installed on first use."
            return
        current = self.ui.modelComboBox.currentText
        self.ui.modelComboBox.clear()
        for entry in entries:
            self.ui.modelComboBox.addItem(entry.id)
        if current:
            self.ui.modelComboBox.setCurrentText(current)

    def importModelFile(self, path: str) -> None:
        """Import a model file into the catalog and select it (the shell asks for the path)."""
        import slicer

        if not path:
            return
        with slicer.util.tryWithErrorDisplay("Failed to import the model.", waitCursor=True):
            from DLCommon import ModelCatalog

            entry = ModelCatalog().importFile(path)
            self.refreshModels()
            self._parameterNode.modelId = entry.id

    # --- jobs ---------------------------------------------------------------------------------------------
    def startJob(self, job, progressBar) -> None:
        """Run ``job`` in its worker thread; ``_poll`` shows progress and applies the result on this thread."""
        if job.measuredEstimate is not None:  # what the run was planned with (it may have moved to the CPU)
            self.showEstimates([("Running", job.measuredEstimate)])
        self._job, self._progressBar = job, progressBar
        self._chartNode, self._plottedEpochs = None, 0
        job.start()
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
        self._progressBar.value = int(100 * job.fraction)
        self.ui.statusLabel.text = job.statusText()
        history = getattr(job, "history", None)
        if history is not None and len(history.trainLoss) != self._plottedEpochs:
            from DLCommon.plots import historyCurves, updateCurvePlot

            self._plottedEpochs = len(history.trainLoss)
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

        from DLCommon.batch import BatchJob

        if isinstance(job, BatchJob):
            self.onBatchFinished(job)
        elif job.state == JobState.FAILED:
            slicer.util.errorDisplay(str(job.error))
        elif job.state == JobState.SUCCEEDED:
            self._progressBar.value = 100
            self.onJobFinished(job)
        self._updateButtons()

    def onJobFinished(self, job) -> None:
        """Override: take what a succeeded job produced (``job.output`` after apply, else ``job.result``)."""

    # --- resource estimate: memory and time of what the buttons would start, before starting it --------------
    def jobActions(self) -> list:
        """Override: ``[(name, button, makeJob), ...]``; ``makeJob()`` builds the job ``button`` starts."""
        return []

    def onEstimate(self) -> None:
        """Build (never start) the job of every enabled action and show its estimate; a refusal is shown too."""
        import slicer

        from DLCommon.errors import DLError

        estimates = []
        with slicer.util.tryWithErrorDisplay("The estimate failed.", waitCursor=True):
            for name, button, makeJob in self.jobActions():
                if not button.enabled:
                    continue
                try:
                    estimates.append((name, makeJob().resourceEstimate()))
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

    # --- batch: the current model and settings over many volumes (the shell defines batchJobFor) -------------
    def setupBatch(self) -> None:
        self.ui.batchApplyButton.connect("clicked(bool)", self.onBatchApply)
        self.ui.batchCancelButton.connect("clicked(bool)", self.onCancel)

    def batchJobFor(self, volumeNode):
        """Override: the job Apply runs on ``volumeNode`` with the current settings, creating new outputs."""
        raise NotImplementedError

    def updateBatchButtons(self, ready: bool) -> None:
        """The shared buttons (Estimate, the Batch section); ``ready``: the current settings can run."""
        self.ui.estimateButton.enabled = self.isIdle
        self.ui.batchApplyButton.enabled = self.isIdle and ready
        self.ui.batchCancelButton.enabled = not self.isIdle

    def onBatchApply(self) -> None:
        """Checked scene volumes, or every volume file of the input folder (which then needs an output folder)."""
        import slicer

        with slicer.util.tryWithErrorDisplay("The batch could not start.", waitCursor=True):
            folder = self.ui.batchInputFolderLineEdit.currentPath.strip()
            inputs = folder or list(self.ui.batchVolumesComboBox.checkedNodes())
            outputFolder = self.ui.batchOutputFolderLineEdit.currentPath.strip() or None
            self.startJob(self.logic.batchJob(inputs, self.batchJobFor, outputFolder, f"{self.moduleName} batch"),
                          self.ui.batchProgressBar)

    def onBatchFinished(self, job) -> None:
        """List every volume's status in a table shown in the layout."""
        import slicer

        from DLCommon.batch import batchTable

        table = batchTable(slicer.mrmlScene, job.outcomes, f"{self.moduleName} batch")
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        self.ui.statusLabel.text = job.statusText()
