"""One module's panel in ``meddl web``: controls built from the module's settings, its jobs run in the background.

The panel is the registered module's description (:class:`~DLCommon.modules.ModuleDescription`): its sections and
actions (``<Module>Lib/frontend.py``), and every control made from a :class:`~DLCommon.parameters.Parameter` (the
definitions the Slicer widget uses), so names, defaults, ranges and choices are the same in both. A run builds the
module's own Job from the settings, shows its resource estimate, progress with ETA and a Cancel button, and on
completion shows the result in the views (through the app) and in the panel. Any error becomes a message in the panel; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

from trame.widgets import html
from trame.widgets import vuetify3 as v

from DLCommon.errors import DLError
from DLCommon.jobs import JobState
from DLCommon.parameters import checkValue, defaults

from DLCommon.frontend import Action, Outcome
from DLCommon.modules import ModuleDescription

from .uploads import checkFileName, printable

__all__ = ["ModulePanel"]

POLL_SECONDS = 0.25
# the user's to fix, shown as messages; anything else is a defect: logged with its traceback, and said to be one
ERRORS = (DLError, FileNotFoundError, MemoryError)


def _checkModelSettings(values: dict) -> None:
    """The page's model settings are names, never paths: ``modelId`` one of the catalog's models (the engines
    would also load a file path, which a crafted message could name), ``modelName`` a plain name (it becomes the
    trained model's file and catalog id)."""
    modelId, modelName = values.get("modelId"), values.get("modelName")
    if modelId:
        from DLCommon import ModelCatalog

        if not isinstance(modelId, str) or modelId not in ModelCatalog().entries:
            raise DLError("is not in the model catalog", node=f"Model '{printable(modelId)}'",
                          fix="pick a model from the list, or train / import one first")
    if modelName:
        try:
            checkFileName(modelName)
            if any(c.isspace() for c in modelName):
                raise DLError("has a space")
        except DLError:
            raise DLError("must be a plain name without spaces or slashes (it names the model's file and catalog "
                          "entry)", node=f"Model name '{printable(modelName)}'",
                          fix="use letters, digits, '.', '-' and '_', e.g. my-segmentation") from None


class ModulePanel:
    """State, controls and actions of one module (``module.key`` prefixes its state variables)."""

    def __init__(self, app, module: ModuleDescription):
        self.app, self.module, self.key = app, module, module.key
        self.parameters = {p.name: p for p in module.parameters}
        self.job = None
        self._logic = None
        state = app.server.state
        for name, value in defaults(module.parameters).items():
            state[self.var(name)] = value
            state[self.var(name, "items")] = []
            state[self.var(name, "label")] = self.parameters[name].label or name
            state[self.var(name, "shown")] = not self._isExtraInput(name)
        if module.modelInputs is not None and "modelId" in self.parameters:
            state.change(self.var("modelId"))(self.nameInputs)
        for name, value in (("busy", False), ("progress", 0), ("status", ""), ("message", ""), ("messageType", "info"),
                            ("estimate", ""), ("estimateFits", True), ("rows", []), ("headers", []), ("models", [])):
            state[self.var(name)] = value

    # --- state ----------------------------------------------------------------------------------------------
    def var(self, name: str, suffix: str = "") -> str:
        return f"{self.key}_{name}" + (f"_{suffix}" if suffix else "")

    @property
    def state(self):
        return self.app.server.state

    @property
    def logic(self):
        if self._logic is None:
            self._logic = self.module.makeEngine(self.app.scene)
        return self._logic

    def values(self) -> types.SimpleNamespace:
        """The settings as the module's jobs read them: node IDs resolved to nodes, numbers checked."""
        scene, values = self.app.scene, {}
        for name, p in self.parameters.items():
            value = self.state[self.var(name)]
            if p.kind == "node":
                values[name] = scene.GetNodeByID(value) if value else None
            elif p.kind == "nodes":
                values[name] = [scene.GetNodeByID(i) for i in value or [] if scene.GetNodeByID(i) is not None]
            else:
                values[name] = checkValue(p, p.default if value in (None, "") and p.kind != "str" else value)
        _checkModelSettings(values)
        return types.SimpleNamespace(**values)

    def refreshNodes(self) -> None:
        """Node choices from the scene; a selection whose node is gone is cleared."""
        for name, p in self.parameters.items():
            if p.kind not in ("node", "nodes"):
                continue
            items = [{"title": node.GetName(), "value": node.GetID()} for node in self.app.nodesOf(p.nodeClasses)]
            ids = {item["value"] for item in items}
            self.state[self.var(name, "items")] = items
            selected = self.state[self.var(name)]
            if p.kind == "node" and selected and selected not in ids:
                self.state[self.var(name)] = None
            elif p.kind == "nodes" and selected and not set(selected) <= ids:
                self.state[self.var(name)] = [i for i in selected if i in ids]

    def refreshModels(self) -> None:
        from DLCommon import ModelCatalog

        task = self.module.modelTask
        self.state[self.var("models")] = [e.id for e in ModelCatalog().list()
                                          if task is None or (e.spec or {}).get("task", "other") in (task, "other")]

    def selectFirst(self, name: str, className: str) -> None:
        """Pre-select the first node of ``className`` for an empty node setting (as the Slicer widgets do)."""
        if not self.state[self.var(name)]:
            node = next(iter(self.app.nodesOf((className,))), None)
            self.state[self.var(name)] = node.GetID() if node else None

    def say(self, message: str, kind: str = "info") -> None:
        self.state[self.var("message")], self.state[self.var("messageType")] = message, kind

    # --- actions ----------------------------------------------------------------------------------------------
    def _missing(self, action: Action, p) -> str | None:
        empty = [self.parameters[n].label or n for n in action.required if not getattr(p, n)]
        return f"Select {', '.join(empty)} first." if empty else None

    def make(self, action: Action, p):
        """``action``'s job (prepare only: the plan runs in the job's worker), or an immediate action's output."""
        if action.immediate:
            return action.run(self.logic, p)
        return self.module.makeJob(action.key, self.logic, p)

    @staticmethod
    def _applies(action: Action, sectionWhen, p) -> bool:
        """Whether the page shows ``action`` for settings ``p`` (its own and its section's condition)."""
        return all(when.holds(p) for when in (action.when, sectionWhen) if when is not None)

    async def run(self, key: str) -> None:
        """Start ``key``'s job, followed in the background (an immediate action runs to the end here)."""
        if self.job is not None:
            with self.state:
                return self.say("A run is in progress: wait for it or cancel it.", "warning")
        action, sectionWhen = self.module.action(key)
        with self.state:
            self.say("")
            self.state[self.var("rows")] = []
        try:
            p = self.values()
            if not self._applies(action, sectionWhen, p):  # e.g. a stale page: the button is hidden now
                raise DLError(f"{action.title} does not apply to these settings", fix="check the task")
            missing = self._missing(action, p)
            if missing:
                raise DLError(missing, fix="pick them in the panel, or load data / sample data first")
            if action.immediate:
                output = self.make(action, p)
                with self.state:
                    return self._finish(action, p, output)
            self.job = self.make(action, p)
        except ERRORS as error:
            with self.state:
                return self.say(f"{action.title} could not start: {error}", "error")
        except Exception as error:  # a defect: say so, keep serving
            logging.exception("%s %s", self.module.title, action.title)
            with self.state:
                return self.say(f"{action.title} failed unexpectedly: {error!r}", "error")
        # follow it in a task of its own: the page's next requests (Cancel, Estimate...) are served meanwhile
        self._follower = asyncio.ensure_future(self._follow(action, p))

    async def _follow(self, action: Action, p) -> None:
        job = self.job
        with self.state:
            self.state[self.var("busy")], self.state[self.var("progress")] = True, 0
            self.state[self.var("status")] = job.statusText()
        job.start()
        try:
            while not job.poll():  # poll() applies the result to the scene on this (the server's) thread
                with self.state:
                    self.state[self.var("progress")] = round(100 * job.fraction)
                    self.state[self.var("status")] = job.statusText()
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self.job = None
        with self.state:
            self.state[self.var("busy")] = False
            self.state[self.var("status")] = ""
            if job.state == JobState.SUCCEEDED:
                self._finish(action, p, job.output if job.output is not None else job.result)
            elif job.state == JobState.CANCELLED:  # a Job sets it for every JobCancelled
                self.say(f"{action.title} was cancelled; the scene is unchanged.", "warning")
            else:  # failed: the job's scene transaction left the scene as it was, so no node list changes
                self.say(f"{action.title} failed: {job.error}", "error")
                if not isinstance(job.error, ERRORS):
                    logging.error("%s %s failed", self.module.title, action.title, exc_info=job.error)

    def _finish(self, action: Action, p, output: Any) -> None:
        try:
            outcome: Outcome = action.finished(p, output)
            saved = self.app.show(outcome)
        except Exception as error:  # noqa: BLE001 - the run itself succeeded: say so, keep serving
            if not isinstance(error, ERRORS):
                logging.exception("%s %s: showing the result", self.module.title, action.title)
            return self.say(f"{action.title} finished, but its result could not be shown: {error}", "error")
        if outcome.modelId:  # of the settings a run fills in, the page takes the new model (each run makes new nodes)
            self.refreshModels()
            self.state[self.var("modelId")] = outcome.modelId
        if outcome.rows:
            self.state[self.var("headers")] = [{"title": c, "key": c} for c in outcome.rows[0]]
            self.state[self.var("rows")] = outcome.rows
        message = " ".join([outcome.message] + outcome.warnings)
        self.say(message + (f"\nSaved: {', '.join(saved)}." if saved else ""), "success")
        self.app.refreshNodes()

    async def estimate(self) -> None:
        """Memory and time of every action whose inputs are set, measured without running it. The jobs are made
        here (cheap); their plans run in a worker thread, so the page keeps answering every client meanwhile."""
        try:
            p = self.values()
        except ERRORS as error:
            with self.state:
                return self.say(str(error), "error")
        jobs = []
        for section in self.module.sections:
            for action in section.actions:
                if action.immediate or self._missing(action, p) or not self._applies(action, section.when, p):
                    continue
                try:
                    jobs.append((action, self.make(action, p)))
                except ERRORS as error:
                    jobs.append((action, error))
        lines, fits = await asyncio.get_running_loop().run_in_executor(None, self._estimates, jobs)
        with self.state:
            self.state[self.var("estimate")] = "\n".join(lines) or "Select the inputs first."
            self.state[self.var("estimateFits")] = fits

    @staticmethod
    def _estimates(jobs: list) -> tuple[list[str], bool]:
        """``(lines, all fit)`` of ``[(action, job or the error making it), ...]`` (runs the plans)."""
        lines, fits = [], True
        for action, job in jobs:
            if isinstance(job, Exception):  # refused when it was made
                lines.append(f"{action.title}: {job}")
                fits = False
                continue
            try:
                estimate = job.resourceEstimate()
                lines.append(f"{action.title}: {estimate.describe()}" if estimate else f"{action.title}: -")
                fits = fits and (estimate is None or estimate.fits)
            except ERRORS as error:
                lines.append(f"{action.title}: {error}")
                fits = False
        return lines, fits

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.state[self.var("status")] = "Cancelling..."

    # --- a model's input rows ------------------------------------------------------------------------------
    def _inputRows(self) -> list[str]:
        return [name for name in self.parameters if name == "inputVolume" or self._isExtraInput(name)]

    def _isExtraInput(self, name: str) -> bool:
        return name.startswith("inputVolume") and name[len("inputVolume"):].isdigit()

    def nameInputs(self, **_) -> None:
        """Name the input rows after the selected model's inputs (a bundle's T1c, T1, ...); show only the rows it
        uses (as the Slicer widget does)."""
        try:
            names = self.module.modelInputs(self.state[self.var("modelId")] or "")
        except Exception:  # noqa: BLE001 - an unreadable catalog: the plain rows (Apply reports the error)
            names = []
        for index, name in enumerate(self._inputRows()):
            self.state[self.var(name, "label")] = names[index] if index < len(names) else self.parameters[name].label
            self.state[self.var(name, "shown")] = index == 0 or index < len(names)

    # --- controls ---------------------------------------------------------------------------------------------
    def _showIf(self, when) -> dict:
        return {"v_show": (when.javascript(self.var(when.setting)),)} if when else {}

    def control(self, name: str) -> None:
        p = self.parameters[name]
        # no hint line under a field: one that appears on focus moves the buttons below while they are clicked
        common = dict(label=p.label or name, v_model=(self.var(name),), density="compact", hide_details=True,
                      classes=f"mb-2 param-{self.key}-{name}", disabled=(self.var("busy"),))
        tooltip = p.tooltip
        if name == "modelId":
            control = v.VSelect(items=(self.var("models"),), clearable=True, **common)
        elif p.kind in ("node", "nodes"):
            if p.kind == "node":  # a model may rename or hide the input rows (nameInputs)
                common.update(label=(self.var(name, "label"),), v_show=(self.var(name, "shown"),))
            control = v.VSelect(items=(self.var(name, "items"),), item_title="title", item_value="value",
                                clearable=True, multiple=p.kind == "nodes", chips=p.kind == "nodes", **common)
        elif p.kind == "choice":
            control = v.VSelect(items=(list(p.choices),), **common)
        elif p.kind == "bool":
            control = v.VCheckbox(**common)
        elif p.kind in ("int", "float"):
            control = v.VTextField(type="number", min=p.minimum, max=p.maximum, step=1 if p.kind == "int" else "any",
                                   **common)
            tooltip = f"{tooltip} ({p.minimum:g} to {p.maximum:g})".strip()
        else:
            control = v.VTextField(**common)
        if tooltip:
            with control:
                v.VTooltip(text=tooltip, activator="parent", location="end", open_delay=700, max_width=320)

    def build(self) -> None:
        """The panel's widgets (call inside the drawer's container)."""
        for section in self.module.sections:
            with v.VCard(variant="flat", classes="mb-2", **self._showIf(section.when)):
                v.VCardSubtitle(section.title, classes="px-0 text-uppercase")
                for name in self.module.settingsOf(section.group):
                    self.control(name)
                with html.Div(classes="d-flex flex-wrap ga-2 mt-1"):
                    for action in section.actions:
                        v.VBtn(action.title, color="primary", size="small", disabled=(self.var("busy"),),
                               classes=f"action-{self.key}-{action.key}", **self._showIf(action.when),
                               click=(self.app.runAction, f"['{self.key}', '{action.key}']"))

    def buildStatus(self) -> None:
        """Estimate / Cancel, progress with ETA, the last message and result table (the drawer's fixed foot)."""
        with html.Div(classes="d-flex flex-wrap ga-2 my-2"):
            v.VBtn("Estimate", size="small", variant="tonal", disabled=(self.var("busy"),),
                   classes=f"action-{self.key}-estimate", click=(self.app.estimate, f"['{self.key}']"))
            v.VBtn("Cancel", size="small", variant="tonal", color="error", disabled=(f"!{self.var('busy')}",),
                   classes=f"action-{self.key}-cancel", click=(self.app.cancel, f"['{self.key}']"))
        html.Pre(f"{{{{ {self.var('estimate')} }}}}", v_show=(self.var("estimate"),), style="white-space: pre-wrap;",
                 classes=(f"'text-caption estimate-{self.key}' + ({self.var('estimateFits')} ? '' : ' text-error')",))
        v.VProgressLinear(model_value=(self.var("progress"),), v_show=(self.var("busy"),), color="primary", height=6,
                          classes=f"my-1 progress-{self.key}")
        html.Div(f"{{{{ {self.var('status')} }}}}", classes=f"text-caption status-{self.key}")
        v.VAlert(text=(self.var("message"),), type=(self.var("messageType"),), v_show=(self.var("message"),),
                 density="compact", variant="tonal", classes=f"my-2 message-{self.key}",
                 style="white-space: pre-wrap; overflow-wrap: anywhere;")
        v.VDataTable(items=(self.var("rows"),), headers=(self.var("headers"),), v_show=(f"{self.var('rows')}.length",),
                     density="compact", classes=f"rows-{self.key}", hide_default_footer=True, max_height=180)
