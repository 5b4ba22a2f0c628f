"""Files sent from the browser to ``meddl web``, and the result files it writes: names checked, sizes limited.

An upload runs in three steps that the page's script (:data:`UPLOAD_SCRIPT`) drives through trame triggers:

1. ``meddl_upload_begin``: the names and sizes of the chosen files. Each name must be a plain file name
   (:func:`checkFileName`); each size, and their sum, at most the limit (``--max-upload-mb``). The refused files
   are named in the page's message and never sent; a private folder (mode 700) is made for the others.
2. ``meddl_upload_part``: each accepted file in slices of :data:`PART_BYTES`, appended to its file in that folder
   as it arrives (created ``O_EXCL | O_NOFOLLOW``, mode 600), so the server holds one slice at a time, never a
   whole file; a slice beyond the size announced for its file, out of order or for a file not accepted is
   refused and that file dropped.
3. ``meddl_upload_end``: the complete files are loaded into the scene, and the folder is removed.

A crafted client can skip the page's script; the same checks hold because they run here. What is held in memory,
precisely (trame delivers a trigger's arguments only once its whole websocket message has arrived, so a file can
only be streamed as several messages):

- the page's script never sends a file over the limit (refused at step 1 from the size the browser reports, before
  the file is read) and sends the others one slice at a time, each written out before the next is sent: the
  server holds one slice (a few copies of 4 MB while wslink reassembles and msgpack unpacks it);
- a client that announces less than it sends: each slice is counted as it arrives and the file dropped once it
  passes its announced size, so no more than the limit is written, in total too;
- one websocket message larger than a slice (plus 64 KB of packing) is refused from the size its first chunk
  declares, before wslink allocates it (:func:`.access.limitedUnChunker`); aiohttp still reads each websocket
  frame whole, at most trame's message size (10 MB).

trame-slicer's own uploader (``LoadVolumeButton`` + ``write_client_files_to_dir``) is not used: it keeps every
file in memory until the last one arrived and writes ``dest_dir / name`` without checking the name.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Callable

from DLCommon.errors import DLError

__all__ = ["PART_BYTES", "UPLOAD_SCRIPT", "Uploads", "checkFileName", "detachedDataProblem", "outputPath", "printable",
           "safeStem"]

PART_BYTES = 4 << 20  # one slice per websocket message: well under trame's 10 MB message size

# window.meddlUpload(files): the three steps above; the page's file input calls it (see app.py). A slice is sent as
# a File (new File([blob])), which trame's client reads into bytes as it does any File argument of a trigger
# (trame_client/module/vue3-www/assets/index-*.js, its File decorator).
UPLOAD_SCRIPT = """
window.meddlUpload = async function (fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const plan = await trame.trigger('meddl_upload_begin', [files.map((f) => ({ name: f.name, size: f.size }))]);
  try {
    for (const index of (plan && plan.accepted) || []) {
      const file = files[index];
      let offset = 0;
      do {
        const part = new File([file.slice(offset, offset + plan.part)], file.name);
        if (!(await trame.trigger('meddl_upload_part', [index, offset, part]))) break;
        offset += plan.part;
      } while (offset < file.size);
    }
  } finally {
    await trame.trigger('meddl_upload_end', []);
  }
};
"""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SEPARATORS = ("/", "\\")
MAX_NAME_BYTES = 255  # the longest file name ext4, XFS and NTFS store
MAX_PROBLEMS = 20  # messages kept per upload: a crafted one with thousands of bad names gets a short page message


def printable(name) -> str:
    """``name`` as it can be printed in a message: control characters escaped, at most 80 characters."""
    text = str(name).encode("unicode_escape").decode("ascii", "replace") if isinstance(name, str) else repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def checkFileName(name) -> str:
    """``name`` if it is a plain file name to create in a folder of the server's own; else a :class:`DLError`.

    Refused: anything not a non-empty string, a name with a path separator (``/`` or ``\\``: ``../x``,
    ``/etc/x``, ``C:\\x``), ``.`` and ``..``, NUL and other control characters, and names longer than 255 bytes.
    Only a base name passes, so ``folder / name`` stays in ``folder``.
    """
    fix = "rename the file to a plain file name (letters, digits, spaces, '.', '-', '_') and send it again"
    if not isinstance(name, str) or not name.strip():
        raise DLError("has no file name", node="An uploaded file", fix=fix)
    if _CONTROL.search(name):
        raise DLError("has a control character in its name", file=printable(name), fix=fix)
    if any(separator in name for separator in _SEPARATORS) or name in (".", ".."):
        raise DLError("is a path, not a file name: only a plain file name is accepted (nothing is written outside "
                      "the upload folder)", file=printable(name), fix=fix)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise DLError(f"has a name longer than {MAX_NAME_BYTES} bytes", file=printable(name), fix=fix)
    return name


def safeStem(name: str, default: str = "result") -> str:
    """A file name stem made from a node name: characters other than letters, digits, ``.``, ``-`` and ``_``
    become ``_``, leading dots and underscores go (no hidden files, no ``..``), at most 100 characters; the
    result passes :func:`checkFileName`."""
    stem = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFC", str(name)))
    stem = re.sub(r"\.{2,}", ".", stem).lstrip("._-").rstrip("._")[:100].rstrip("._")
    return checkFileName(stem or default)


def outputPath(folder: Path, nodeName: str, extension: str) -> Path:
    """A new file in ``folder`` for a node named ``nodeName``: the safe stem (:func:`safeStem`), numbered
    ``_2``, ``_3``... after an earlier run's file (or link) of that name; never outside ``folder``."""
    folder = Path(folder)
    stem = safeStem(nodeName)
    path, copy = folder / f"{stem}{extension}", 1
    while os.path.lexists(path):  # lexists: a planted symbolic link is not written through
        copy += 1
        path = folder / f"{stem}_{copy}{extension}"
    if path.resolve().parent != folder.resolve():  # cannot happen with a checked name; kept as the last word
        raise DLError("would be written outside the output folder", file=path, fix="rename the node")
    return path


class Uploads:
    """The upload in progress for ``meddl web`` (one at a time; see the module docstring).

    Args:
        limitBytes: the most one file, and all files of one upload together, may hold.
        load: called at the end with the complete files' paths (in the private folder, removed right after) and
            the messages about refused files; shows the result in the page.
        say: shows a message in the page (a refused step, while the upload goes on).
    """

    def __init__(self, limitBytes: int, load: Callable[[list, list], None], say: Callable[[str, str], None]):
        self.limitBytes, self.load, self.say = int(limitBytes), load, say
        self.folder: Path | None = None
        self.expected: dict[int, dict] = {}  # accepted index -> {"name", "size", "written", "path"}
        self.problems: list[str] = []
        self.unsaid = 0  # problems beyond MAX_PROBLEMS

    @property
    def limitText(self) -> str:
        return _megabytes(self.limitBytes)

    # --- the three triggers --------------------------------------------------------------------------------
    def begin(self, files) -> dict:
        """Check the names and sizes announced; make the private folder. Returns ``{"accepted": [indices],
        "part": slice size}`` for the page's script."""
        self.discard()
        total = 0
        if not isinstance(files, list):
            files = []
        names = set()
        for index, info in enumerate(files):
            info = info if isinstance(info, dict) else {}
            try:
                name = checkFileName(info.get("name"))
                size = info.get("size")
                if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                    raise DLError("has no valid size", file=printable(name), fix="send the file again")
                if size > self.limitBytes:
                    raise DLError(f"is {_megabytes(size)}, more than the upload limit of {self.limitText}",
                                  file=printable(name), fix="send a smaller file, or restart meddl web with a larger "
                                                         "--max-upload-mb")
                if total + size > self.limitBytes:
                    raise DLError(f"would bring this upload to {_megabytes(total + size)}, more than the limit of "
                                  f"{self.limitText} for one upload", file=printable(name),
                                  fix="send the files in several uploads, or restart meddl web with a larger "
                                      "--max-upload-mb")
                if name in names:
                    raise DLError("was chosen twice", file=printable(name), fix="choose each file once")
            except DLError as error:
                self._note(str(error))
                continue
            names.add(name)
            total += size
            self.expected[index] = {"name": name, "size": size, "written": 0, "path": None}
        if self.expected:
            self.folder = Path(tempfile.mkdtemp(prefix="meddl-upload-"))  # mode 700: this user only
            os.chmod(self.folder, 0o700)
        return {"accepted": sorted(self.expected), "part": PART_BYTES}

    def part(self, index, offset, file) -> bool:
        """Append one slice to its file. False (and the file dropped, with a message) when it is refused."""
        expected = self.expected.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
        content = file.get("content") if isinstance(file, dict) else None
        if isinstance(content, list):  # trame's client may send the bytes in pieces
            content = b"".join(bytes(piece) for piece in content)
        try:
            if expected is None or self.folder is None:
                raise DLError("arrived for no file of the upload in progress", node="A part of an upload",
                              fix="choose the files again with Open files")
            name = expected["name"]
            if not isinstance(file, dict) or file.get("name") != name or not isinstance(content, (bytes, bytearray)):
                raise DLError("arrived with another name or without content", file=printable(name),
                              fix="choose the files again with Open files")
            if offset != expected["written"]:
                raise DLError(f"arrived out of order (at byte {offset}, expected {expected['written']})",
                              file=printable(name), fix="send the file again")
            if expected["written"] + len(content) > expected["size"]:
                raise DLError(f"is larger than the {_megabytes(expected['size'])} announced for it",
                              file=printable(name), fix="send the file again")
            self._append(expected, bytes(content))
        except DLError as error:
            self._drop(index, str(error))
            return False
        return True

    def end(self) -> None:
        """Load the complete files (``load``), then remove the folder; say what was refused."""
        complete, problems = [], list(self.problems) + ([f"({self.unsaid} more refused.)"] if self.unsaid else [])
        for index, expected in sorted(self.expected.items()):
            if expected["path"] is not None and expected["written"] == expected["size"]:
                complete.append(expected["path"])
            elif expected["size"] == 0 and expected["path"] is None:
                problems.append(str(DLError("is empty", file=printable(expected["name"]), fix="choose another file")))
            else:
                problems.append(str(DLError(f"arrived incomplete ({_megabytes(expected['written'])} of "
                                            f"{_megabytes(expected['size'])})", file=printable(expected["name"]),
                                            fix="send the file again")))
        names = {path.name for path in complete}
        refused = {path: detachedDataProblem(path, names) for path in complete}
        problems += [problem for problem in refused.values() if problem]
        try:
            if complete or problems:
                self.load([path for path in complete if not refused[path]], problems)
        finally:
            self.discard()

    def refuseMessage(self, size: int) -> None:
        """A websocket message over the size one message may hold was dropped before it was buffered
        (:func:`.access.limitedUnChunker`): say so; the upload it belonged to is dropped."""
        self.discard()
        self.say(f"A message of {_megabytes(size)} from the page was refused: more than one message may hold "
                 f"(uploads are sent in slices of {_megabytes(PART_BYTES)}; the upload limit is {self.limitText}). "
                 "Nothing was written. Fix: choose the files again with Open files.", "error")

    def discard(self) -> None:
        """Forget the upload in progress and remove its folder (and anything in it)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder, self.expected, self.problems, self.unsaid = None, {}, [], 0

    # --- files ---------------------------------------------------------------------------------------------
    def _append(self, expected: dict, content: bytes) -> None:
        if expected["path"] is None:
            path = self.folder / expected["name"]  # a checked base name: stays in the folder
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
            descriptor = os.open(path, flags, 0o600)
            expected["path"] = path
        else:
            descriptor = os.open(expected["path"], os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
        expected["written"] += len(content)

    def _drop(self, index, problem: str) -> None:
        expected = self.expected.pop(index, None) if isinstance(index, int) else None
        if expected and expected["path"] is not None:
            Path(expected["path"]).unlink(missing_ok=True)
        if self._note(problem):
            self.say(problem, "error")

    def _note(self, problem: str) -> bool:
        """Keep ``problem`` for the page's message; False once MAX_PROBLEMS are kept (then only counted)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
            return True
        self.unsaid += 1
        return False


# --- headers that point at other files --------------------------------------------------------------------------
_NRRD_DATA_FILE = re.compile(rb"^data ?file:\s*(.*)$", re.IGNORECASE | re.MULTILINE)
_META_DATA_FILE = re.compile(rb"^\s*ElementDataFile\s*=\s*(.*)$", re.MULTILINE)


def detachedDataProblem(path: Path, names: set) -> str | None:
    """Why ``path`` must not be read, if its header names a data file elsewhere: a NRRD ``data file:`` field or
    a MetaImage ``ElementDataFile`` (``.mhd`` / ``.mha``) that is not the plain name of a file uploaded with it
    would make the reader load a file of the server's (``/home/someone/scan.raw``) into the scene."""
    path = Path(path)
    lower = path.name.lower()
    if lower.endswith(".nrrd"):
        pattern, local = _NRRD_DATA_FILE, ()
    elif lower.endswith((".mhd", ".mha")):
        pattern, local = _META_DATA_FILE, (b"LOCAL",)
    else:
        return None
    with open(path, "rb") as stream:
        header = stream.read(65536)
    if lower.endswith(".nrrd"):
        header = header.split(b"\n\n", 1)[0]  # a NRRD header ends at the first empty line
    for match in pattern.finditer(header):
        value = match.group(1).strip()
        target = value.decode("utf-8", "replace")
        if value in local or (target in names and target != path.name and not _CONTROL.search(target)
                              and not any(s in target for s in _SEPARATORS)):
            continue
        return str(DLError(f"names a data file elsewhere ({printable(target)}); only a data file sent with it, by its "
                           "plain name, is read", file=printable(path.name),
                           fix="send a single-file volume (.nrrd with its data inside, .nii.gz, .mha), or the "
                               "header together with its data file"))
    return None


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} KB" if size >= 1024 else f"{size} B"
