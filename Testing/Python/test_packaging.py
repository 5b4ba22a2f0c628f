"""Extension packaging: Extensions Index entry, CMake wiring, icon, license, README commands."""

from __future__ import annotations

import json
import re

from shellcheck import ROOT, moduleFolders


def test_extensions_index_entry():
    entry = json.loads((ROOT / "MedDL.json").read_text())
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-v1.0.2.json")
    for key in ("$schema", "category", "scm_url", "scm_revision", "build_dependencies", "tier"):
        assert entry.get(key) not in (None, ""), key
    assert entry["build_dependencies"] == ["PyTorch"]
    assert entry["scm_url"].endswith("/SlicerMedDL.git") and entry["tier"] in range(1, 6)


def test_top_level_cmake():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(MedDL\)", text, re.M)
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                     "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf'set\({variable} "[^"]+"\)', text), variable
    assert re.search(r'set\(EXTENSION_DEPENDS "?PyTorch"?\)', text)
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text
    wired = set(re.findall(r"^add_subdirectory\((\w+)\)", text, re.M))
    assert wired == {"DLCommon"} | {folder.name for folder in moduleFolders()}
    for name in wired:
        assert (ROOT / name / "CMakeLists.txt").is_file(), name
    # the icon and screenshot URLs point into this repository
    urls = [url for quoted in re.findall(r'"(https://raw\.githubusercontent\.com/[^"]+)"', text) for url in quoted.split()]
    assert len(urls) >= 5  # the icon, the demo overview and the browser workflows (space-separated, as Slicer reads them)
    for url in urls:
        assert (ROOT / url.split("/main/", 1)[1]).is_file(), url


def test_module_cmake_lists_every_script():
    from PIL import Image

    for folder in moduleFolders():
        text = (folder / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", folder.name)
        assert f"set(MODULE_NAME {folder.name})" in text
        assert "slicerMacroBuildScriptedModule" in text and "WITH_GENERIC_TESTS" in text
        listed = set(re.findall(r"(\S+\.py)", text))
        scripts = {p.relative_to(folder).as_posix() for p in folder.rglob("*.py") if "Testing" not in p.parts}
        assert scripts == listed, folder.name
        resources = {p.relative_to(folder).as_posix() for p in (folder / "Resources").rglob("*") if p.is_file()}
        assert resources <= set(re.findall(r"(Resources/\S+)", text)), folder.name
        with Image.open(folder / "Resources" / "Icons" / f"{folder.name}.png") as icon:
            assert icon.size == (128, 128)


def test_dlcommon_cmake_installs_the_whole_package():
    text = (ROOT / "DLCommon" / "CMakeLists.txt").read_text()
    assert "ctkMacroCompilePythonScript" in text and "Slicer_QTSCRIPTEDMODULES_LIB_DIR" in text
    listed = set(re.findall(r"(DLCommon/\S+\.py)", text))
    present = {f"DLCommon/{p.relative_to(ROOT / 'DLCommon').as_posix()}" for p in (ROOT / "DLCommon").rglob("*.py")}
    assert listed == present


def test_icon_license_readme():
    from PIL import Image

    with Image.open(ROOT / "Resources" / "Icons" / "MedDL.png") as icon:
        assert icon.size == (128, 128)
        assert len(set(icon.convert("RGB").getdata())) > 50  # a picture, not a blank square
    license = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license and "Version 2.0" in license
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^```(?:bash|sh)\n(.+?)\n```", readme, re.M | re.S)
    fresh = [c for c in commands if c.startswith("bash setup.sh")]
    assert fresh == ["bash setup.sh && .venv/bin/meddl demo --output meddl-demo",
                     "bash setup.sh test && .venv/bin/python -m pytest Testing"]
    assert fresh[1] in (ROOT / ".ci" / "run").read_text()


def test_headless_package_runs_on_the_pinned_slicer_core():
    """The suite runs on the MRML libraries pyproject.toml pins (slicer-core 5.11, which trame-slicer's display
    managers need for the browser app): the installed slicer-core and VTK are those pins, and real MRML round trips
    work on them (the rest of the suite checks DLCommon's behaviour there in full)."""
    from importlib.metadata import version

    import numpy as np
    import slicer

    from conftest import makeVolume
    from DLCommon import tensorFromVolume, volumeFromTensor

    pins = dict(re.findall(r'"(slicer-core|vtk)==([^"]+)"', (ROOT / "pyproject.toml").read_text()))
    assert version("slicer-core") == pins["slicer-core"] and version("vtk") == pins["vtk"]
    assert pins["slicer-core"].startswith("5.11.")  # slicer-layer-dm 2.0.0 requires slicer-core==5.11.0.*
    scene = slicer.vtkMRMLScene()
    affine = np.array([[0, 0, -1.5, 10], [0.8, 0, 0, -3], [0, 1.2, 0, 7], [0, 0, 0, 1]], float)
    volume = makeVolume(scene, np.arange(24, dtype=np.float32).reshape(2, 3, 4), affine)
    image = tensorFromVolume(volume)
    copy = volumeFromTensor(image, volume, scene, "copy")
    assert np.array_equal(slicer.util.arrayFromVolume(copy), slicer.util.arrayFromVolume(volume))
    assert np.allclose(np.asarray(image.affine), affine)
