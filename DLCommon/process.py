"""Jobs run in a ``meddl`` child process: Slicer's GUI jobs (Qt-free; the shell polls with its QTimer).

Slicer's PythonQt keeps the GIL on the main thread while the Qt event loop idles, so a Python worker thread
crawls there. A module widget therefore runs each job's plan and work phases (:mod:`DLCommon.jobs`) in a child
process, Slicer's own Python (``PythonSlicer``) running ``-m meddl job FOLDER``, and the apply phase in Slicer:

1. The shell makes the job as always (``<Module>Lib`` action ``make(logic, p)``: the prepare phase). A
   :class:`ProcessJob` wraps it with a :class:`JobRecipe`: the module package, the action, and the settings the
   action read (recorded while it ran).
2. :meth:`ProcessJob.start` writes the recipe into a private temporary folder: ``recipe.json`` and the input
   nodes through Slicer's storage nodes (NRRD, ``.seg.nrrd``, ``.h5``, ``.csv``), and starts the child with its
   output going to ``stdout.txt`` / ``stderr.txt`` there.
3. The child (:func:`runRecipe`) loads the nodes into a scene of its own, makes the same job through the same
   action, runs plan + work, and prints one JSON record per line, prefixed ``@meddl``: ``{"fraction", "message",
   "eta"}``, ``{"history": ...}`` (training curves), ``{"plan": ...}``, and last ``{"result": "result.pt"}``
   (the work result, :mod:`DLCommon.transfer`) or ``{"error": ...}``.
4. :meth:`ProcessJob.poll` (the shell's timer, main thread) reads new lines without blocking; when the child has
   exited it loads the result and runs the job's own ``apply`` inside a scene transaction. So the nodes are made
   by the very code of an in-process run.

Cancel terminates the child and everything it started (the whole process tree) at once, which also frees the
GPU. A child that crashes, is killed or exits non-zero becomes a :class:`~DLCommon.errors.DLError` carrying the
last lines of its error output. The temporary folder is removed in every case, and a failed or cancelled job
leaves the scene as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path
from typing import Any

from .errors import DLError, JobCancelled
from .jobs import JobState, statusText

__all__ = ["JobRecipe", "ProcessJob", "RecordingSettings", "childProcessJob", "runRecipe", "childCommand",
           "killProcessTree", "PROTOCOL_PREFIX"]

PROTOCOL_PREFIX = "@meddl "
STDERR_TAIL_LINES = 15


class RecordingSettings:
    """Settings ``p`` that remember which of them an action read (those travel to the child)."""

    def __init__(self, settings):
        object.__setattr__(self, "_settings", settings)
        object.__setattr__(self, "read", [])

    def __getattr__(self, name: str):
        value = getattr(self._settings, name)
        if name not in self.read:
            self.read.append(name)
        return value


@dataclasses.dataclass
class JobRecipe:
    """What a child needs to make the same job: ``package``'s registered ``action`` on ``settings`` (plain
    values, node objects or lists of them), with node ``arguments`` and further ``carried`` nodes."""

    package: str
    action: str
    settings: dict[str, Any]
    outputs: tuple[str, ...] = ()  # node settings the job writes into: the child gets empty stand-ins
    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)
    carried: list = dataclasses.field(default_factory=list)

    def write(self, folder: Path) -> Path:
        """``recipe.json`` and the node files in ``folder`` (main thread: reads the nodes)."""
        from .storage import fileSuffixFor, saveNode, storageClassFor

        saved: dict[str, dict] = {}

        def entry(node, output: bool = False):
            if node is None:
                return None
            if isinstance(node, (list, tuple)):
                return [entry(n, output) for n in node]
            nodeId = node.GetID()
            if nodeId not in saved:
                record = {"id": nodeId, "class": node.GetClassName(), "name": node.GetName()}
                if not output:
                    if storageClassFor(node) is None:
                        raise DLError("cannot be handed to a child process (no file format)", node=node,
                                      fix="use a volume, segmentation, transform or table node")
                    record["file"] = f"node{len(saved)}{fileSuffixFor(node)}"
                    saveNode(node, folder / record["file"], useCompression=False)  # speed over size: a temp file
                saved[nodeId] = record
            return nodeId

        def isNodeValue(value) -> bool:
            return hasattr(value, "GetID") or (isinstance(value, (list, tuple)) and any(hasattr(v, "GetID")
                                                                                         for v in value))

        settings, nodeSettings = {}, {}
        for name, value in self.settings.items():
            if isNodeValue(value) or (value is None or value == []) and name in self.outputs:
                nodeSettings[name] = entry(value, output=name in self.outputs)
            else:
                settings[name] = value
        document = {
            "package": self.package, "action": self.action, "settings": settings, "nodeSettings": nodeSettings,
            "arguments": {name: entry(node) for name, node in self.arguments.items()},
            "carried": [entry(node) for node in self.carried], "nodes": list(saved.values()),
        }
        path = folder / "recipe.json"
        path.write_text(json.dumps(document, indent=1))
        return path


def childCommand(folder: str | Path, python: str | None = None) -> list[str]:
    """``[python, "-m", "meddl", "job", folder]``: the child's command line (``python``: Slicer's ``PythonSlicer``
    in Slicer, else this interpreter)."""
    return [python or sys.executable, "-m", "meddl", "job", str(folder)]


def _packageRoots(package: str) -> list[str]:
    """The folders that hold DLCommon, ``meddl.py`` and ``package``: the child's import path."""
    import importlib.util

    roots = []
    for name in ("DLCommon", "meddl", package):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            origin = Path(spec.origin)
            root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
            if str(root) not in roots:
                roots.append(str(root))
    return roots


def killProcessTree(process: subprocess.Popen, grace: float = 1.0) -> None:
    """Terminate ``process`` and every process it started; those still alive after ``grace`` seconds are killed."""
    if process.poll() is not None:
        return
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            parent = psutil.Process(process.pid)
            family = parent.children(recursive=True) + [parent]
        except psutil.NoSuchProcess:
            family = []
        for member in family:
            try:
                member.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(family, timeout=grace)
        for member in alive:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
    elif os.name == "posix":  # the child leads its own process group (start_new_session)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    else:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True)
    try:
        process.wait(grace + 1.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Plan:
    """The child's plan as the parent shows it (``describe()``, ``fits``)."""

    def __init__(self, record: dict):
        self.text, self.fits = record.get("text", ""), bool(record.get("fits", True))
        self.device = record.get("device")

    def describe(self) -> str:
        return self.text


class ProcessJob:
    """A :class:`~DLCommon.jobs.Job` whose plan + work run in a ``meddl`` child process and whose apply runs here.

    It looks like a Job to a shell: ``fraction``, ``message``, ``statusText()``, ``eta``, ``history``, ``start()``,
    ``poll()`` (True when finished; applies on this thread), ``cancel()``, ``state``, ``error``, ``output``.

    Args:
        job: the job made here (prepare phase); its ``apply`` runs here on the child's work result.
        recipe: how the child makes the same job.
        python: the interpreter the child runs (Slicer: ``PythonSlicer``); default: this one.
        environment: extra environment variables for the child.
    """

    def __init__(self, job, recipe: JobRecipe, python: str | None = None, environment: dict | None = None):
        self.job, self.recipe, self.python = job, recipe, python
        self.environment = dict(environment or {})
        self.name = job.name
        self.history = None
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None
        self._fraction, self._message, self._eta = 0.0, "", None
        self._plan = None
        self._offset, self._partial = 0, b""
        self._records: list[dict] = []
        self._started: float | None = None
        self._finished = False
        self._cancelled = False

    # --- what a shell shows ------------------------------------------------------------------------------
    @property
    def state(self) -> JobState:
        if self._cancelled:
            return JobState.CANCELLED
        if self._finished:
            return self.job.state
        return JobState.RUNNING if self.process is not None else JobState.PENDING

    @property
    def error(self):
        return self.job.error

    @property
    def result(self):
        return self.job.result

    @property
    def output(self):
        return self.job.output

    @property
    def fraction(self) -> float:
        return 1.0 if self._finished and self.job.state == JobState.SUCCEEDED else self._fraction

    @property
    def message(self) -> str:
        return self._message

    @property
    def eta(self) -> float | None:
        if self.state != JobState.RUNNING:
            return None
        if self._eta is not None:
            return self._eta
        if self._fraction <= 0 or self._started is None:
            return None
        elapsed = time.monotonic() - self._started
        return elapsed * (1 - self._fraction) / self._fraction

    @property
    def measuredEstimate(self):
        """The child's plan (``describe()``, ``fits``) once it arrived, else None."""
        return self._plan

    def resourceEstimate(self):
        """The estimate of the job, measured here (the Estimate buttons: prepare + plan, no child)."""
        return self.job.resourceEstimate()

    def statusText(self) -> str:
        return statusText(self)

    @property
    def records(self) -> list[dict]:
        """Every protocol record received so far, in order (for tests and logs)."""
        return list(self._records)

    # --- control -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Write the recipe and start the child (main thread: it reads the input nodes)."""
        if self.process is not None:
            raise RuntimeError(f"{self.name} was already started.")
        self.folder = Path(tempfile.mkdtemp(prefix="meddl-job-"))  # private (0700): inputs and the result
        try:
            self.recipe.write(self.folder)
            environment = dict(os.environ)
            environment.update(self.environment)
            roots = _packageRoots(self.recipe.package)
            environment["PYTHONPATH"] = os.pathsep.join(roots + [p for p in [environment.get("PYTHONPATH")] if p])
            environment["PYTHONUNBUFFERED"] = "1"
            options = {"start_new_session": True} if os.name == "posix" else {
                "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
            with open(self.folder / "stdout.txt", "wb") as stdout, open(self.folder / "stderr.txt", "wb") as stderr:
                self.process = subprocess.Popen(childCommand(self.folder, self.python), stdin=subprocess.DEVNULL,
                                                stdout=stdout, stderr=stderr, env=environment,
                                                cwd=str(self.folder), **options)
        except BaseException:
            self._removeFolder()
            raise
        self._started = time.monotonic()
        self._message = "starting the meddl process"

    def cancel(self) -> None:
        """Stop the child and its children now; the scene stays as it was."""
        if self._finished:
            return
        self._cancelled = True
        if self.process is not None:
            killProcessTree(self.process)
        self.job.finishWork(cancelled=True, error=JobCancelled(f"{self.name} was cancelled"))
        self.job.runApply()  # a cancelled job changes nothing; this only closes it
        self._finished = True
        self._removeFolder()

    def poll(self) -> bool:
        """True once the job has finished; the first time, runs ``apply`` here (on a success)."""
        if self._finished:
            return True
        if self.process is None:
            return False
        self._readRecords()
        if self.process.poll() is None:
            return False
        self._readRecords()
        self._finish()
        return True

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Poll until finished (for the console and tests); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(interval)
        return True

    def run(self, progress=None):
        """Start, wait and apply; returns the job's output or raises its error (as :meth:`Job.run`)."""
        self.start()
        seen = 0
        while not self.poll():
            if progress is not None and len(self._records) > seen:
                for record in self._records[seen:]:
                    if "fraction" in record:
                        progress(record["fraction"], record.get("message", ""))
                seen = len(self._records)
            time.sleep(0.05)
        if self.error is not None:
            raise self.error
        return self.output

    # --- internals -----------------------------------------------------------------------------------------
    def _readRecords(self) -> None:
        """New complete lines of the child's standard output (never blocks: a file, read from the last offset)."""
        try:
            with open(self.folder / "stdout.txt", "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except OSError:
            return
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip("\r")
            if not text.startswith(PROTOCOL_PREFIX):
                continue  # the engines' own prints
            try:
                record = json.loads(text[len(PROTOCOL_PREFIX):])
            except ValueError:
                continue
            self._records.append(record)
            if "fraction" in record:
                self._fraction = float(record["fraction"])
                self._message = record.get("message") or self._message
                self._eta = record.get("eta")
            if "history" in record:
                from .training import TrainingHistory

                self.history = TrainingHistory(**record["history"])
            if "plan" in record:
                self._plan = _Plan(record["plan"])

    def _stderrTail(self) -> str:
        try:
            lines = (self.folder / "stderr.txt").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-STDERR_TAIL_LINES:])

    def _finish(self) -> None:
        final = next((r for r in reversed(self._records) if "result" in r or "error" in r), {})
        code = self.process.returncode
        try:
            if code == 0 and "result" in final:
                from .transfer import loadResult

                self.job.finishWork(result=loadResult(self.folder / final["result"]))
            elif "error" in final:
                self.job.finishWork(error=DLError(final["error"]) if final.get("type") == "DLError" else DLError(
                    f"failed in the meddl process: {final['error']}", node=f"Job '{self.name}'",
                    fix="see the details below; report it if the input looks right\n" + self._stderrTail()))
            else:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                self.job.finishWork(error=DLError(
                    f"stopped: its meddl process {how} before it finished", node=f"Job '{self.name}'",
                    fix="check the memory of this machine and the details below\n" + self._stderrTail()))
            self.job.runApply()
        except BaseException as exc:  # noqa: BLE001 - e.g. an unreadable result: the job fails, Slicer goes on
            self.job.finishWork(error=exc)
        finally:
            self._finished = True
            self._removeFolder()

    def _removeFolder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def childProcessJob(description, action: str, logic, p, python: str | None = None, **arguments) -> ProcessJob:
    """Make ``description``'s ``action`` job here (prepare) and wrap it to run in a child process.

    Args:
        description: the module's :class:`~DLCommon.modules.ModuleDescription`.
        action: its action key (``"apply"``, ``"train"``, ``"batch"``...).
        logic: the logic the action is made with here.
        p: the settings (the Slicer parameter node, or any object with the settings as attributes).
        python: the child's interpreter (Slicer: ``PythonSlicer``).
        arguments: node arguments of the action (e.g. ``volumeNode`` for ``"batch"``).
    """
    recording = RecordingSettings(p)
    job = description.makeJob(action, logic, recording, **arguments)
    outputs = tuple(q.name for q in description.parameters if getattr(q, "output", False))
    read = {name: getattr(p, name) for name in recording.read}
    carried = list(description.carry(p, action)) if description.carry else []
    recipe = JobRecipe(description.package, action, read, outputs, dict(arguments), carried)
    return ProcessJob(job, recipe, python)


# --- the child's side -----------------------------------------------------------------------------------------

def _emit(record: dict) -> None:
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps(record) + "\n")
    sys.stdout.flush()


def _loadNodes(document: dict, folder: Path, scene) -> dict[str, Any]:
    """``{original node ID: node in this scene}``: files loaded, outputs as empty nodes of their class."""
    from .storage import loadNodeOfClass

    nodes = {}
    for record in document["nodes"]:
        if "file" in record:
            node = loadNodeOfClass(folder / record["file"], scene, record["class"], record["name"])
        else:
            node = scene.AddNewNodeByClass(record["class"], record["name"])
        nodes[record["id"]] = node
    remap = {old: node.GetID() for old, node in nodes.items() if old != node.GetID()}
    for node in nodes.values():  # a table that names nodes by ID names them by their IDs here
        if remap and node.IsA("vtkMRMLTableNode"):
            table = node.GetTable()
            for column in range(table.GetNumberOfColumns()):
                for row in range(table.GetNumberOfRows()):
                    text = node.GetCellText(row, column)
                    if text in remap:
                        node.SetCellText(row, column, remap[text])
    return nodes


def runRecipe(folder: str | Path, quiet=None) -> int:
    """The child: make the recipe's job, run plan + work, write the result; 0 on success, 2 on a DLError, 1 else.
    ``quiet()`` (e.g. silencing VTK's warnings) runs after the first progress line."""
    folder = Path(folder)
    _emit({"fraction": 0.0, "message": "loading the inputs"})  # first: before the heavy imports
    job = None
    try:
        if quiet is not None:
            quiet()
        document = json.loads((folder / "recipe.json").read_text())
        import slicer

        from .modules import moduleByPackage

        scene = slicer.vtkMRMLScene()
        nodes = _loadNodes(document, folder, scene)

        def resolve(value):
            if isinstance(value, list):
                return [nodes[v] for v in value]
            return None if value is None else nodes[value]

        description = moduleByPackage(document["package"])
        settings = dict(document["settings"])
        settings.update({name: resolve(value) for name, value in document["nodeSettings"].items()})
        for parameter in description.parameters:  # settings the action did not read here are absent there too
            settings.setdefault(parameter.name, [] if parameter.kind == "nodes" else
                                None if parameter.kind == "node" else parameter.default)
        arguments = {name: resolve(value) for name, value in document["arguments"].items()}
        _emit({"fraction": 0.0, "message": "preparing the job"})
        logic = description.makeEngine(scene)
        job = description.makeJob(document["action"], logic, types.SimpleNamespace(**settings), **arguments)
        planned = job.runPlan()  # the plan phase, here: the parent shows what the run was planned with
        if planned is not None and hasattr(planned, "describe"):
            _emit({"plan": {"text": planned.describe(), "fits": bool(getattr(planned, "fits", True)),
                            "device": str(getattr(planned, "device", ""))}})
        report = _reporter(job)
        job.runWork(report)
        if job.error is not None:
            raise job.error
        report(1.0, "finished: the result goes to the scene")
        from .transfer import saveResult

        saveResult(job.transfer(job.result), folder / "result.pt")
        _emit({"result": "result.pt"})
        return 0
    except DLError as exc:
        _emit({"error": str(exc), "type": "DLError"})
        return 2
    except JobCancelled as exc:
        _emit({"error": str(exc), "type": "cancelled"})
        return 1
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, with the traceback on stderr
        traceback.print_exc()
        _emit({"error": f"{type(exc).__name__}: {exc}", "type": type(exc).__name__})
        return 1


def _reporter(job, interval: float = 0.1):
    """The child's progress callback: a record per report (at most every ``interval`` s, unless the message
    changed), and the training history whenever a new epoch's snapshot appeared."""
    last = {"time": 0.0, "message": None, "history": None}

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if message != last["message"] or fraction >= 1.0 or now - last["time"] >= interval:
            last.update(time=now, message=message)
            _emit({"fraction": round(float(fraction), 5), "message": message, "eta": job.eta})
        history = getattr(job, "history", None)
        if history is not None and history is not last["history"]:
            last["history"] = history
            _emit({"history": dataclasses.asdict(history)})

    return report
