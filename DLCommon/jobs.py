"""Long-running work with progress, ETA and cancel, that never leaves a half-changed scene.

A :class:`Job` runs in four phases, each on a known thread (as MONAI's ``BundleWorkflow`` declares
initialize / run / finalize):

1. **prepare** (the caller's thread; Slicer's main thread): the function that *makes* the job, e.g.
   ``SegmentationLogic.segmentJob``. It checks the input nodes, reads them into tensors and returns the
   :class:`Job`. It must be cheap (well under 0.2 s): nothing is estimated, trained or inferred here.
2. **plan** (:meth:`Job.runPlan`; the worker thread or the ``meddl`` child process): measures the memory and
   time of the run on this machine and picks the device (:mod:`DLCommon.resources`): a run that does not fit
   moves to the CPU / a smaller window batch, or is refused with a :class:`~DLCommon.errors.DLError` that ends
   the job as FAILED. The Estimate buttons run prepare + plan only (:meth:`Job.resourceEstimate`).
3. **work** (:meth:`Job.runWork`; the worker or the child): the heavy computation on tensors. It never touches
   the MRML scene, reads the plan from ``context.plan`` and calls ``context.report(fraction, message)``
   regularly; that call raises :class:`~DLCommon.errors.JobCancelled` once :meth:`Job.cancel` was called.
4. **apply** (:meth:`Job.runApply`; the main thread): puts the work's result into the scene, inside
   :func:`~DLCommon.scene.sceneTransaction`: nodes it adds are removed again if it raises. Create new nodes
   first and overwrite existing ones last, so a failure cannot leave an existing node half-written.

So a cancelled or failed job adds no node and changes none.

In Slicer, a module widget runs plan + work in a ``meddl`` child process (:class:`~DLCommon.process.ProcessJob`:
Slicer's PythonQt keeps the GIL on the main thread while Qt idles, so a worker thread would crawl there) and
apply in Slicer, on the same Job object. Elsewhere (the Python console, ``meddl``, tests) :meth:`Job.run` runs
all phases on the calling thread, and :meth:`Job.start` / :meth:`Job.poll` run plan + work in a thread::

    job = logic.segmentJob(volume, "brain")   # prepare
    job.start()                                # plan + work in a worker thread
    while not job.poll():                      # poll() runs apply on this thread once work is done
        print(job.statusText())                # message + ETA
        time.sleep(0.2)
    if job.state == JobState.FAILED:
        print(job.error)
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Any, Callable

from .errors import JobCancelled
from .scene import sceneTransaction

__all__ = ["Job", "JobContext", "JobState", "formatSeconds", "keepHistory", "statusText"]


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobContext:
    """Handed to ``work``: the plan, progress reports, and cancellation."""

    def __init__(self, job: "Job"):
        self._job = job

    @property
    def plan(self):
        """What the plan phase decided (a :class:`~DLCommon.resources.ResourceEstimate`: ``.device``,
        ``.windowBatchSize``...), or None for a job without a plan. Not the fuller Estimate-button estimate: a
        run never pays for that."""
        return self._job.runPlan()

    @property
    def cancelRequested(self) -> bool:
        return self._job._cancelEvent.is_set()

    def checkCancelled(self) -> None:
        """Raise :class:`JobCancelled` if the user cancelled."""
        if self.cancelRequested:
            raise JobCancelled(f"{self._job.name} was cancelled")

    def report(self, fraction: float, message: str = "") -> None:
        """Record progress (0..1) and a message; raises :class:`JobCancelled` if cancelled."""
        with self._job._lock:
            self._job._fraction = min(1.0, max(0.0, float(fraction)))
            if message:
                self._job._message = message
        if self._job._observer is not None:
            self._job._observer(self._job._fraction, message)
        self.checkCancelled()


class Job:
    """A cancellable computation with progress, applied to the scene only on success (see the module docstring).

    Args:
        work: ``work(context) -> result``; no scene access.
        apply: ``apply(result) -> output`` that changes the scene; optional (the output is then the result).
        scene: the scene ``apply`` changes (for the rollback).
        name: shown in messages.
        plan: ``plan() -> ResourceEstimate``: measures the run and picks its device (the plan phase; may raise
            a DLError to refuse the run). Runs once, in the worker, before ``work``.
        estimate: ``estimate() -> ResourceEstimate``, a fuller estimate for the Estimate buttons when it costs
            more than the plan (e.g. registration's time, from a short real run); default: the plan's.
        transfer: ``transfer(result) -> result`` for a result that crosses from a child process to the parent:
            it drops what cannot or need not travel (e.g. a trained network that is already saved to disk).
    """

    def __init__(self, work: Callable[[JobContext], Any], apply: Callable[[Any], Any] | None = None,
                 scene=None, name: str = "Job", plan: Callable[[], Any] | None = None,
                 estimate: Callable[[], Any] | None = None, transfer: Callable[[Any], Any] | None = None):
        self.work = work
        self.apply = apply
        self.scene = scene
        self.name = name
        self.transfer = transfer or (lambda result: result)
        self._plan, self._estimate = plan, estimate
        self._planned: Any = None
        self._planDone = False
        self.state = JobState.PENDING
        self.result: Any = None
        self.output: Any = None
        self.error: BaseException | None = None
        self.history = None  # the training curves so far (keepHistory), for a live plot
        self._fraction = 0.0
        self._message = ""
        self._started: float | None = None
        self._finished: float | None = None
        self._lock = threading.Lock()
        self._cancelEvent = threading.Event()
        self._thread: threading.Thread | None = None
        self._workDone = threading.Event()
        self._applied = False
        self._observer: Callable[[float, str], None] | None = None

    # --- progress ------------------------------------------------------------------------------------
    @property
    def fraction(self) -> float:
        with self._lock:
            return self._fraction

    @property
    def message(self) -> str:
        with self._lock:
            return self._message

    @property
    def elapsed(self) -> float:
        if self._started is None:
            return 0.0
        return (self._finished or time.monotonic()) - self._started

    @property
    def eta(self) -> float | None:
        """Estimated seconds left (None until there is progress to extrapolate from)."""
        fraction = self.fraction
        if self.state != JobState.RUNNING or fraction <= 0.0:
            return None
        return self.elapsed * (1.0 - fraction) / fraction

    def statusText(self) -> str:
        return statusText(self)

    # --- the plan phase ------------------------------------------------------------------------------
    @property
    def measuredEstimate(self):
        """The plan if it was already made (None before the plan phase ran, and for a job without a plan)."""
        return self._planned

    def runPlan(self):
        """The plan phase: measure the run on this machine and pick its device, once; returns the plan
        (None for a job without one). Raises the plan's DLError when the run cannot fit."""
        if not self._planDone:
            self._planned = self._plan() if self._plan is not None else None
            self._planDone = True
        return self._planned

    def resourceEstimate(self):
        """The memory and time this job needs here (the Estimate buttons): the fuller estimate if the job has
        one, else its plan. Runs no work and changes no node."""
        if self._estimate is not None:
            if not callable(self._estimate):
                return self._estimate
            self._estimate = self._estimate()
            return self._estimate
        return self.runPlan()

    # --- control -------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop at its next progress report; ``apply`` will not run."""
        self._cancelEvent.set()

    def run(self, progress: Callable[[float, str], None] | None = None) -> Any:
        """Run every phase on this thread; returns apply's output (or the work result).

        Args:
            progress: also called with every ``(fraction, message)`` report (e.g. a console progress bar).

        Raises what ``plan``, ``work`` or ``apply`` raised (:class:`JobCancelled` when cancelled).
        """
        self._observer = progress
        self.runWork()
        self.runApply()
        if self.error is not None:
            raise self.error
        return self.output

    def start(self) -> None:
        """Run plan + work in a background thread; call :meth:`poll` from the main thread until it is True."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} was already started.")
        self._thread = threading.Thread(target=self.runWork, name=f"MedDL {self.name}", daemon=True)
        self._thread.start()

    def poll(self) -> bool:
        """True once the job has finished; on the first such call, runs ``apply`` (on this thread)."""
        if not self._workDone.is_set():
            return False
        self.runApply()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``work`` finished (then :meth:`poll` applies). Returns False on timeout."""
        return self._workDone.wait(timeout)

    # --- the phases ----------------------------------------------------------------------------------
    def runWork(self, progress: Callable[[float, str], None] | None = None) -> None:
        """Plan + work (worker thread or child process); the outcome is in ``state``, ``result``, ``error``."""
        if progress is not None:
            self._observer = progress
        self._started = time.monotonic()
        self.state = JobState.RUNNING
        try:
            context = JobContext(self)
            context.checkCancelled()
            planned = self.runPlan()
            if planned is not None and hasattr(planned, "describe"):
                context.report(0.0, planned.describe())
            self.result = self.work(context)
            context.checkCancelled()
        except JobCancelled as exc:
            self.error, self.state = exc, JobState.CANCELLED
        except BaseException as exc:  # noqa: BLE001 - reported to the caller through .error
            self.error, self.state = exc, JobState.FAILED
        finally:
            self._finished = time.monotonic()
            self._workDone.set()

    def finishWork(self, result: Any = None, error: BaseException | None = None, cancelled: bool = False) -> None:
        """Record the outcome of plan + work that ran elsewhere (a child process), so that :meth:`runApply`
        can follow on this side."""
        self._started = self._started or time.monotonic()
        if cancelled:
            self.error, self.state = error or JobCancelled(f"{self.name} was cancelled"), JobState.CANCELLED
        elif error is not None:
            self.error, self.state = error, JobState.FAILED
        else:
            self.result, self.state = result, JobState.RUNNING
        self._finished = time.monotonic()
        self._workDone.set()

    def runApply(self) -> None:
        """The apply phase (main thread), once: the result into the scene, all or nothing."""
        if self._applied:
            return
        self._applied = True
        if self.state != JobState.RUNNING:  # failed or cancelled: the scene is never touched
            return
        if self._cancelEvent.is_set():
            self.error, self.state = JobCancelled(f"{self.name} was cancelled"), JobState.CANCELLED
            return
        try:
            if self.apply is None:
                self.output = self.result
            elif self.scene is not None:
                with sceneTransaction(self.scene):
                    self.output = self.apply(self.result)
            else:
                self.output = self.apply(self.result)
            with self._lock:
                self._fraction = 1.0
            self.state = JobState.SUCCEEDED
        except BaseException as exc:  # noqa: BLE001
            self.error, self.state = exc, JobState.FAILED


def statusText(job) -> str:
    """``"Train brain: running - 40% - epoch 4/10 - about 1 min 30 s left"``: a job's status line (any object with
    ``name``, ``state``, ``fraction``, ``message``, ``eta`` and ``error``: a Job or a ProcessJob)."""
    parts = [f"{job.name}: {job.state.value}", f"{100 * job.fraction:.0f}%"]
    if job.message:
        parts.append(job.message)
    eta = job.eta
    if eta is not None:
        parts.append(f"about {formatSeconds(eta)} left")
    if job.error is not None:
        parts.append(str(job.error))
    return " - ".join(parts)


def formatSeconds(seconds: float) -> str:
    """``75 -> "1 min 15 s"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def keepHistory(job: Job) -> Callable:
    """An ``onEpoch`` callback for the training loop that keeps a snapshot of the history on ``job.history``
    (a shell's poll timer plots it live; the training thread never touches the scene)."""

    def keep(history) -> None:
        job.history = history.snapshot()

    return keep
