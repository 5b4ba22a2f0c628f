"""Check an image file before a native reader opens it, and the node it made after.

The readers behind :mod:`DLCommon.storage` (teem, MetaIO, ITK's NIfTI IO in slicer-core) trust the file: a header
with an absurd size aborts or corrupts the process, a ``data file: /etc/passwd`` reads that file as voxels, a small
gzip stream can declare gigabytes. :func:`checkBeforeReading` reads the header in pure Python first (NRRD and
``.seg.nrrd``, MetaImage ``.mha`` / ``.mhd``, NIfTI-1/2 through nibabel) and refuses, with a
:class:`~DLCommon.errors.DLError` naming the file, the field and the fix:

- a file name that is not valid UTF-8 (the VTK readers abort on it);
- more than :data:`MAX_HEADER_LINES` header lines or :data:`MAX_SEGMENTS` segments;
- a dimension, size, type or encoding outside what MedDL reads;
- more voxels than :func:`maxVoxels` (``MEDDL_MAX_VOXELS``, default 2^30 voxels x components) before anything is
  allocated;
- data that is not all there (raw data shorter than declared, a compressed stream that ends early: each checked
  by decompressing until the declared size is reached, never further);
- non-finite or singular geometry (spacing, directions, origin; NIfTI ``pixdim``, ``sform`` / ``qform``);
- detached data anywhere but a sibling file given by its plain name (no path, ``..``, ``LIST``, pattern or device),
  and none at all where ``detached=False`` (uploads); NIfTI data before the end of its header.

:func:`checkNode` checks what the reader made: finite, non-singular IJK-to-RAS, positive spacing, the declared
voxel count, the declared segments.
"""

from __future__ import annotations

import bz2
import dataclasses
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np

from .errors import DLError

__all__ = ["HeaderFacts", "checkBeforeReading", "checkNode", "maxVoxels", "MAX_HEADER_LINES", "MAX_SEGMENTS"]

MAX_HEADER_LINES = 4096
MAX_SEGMENTS = 4096
MAX_DIMENSION = 16  # NRRD's own limit
DEFAULT_MAX_VOXELS = 1 << 30
CHUNK = 1 << 24  # bytes decompressed per step: the check's memory stays this small

NRRD_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "char"), 1),
    **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"), 2),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t"), 4),
    **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                     "int64_t"), 8),
    **dict.fromkeys(("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), 8),
    "float": 4, "double": 8,
}
NRRD_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2",
                  "ascii": "text", "text": "text", "txt": "text"}
META_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}
_SEPARATORS = ("/", "\\", "\0")


@dataclasses.dataclass
class HeaderFacts:
    """What a header declared, for :func:`checkNode` to compare with the node the reader made."""

    voxels: int = 0  # spatial voxels (components not counted)
    segments: int | None = None  # a .seg.nrrd's declared segments


def maxVoxels() -> int:
    """The most voxels x components a file may declare: ``MEDDL_MAX_VOXELS`` (default 2^30, 4 GiB of float32)."""
    try:
        return max(1, int(os.environ.get("MEDDL_MAX_VOXELS", DEFAULT_MAX_VOXELS)))
    except ValueError:
        return DEFAULT_MAX_VOXELS


def checkBeforeReading(path: str | Path, detached: bool = True) -> HeaderFacts:
    """Refuse (:class:`DLError`) what the native reader must not open; the header's facts otherwise.

    Args:
        path: the file (NRRD / .nhdr / .seg.nrrd, .mha / .mhd, .nii / .nii.gz; others pass unchecked).
        detached: allow a header's data in a sibling file named by its plain name (False for uploads: a visitor's
            header must carry its data).
    """
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise DLError("has a file name that is not valid UTF-8, which Slicer's readers cannot open",
                      file=str(path).encode("utf-8", "replace").decode("utf-8"),
                      fix="rename the file (letters, digits, - and _)") from None
    name = path.name.lower()
    if name.endswith((".nrrd", ".nhdr")):
        return _checkNrrd(path, detached)
    if name.endswith((".mha", ".mhd")):
        return _checkMetaImage(path, detached)
    if name.endswith((".nii", ".nii.gz")):
        return _checkNifti(path)
    return HeaderFacts()


def checkNode(node, facts: HeaderFacts, path: str | Path) -> None:
    """Refuse (:class:`DLError`) a node the reader made with impossible geometry or other content than declared."""
    from .geometry import ijkToRasMatrix

    if node.IsA("vtkMRMLVolumeNode"):
        image = node.GetImageData()
        if image is None or image.GetNumberOfPoints() == 0:
            raise DLError("was read as an empty volume", file=path, fix="check that the file is complete")
        if facts.voxels and image.GetNumberOfPoints() != facts.voxels:
            raise DLError(f"declares {facts.voxels} voxels but {image.GetNumberOfPoints()} were read", file=path,
                          fix="check that the file is complete")
        _checkMatrix(ijkToRasMatrix(node, world=False)[:3, :3], ijkToRasMatrix(node, world=False)[:3, 3], path,
                     "the volume's geometry (IJK to RAS)")
    elif node.IsA("vtkMRMLSegmentationNode") and facts.segments is not None:
        found = node.GetSegmentation().GetNumberOfSegments()
        if found != facts.segments:
            raise DLError(f"declares {facts.segments} segments but {found} were read (impossible layers or label "
                          "values are dropped by the reader)", file=path,
                          fix="re-save the segmentation from Slicer's Segment Editor")


# --- NRRD --------------------------------------------------------------------------------------------------------

def _checkNrrd(path: Path, detached: bool) -> HeaderFacts:
    fields, pairs, dataOffset = _nrrdHeader(path)
    if not str(fields.get("dimension", "")).strip().isdigit():
        raise DLError("has no valid 'dimension' field", file=path, fix="check that the file is a NRRD image")
    dimension = int(fields["dimension"])
    if not 1 <= dimension <= MAX_DIMENSION:
        raise DLError(f"has dimension {dimension}, not 1..{MAX_DIMENSION}", file=path, fix="check the file's header")
    sizes = _integers(fields.get("sizes", ""), path, "sizes")
    if len(sizes) != dimension or any(s < 1 for s in sizes):
        raise DLError(f"has sizes {fields.get('sizes', '')!r} for dimension {dimension} (each >= 1)", file=path,
                      fix="check the file's header")
    typeName = " ".join(fields.get("type", "").lower().split())
    if typeName not in NRRD_TYPES:
        raise DLError(f"has voxel type {typeName!r}, which MedDL does not read", file=path,
                      fix="save it with a standard type (e.g. short, float)")
    encoding = NRRD_ENCODINGS.get(fields.get("encoding", "").strip().lower())
    if encoding is None:
        raise DLError(f"has encoding {fields.get('encoding', '')!r}; MedDL reads raw, gzip, bzip2 and ascii",
                      file=path, fix="save it as NRRD with raw or gzip encoding")
    kinds = fields.get("kinds", "").split()
    spatial = [i for i in range(dimension) if not kinds or i >= len(kinds) or kinds[i].lower() in ("domain", "space")]
    # the node's voxel count to expect: the spatial axes (unknown for 4D and more without kinds)
    voxels = math.prod(sizes[i] for i in spatial) if (kinds or dimension <= 3) and spatial else 0
    _checkVoxels(math.prod(sizes), path)
    _checkNrrdGeometry(fields, dimension, path)
    facts = HeaderFacts(voxels=voxels)
    if path.name.lower().endswith(".seg.nrrd"):
        facts.segments = _checkSegments(pairs, sizes, kinds, path)
    needed = math.prod(sizes) * NRRD_TYPES[typeName]
    dataFile = next((fields[k] for k in ("data file", "datafile") if k in fields), None)
    if dataFile is not None:
        source, offset = _sibling(path, dataFile.strip(), detached, "data file"), 0
    else:
        source, offset = path, dataOffset
    skip = fields.get("byte skip", "0").strip()
    if skip.lstrip("-").isdigit() and int(skip) > 0:
        offset += int(skip)
    _checkData(source, offset, needed, encoding, path)
    return facts


def _nrrdHeader(path: Path) -> tuple[dict, dict, int]:
    """Fields (``key: value``, keys lower-case), key-value pairs (``key:=value``) and the data's offset."""
    fields, pairs = {}, {}
    with open(path, "rb") as stream:
        magic = stream.readline(64)
        if not magic.startswith(b"NRRD000"):
            raise DLError("is not a NRRD file (no NRRD000x magic line)", file=path, fix="check the file")
        for count in range(MAX_HEADER_LINES + 1):
            line = stream.readline(1 << 16)
            if line in (b"\n", b"\r\n", b""):
                break
            if count == MAX_HEADER_LINES:
                raise DLError(f"has over {MAX_HEADER_LINES} header lines", file=path,
                              fix="remove the extra header fields")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith("#"):
                continue
            if ":=" in text:
                key, value = text.split(":=", 1)
                pairs[key] = value
            elif ": " in text or text.endswith(":"):
                key, value = text.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        return fields, pairs, stream.tell()


def _checkNrrdGeometry(fields: dict, dimension: int, path: Path) -> None:
    directions = fields.get("space directions")
    if directions:
        vectors = [v for v in re.findall(r"\(([^)]*)\)", directions)]
        try:
            matrix = np.array([[float(x) for x in v.split(",")] for v in vectors], dtype=float)
        except ValueError:
            raise DLError(f"has unreadable space directions {directions[:80]!r}", file=path,
                          fix="check the file's header") from None
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise DLError(f"has space directions {directions[:80]!r} that are not one vector per spatial axis",
                          file=path, fix="check the file's header")
        origin = fields.get("space origin", "")
        values = re.findall(r"\(([^)]*)\)", origin)
        try:
            offset = np.array([float(x) for x in values[0].split(",")]) if values else np.zeros(len(matrix))
        except ValueError:
            raise DLError(f"has an unreadable space origin {origin[:80]!r}", file=path,
                          fix="check the file's header") from None
        _checkMatrix(matrix.T, offset, path, "its space directions / origin")
    if fields.get("spacings"):
        values = [v for v in fields["spacings"].split() if v.lower() != "nan"]  # NaN: a non-spatial axis
        numbers = [float(v) for v in values if _isNumber(v)]
        if len(numbers) != len(values) or any(not math.isfinite(v) or v == 0 for v in numbers):
            raise DLError(f"has spacings {fields['spacings'][:80]!r} that are not finite and non-zero", file=path,
                          fix="check the file's header")


def _checkSegments(pairs: dict, sizes: list[int], kinds: list[str], path: Path) -> int:
    """The number of segments a .seg.nrrd declares, its extents within the image, layers and label values valid."""
    ids = {m.group(1) for key in pairs for m in [re.match(r"Segment(\d+)_ID$", key)] if m}
    if len(ids) > MAX_SEGMENTS:
        raise DLError(f"declares {len(ids)} segments, over {MAX_SEGMENTS}", file=path,
                      fix="split the segmentation into several files")
    spatial = sizes[-3:] if len(sizes) >= 3 else sizes
    layers = sizes[0] if len(sizes) == 4 else 1
    for index in ids:
        extent = pairs.get(f"Segment{index}_Extent", "").split()
        if extent:
            numbers = [int(v) for v in extent if v.lstrip("-").isdigit() and len(v) < 12]
            outside = len(numbers) != 6 or any(
                numbers[2 * a] <= numbers[2 * a + 1] and (numbers[2 * a] < 0 or numbers[2 * a + 1] >= spatial[a])
                for a in range(min(3, len(spatial))))  # an empty segment's extent is reversed (0 -1)
            if outside:
                raise DLError(f"gives Segment{index} the extent {' '.join(extent)[:60]!r}, outside the image "
                              f"{' x '.join(map(str, spatial))}", file=path, fix="re-save it from Slicer")
        layer = pairs.get(f"Segment{index}_Layer", "0").strip()
        if not layer.isdigit() or int(layer) >= layers:
            raise DLError(f"puts Segment{index} in layer {layer!r} of {layers}", file=path,
                          fix="re-save it from Slicer")
        value = pairs.get(f"Segment{index}_LabelValue", "1").strip()
        if not value.lstrip("-").isdigit() or not 0 < int(value) < 2 ** 31:
            raise DLError(f"gives Segment{index} the label value {value!r}", file=path, fix="re-save it from Slicer")
    return len(ids)


# --- MetaImage -----------------------------------------------------------------------------------------------------

def _checkMetaImage(path: Path, detached: bool) -> HeaderFacts:
    fields, dataOffset = {}, 0
    with open(path, "rb") as stream:
        for count in range(MAX_HEADER_LINES + 1):
            line = stream.readline(1 << 16)
            if not line:
                break
            if count == MAX_HEADER_LINES:
                raise DLError(f"has over {MAX_HEADER_LINES} header lines", file=path, fix="check the file's header")
            text = line.decode("utf-8", "replace").strip()
            if "=" not in text:
                continue
            key, value = (part.strip() for part in text.split("=", 1))
            fields[key.lower()] = value
            if key.lower() == "elementdatafile":  # the last header field
                dataOffset = stream.tell()
                break
    dims = fields.get("ndims", "")
    if not dims.isdigit() or not 1 <= int(dims) <= 8:
        raise DLError(f"has NDims {dims!r}, not 1..8", file=path, fix="check the file's header")
    dimension = int(dims)
    sizes = _integers(fields.get("dimsize", ""), path, "DimSize")
    if len(sizes) != dimension or any(s < 1 for s in sizes):
        raise DLError(f"has DimSize {fields.get('dimsize', '')!r} for NDims {dimension} (each >= 1)", file=path,
                      fix="check the file's header")
    elementType = fields.get("elementtype", "").upper()
    if elementType not in META_TYPES:
        raise DLError(f"has ElementType {elementType!r}, which MedDL does not read", file=path,
                      fix="save it with a standard type (e.g. MET_SHORT, MET_FLOAT)")
    channels = fields.get("elementnumberofchannels", "1")
    if not channels.isdigit() or not 1 <= int(channels) <= 1024:
        raise DLError(f"has ElementNumberOfChannels {channels!r}", file=path, fix="check the file's header")
    voxels = math.prod(sizes)
    _checkVoxels(voxels * int(channels), path)
    spacing = [float(v) for v in fields.get("elementspacing", "").split() if _isNumber(v)] or [1.0] * dimension
    if len(spacing) < min(dimension, 3) or any(not math.isfinite(s) or s <= 0 for s in spacing):
        raise DLError(f"has ElementSpacing {fields.get('elementspacing', '')!r} (finite and > 0 needed)", file=path,
                      fix="check the file's header")
    matrixText = next((fields[k] for k in ("transformmatrix", "orientation", "rotation") if k in fields), None)
    offsetText = next((fields[k] for k in ("offset", "position", "origin") if k in fields), None)
    n = min(dimension, 3)
    matrix = np.eye(n)
    if matrixText is not None:
        values = [float(v) for v in matrixText.split() if _isNumber(v)]
        if len(values) != dimension * dimension:
            raise DLError(f"has TransformMatrix {matrixText[:80]!r} of {len(values)} numbers for NDims {dimension}",
                          file=path, fix="check the file's header")
        matrix = np.array(values).reshape(dimension, dimension)[:n, :n]
    offset = np.zeros(n)
    if offsetText is not None:
        values = [float(v) for v in offsetText.split() if _isNumber(v)]
        if len(values) < n:
            raise DLError(f"has Offset {offsetText[:80]!r}", file=path, fix="check the file's header")
        offset = np.array(values[:n])
    _checkMatrix(matrix * np.array(spacing[:n])[None, :], offset, path, "its TransformMatrix / Offset / spacing")
    target = fields.get("elementdatafile", "").strip()
    if not target:
        raise DLError("has no ElementDataFile", file=path, fix="check the file's header")
    compressed = fields.get("compresseddata", "false").lower() == "true"
    needed = voxels * int(channels) * META_TYPES[elementType]
    if target.upper() == "LOCAL":
        source, start = path, dataOffset
    else:
        source, start = _sibling(path, target, detached, "ElementDataFile"), 0
    headerSize = fields.get("headersize", "0")
    if headerSize.isdigit():
        start += int(headerSize)
    _checkData(source, start, needed, "zlib" if compressed else "raw", path)
    return HeaderFacts(voxels=voxels if dimension <= 3 else 0)


# --- NIfTI ----------------------------------------------------------------------------------------------------------

def _checkNifti(path: Path) -> HeaderFacts:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        header = image.header
        shape = tuple(int(s) for s in header.get_data_shape())
        itemSize = np.dtype(header.get_data_dtype()).itemsize
    except Exception as exc:  # noqa: BLE001 - nibabel's errors for a broken header are of many kinds
        raise DLError(f"is not a readable NIfTI file ({' '.join(str(exc).split())[:160]})", file=path,
                      fix="check that the file is complete") from None
    if not shape or len(shape) > 7 or any(s < 1 for s in shape):
        raise DLError(f"has dimensions {shape}", file=path, fix="check the file's header")
    voxels = math.prod(shape)
    _checkVoxels(voxels, path)
    pixdim = np.asarray(header["pixdim"], dtype=float)[1:1 + min(3, len(shape))]
    if not np.isfinite(pixdim).all() or (pixdim[:len(shape)] == 0).any():
        raise DLError(f"has pixdim {pixdim.tolist()} (finite and non-zero needed)", file=path,
                      fix="check the file's header (pixdim)")
    for code, getter, what in (("sform_code", header.get_sform, "sform"), ("qform_code", header.get_qform, "qform")):
        if int(header[code]) > 0:
            affine = np.asarray(getter(), dtype=float)
            _checkMatrix(affine[:3, :3], affine[:3, 3], path, f"its {what}")
    headerBytes = 540 if header.sizeof_hdr == 540 else 348
    offset = int(getattr(image.dataobj, "offset", header["vox_offset"]))  # the file's (the image's header copy has 0)
    single = path.name.lower().endswith((".nii", ".nii.gz"))
    if single and offset < headerBytes:
        raise DLError(f"has vox_offset {offset}, inside its {headerBytes}-byte header", file=path,
                      fix="check the file's header (vox_offset)")
    if path.name.lower().endswith(".gz"):  # the offset is within the decompressed stream
        _checkData(path, 0, offset + voxels * itemSize, "gzip", path)
    else:
        _checkData(path, offset, voxels * itemSize, "raw", path)
    return HeaderFacts(voxels=math.prod(shape[:3]))


# --- shared -----------------------------------------------------------------------------------------------------------

def _checkVoxels(count: int, path: Path) -> None:
    limit = maxVoxels()
    if count > limit:
        raise DLError(f"declares {count:,} voxels, over MedDL's limit of {limit:,}", file=path,
                      fix="crop or downsample the image, or raise the limit (MEDDL_MAX_VOXELS) if this machine has "
                          "the memory")


def _checkMatrix(matrix: np.ndarray, origin: np.ndarray, path: Path, what: str) -> None:
    if not np.isfinite(matrix).all() or not np.isfinite(origin).all():
        raise DLError(f"has non-finite numbers in {what}", file=path, fix="check the file's geometry fields")
    scale = float(np.prod(np.linalg.norm(matrix, axis=0))) if matrix.size else 0.0
    if matrix.size and (scale == 0 or abs(float(np.linalg.det(matrix))) <= 1e-9 * scale):
        raise DLError(f"has singular geometry in {what} (axes of zero length or parallel)", file=path,
                      fix="check the file's geometry fields")


def _sibling(path: Path, target: str, detached: bool, field: str) -> Path:
    """The detached data file ``target`` when it is a plain name of an existing file beside ``path``."""
    plain = (target and target not in (".", "..") and not any(s in target for s in _SEPARATORS)
             and target.upper() != "LIST" and "%" not in target and not target.lower().startswith("list")
             and target.isprintable())
    if not detached or not plain:
        raise DLError(f"names its data in {field} {target[:80]!r}; MedDL reads only "
                      + ("data inside the file" if not detached else "a file beside it, given by its plain name"),
                      file=path, fix="save the image as a single file (.nrrd, .nii.gz, .mha)")
    sibling = path.parent / target
    if not sibling.is_file():
        raise DLError(f"names its data file {target!r}, which is not beside it", file=path,
                      fix="put the data file beside the header")
    return sibling


def _checkData(source: Path, offset: int, needed: int, encoding: str, path: Path) -> None:
    """At least ``needed`` bytes of voxel data from ``offset`` of ``source``: raw bytes counted, compressed streams
    decompressed until ``needed`` bytes came out (never more, so a bomb costs nothing)."""
    size = source.stat().st_size
    if encoding == "raw":
        if size - offset < needed:
            raise DLError(f"holds {max(0, size - offset):,} bytes of voxel data, {needed:,} declared", file=path,
                          fix="the file is truncated: copy it again")
        return
    if encoding == "text":
        with open(source, "rb") as stream:
            stream.seek(offset)
            sample = stream.read(1 << 16)
        if any(b > 127 or b == 0 for b in sample):
            raise DLError("declares ASCII (text) voxels but holds binary data", file=path,
                          fix="check the file's encoding field")
        return
    with open(source, "rb") as stream:
        stream.seek(offset)
        try:
            got = _decompressed(stream, encoding, needed)
        except (zlib.error, OSError, EOFError, ValueError) as exc:
            raise DLError(f"has a corrupt compressed voxel stream ({exc})", file=path,
                          fix="the file is damaged: copy it again") from None
    if got < needed:
        raise DLError(f"decompresses to {got:,} bytes of voxel data, {needed:,} declared", file=path,
                      fix="the file is truncated: copy it again")


def _decompressed(stream, encoding: str, needed: int) -> int:
    """Bytes that ``stream``'s compressed data gives, counted up to ``needed`` (never decompressing further)."""
    got = 0
    if encoding == "bzip2":
        decompressor = bz2.BZ2Decompressor()
        while got < needed and not decompressor.eof:
            data = stream.read(1 << 20) if decompressor.needs_input else b""
            if decompressor.needs_input and not data:
                break
            got += len(decompressor.decompress(data, max_length=min(needed - got, CHUNK)))
        return got
    bits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    decompressor, pending = zlib.decompressobj(bits), b""
    while got < needed:
        if decompressor.unconsumed_tail:
            data = decompressor.unconsumed_tail
        elif pending:
            data, pending = pending, b""
        else:
            data = stream.read(1 << 20)
        if not data:
            break
        got += len(decompressor.decompress(data, min(needed - got, CHUNK)))
        if decompressor.eof:
            if encoding != "gzip":
                break
            pending, decompressor = decompressor.unused_data, zlib.decompressobj(bits)  # gzip members follow
    return got


def _integers(text: str, path: Path, field: str) -> list[int]:
    values = text.split()
    if not values or not all(v.lstrip("-").isdigit() and len(v) < 20 for v in values):
        raise DLError(f"has {field} {text[:80]!r}, not whole numbers", file=path, fix="check the file's header")
    return [int(v) for v in values]


def _isNumber(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False

