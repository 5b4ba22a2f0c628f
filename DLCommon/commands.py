"""Running a module's job from a ``meddl`` command: its ``--dry-run`` line and its console progress bar.

Every engine command makes the job its panel makes (``<Module>Logic.<task>Job``) on nodes loaded from files; these
two functions are what the commands then do with it, written once.
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = ["printJobEstimate", "runWithProgressBar"]


def printJobEstimate(makeJob: Callable[[], Any], **fields) -> int:
    """``meddl --dry-run``: one JSON line with ``fields`` (e.g. the input file) and the estimate of the job
    ``makeJob()`` makes (its plan phase: memory, time, device). Returns 0 when it fits here, 2 when it does not or
    the job is refused as it is made (the line then says why)."""
    from .errors import DLError

    try:
        estimate = makeJob().resourceEstimate()
    except DLError as exc:
        print(json.dumps({**fields, "fits": False, "text": str(exc)}))
        return 2
    print(json.dumps({**fields, **estimate.toDict()}))
    return 0 if estimate.fits else 2


def runWithProgressBar(job, description: str, total: int = 100, unit: str = "%", leave: bool = True):
    """``job.run()`` with a console progress bar of ``total`` steps (100 % or the epochs of a training), the
    latest message beside it; returns the job's output."""
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit=unit, leave=leave) as bar:
        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message.split(": ", 1)[-1][:50])
            bar.update(round(fraction * total) - bar.n)

        return job.run(progress)
