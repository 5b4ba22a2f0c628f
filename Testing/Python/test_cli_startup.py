"""``meddl --help`` stays fast: building the parser imports no engine, and DLCommon names no module.

Only what is imported is checked here (no timings: Testing/Benchmarks/bench_startup.py measures the start-up).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "monai", "slicer", "slicer_core", "vtk", "vtkmodules", "numpy", "scipy", "pandas", "matplotlib",
         "PIL", "SimpleITK", "itk")

COMMANDS = ("segment", "train-segment", "register", "train-register", "super-resolve", "train-synthesis",
            "synthesize", "simulate-us", "classify", "train-classify", "demo", "web", "info", "models", "job")

MODULE_PACKAGES = ("DLSegmentLib", "DLRegisterLib", "DLSynthesizeLib", "DLClassifyLib")



def test_building_the_parser_imports_no_engine():
    code = (
        "import json, sys\n"
        "import DLCommon.cli\n"
        "parser = DLCommon.cli.buildParser()\n"
        "commands = next(a for a in parser._actions if a.dest == 'command').choices\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'commands': sorted(commands)}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    loaded = sorted({name.split(".")[0] for name in data["modules"]} & set(HEAVY))
    assert not loaded, f"building the parser imported {', '.join(loaded)}"
    assert set(COMMANDS) <= set(data["commands"]), sorted(set(COMMANDS) - set(data["commands"]))


def test_command_help_imports_no_engine():
    """``meddl COMMAND --help`` exits in parse_args, before any handler (or VTK) is imported."""
    code = (
        "import sys\n"
        "from DLCommon.cli import main\n"
        "try:\n"
        "    main(['train-segment', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print('imported:', *sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r})))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "--network {unet,segresnet,dynunet,swinunetr}" in result.stdout
    assert result.stdout.splitlines()[-1] == "imported:", result.stdout.splitlines()[-1][:2000]


def test_cli_choices_equal_the_engines_lists():
    """Choice lists are defined once, in each ``<Module>Lib/config.py`` (torch-free, so --help imports no torch); the
    engines use those objects."""
    from DLClassifyLib import config as classifyConfig
    from DLClassifyLib import encodings as classifyEncodings
    from DLClassifyLib.architectures import ARCHITECTURES
    from DLRegisterLib import config as registerConfig
    from DLRegisterLib import fields, network, similarity
    from DLSegmentLib import trainer
    from DLSegmentLib.config import LOSS_NAMES, NETWORK_NAMES
    from DLSegmentLib.networks import NETWORKS

    assert set(NETWORK_NAMES) == set(NETWORKS) and trainer.LOSS_NAMES is LOSS_NAMES  # DLSegment: one definition
    assert (similarity.SIMILARITIES is registerConfig.SIMILARITIES and fields.FIELD_MODELS is registerConfig.FIELD_MODELS
            and fields.REGULARISERS is registerConfig.REGULARISERS
            and network.REGISTRATION_NETWORKS is registerConfig.REGISTRATION_NETWORKS)  # DLRegister: one definition
    assert classifyEncodings.ENCODINGS is classifyConfig.ENCODINGS  # DLClassify: one definition (config.py)
    # the one list kept twice: the architecture names (config.py, torch-free) and the networks they name
    assert tuple(ARCHITECTURES) == classifyConfig.ARCHITECTURE_NAMES


def test_dlcommon_names_no_module_package():
    """DLCommon finds the modules through the registry (DLCommon.modules): no file imports or names a module
    library, today's four or any other ``DL...Lib``."""
    import re

    common = ROOT / "DLCommon"
    offenders = {}
    for path in sorted(common.rglob("*.py")):
        named = sorted(set(re.findall(r"\bDL[A-Z][A-Za-z]*Lib\b", path.read_text(encoding="utf-8"))))
        if named:
            offenders[path.relative_to(common).as_posix()] = named
    assert not offenders, offenders
    assert set(MODULE_PACKAGES) == {f"{m}Lib" for m in ("DLSegment", "DLRegister", "DLSynthesize", "DLClassify")}
