"""The meddl command line: help, info, models, demo (with real outputs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from DLCommon import ModelSpec, saveTorchScript, sha256Of
from DLCommon.cli import main


def test_console_script_help():
    meddl = shutil.which("meddl") or str(Path(sys.executable).parent / "meddl")
    result = subprocess.run([meddl, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("info", "models", "demo"):
        assert command in result.stdout


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert data["device"] in ("cpu", "cuda", "mps")


def test_models_import_list_verify(tmp_path, capsys):
    network = torch.nn.Conv3d(1, 2, 1)
    path = saveTorchScript(network, tmp_path / "tiny.ts", ModelSpec(name="tiny"), example=torch.zeros(1, 1, 4, 4, 4))
    assert main(["models", "import", str(path), "--id", "tiny", "--sha256", sha256Of(path)]) == 0
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "Imported 'tiny' (torchscript" in out and "tiny" in out.splitlines()[-1] and "cached" in out
    assert main(["models", "verify"]) == 0
    assert "OK      tiny" in capsys.readouterr().out


def test_models_import_wrong_checksum_is_an_error(tmp_path, capsys):
    path = saveTorchScript(torch.nn.Conv3d(1, 1, 1), tmp_path / "m.ts", example=torch.zeros(1, 1, 2, 2, 2))
    assert main(["models", "import", str(path), "--sha256", "0" * 64]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meddl: error: File ") and f"expected {'0' * 64}" in err and "Fix:" in err


def test_demo_writes_its_outputs(tmp_path):
    from PIL import Image

    import slicer
    from DLCommon.storage import loadSegmentation, loadVolume

    assert main(["demo", "--output", str(tmp_path / "demo")]) == 0
    out = tmp_path / "demo"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["volume"]["shape"] == [197, 233, 189]
    assert summary["volume"]["roundTripMaxError"] == 0.0 and summary["volume"]["geometryMaxError_mm"] == 0.0
    assert summary["segmentation"]["roundTripExact"] and summary["segmentation"]["fileRoundTripExact"]
    # plausible adult brain tissue volumes in the MNI152 template (ml)
    assert 400 < summary["segmentation"]["volumes_ml"]["grey matter"] < 1500
    assert 300 < summary["segmentation"]["volumes_ml"]["white matter"] < 900

    scene = slicer.vtkMRMLScene()
    t1 = loadVolume(out / "MNI152_T1.nrrd", scene)
    assert t1.GetImageData().GetDimensions() == (197, 233, 189)
    assert np.allclose(t1.GetOrigin(), (-98.0, -134.0, -72.0))
    seg = loadSegmentation(out / "MNI152_tissue.seg.nrrd", scene)
    assert seg.GetSegmentation().GetNumberOfSegments() == 2
    with Image.open(out / "MNI152_montage.png") as montage:
        assert montage.width > 400 and montage.height > 150
    # each module's part: its files and a real result
    modules = summary["modules"]
    for part in modules.values():
        assert all((out / name).is_file() for name in part["files"])
    assert modules["DLSegmentLib"]["dice"]["white matter"] > 0.5
    atlas = modules["DLRegisterLib"]["atlasDice"]
    assert atlas["after"]["white matter"] > atlas["before"]["white matter"] + 0.1
    assert modules["DLRegisterLib"]["report"]["foldingPercent"] < 1.0
    psnr = modules["DLSynthesizeLib"]["superResolutionPsnr"]
    assert psnr["superResolved"] > psnr["cubic"] + 1.0
    with Image.open(out / "ultrasound_simulation.png") as ultrasound:  # label slice | simulated B-mode image
        assert ultrasound.width > 2 * ultrasound.height > 400
    with Image.open(out / "overview.png") as overview:  # every module's pictures on one page, in two columns
        pixels = np.asarray(overview.convert("L"), dtype=np.float32)
        panels = sum(name.endswith(".png") for part in modules.values() for name in part["files"])
        assert panels >= 4 and overview.width == 1280 and overview.height > 200 * (panels // 2)
        assert pixels.std() > 20  # pictures, not a blank page
    assert "overview.png" in summary["files"]


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: meddl" in capsys.readouterr().out


def test_web_refuses_a_port_in_use_before_starting(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["web", "--port", str(port)]) != 0
    error = capsys.readouterr().err
    assert f"Port {port} on 127.0.0.1 cannot be used by meddl web" in error and "--port" in error
