"""Batch processing in the GUI: one module's current model over a list of volumes, as one job.

A :class:`BatchJob` runs a :class:`~DLCommon.jobs.Job` per item, one after the other, and looks like a single
job to a widget shell (``fraction``, ``statusText()``, ``poll()``, ``cancel()``, ``state``): overall progress
over all items, one Cancel for the whole batch. Items are volume nodes of the scene, or files of a folder:
a file is loaded into the scene for its turn, its results are saved to the output folder, and both are removed
again, so a folder of hundreds of volumes does not fill the scene. A failed item is recorded (its job leaves
the scene as it was) and the batch goes on; :func:`batchTable` lists every item's status.

With an output folder the batch keeps a manifest there (``manifest.csv``, the columns of the command line's
cohorts: :mod:`DLCommon.cohort`), rewritten after every item, and resumes from it: an item the manifest lists as
done whose output files all exist is skipped, so after a crash or a Cancel the same batch does only what is left.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import DLError
from .jobs import Job, JobState, formatSeconds

__all__ = ["BatchItem", "BatchOutcome", "BatchJob", "batchItems", "batchTable"]


@dataclasses.dataclass
class BatchItem:
    """A volume node of the scene, or a file to load for its turn."""

    name: str
    node: Any = None
    path: Path | None = None


@dataclasses.dataclass
class BatchOutcome:
    item: str
    status: str  # "done", "skipped" (done by an earlier run: its outputs exist), "failed" or "cancelled"
    seconds: float
    error: str = ""
    outputs: list[str] = dataclasses.field(default_factory=list)


def batchItems(inputs: Sequence | str | Path) -> list[BatchItem]:
    """Items from volume nodes, or from a folder (every volume file in it, sorted)."""
    from .storage import baseNameOf, volumeFiles

    if isinstance(inputs, (str, Path)):
        return [BatchItem(baseNameOf(path), path=path) for path in volumeFiles(inputs)]
    items = [BatchItem(node.GetName(), node=node) for node in inputs if node is not None]
    if not items:
        raise DLError("is empty", node="The batch", fix="select at least one volume, or a folder of volumes")
    return items


class BatchJob:
    """A job per item with one progress bar and one Cancel; see the module docstring.

    Args:
        items: from :func:`batchItems`.
        makeJob: ``makeJob(volumeNode) -> Job`` with the module's current settings (called on the polling
            thread: it may read nodes). Its job's ``output`` is the node (or list / dict of nodes) it created.
        scene: the scene files are loaded into.
        outputFolder: where each item's output nodes are saved (required for folder items), or None.
        name: shown in the status line.
    """

    def __init__(self, items: Sequence[BatchItem], makeJob: Callable[[Any], Job], scene,
                 outputFolder: str | Path | None = None, name: str = "Batch"):
        if any(item.path is not None for item in items) and not outputFolder:
            raise DLError("has volumes from a folder but no output folder", node="The batch",
                          fix="choose an output folder for the results")
        self.items, self.makeJob, self.scene, self.name = list(items), makeJob, scene, name
        self.outputFolder = Path(outputFolder) if outputFolder else None
        self.manifestPath = self.outputFolder / "manifest.csv" if self.outputFolder else None
        self._done = self._doneBefore()
        self.outcomes: list[BatchOutcome] = []
        self.state = JobState.PENDING
        self.error: BaseException | None = None
        self.history = None
        self._current: Job | None = None
        self._loaded: list = []
        self._itemStarted = 0.0
        self._started: float | None = None
        self._cancelled = False

    # --- what a shell shows ------------------------------------------------------------------------------
    @property
    def output(self) -> list[BatchOutcome]:
        return self.outcomes

    @property
    def result(self) -> list[BatchOutcome]:
        return self.outcomes

    @property
    def fraction(self) -> float:
        current = self._current.fraction if self._current is not None else 0.0
        return min(1.0, (len(self.outcomes) + current) / max(1, len(self.items)))

    def statusText(self) -> str:
        done = len(self.outcomes)
        parts = [f"{self.name}: {self.state.value}", f"{done}/{len(self.items)} volumes"]
        for status in ("skipped", "failed"):
            count = sum(1 for o in self.outcomes if o.status == status)
            if count:
                parts.append(f"{count} {status}" + (" (done before)" if status == "skipped" else ""))
        if self._current is not None and done < len(self.items):
            parts.append(f"{self.items[done].name}: {self._current.message}")
        fraction = self.fraction
        if self.state == JobState.RUNNING and fraction > 0 and self._started is not None:
            elapsed = time.monotonic() - self._started
            parts.append(f"about {formatSeconds(elapsed * (1 - fraction) / fraction)} left")
        return " - ".join(parts)

    # --- control ---------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop after cancelling the current item (finished items keep their results)."""
        self._cancelled = True
        if self._current is not None:
            self._current.cancel()

    def start(self) -> None:
        """Start the first item's job in its worker thread; then call :meth:`poll` until it is True."""
        self._started = time.monotonic()
        self.state = JobState.RUNNING
        self._startNext()

    def poll(self) -> bool:
        """Advance the batch (on the main thread); True once every item finished or the batch was cancelled."""
        if self.state in (JobState.SUCCEEDED, JobState.CANCELLED):
            return True
        if self._current is None or not self._current.poll():
            return False
        self._finishItem()
        self._startNext()
        return self.state != JobState.RUNNING

    def run(self, progress: Callable[[float, str], None] | None = None) -> list[BatchOutcome]:
        """Run the whole batch on this thread (Python console, tests); returns the outcomes."""
        self._started = time.monotonic()
        self.state = JobState.RUNNING
        while self._beginItem():
            job = self._current
            try:
                job.run(lambda f, m: progress and progress((len(self.outcomes) + f) / len(self.items), m))
            except BaseException:  # noqa: BLE001 - recorded on the outcome; the batch goes on
                pass
            self._finishItem()
        self._end()
        return self.outcomes

    # --- internals ------------------------------------------------------------------------------------------
    def _startNext(self) -> None:
        if self._beginItem():
            self._current.start()
        else:
            self._end()

    def _beginItem(self) -> bool:
        """Make the next item's job (failures to make it are that item's outcome); False when none is left."""
        while len(self.outcomes) < len(self.items) and not self._cancelled:
            item = self.items[len(self.outcomes)]
            self._itemStarted = time.monotonic()
            if item.name in self._done:  # resumed: an earlier run of this batch made its outputs
                self._record(BatchOutcome(item.name, "skipped", 0.0, outputs=self._done[item.name]))
                continue
            try:
                node = item.node
                if node is None:
                    from .storage import loadVolume

                    node = loadVolume(item.path, self.scene)
                    self._loaded.append(node)
                self._current = self.makeJob(node)
                return True
            except Exception as exc:  # noqa: BLE001 - a bad item (e.g. a 4D volume) is reported, not fatal
                self._removeLoaded()
                self._record(BatchOutcome(item.name, "failed", time.monotonic() - self._itemStarted, str(exc)))
        self._current = None
        return False

    def _finishItem(self) -> None:
        job, item = self._current, self.items[len(self.outcomes)]
        outcome = BatchOutcome(item.name, "done", 0.0)
        if job.state == JobState.SUCCEEDED:
            try:
                outcome.outputs = self._save(job.output, item)
            except Exception as exc:  # noqa: BLE001
                outcome.status, outcome.error = "failed", f"its result could not be saved: {exc}"
        else:
            outcome.status = "cancelled" if job.state == JobState.CANCELLED else "failed"
            outcome.error = str(job.error or "")
        if item.path is not None:  # loaded for its turn: input and outputs leave the scene again
            self._loaded += _nodesOf(job.output) if job.state == JobState.SUCCEEDED else []
        self._removeLoaded()
        outcome.seconds = round(time.monotonic() - self._itemStarted, 2)
        self._record(outcome)
        self._current = None

    def _record(self, outcome: BatchOutcome) -> None:
        """Add an item's outcome, and with an output folder rewrite the manifest (a crash keeps what was done)."""
        self.outcomes.append(outcome)
        if self.manifestPath is not None:
            from .cohort import writeManifest

            writeManifest(self.manifestPath, [{"item": o.item, "status": o.status, "seconds": o.seconds,
                                               "error": o.error, "rank": 0, "output": "; ".join(o.outputs)}
                                              for o in self.outcomes])

    def _doneBefore(self) -> dict[str, list[str]]:
        """``{item: output files}`` of the items an earlier run of this batch finished (all outputs still there)."""
        if self.manifestPath is None:
            return {}
        from .cohort import readManifest

        done = {}
        for row in readManifest(self.manifestPath):
            outputs = [o for o in (row.get("output") or "").split("; ") if o]
            if row.get("status") in ("done", "skipped") and outputs and all(Path(o).exists() for o in outputs):
                done[row["item"]] = outputs
        return done

    def _save(self, output, item: BatchItem) -> list[str]:
        if self.outputFolder is None:
            return [node.GetName() for node in _nodesOf(output)]
        from .storage import fileSuffixFor, saveNode

        saved = []
        for node in _nodesOf(output):
            name = node.GetName() if node.GetName().startswith(item.name) else f"{item.name} {node.GetName()}"
            path = self.outputFolder / f"{_fileName(name)}{fileSuffixFor(node)}"
            saveNode(node, path)
            saved.append(str(path))
        return saved

    def _removeLoaded(self) -> None:
        for node in self._loaded:
            if node.GetScene() is None:
                continue
            helpers = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())] if hasattr(
                node, "GetNumberOfDisplayNodes") else []
            helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())] if hasattr(
                node, "GetNumberOfStorageNodes") else []
            for helper in helpers:
                if helper is not None and helper.GetScene() is not None:
                    self.scene.RemoveNode(helper)
            self.scene.RemoveNode(node)
        self._loaded = []

    def _end(self) -> None:
        self.state = JobState.CANCELLED if self._cancelled else JobState.SUCCEEDED


def _nodesOf(output) -> list:
    """The MRML nodes in a job's output: a node, a list / tuple / dict of them, or a result object's fields."""
    if output is None:
        return []
    if hasattr(output, "IsA"):
        return [output]
    if isinstance(output, dict):
        values = output.values()
    elif isinstance(output, (list, tuple)):
        values = output
    elif dataclasses.is_dataclass(output):
        values = [getattr(output, f.name) for f in dataclasses.fields(output)]
    else:
        return []
    return [node for value in values for node in _nodesOf(value)]


def _fileName(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_") or "output"


def batchTable(scene, outcomes: Sequence[BatchOutcome], name: str = "MedDL batch"):
    """A table node listing every item: status, seconds, outputs, error."""
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    columns = ("item", "status", "seconds", "outputs", "error")
    for column in columns:
        table.AddColumn().SetName(column)
    for outcome in outcomes:
        row = table.AddEmptyRow()
        values = (outcome.item, outcome.status, f"{outcome.seconds:.1f}", "; ".join(outcome.outputs), outcome.error)
        for index, value in enumerate(values):
            table.SetCellText(row, index, value)
    return table
