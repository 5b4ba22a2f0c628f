"""Long-running work with progress, ETA and cancel, that never leaves a half-changed scene.

A :class:`Job` has two parts:

- ``work(context)`` does the heavy computation on tensors. It must not touch the MRML scene (read the
  input nodes into tensors *before* creating the job). It calls ``context.report(fraction, message)``
  regularly; that call raises :class:`~DLCommon.errors.JobCancelled` once :meth:`Job.cancel` was called.
- ``apply(result)`` puts the result into the scene. It runs only after ``work`` succeeded, on the
  thread that calls :meth:`Job.run` / :meth:`Job.poll` (Slicer's main thread), inside
  :func:`~DLCommon.scene.sceneTransaction`: nodes it adds are removed again if it raises. Create new
  nodes first and overwrite existing ones last, so a failure cannot leave an existing node half-written.

So a cancelled or failed job adds no node and changes none.

Driving a job from a Slicer widget without freezing the GUI (the widget shell, not DLCommon, imports qt)::

    self.job = Job(work, apply, scene=slicer.mrmlScene, name="Train")
    self.job.start()                      # work runs in a worker thread
    self.timer = qt.QTimer(); self.timer.setInterval(200)
    self.timer.timeout.connect(self.onPoll); self.timer.start()

    def onPoll(self):
        self.ui.progressBar.value = int(100 * self.job.fraction)
        self.ui.statusLabel.text = self.job.statusText()      # message + ETA
        if self.job.poll():                # True when finished; runs apply() here, on the main thread
            self.timer.stop()
            if self.job.state == JobState.FAILED:
                slicer.util.errorDisplay(str(self.job.error))

    cancelButton.clicked.connect(lambda: self.job.cancel())

PyTorch releases the GIL in its kernels, so the GUI stays responsive. Work that may crash the process or
exhaust memory runs as a ``meddl`` subprocess instead (same engines; the shell polls its output).
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Any, Callable

from .errors import JobCancelled
from .scene import sceneTransaction

__all__ = ["Job", "JobContext", "JobState", "formatSeconds", "keepHistory"]


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobContext:
    """Handed to ``work``: report progress, and learn about cancellation."""

    def __init__(self, job: "Job"):
        self._job = job

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
    """A cancellable computation with progress, applied to the scene only on success.

    Args:
        work: ``work(context) -> result``; no scene access.
        apply: ``apply(result) -> output`` that changes the scene; optional.
        scene: the scene ``apply`` changes (for the rollback).
        name: shown in messages.
        estimate: the memory and time the work needs (a :class:`~DLCommon.resources.ResourceEstimate`, or a
            function that measures it on demand); shown before the run and as its first status.
    """

    def __init__(self, work: Callable[[JobContext], Any], apply: Callable[[Any], Any] | None = None,
                 scene=None, name: str = "Job", estimate=None):
        self.work = work
        self._estimate = estimate
        self.apply = apply
        self.scene = scene
        self.name = name
        self.state = JobState.PENDING
        self.result: Any = None
        self.output: Any = None
        self.error: BaseException | None = None
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
        eta = self.eta
        parts = [f"{self.name}: {self.state.value}", f"{100 * self.fraction:.0f}%"]
        if self.message:
            parts.append(self.message)
        if eta is not None:
            parts.append(f"about {formatSeconds(eta)} left")
        if self.error is not None:
            parts.append(str(self.error))
        return " - ".join(parts)

    @property
    def measuredEstimate(self):
        """The estimate if it is already known (measured when the job was made), else None."""
        return None if callable(self._estimate) else self._estimate

    def resourceEstimate(self):
        """The :class:`~DLCommon.resources.ResourceEstimate` of this job (measured on first call if needed), or
        None when the job has none."""
        if callable(self._estimate):
            self._estimate = self._estimate()
        return self._estimate

    # --- control -------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop at its next progress report; ``apply`` will not run."""
        self._cancelEvent.set()

    def run(self, progress: Callable[[float, str], None] | None = None) -> Any:
        """Run work and apply on this thread; returns apply's output (or the work result).

        Args:
            progress: also called with every ``(fraction, message)`` report (e.g. a console progress bar).

        Raises what ``work`` or ``apply`` raised (:class:`JobCancelled` when cancelled).
        """
        self._observer = progress
        self._runWork()
        self._applyIfReady()
        if self.error is not None:
            raise self.error
        return self.output

    def start(self) -> None:
        """Run ``work`` in a background thread; call :meth:`poll` from the main thread until it is True."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} was already started.")
        self._thread = threading.Thread(target=self._runWork, name=f"MedDL {self.name}", daemon=True)
        self._thread.start()

    def poll(self) -> bool:
        """True once the job has finished; on the first such call, runs ``apply`` (on this thread)."""
        if not self._workDone.is_set():
            return False
        self._applyIfReady()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``work`` finished (then :meth:`poll` applies). Returns False on timeout."""
        return self._workDone.wait(timeout)

    # --- internals -----------------------------------------------------------------------------------
    def _runWork(self) -> None:
        self._started = time.monotonic()
        self.state = JobState.RUNNING
        try:
            context = JobContext(self)
            if self._estimate is not None and not callable(self._estimate):
                context.report(0.0, self._estimate.describe())
            context.checkCancelled()
            self.result = self.work(context)
            context.checkCancelled()
        except JobCancelled as exc:
            self.error, self.state = exc, JobState.CANCELLED
        except BaseException as exc:  # noqa: BLE001 - reported to the caller through .error
            self.error, self.state = exc, JobState.FAILED
        finally:
            self._finished = time.monotonic()
            self._workDone.set()

    def _applyIfReady(self) -> None:
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
    job.history = None

    def keep(history) -> None:
        job.history = history.snapshot()

    return keep
