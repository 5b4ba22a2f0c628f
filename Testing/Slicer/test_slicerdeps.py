"""Installing a module's dependencies in Slicer (DLCommon.slicerdeps), against stand-ins of Slicer's own API:
``slicer.packaging.pip_ensure`` (5.12+, Base/Python/slicer/packaging.py), ``slicer.util.pip_install`` and
``confirmOkCancelDisplay`` (5.8 / 5.10), the PyTorch extension's ``PyTorchUtils``."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from DLCommon import slicerdeps

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("DLClassify", "DLRegister", "DLSegment", "DLSynthesize")


@pytest.fixture
def requirements(tmp_path):
    path = tmp_path / "DLFoo-requirements.txt"
    path.write_text("# comment\nnumpy>=1.0\nmeddl-surely-not-installed>=2.5 ; python_version >= '3'\n"
                    "--index-url https://example.invalid\n\n")
    return path


@pytest.fixture
def slicerApi(monkeypatch):
    """Record what slicerdeps asks of Slicer; ``packaging`` present as in 5.12+ unless removed."""
    import slicer

    calls = types.SimpleNamespace(ensure=[], pipInstall=[], confirm=[], answer=True)
    packaging = types.ModuleType("slicer.packaging")
    packaging.pip_ensure = lambda requirements, **kwargs: calls.ensure.append((list(requirements), kwargs))
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    monkeypatch.setattr(slicer.util, "pip_install", lambda requirements: calls.pipInstall.append(requirements))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                        lambda text, **kwargs: calls.confirm.append(text) or calls.answer)
    return calls


def withoutPackaging(monkeypatch):
    import slicer

    monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # `from slicer import packaging` then fails
    monkeypatch.delattr(slicer, "packaging", raising=False)


_realFindSpec = slicerdeps.importlib.util.find_spec


def test_requirements_are_read_like_slicer_packaging_load_requirements(requirements):
    assert slicerdeps.readRequirements(requirements) == ["numpy>=1.0",
                                                         "meddl-surely-not-installed>=2.5 ; python_version >= '3'"]
    assert slicerdeps.missingRequirements(["numpy>=1.0", "numpy>=999", "meddl-surely-not-installed",
                                           "meddl-surely-not-installed ; python_version < '3'"]) == [
        "numpy>=999", "meddl-surely-not-installed"]


def test_slicer_512_uses_pip_ensure_with_only_what_is_missing(requirements, slicerApi):
    assert slicerdeps.ensureDependencies(requirements, "DL Foo", torch=False) is True
    (asked, options), = slicerApi.ensure
    assert asked == ["meddl-surely-not-installed>=2.5 ; python_version >= '3'"]
    assert options == {"requester": "DL Foo", "skip_in_testing": False}
    assert slicerApi.pipInstall == [] and slicerApi.confirm == []


def test_slicer_58_asks_then_installs_with_version_specifiers(requirements, slicerApi, monkeypatch):
    withoutPackaging(monkeypatch)
    with pytest.raises(RuntimeError, match="installing meddl-surely-not-installed>=2.5 .* did not succeed"):
        slicerdeps.ensureDependencies(requirements, "DL Foo", torch=False)  # the stand-in installs nothing
    assert slicerApi.pipInstall == [["meddl-surely-not-installed>=2.5 ; python_version >= '3'"]]
    assert "meddl-surely-not-installed>=2.5" in slicerApi.confirm[0]


def test_declining_is_an_error_that_says_what_is_missing(requirements, slicerApi, monkeypatch):
    withoutPackaging(monkeypatch)
    slicerApi.answer = False
    with pytest.raises(RuntimeError, match="DL Foo cannot run without: meddl-surely-not-installed.*declined"):
        slicerdeps.ensureDependencies(requirements, "DL Foo", torch=False)
    assert slicerApi.pipInstall == []


def test_nothing_missing_installs_nothing(tmp_path, slicerApi):
    path = tmp_path / "r.txt"
    path.write_text("numpy>=1.0\n")
    assert slicerdeps.ensureDependencies(path, "DL Foo", torch=False) is False
    assert slicerApi.ensure == [] and slicerApi.pipInstall == []


def test_without_the_pytorch_extension_the_message_says_how_to_get_it(requirements, slicerApi, monkeypatch):
    monkeypatch.setattr(slicerdeps.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else _realFindSpec(name, *a))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # the extension is not installed
    with pytest.raises(RuntimeError, match="needs PyTorch, which the 'PyTorch' extension installs"):
        slicerdeps.ensureDependencies(requirements, "DL Foo")


def test_declining_pytorch_is_an_error(requirements, slicerApi, monkeypatch):
    monkeypatch.setattr(slicerdeps.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else _realFindSpec(name, *a))
    utils = types.ModuleType("PyTorchUtils")
    utils.PyTorchUtilsLogic = lambda: types.SimpleNamespace(installTorch=lambda askConfirmation: None)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", utils)
    with pytest.raises(RuntimeError, match="needs PyTorch: it was not installed"):
        slicerdeps.ensureDependencies(requirements, "DL Foo")


@pytest.mark.parametrize("module", MODULES)
def test_module_requirements_have_their_own_name_and_leave_the_sample_out(module):
    """Resources install flat (one folder for every module), so each file is named for its module; nilearn is for
    the MNI152 sample only and installed when a sample is asked for (slicerdeps.SAMPLE_REQUIREMENTS)."""
    lines = slicerdeps.readRequirements(ROOT / module / "Resources" / f"{module}-requirements.txt")
    assert lines and not any(line.startswith("nilearn") for line in lines)
    assert not (ROOT / module / "Resources" / "requirements.txt").exists()
    assert any(line.startswith("nilearn") for line in slicerdeps.SAMPLE_REQUIREMENTS)


def test_nothing_calls_the_slicer_pydeps_module_that_never_existed():
    for path in list(ROOT.glob("DL*/**/*.py")) + list(ROOT.glob("DLCommon/**/*.py")):
        assert "pydeps" not in path.read_text(), path
