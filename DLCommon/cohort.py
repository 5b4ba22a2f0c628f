"""Cohort inference: one command over many inputs, sharded across torchrun processes, resumable.

Items come from a folder (every volume file in it) or a CSV (a column per input, optional ``name`` and
``output`` columns). Under ``torchrun`` process ``rank`` takes every ``worldSize``-th item, so each item is
processed exactly once. An item whose output already exists is skipped: running the same command again
after a crash or a kill completes only the missing items. Outputs are written under a temporary name and
renamed when complete, so a half-written file never counts as done. A failing item is recorded and the run
goes on. Rank 0 writes the manifest (CSV): item, status (``done`` / ``skipped`` / ``failed``), seconds,
error, rank, output.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from .distributed import barrier, distributedContext
from .errors import DLError

__all__ = ["CohortItem", "CohortReport", "isCohortSource", "cohortItems", "partialPath", "runCohort",
           "runCohortCommand", "inputFiles", "writeManifest", "readManifest", "MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = ["item", "status", "seconds", "error", "rank", "output"]


@dataclasses.dataclass
class CohortItem:
    """One unit of work: ``inputs`` by role (``input``, ``fixed``, ``moving``...) and the file that marks it done."""

    name: str
    inputs: dict[str, Path]
    output: Path


@dataclasses.dataclass
class CohortReport:
    rows: list[dict]
    manifestPath: Path | None

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row["status"] == status)

    def summary(self) -> str:
        return (f"{self.count('done')} done, {self.count('skipped')} skipped (output exists), "
                f"{self.count('failed')} failed" + (f"; manifest: {self.manifestPath}" if self.manifestPath else ""))


def isCohortSource(path: str | Path) -> bool:
    """True for a folder or a ``.csv`` list of inputs (a cohort), False for a single input file."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() == ".csv"


def cohortItems(source: str | Path, outputFor: Callable[[str], Path], columns: Sequence[str] = ("input",),
                defaults: dict[str, str | Path] | None = None,
                nameOf: Callable[[dict[str, Path]], str] | None = None) -> list[CohortItem]:
    """The items of a folder or CSV.

    Args:
        source: a folder (each volume file is an item with role ``columns[0]``) or a CSV with a header row
            naming ``columns`` (relative paths start at the CSV's folder; optional ``name`` / ``output``).
        outputFor: ``outputFor(name) -> Path`` of the item's output when the CSV has no ``output`` column.
        columns: the input roles each item needs.
        defaults: roles given once for every item (e.g. the fixed template), when the CSV lacks that column.
        nameOf: ``nameOf(inputs) -> str``, an item's name when the CSV has no ``name`` (default: the file name of
            the first role's input, without extension).

    Raises:
        DLError: no items, missing columns, missing files or duplicate names (naming the row).
    """
    from .storage import baseNameOf, volumeFiles

    source, defaults = Path(source), {k: Path(v) for k, v in (defaults or {}).items()}
    nameOf = nameOf or (lambda inputs: baseNameOf(inputs[columns[0]]))
    if source.is_dir():
        items = []
        for path in volumeFiles(source):
            inputs = {columns[0]: path, **defaults}
            items.append(CohortItem(nameOf(inputs), inputs, outputFor(nameOf(inputs))))
    elif source.is_file():
        items = _csvItems(source, outputFor, columns, defaults, nameOf)
    else:
        raise DLError("does not exist", file=source, fix="give a folder of volumes or a CSV listing them")
    if not items:
        raise DLError("lists no input", file=source, fix="add volume files (.nrrd, .nii.gz, ...) or CSV rows")
    seen: dict[str, int] = {}
    for item in items:
        seen[item.name] = seen.get(item.name, 0) + 1
    duplicates = sorted(name for name, n in seen.items() if n > 1)
    if duplicates:
        raise DLError(f"gives several inputs the same name {duplicates}, so their outputs would overwrite each other",
                      file=source, fix="add a 'name' column with unique names, or rename the files")
    return items


def _csvItems(path: Path, outputFor, columns, defaults, nameOf) -> list[CohortItem]:
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in columns if c not in header and c not in defaults]
        if missing:
            raise DLError(f"has columns {header} but needs {list(columns)} (missing {missing})", file=path,
                          fix="write a header row naming the columns, e.g. " + ",".join(columns))
        items = []
        for number, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not any(row.values()):
                continue
            inputs = dict(defaults)
            for column in columns:
                if column in header:
                    value = Path(row[column]).expanduser()
                    inputs[column] = value if value.is_absolute() else path.parent / value
                    if not inputs[column].exists():
                        raise DLError(f"row {number} names {inputs[column]} ({column}), which does not exist",
                                      file=path, fix="correct the path (relative paths start at the CSV's folder)")
            name = row.get("name") or nameOf(inputs)
            output = outputFor(name)
            if row.get("output"):
                output = Path(row["output"]).expanduser()
                output = output if output.is_absolute() else path.parent / output
            items.append(CohortItem(name, inputs, output))
    return items


def inputFiles(source: str | Path, column: str = "input") -> list[Path]:
    """The input files of a single file, a folder or a CSV cohort (e.g. for ``--dry-run``)."""
    if not isCohortSource(source):
        return [Path(source)]
    return [item.inputs[column] for item in cohortItems(source, lambda name: Path(name), (column,))]


def partialPath(output: Path) -> Path:
    """Where an item's output is written before it is complete (same folder and extension)."""
    return output.with_name(f".partial-{output.name}")


def runCohort(items: Sequence[CohortItem], process: Callable[[CohortItem, Path], None],
              manifestPath: str | Path | None, progress: Callable[[float, str], None] | None = None) -> CohortReport:
    """Process this process's share of ``items``; returns the manifest rows (all ranks' on rank 0).

    Args:
        items: the whole cohort, in the same order on every process.
        process: ``process(item, partial)`` writes the item's main output to ``partial`` (renamed to
            ``item.output`` on success; other outputs it writes directly). It may raise anything: the item
            is marked failed with the message and the run goes on (``KeyboardInterrupt`` stops it).
        manifestPath: the manifest CSV (rank 0 writes it after all processes finished), or None.
        progress: ``progress(fraction, message)`` over this process's items.
    """
    context = distributedContext()
    mine = list(items)[context.rank::context.worldSize]
    report = progress or (lambda fraction, message: None)
    manifestPath = Path(manifestPath) if manifestPath else None
    rankLog = manifestPath.with_name(f".{manifestPath.name}.rank{context.rank}.jsonl") if manifestPath else None
    if rankLog is not None:
        rankLog.parent.mkdir(parents=True, exist_ok=True)
        rankLog.write_text("")
    rows = []
    for index, item in enumerate(mine):
        report(index / max(1, len(mine)), item.name)
        row = {"item": item.name, "status": "done", "seconds": 0.0, "error": "", "rank": context.rank,
               "output": str(item.output)}
        if item.output.exists():
            row["status"] = "skipped"
        else:
            partial = partialPath(item.output)
            partial.parent.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            try:
                process(item, partial)
                os.replace(partial, item.output)
            except KeyboardInterrupt:
                partial.unlink(missing_ok=True)
                raise
            except Exception as exc:  # noqa: BLE001 - one bad item must not stop a cohort
                partial.unlink(missing_ok=True)
                row["status"], row["error"] = "failed", str(exc) or type(exc).__name__
            row["seconds"] = round(time.monotonic() - started, 3)
        rows.append(row)
        if rankLog is not None:  # appended per item: what a killed run finished stays on record
            with open(rankLog, "a") as stream:
                stream.write(json.dumps(row) + "\n")
    report(1.0, f"{len(mine)} item(s)")
    barrier()
    if manifestPath is None or not context.isMain:
        return CohortReport(rows, manifestPath)
    rows = []
    for rank in range(context.worldSize):
        log = manifestPath.with_name(f".{manifestPath.name}.rank{rank}.jsonl")
        if log.exists():
            rows += [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            log.unlink()
    order = {item.name: i for i, item in enumerate(items)}
    rows.sort(key=lambda row: order.get(row["item"], len(order)))
    writeManifest(manifestPath, rows)
    return CohortReport(rows, manifestPath)


def writeManifest(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write the manifest CSV (:data:`MANIFEST_COLUMNS`) atomically: a kill leaves the previous one whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partialPath(path)
    with open(partial, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
    return path


def readManifest(path: str | Path) -> list[dict]:
    """The rows of a manifest CSV ([] when there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def runCohortCommand(items: Sequence[CohortItem], process: Callable[[CohortItem, Path], None],
                     manifestPath: str | Path, what: str) -> int:
    """:func:`runCohort` for a ``meddl`` command: a progress bar, a line per failure, the summary on rank 0.

    Returns the exit status: 0, or 1 when an item failed (the others are still done).
    """
    from tqdm import tqdm

    context = distributedContext()
    share = len(items[context.rank::context.worldSize])
    with tqdm(total=share, desc=what + (f" [rank {context.rank}/{context.worldSize}]" if context.active else ""),
              unit="item") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message[:40])
            bar.update(round(fraction * share) - bar.n)

        result = runCohort(items, process, manifestPath, progress)
    if not context.isMain:  # rank 0 holds every rank's rows and sets the exit status
        return 0
    for row in result.rows:
        if row["status"] == "failed":
            print(f"FAILED  {row['item']}: {row['error']}")
    print(f"{what}: {result.summary()}")
    return 1 if result.count("failed") else 0
