"""One definition per setting (DLCommon.settings): a setting made from an engine config's field has the same
default, range and choices in the config, the Slicer parameter node, the web panel and ``meddl <command> --help``."""

from __future__ import annotations

import argparse
import dataclasses
import importlib

import pytest

from DLCommon.cli import buildParser
from DLCommon.modules import registeredModules
from DLCommon.parameters import defaults
from DLCommon.settings import addArguments, defaultOf, flagOf, parameterOf, setting, settingOf


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = buildParser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def configClass(module, configField: str):
    className = configField.split(".")[0]
    return getattr(importlib.import_module(f"{module.package}.config"), className)


def test_every_config_defined_setting_has_one_default_range_and_choice_list():
    checked = 0
    for module in registeredModules():
        panel = defaults(module.parameters)  # what the web panel and the parameter node start from
        for p in module.parameters:
            if not p.configField:
                continue
            cls, field = configClass(module, p.configField), p.configField.split(".")[1]
            meta = settingOf(cls, field)
            assert p.default == defaultOf(cls, field) == panel[p.name], p.name
            assert (p.minimum, p.maximum, tuple(p.choices)) == (meta["minimum"], meta["maximum"], meta["choices"])
            assert p.tooltip == meta["tooltip"]
            checked += 1
    assert checked >= 3  # DLSegment's network, loss and epochs at least


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_command_flags_made_from_a_config_have_its_defaults(command, capsys):
    parser = subcommands()[command]
    for cls, names in parser.get_default("configFields") or []:
        actions = {a.dest: a for a in parser._actions}
        for name in names:
            action = actions[name]
            assert action.default == defaultOf(cls, name) and flagOf(cls, name) in action.option_strings
            assert list(action.choices or ()) == list(settingOf(cls, name)["choices"])
            assert f"(default {defaultOf(cls, name)})" in " ".join(action.help.split())


def test_the_training_epochs_agree_in_every_face():
    """DL Segment trained 50 epochs from the widget and the web page but 20 from the CLI and the Python API."""
    from DLSegmentLib.config import SegmentationTrainingConfig
    from DLSegmentLib.parameters import PARAMETERS

    widget = next(p for p in PARAMETERS if p.name == "epochs").default
    cli = subcommands()["train-segment"].get_default("epochs")
    assert widget == cli == SegmentationTrainingConfig().epochs == defaultOf(SegmentationTrainingConfig, "epochs")


def test_a_setting_makes_its_parameter_and_flag():
    @dataclasses.dataclass
    class Config:
        learningRate: float = setting(1e-3, label="Learning rate", minimum=1e-6, maximum=1.0, tooltip="Adam step.")
        mode: str = setting("fast", choices=("fast", "exact"), tooltip="Speed or accuracy.")
        width: int = setting(16, unit="voxels", minimum=4, maximum=64)

    parameter = parameterOf(Config, "learningRate", group="train")
    assert (parameter.kind, parameter.default, parameter.minimum, parameter.maximum, parameter.group) == (
        "float", 1e-3, 1e-6, 1.0, "train")
    assert parameterOf(Config, "mode").kind == "choice" and parameterOf(Config, "width").label == "width (voxels)"
    parser = argparse.ArgumentParser()
    addArguments(parser, Config, ["learningRate", "mode", "width"])
    args = parser.parse_args(["--learning-rate", "0.01", "--mode", "exact"])
    assert (args.learningRate, args.mode, args.width) == (0.01, "exact", 16)
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "slow"])
