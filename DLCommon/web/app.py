"""``meddl web``: MedDL's four modules in a web browser, on trame-slicer's Slicer views.

The page has Slicer's layout (slice views and a 3D view drawn by Slicer's own displayable managers, served by
trame-slicer from the real MRML libraries), a file loader and the embedded sample data in the top bar, and one
panel per module (:class:`~DLCommon.web.panel.ModulePanel`) over the same engines and settings as the Slicer
widgets. Results are shown in the views and, with ``--output``, written to that folder.
"""

from __future__ import annotations

import base64
import logging
import re
import tempfile
from pathlib import Path

from trame.app import TrameApp
from trame.ui.vuetify3 import VAppLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v
from trame_slicer import module as trameSlicerModule
from trame_slicer.app.ui.load_volume_ui import LoadVolumeButton, LoadVolumeItemsState
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_server.utils.typed_state import TypedState

from DLCommon.frontend import Outcome
from DLCommon.modules import registeredModules

from .panel import ERRORS, ModulePanel
from .samples import addSample, samples

__all__ = ["MedDLWebApp"]

LAYOUT = "Axial Primary"  # a large axial view beside the 3D, coronal and sagittal views
_EXTENSIONS = {"vtkMRMLSegmentationNode": ".seg.nrrd", "vtkMRMLScalarVolumeNode": ".nrrd"}


class MedDLWebApp(TrameApp):
    """The application: one Slicer scene, its views, and a panel per module."""

    def __init__(self, server=None, outputDir: str | Path | None = None):
        super().__init__(server)
        self.server.enable_module(trameSlicerModule)
        self.slicerApp = SlicerApp()
        self.scene = self.slicerApp.scene
        self.outputDir = Path(outputDir).expanduser() if outputDir else None
        register_rca_factories(self.slicerApp.view_manager, self.server)
        self.layoutManager = LayoutManager(self.scene, self.slicerApp.view_manager, self.server)
        self.layoutManager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.panels = {module.key: ModulePanel(self, module) for module in registeredModules() if module.sections}
        state = self.server.state
        state.trame__title = "MedDL"
        icon = Path(__file__).resolve().parents[2] / "Resources" / "Icons" / "MedDL.png"  # in a source checkout
        if icon.is_file():
            state.trame__favicon = "data:image/png;base64," + base64.b64encode(icon.read_bytes()).decode()
        state.update({"module": "segment", "appMessage": "", "appMessageType": "info",
                      "samples": list(samples()), "layout": LAYOUT, "layouts": self.layoutManager.get_layout_ids()})
        state.change("layout")(lambda layout, **_: self.layoutManager.set_layout(layout))
        for panel in self.panels.values():
            panel.refreshModels()
        self._buildUi()
        self.layoutManager.set_layout(LAYOUT)

    # --- scene ----------------------------------------------------------------------------------------------
    def nodesOf(self, classNames) -> list:
        """Nodes of any of ``classNames`` (subclasses included), in the order they were added; no hidden ones."""
        nodes = []
        for className in classNames:
            collection = self.scene.GetNodesByClass(className)
            nodes += [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        unique = {node.GetID(): node for node in nodes if not node.GetHideFromEditors()}
        return list(unique.values())

    def refreshNodes(self) -> None:
        for panel in self.panels.values():
            panel.refreshNodes()

    def show(self, outcome: Outcome) -> list[str]:
        """Put ``outcome``'s volumes and segmentations (only those) in the views; write its nodes to the output
        folder. Returns the file names."""
        display = self.slicerApp.display_manager
        if outcome.background is not None:
            display.show_volume(outcome.background, do_reset_views=True)
        if outcome.foreground is not None and outcome.foregroundColors:
            outcome.foreground.GetDisplayNode().SetAndObserveColorNodeID(outcome.foregroundColors)
        display.show_volume_in_slice_foreground(outcome.foreground)
        for view in self.slicerApp.view_manager.get_slice_views():
            view.set_foreground_opacity(0.5 if outcome.foreground is not None else 0.0)
        if outcome.background is not None:
            for segmentation in self.nodesOf(("vtkMRMLSegmentationNode",)):
                shown = any(segmentation is node for node in outcome.saved)
                if segmentation.GetDisplayNode() is not None:
                    segmentation.GetDisplayNode().SetVisibility(shown)
                if shown:
                    segmentation.CreateClosedSurfaceRepresentation()  # so the 3D view shows it too
        return self.save(outcome.saved) if self.outputDir else []

    def save(self, nodes) -> list[str]:
        from DLCommon.storage import saveNode

        names = []
        for node in nodes:
            extension = _EXTENSIONS.get(node.GetClassName(), ".h5" if node.IsA("vtkMRMLTransformNode") else None)
            if extension is None:
                continue
            stem = re.sub(r"[^\w.-]+", "_", node.GetName()).strip("_")
            path, copy = self.outputDir / f"{stem}{extension}", 1
            while path.exists():  # an earlier run's result stays: number this one
                copy += 1
                path = self.outputDir / f"{stem}_{copy}{extension}"
            saveNode(node, path)
            names.append(path.name)
        return names

    # --- data -------------------------------------------------------------------------------------------------
    def say(self, message: str, kind: str = "info") -> None:
        with self.state:
            self.state.appMessage, self.state.appMessageType = message, kind

    def _shown(self, nodes: list) -> None:
        """Show the first loaded volume and pre-select inputs, as Slicer's widgets do for a first volume."""
        volume = next((n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode")), None)
        if volume is not None:
            self.slicerApp.display_manager.show_volume(volume, do_reset_views=True)
        self.refreshNodes()
        for key, name in (("segment", "inputVolume"), ("classify", "inputVolume"), ("synthesize", "inputVolume"),
                          ("register", "fixedVolume")):
            self.panels[key].selectFirst(name, "vtkMRMLScalarVolumeNode")

    def loadFiles(self, files: list[dict]) -> None:
        """Files uploaded from the browser: each becomes a node (kind from its extension), or a clear message."""
        from trame_slicer.utils import write_client_files_to_dir

        from DLCommon.storage import loadFile

        loaded, problems = [], []
        with tempfile.TemporaryDirectory() as folder:
            for path in write_client_files_to_dir(files, folder):
                try:
                    loaded.append(loadFile(path, self.scene))
                except ERRORS as error:  # named as the user named it, not by its temporary copy
                    problems.append(str(error).replace(str(Path(folder)) + "/", ""))
        with self.state:
            self._shown(loaded)
            names = ", ".join(node.GetName() for node in loaded)
            self.say(" ".join(([f"Loaded {names}."] if loaded else []) + problems), "error" if problems else "success")

    def loadSample(self, name: str) -> None:
        try:
            nodes = addSample(name, self.scene)
        except ERRORS as error:
            return self.say(f"Sample '{name}' could not be loaded: {error}", "error")
        with self.state:
            self._shown(nodes)
            self.say(f"Loaded sample '{name}': {', '.join(node.GetName() for node in nodes)}.", "success")

    # --- actions (the panels' buttons call these with the module key) ----------------------------------------
    async def runAction(self, moduleKey: str, actionKey: str) -> None:
        await self.panels[moduleKey].run(actionKey)

    async def estimate(self, moduleKey: str) -> None:
        await self.panels[moduleKey].estimate()

    def cancel(self, moduleKey: str) -> None:
        self.panels[moduleKey].cancel()

    # --- page -------------------------------------------------------------------------------------------------
    def _buildUi(self) -> None:
        with VAppLayout(self.server, theme="dark") as self.ui:
            with v.VAppBar(density="compact"):
                v.VAppBarTitle("MedDL")
                upload = LoadVolumeButton("Open files (.nrrd, .nii.gz, .seg.nrrd, .h5)", False, "mdi-file-upload",
                                          TypedState(self.state, LoadVolumeItemsState, namespace="upload"),
                                          classes="load-files")
                upload.on_load_volume.connect(self.loadFiles)
                with v.VMenu():
                    with v.Template(v_slot_activator="{ props }"):
                        v.VBtn("Sample data", v_bind="props", prepend_icon="mdi-database", variant="text",
                               classes="sample-data")
                    with v.VList(density="compact"):
                        v.VListItem(v_for="name in samples", key="name", title=("name",),
                                    click=(self.loadSample, "[name]"), classes="sample-item")
                v.VSpacer()
                v.VSelect(v_model=("layout",), items=("layouts",), density="compact", hide_details=True,
                          style="max-width: 200px;", classes="mr-2 layout-select")
            with v.VNavigationDrawer(permanent=True, width=430, location="left"):
                v.VAlert(text=("appMessage",), type=("appMessageType",), v_show=("appMessage",), density="compact",
                         variant="tonal", closable=True, classes="ma-2 app-message")
                with v.VTabs(v_model=("module",), grow=True, stacked=True, height=56):
                    for panel in self.panels.values():
                        v.VTab(panel.module.title, value=panel.key, prepend_icon=panel.module.icon,
                               classes=f"tab-{panel.key} text-caption", min_width=0)
                with v.VWindow(v_model=("module",), classes="pa-3"):
                    for panel in self.panels.values():
                        with v.VWindowItem(value=panel.key):
                            panel.build()
                with v.Template(v_slot_append=True):  # stays in sight while the settings scroll
                    for panel in self.panels.values():
                        with html.Div(v_show=(f"module === '{panel.key}'",), classes="px-3 pb-2 border-t"):
                            panel.buildStatus()
            with v.VMain():
                with html.Div(style="display: flex; flex: 1; height: calc(100vh - 48px);"):
                    self.layoutManager.initialize_layout_grid(self.ui)


def serve(port: int = 8080, host: str = "127.0.0.1", outputDir: str | None = None, openBrowser: bool = False) -> None:
    """Start the server (blocks until it is stopped); a DLError, before anything is built, if the port is taken
    or the output folder cannot be written."""
    import socket

    from DLCommon.errors import DLError

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise DLError(f"Port {port} on {host} cannot be used by meddl web ({error.strerror})",
                          fix="pick another port with --port, or stop the program that uses it") from None
    if outputDir:  # made, and checked writable, before the app is built
        from DLCommon.storage import checkWritable

        checkWritable(Path(outputDir).expanduser() / "results.nrrd")
    logging.getLogger("trame_slicer").setLevel(logging.WARNING)
    app = MedDLWebApp(outputDir=outputDir)
    print(f"MedDL web: http://{host}:{port}/", flush=True)
    app.server.start(port=port, host=host, open_browser=openBrowser, show_connection_info=False)
