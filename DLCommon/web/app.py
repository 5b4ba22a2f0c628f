"""``meddl web``: MedDL's four modules in a web browser, on trame-slicer's Slicer views.

The page has Slicer's layout (slice views and a 3D view drawn by Slicer's own displayable managers, served by
trame-slicer from the real MRML libraries), a file loader and the embedded sample data in the top bar, and one
panel per module (:class:`~DLCommon.web.panel.ModulePanel`) over the same engines and settings as the Slicer
widgets. Results are shown in the views and, with ``--output``, written to that folder (file names made from node
names by :func:`~DLCommon.web.uploads.safeStem`, never outside it).

:func:`serve` starts it behind the access gate (:mod:`.access`: token, one user at a time unless ``--shared``);
files come from the browser through :class:`~DLCommon.web.uploads.Uploads` (checked names, size limit, a private
folder removed after loading).
"""

from __future__ import annotations

import atexit
import base64
import logging
from pathlib import Path

from trame.app import TrameApp
from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v
from trame_slicer import module as trameSlicerModule
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories

from DLCommon.frontend import Outcome
from DLCommon.modules import registeredModules

from .panel import ERRORS, ModulePanel
from .samples import addSample, samples
from .uploads import UPLOAD_SCRIPT, Uploads, outputPath

__all__ = ["MedDLWebApp"]

LAYOUT = "Axial Primary"  # a large axial view beside the 3D, coronal and sagittal views
_EXTENSIONS = {"vtkMRMLSegmentationNode": ".seg.nrrd", "vtkMRMLScalarVolumeNode": ".nrrd"}
DEFAULT_MAX_UPLOAD_MB = 2048


class MedDLWebApp(TrameApp):
    """The application: one Slicer scene, its views, and a panel per module.

    Args:
        server: trame's server (default: a new one).
        outputDir: where each run's results are written too (None: nowhere).
        maxUploadMb: the most one file, and one upload's files together, may hold (megabytes of 2**20 bytes).
    """

    def __init__(self, server=None, outputDir: str | Path | None = None, maxUploadMb: float = DEFAULT_MAX_UPLOAD_MB):
        super().__init__(server)
        self.server.enable_module(trameSlicerModule)
        self.slicerApp = SlicerApp()
        self.scene = self.slicerApp.scene
        self.outputDir = Path(outputDir).expanduser() if outputDir else None
        register_rca_factories(self.slicerApp.view_manager, self.server)
        self.layoutManager = LayoutManager(self.scene, self.slicerApp.view_manager, self.server)
        self.layoutManager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.panels = {module.key: ModulePanel(self, module) for module in registeredModules() if module.sections}
        self.uploads = Uploads(int(maxUploadMb * 2**20), self.loadFiles, self.say)
        atexit.register(self.uploads.discard)  # an upload a closed page left half-way: its folder goes too
        for name, step in (("meddl_upload_begin", self.uploads.begin), ("meddl_upload_part", self.uploads.part),
                           ("meddl_upload_end", self.uploads.end), ("meddl_refused", lambda *_: False)):
            self.server.trigger(name)(step)  # fixed names: the page's upload script calls them (uploads.py)
        state = self.server.state
        state.trame__title = "MedDL"
        icon = Path(__file__).resolve().parents[2] / "Resources" / "Icons" / "MedDL.png"  # in a source checkout
        if icon.is_file():
            state.trame__favicon = "data:image/png;base64," + base64.b64encode(icon.read_bytes()).decode()
        state.update({"module": "segment", "appMessage": "", "appMessageType": "info", "uploadBusy": False,
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
            path = outputPath(self.outputDir, node.GetName(), extension)  # an earlier run's result stays: numbered
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

    def loadFiles(self, paths: list, problems: list[str]) -> None:
        """Files uploaded from the browser (complete, in the upload's private folder): each becomes a node (kind
        from its extension), or a clear message; ``problems``: the files the upload refused."""
        from DLCommon.storage import loadFile

        loaded, problems = [], list(problems)
        for path in paths:
            try:
                loaded.append(loadFile(path, self.scene))
            except ERRORS as error:  # named as the user named it, not by its temporary copy
                problems.append(str(error).replace(str(Path(path).parent) + "/", ""))
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
                client.Script(UPLOAD_SCRIPT)
                with html.Div(classes="load-files d-flex align-center justify-center",
                              style="width: 50px; height: 50px;"):
                    v.VTooltip(text=f"Open files (.nrrd, .nii.gz, .seg.nrrd, .h5; at most {self.uploads.limitText})",
                               activator="parent", location="bottom start")
                    v.VFileInput(v_if=("!uploadBusy",), multiple=True, hide_input=True, prepend_icon="mdi-file-upload",
                                 change="uploadBusy = true; window.meddlUpload($event.target.files)"
                                        ".finally(() => { uploadBusy = false; })")
                    v.VProgressCircular(v_else=True, indeterminate=True, size=24)
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


def serve(port: int = 8080, host: str = "127.0.0.1", outputDir: str | None = None, openBrowser: bool = False,
          token: str | None = None, shared: bool = False, maxUploadMb: float = DEFAULT_MAX_UPLOAD_MB,
          ssl: str | None = None) -> None:
    """Start the server (blocks until it is stopped) and print the address to open, with its access token.

    Args:
        token: the access token (:func:`~DLCommon.web.access.resolveToken`: None takes ``$MEDDL_WEB_TOKEN`` or
            makes a random one; ``""`` turns it off, on a loopback host only).
        shared: let several browsers use the page (one scene) at once; by default a second one is told the server
            is in use.
        maxUploadMb: the most one file, and one upload together, may hold.
        ssl: ``"cert.pem,key.pem"``: serve https (trame / wslink's TLS).

    A DLError, before anything is built, if the port is taken, the output folder cannot be written, or the
    options would expose the server (:func:`~DLCommon.web.access.checkServeOptions`).
    """
    import socket
    import webbrowser

    from DLCommon.errors import DLError

    from .access import AccessGate, addresses, checkServeOptions, installGate, resolveToken, startMessage
    from .uploads import PART_BYTES

    token = resolveToken(token)
    checkServeOptions(host, token, port, maxUploadMb, ssl)
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
    app = MedDLWebApp(outputDir=outputDir, maxUploadMb=maxUploadMb)
    gate = AccessGate(token, port, shared=shared, secure=bool(ssl))
    # one message holds at most one upload slice (uploads.py) and its packing
    ceiling = min(PART_BYTES, app.uploads.limitBytes) + (64 << 10)
    app.server.controller.on_server_bind.add(lambda wsServer: installGate(wsServer, gate, ceiling,
                                                                          app.uploads.refuseMessage))
    if ssl:  # trame reads wslink's --ssl from its own parser (wslink/server.py, start_webserver)
        app.server.cli.set_defaults(ssl=ssl)
    if openBrowser:  # trame's own would open the address without the token
        url = addresses(host, port, token, bool(ssl))[-1]
        app.server.controller.on_server_ready.add(lambda **_: webbrowser.open(url))
    print("\n".join(startMessage(host, port, token, bool(ssl))), flush=True)
    # timeout=0: wslink would otherwise stop the server 300 s after its last page closed (wslink/server.py --timeout)
    app.server.start(port=port, host=host, open_browser=False, show_connection_info=False, timeout=0)
