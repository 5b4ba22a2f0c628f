"""Untrusted image files (issue 25, first slice): malformed files made from valid seeds are refused with a DLError
before the native reader opens them (DLCommon.filechecks), valid files still load, and no file outside the given
file's folder is read.

Every load runs in one child process that prints an outcome per file, so a file that kills the process (as many of
these did before the checks: the .seg.nrrd abort, MetaIO's NDims heap corruption) fails its own case instead of the
test run.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys, time
import slicer
from DLCommon import DLError, tensorFromVolume
from DLCommon.storage import loadFile
scene = slicer.vtkMRMLScene()
for path in sys.argv[1:]:
    started = time.monotonic()
    try:
        node = loadFile(path, scene)
        outcome = {"ok": node.GetClassName()}
        if node.IsA("vtkMRMLVolumeNode"):
            outcome["first"] = [float(v) for v in tensorFromVolume(node)[0].permute(2, 1, 0).flatten()[:16]]
    except DLError as exc:
        outcome = {"refused": str(exc)}
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    outcome["seconds"] = time.monotonic() - started
    print(json.dumps({"path": path, **outcome}), flush=True)
"""


def loadInChild(paths: list[Path], extraEnv: dict | None = None) -> dict[str, dict]:
    """``{file name: outcome}`` of loading each file in one child process; a crash leaves the rest unreported."""
    answer = subprocess.run([sys.executable, "-c", CHILD, *map(os.fsdecode, paths)], capture_output=True, timeout=300,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(extraEnv or {})})
    outcomes = {}
    for line in answer.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            outcomes[os.path.basename(record.pop("path"))] = record
    missing = [os.path.basename(os.fsdecode(p)) for p in paths if os.path.basename(os.fsdecode(p)) not in outcomes]
    assert not missing, (f"the child died (exit {answer.returncode}) at {missing[0]}: "
                         f"{answer.stderr.decode('utf-8', 'replace')[-800:]}")
    return outcomes


# --- seeds ---------------------------------------------------------------------------------------------------------

def nrrdSeed(folder: Path, name="seed.nrrd", encoding="raw", extra: str = "", data: bytes | None = None,
             header: dict | None = None) -> Path:
    """A 16 x 12 x 8 short NRRD written by hand (so each field can be edited)."""
    voxels = np.arange(16 * 12 * 8, dtype="<i2").reshape(8, 12, 16)
    fields = {"type": "short", "dimension": "3", "space": "left-posterior-superior", "sizes": "16 12 8",
              "space directions": "(0.8,0,0) (0,0.8,0) (0,0,2.5)", "kinds": "domain domain domain",
              "endian": "little", "encoding": encoding, "space origin": "(10,20,30)", **(header or {})}
    raw = voxels.tobytes()
    body = data if data is not None else (gzip.compress(raw) if encoding == "gzip" else raw)
    text = "NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None) + extra + "\n"
    path = folder / name
    path.write_bytes(text.encode() + body)
    return path


def segSeed(folder: Path, name="seed.seg.nrrd", pairs: dict | None = None, data: bytes | None = None) -> Path:
    """A .seg.nrrd of two segments (one layer, labels 1 and 2) as Slicer writes it."""
    labels = np.zeros((8, 12, 16), np.uint8)
    labels[2:5, 3:8, 4:10], labels[5:7, 6:10, 8:14] = 1, 2
    segments = {"Segment0_ID": "a", "Segment0_Name": "a", "Segment0_Layer": "0", "Segment0_LabelValue": "1",
                "Segment0_Extent": "4 9 3 7 2 4", "Segment1_ID": "b", "Segment1_Name": "b", "Segment1_Layer": "0",
                "Segment1_LabelValue": "2", "Segment1_Extent": "8 13 6 9 5 6", **(pairs or {})}
    extra = "".join(f"{k}:={v}\n" for k, v in segments.items() if v is not None)
    return nrrdSeed(folder, name, "gzip", extra, data if data is not None else gzip.compress(labels.tobytes()),
                    header={"type": "unsigned char"})


def mhaSeed(folder: Path, name="seed.mha", fields: dict | None = None, data: bytes | None = None) -> Path:
    voxels = np.arange(16 * 12 * 8, dtype="<i2").tobytes()
    header = {"ObjectType": "Image", "NDims": "3", "BinaryData": "True", "BinaryDataByteOrderMSB": "False",
              "CompressedData": "False", "TransformMatrix": "1 0 0 0 1 0 0 0 1", "Offset": "0 0 0",
              "ElementSpacing": "0.8 0.8 2.5", "DimSize": "16 12 8", "ElementType": "MET_SHORT",
              **(fields or {})}
    body = data if data is not None else (zlib.compress(voxels) if header.get("CompressedData") == "True" else voxels)
    if header.get("CompressedData") == "True":
        header.setdefault("CompressedDataSize", str(len(body)))
    header.setdefault("ElementDataFile", "LOCAL")
    header["ElementDataFile"] = header.pop("ElementDataFile")  # the last field
    text = "".join(f"{k} = {v}\n" for k, v in header.items() if v is not None)
    path = folder / name
    path.write_bytes(text.encode() + body)
    return path


def niftiSeed(folder: Path, name="seed.nii", edit=None, truncate: int | None = None) -> Path:
    import nibabel as nib

    voxels = np.arange(16 * 12 * 8, dtype=np.int16).reshape(8, 12, 16).T  # 0, 1, 2... in file order, as the others
    image = nib.Nifti1Image(voxels, np.diag([0.8, 0.8, 2.5, 1]))
    if edit:
        edit(image.header)
    path = folder / name
    nib.save(image, str(path))
    if truncate is not None:
        content = path.read_bytes()
        if name.endswith(".gz"):
            content = gzip.compress(gzip.decompress(content)[:truncate])
        else:
            content = content[:truncate]
        path.write_bytes(content)
    return path


def hostileFiles(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the refusal's expected words); each a malformed edit of a valid seed."""
    secret = folder.parent / "secret.raw"  # a file outside the folder the hostile headers point at
    secret.write_bytes(b"SECRET-BYTES-OUTSIDE" * 100)
    seg = segSeed(folder, "full.seg.nrrd").read_bytes()
    headerEnd = seg.index(b"\n\n") + 2

    def pixdimNan(header):
        header["pixdim"][1] = np.nan

    cases = {
        "seg cut after its header + 1 byte": (folder / "cut.seg.nrrd", "decompresses to|corrupt compressed"),
        "seg extent 0..1000": (segSeed(folder, "extent.seg.nrrd", {"Segment0_Extent": "0 1000 0 1000 0 1000"}),
                               "outside the image"),
        "seg layer 7 of 1": (segSeed(folder, "layer.seg.nrrd", {"Segment1_Layer": "7"}), "layer '7' of 1"),
        "20,000 segments": (segSeed(folder, "many.seg.nrrd", {f"Segment{i}_ID": f"s{i}" for i in range(2, 20002)}),
                            "over 4096"),
        "200,000 header lines": (nrrdSeed(folder, "lines.nrrd", extra="".join(f"k{i}:=v\n" for i in range(200000))),
                                 "over 4096 header lines"),
        "data file /etc/passwd": (nrrdSeed(folder, "passwd.nrrd", header={"data file": "/etc/passwd"}, data=b""),
                                  "names its data in data file '/etc/passwd'"),
        "data file ../secret.raw": (nrrdSeed(folder, "dotdot.nrrd", header={"data file": "../secret.raw"}, data=b""),
                                    "names its data in data file"),
        "data file LIST": (nrrdSeed(folder, "list.nrrd", header={"data file": "LIST"}, data=b"a.raw\n"),
                           "names its data in data file"),
        "data file pattern": (nrrdSeed(folder, "pattern.nrrd", header={"data file": "slice%03d.raw 0 7 1 2"},
                                       data=b""), "names its data in data file"),
        "MetaImage ElementDataFile /etc/passwd": (mhaSeed(folder, "passwd.mhd", {"ElementDataFile": "/etc/passwd"},
                                                          data=b""), "ElementDataFile '/etc/passwd'"),
        "MetaImage NDims 100": (mhaSeed(folder, "ndims100.mha", {"NDims": "100"}), "NDims '100'"),
        "MetaImage NDims 0": (mhaSeed(folder, "ndims0.mha", {"NDims": "0"}), "NDims '0'"),
        "MetaImage NDims -1": (mhaSeed(folder, "ndims-1.mha", {"NDims": "-1"}), "NDims '-1'"),
        "MetaImage corrupt zlib": (mhaSeed(folder, "zlib.mha", {"CompressedData": "True"},
                                           data=b"x\x9c" + bytes(range(256)) * 4), "corrupt compressed"),
        "MetaImage NaN spacing": (mhaSeed(folder, "nan.mha", {"ElementSpacing": "nan 0.8 2.5"}), "ElementSpacing"),
        "NRRD ascii on binary data": (nrrdSeed(folder, "ascii.nrrd", encoding="ascii",
                                               data=np.arange(1536, dtype="<i2").tobytes()), "binary data"),
        "NRRD sizes 2^64-1": (nrrdSeed(folder, "huge.nrrd", header={"sizes": "18446744073709551615 12 8"}),
                              "not whole numbers"),
        "NRRD negative size": (nrrdSeed(folder, "negative.nrrd", header={"sizes": "-16 12 8"}), "each >= 1"),
        "NRRD dimension 100": (nrrdSeed(folder, "dim100.nrrd", header={"dimension": "100"}), "dimension 100"),
        "NRRD truncated raw": (nrrdSeed(folder, "short.nrrd", data=b"\0" * 100), "bytes of voxel data"),
        "NRRD gzip bomb (declares 2^31 voxels)": (nrrdSeed(folder, "bomb.nrrd", "gzip",
                                                           header={"sizes": "2048 1024 1024"},
                                                           data=gzip.compress(b"\0" * (1 << 20))),
                                                  "over MedDL's limit"),
        "NRRD NaN direction": (nrrdSeed(folder, "nandir.nrrd",
                                        header={"space directions": "(nan,0,0) (0,0.8,0) (0,0,2.5)"}), "non-finite"),
        "NRRD singular directions": (nrrdSeed(folder, "singular.nrrd",
                                              header={"space directions": "(1,0,0) (1,0,0) (0,0,2.5)"}), "singular"),
        "NRRD unknown type": (nrrdSeed(folder, "type.nrrd", header={"type": "quaternion"}), "voxel type"),
        "NIfTI NaN pixdim": (niftiSeed(folder, "nanpix.nii", pixdimNan), "pixdim"),
        "NIfTI truncated": (niftiSeed(folder, "short.nii", truncate=900), "bytes of voxel data"),
        "NIfTI.gz truncated": (niftiSeed(folder, "short.nii.gz", truncate=900), "decompresses to"),
        "NIfTI vox_offset 0": (folder / "offset0.nii", "vox_offset 0"),
        "NIfTI 27e12 voxels": (folder / "big.nii", "over MedDL's limit"),
        "non-UTF-8 file name": (Path(os.fsdecode(bytes(folder) + b"/caf\xe9.nrrd")), "not valid UTF-8"),
    }
    (folder / "cut.seg.nrrd").write_bytes(seg[:headerEnd + 1])
    offset = niftiSeed(folder, "offset0.nii").read_bytes()
    (folder / "offset0.nii").write_bytes(offset[:108] + np.float32(0).tobytes() + offset[112:])
    big = niftiSeed(folder, "big.nii").read_bytes()  # dim[1..3] (int16 at bytes 42..47) of 30000 each
    (folder / "big.nii").write_bytes(big[:42] + np.array([30000] * 3, "<i2").tobytes() + big[48:])
    nrrdSeed(folder, "caf\xe9.nrrd").rename(cases["non-UTF-8 file name"][0])
    return cases


def test_hostile_files_are_refused_before_the_reader_and_valid_ones_load(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    cases = hostileFiles(folder)
    valid = [nrrdSeed(folder), nrrdSeed(folder, "seed_gz.nrrd", "gzip"), segSeed(folder), mhaSeed(folder),
             mhaSeed(folder, "seed_z.mha", {"CompressedData": "True"}), niftiSeed(folder),
             niftiSeed(folder, "seed.nii.gz")]
    outcomes = loadInChild([path for path, _ in cases.values()] + valid)
    for name, (path, words) in cases.items():
        outcome = outcomes[os.path.basename(os.fsdecode(path))]
        assert "refused" in outcome, f"{name}: {outcome}"
        assert any(w in outcome["refused"] for w in words.split("|")), f"{name}: {outcome['refused']}"
        assert outcome["seconds"] < 10, f"{name} took {outcome['seconds']:.1f} s"
    for path in valid:
        outcome = outcomes[path.name]
        assert "ok" in outcome, f"{path.name}: {outcome}"
        if "first" in outcome:  # the voxels are the seed's, never another file's bytes
            assert outcome["first"][:4] == [0.0, 1.0, 2.0, 3.0], (path.name, outcome["first"][:4])


def test_a_sibling_data_file_still_loads_and_the_voxel_limit_is_a_setting(tmp_path):
    """A detached header naming the data file beside it by its plain name loads (as Slicer writes .nhdr + .raw);
    MEDDL_MAX_VOXELS lowers the limit."""
    voxels = np.arange(16 * 12 * 8, dtype="<i2").tobytes()
    (tmp_path / "seed.raw").write_bytes(voxels)
    header = nrrdSeed(tmp_path, "seed.nhdr", header={"data file": "seed.raw"}, data=b"")
    outcomes = loadInChild([header, nrrdSeed(tmp_path)], {"MEDDL_MAX_VOXELS": "1000"})
    assert "over MedDL's limit of 1,000" in outcomes["seed.nhdr"]["refused"]
    outcomes = loadInChild([header])
    assert outcomes["seed.nhdr"]["first"][:4] == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("path", ["mni", "demo"])
def test_real_data_passes_the_checks(path, tmp_path):
    """The embedded MNI152 template (NIfTI.gz) and a NRRD / .seg.nrrd that slicer-core writes pass unchanged."""
    from DLCommon.filechecks import checkBeforeReading

    if path == "mni":
        import nilearn

        files = sorted(Path(nilearn.__file__).parent.glob("datasets/data/mni_icbm152_*.nii.gz"))
        assert files
        for file in files:
            assert checkBeforeReading(file).voxels == 197 * 233 * 189
        return
    import slicer
    import torch

    from DLCommon import saveNode, segmentationFromTensor, volumeFromTensor
    from DLCommon.storage import loadSegmentation, loadVolume

    scene = slicer.vtkMRMLScene()
    reference = loadVolume(niftiSeed(tmp_path), scene)
    volume = volumeFromTensor(torch.rand(1, 16, 12, 8), reference, scene, "v")
    labels = torch.zeros(16, 12, 8, dtype=torch.int64)
    labels[2:6, 3:7, 1:4], labels[8:12, 5:9, 4:7] = 1, 2
    segmentation = segmentationFromTensor(labels, reference, scene, ["a", "b"])
    for node, name in ((volume, "v.nrrd"), (segmentation, "s.seg.nrrd")):
        saveNode(node, tmp_path / name)
        assert checkBeforeReading(tmp_path / name).voxels == 16 * 12 * 8
    assert loadSegmentation(tmp_path / "s.seg.nrrd", scene).GetSegmentation().GetNumberOfSegments() == 2
    assert loadVolume(tmp_path / "v.nrrd", scene).GetImageData().GetNumberOfPoints() == 16 * 12 * 8
