"""One path per job: every ``meddl`` command of DL Synthesize runs the job the logic (and the panels) make, so the
same settings give the same outputs and the same warnings through the command line and through
:class:`DLSynthesizeLib.logic.SynthesisLogic`; ``--dry-run`` prints that job's estimate.

Everything is tiny: 36 x 32 x 28 phantoms (``conftest.phantom``), one training epoch (the minimum 10 steps run one
epoch of 25 batches) of a 4-feature U-Net on 2 patches, on the CPU; floats compared at 1e-5 of the intensity range
(seeded CPU runs in one process).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import addCase, makeVolume, phantom

from DLCommon import saveNode, tensorFromVolume
from DLCommon.cli import main
from DLCommon.storage import loadSegmentation, loadVolume
from DLSynthesizeLib.config import (DenoiseConfig, ImageToImageConfig, SuperResolutionConfig, UltrasoundConfig)
from DLSynthesizeLib.logic import SynthesisLogic

TINY = ["--steps", "10", "--features", "4", "--batch-size", "2", "--device", "cpu"]
TINY_OPTIONS = {"steps": 10, "features": 4, "batchSize": 2, "device": "cpu"}


def assertSameVolume(cliFile, node, scene):
    """The command's file and the logic's node: the same grid, voxels within 1e-5 of the intensity range."""
    cli = tensorFromVolume(loadVolume(cliFile, scene))
    expected = tensorFromVolume(node)
    assert cli.shape == expected.shape
    np.testing.assert_allclose(cli.affine.numpy(), expected.affine.numpy(), rtol=0, atol=1e-9)
    scale = float(expected.max() - expected.min()) or 1.0
    np.testing.assert_allclose(cli.numpy(), expected.numpy(), rtol=0, atol=1e-5 * scale)


def warningsOf(printed) -> list[str]:
    return [line.split(": ", 3)[-1] for line in printed.err.splitlines() if line.startswith("meddl: warning")]


def estimateLine(printed) -> dict:
    return json.loads(printed.out.strip().splitlines()[-1])


def thickFile(scene, folder):
    """A phantom with 3 mm slices along K (1 mm pixels): super-resolution's input."""
    volume, _, _ = addCase(scene, 1, affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    return saveNode(volume, folder / "thick.nrrd")


def test_super_resolve_equals_the_logic_and_its_dry_run_the_jobs_estimate(scene, tmp_path, capsys):
    path = thickFile(scene, tmp_path)
    assert main(["super-resolve", "--input", str(path), "--output", str(tmp_path / "fine.nrrd"), *TINY]) == 0
    printed = capsys.readouterr()
    assert "slice axis K, x3" in printed.out
    logic = SynthesisLogic(scene)
    job = logic.superResolveJob(loadVolume(path, scene), SuperResolutionConfig(**TINY_OPTIONS))
    expected = job.run()
    assertSameVolume(tmp_path / "fine.nrrd", expected.volume, scene)
    assert warningsOf(printed) == expected.warnings == []

    assert main(["--dry-run", "super-resolve", "--input", str(path), "--output", str(tmp_path / "x.nrrd"), *TINY]) == 0
    line = estimateLine(capsys.readouterr())
    planned = job.measuredEstimate  # the plan the logic's run made
    assert line["input"] == str(path) and line["fits"] and line["seconds"] > 0
    assert (line["what"], line["device"], line["note"]) == (planned.what, planned.device, planned.note)
    assert not (tmp_path / "x.nrrd").exists()


def test_bad_settings_are_refused_by_the_config(scene, tmp_path, capsys):
    path = thickFile(scene, tmp_path)
    assert main(["super-resolve", "--input", str(path), "--output", str(tmp_path / "o.nrrd"), "--steps", "5"]) == 2
    assert "Setting 'steps' is 5; it must be from 10 to 100000" in capsys.readouterr().err
    assert main(["simulate-us", "--volume", str(path), "--position", "0", "0", "0", "--target", "0", "0", "10",
                 "--depth", "500", "--output", str(tmp_path / "u.nrrd")]) == 2
    assert "Setting 'depth' is 500.0; it must be from 10 to 300" in capsys.readouterr().err
    from DLCommon.errors import SettingError

    with pytest.raises(SettingError, match="'loss' is 'l3'"):
        ImageToImageConfig(loss="l3").validate()
    with pytest.raises(SettingError, match="'dimensions' is 4"):
        ImageToImageConfig(dimensions=4).validate()


def pairFiles(scene, folder):
    """Two (source, target) phantom pairs, the second target on a shifted, cropped grid (resampled, with a warning),
    and a third phantom to apply the model to."""
    files = []
    for seed in (1, 2, 3):
        image, _ = phantom(seed)
        source = makeVolume(scene, np.ascontiguousarray(image.transpose(2, 1, 0)), np.eye(4), name=f"source{seed}")
        files.append(saveNode(source, folder / f"source{seed}.nrrd"))
        if seed == 3:
            break
        target, affine = 120.0 - image, np.eye(4)
        if seed == 2:
            target, affine[:3, 3] = target[2:, 1:, :], [2.0, 1.0, 0.0]
        node = makeVolume(scene, np.ascontiguousarray(target.transpose(2, 1, 0)), affine, name=f"target{seed}")
        files.append(saveNode(node, folder / f"target{seed}.nrrd"))
    return files


def test_train_synthesis_and_synthesize_equal_the_logic(scene, tmp_path, capsys):
    source1, target1, source2, target2, new = pairFiles(scene, tmp_path)
    assert main(["train-synthesis", "--sources", str(source1), str(source2), "--targets", str(target1), str(target2),
                 "--output-model", str(tmp_path / "cli"), "--name", "cli", *TINY]) == 0
    printed = capsys.readouterr()
    assert f"Model: {tmp_path / 'cli' / 'cli.ts'}" in printed.out and (tmp_path / "cli" / "cli_curves.png").is_file()

    logic = SynthesisLogic(scene)
    pairs = [(loadVolume(s, scene), loadVolume(t, scene)) for s, t in ((source1, target1), (source2, target2))]
    trained = logic.imageToImageJob(pairs, None, ImageToImageConfig.forDimensions(2, **TINY_OPTIONS),
                                    outputDir=tmp_path / "logic", modelName="logic").run()
    assert trained.volume is None and trained.details["resampledTargets"] == ["target2"]
    assert warningsOf(printed) == trained.warnings and len(trained.warnings) == 1
    assert main(["synthesize", "--model", str(tmp_path / "cli" / "cli.ts"), "--input", str(new), "--output",
                 str(tmp_path / "out.nrrd"), "--device", "cpu"]) == 0
    assert warningsOf(capsys.readouterr()) == []
    expected = logic.synthesizeJob(loadVolume(new, scene), trained.modelPath, device="cpu").run()
    assertSameVolume(tmp_path / "out.nrrd", expected.volume, scene)  # the same training, the same application

    assert main(["--dry-run", "synthesize", "--model", trained.modelPath, "--input", str(new), "--output",
                 str(tmp_path / "x.nrrd"), "--device", "cpu"]) == 0
    line = estimateLine(capsys.readouterr())
    planned = logic.synthesizeJob(loadVolume(new, scene), trained.modelPath, device="cpu").resourceEstimate()
    assert (line["what"], line["note"], line["fits"]) == (planned.what, planned.note, True) and line["seconds"] > 0
    assert not (tmp_path / "x.nrrd").exists()


@pytest.mark.parametrize("mode", ["pix2pix", "iqt"])
def test_train_synthesis_modes_equal_the_logic(mode, scene, tmp_path, capsys):
    from DLSynthesizeLib.config import Pix2PixConfig

    source1, target1, _, _, new = pairFiles(scene, tmp_path)
    assert main(["train-synthesis", "--mode", mode, "--sources", str(source1), "--targets", str(target1),
                 "--output-model", str(tmp_path / "cli"), "--name", "cli", *TINY]) == 0
    capsys.readouterr()
    config = (Pix2PixConfig.forDimensions(2, **TINY_OPTIONS) if mode == "pix2pix"
              else ImageToImageConfig.forDimensions(3, **TINY_OPTIONS))
    trained = SynthesisLogic(scene).imageToImageJob([(loadVolume(source1, scene), loadVolume(target1, scene))], None,
                                                    config, method=mode, outputDir=tmp_path / "logic",
                                                    modelName="logic").run()
    cli, logic = (torch.jit.load(str(path)).state_dict() for path in (tmp_path / "cli" / "cli.ts", trained.modelPath))
    assert list(cli) == list(logic)  # the same network, trained the same way: the same weights
    for name in cli:
        np.testing.assert_allclose(cli[name].numpy(), logic[name].numpy(), rtol=0, atol=1e-6, err_msg=name)


def test_train_denoiser_equals_the_logic_and_its_dry_run_the_jobs_estimate(scene, tmp_path, capsys):
    volume, _, _ = addCase(scene, 5)
    path = saveNode(volume, tmp_path / "noisy.nrrd")
    assert main(["train-synthesis", "--mode", "autoencoder", "--sources", str(path), "--output-model",
                 str(tmp_path / "cli"), "--name", "cli", *TINY]) == 0
    assert "(noise level " in capsys.readouterr().out
    logic = SynthesisLogic(scene)
    trained = logic.denoiseJob(loadVolume(path, scene), DenoiseConfig(**TINY_OPTIONS), outputDir=tmp_path / "logic",
                               modelName="logic").run()
    outputs = []
    for model in (tmp_path / "cli" / "cli.ts", trained.modelPath):
        outputs.append(tmp_path / f"clean{len(outputs)}.nrrd")
        assert main(["synthesize", "--model", str(model), "--input", str(path), "--output", str(outputs[-1]),
                     "--device", "cpu"]) == 0
    assertSameVolume(outputs[0], loadVolume(outputs[1], scene), scene)
    # the denoiser applied by the logic to its own training volume: the job's own output (same seed, same draws)
    assertSameVolume(outputs[1], trained.volume, scene)

    assert main(["--dry-run", "train-synthesis", "--mode", "autoencoder", "--sources", str(path), "--output-model",
                 str(tmp_path / "m"), *TINY]) == 0
    line = estimateLine(capsys.readouterr())
    planned = logic.denoiseJob(loadVolume(path, scene), DenoiseConfig(**TINY_OPTIONS)).resourceEstimate()
    assert (line["what"], line["note"], line["fits"]) == (planned.what, planned.note, True)
    assert not (tmp_path / "m").exists()


def test_simulate_us_equals_the_logic_and_the_panels_job(scene, tmp_path, capsys):
    from DLCommon.geometry import vtkMatrixFromArray
    from DLSynthesizeLib import MODULE
    from DLSynthesizeLib.ultrasound import probePose
    from conftest import settingsOf

    volume, segmentation, _ = addCase(scene, 4, affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    image = saveNode(volume, tmp_path / "image.nrrd")
    labels = saveNode(segmentation, tmp_path / "tissue.seg.nrrd")
    pose = ["--position", "36", "30", "54", "--target", "36", "30", "0"]
    options = ["--geometry", "linear", "--depth", "40", "--frequency", "7"]
    assert main(["simulate-us", "--labels", str(labels), "--reference", str(image), *pose, *options,
                 "--output", str(tmp_path / "us.nrrd")]) == 0
    capsys.readouterr()

    probe = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "probe")
    probe.SetMatrixTransformToParent(vtkMatrixFromArray(probePose([36, 30, 54], [36, 30, 0], [0, 1, 0]).numpy()))
    reference, source = loadVolume(image, scene), loadSegmentation(labels, scene)
    config = UltrasoundConfig(geometry="linear", depth=40.0, frequency=7.0)
    expected = SynthesisLogic(scene).simulateUltrasoundJob(source, probe, reference, config).run()
    assertSameVolume(tmp_path / "us.nrrd", expected.volume, scene)
    # the panel's Simulate: the same job, from the panel's settings
    p = settingsOf(MODULE, task="ultrasound", inputVolume=reference, tissueSegmentation=source, probeTransform=probe,
                   probeGeometry="linear", depth=40.0, frequency=7.0)
    panel = MODULE.action("ultrasound")[0].run(MODULE.makeEngine(scene), p)
    assertSameVolume(tmp_path / "us.nrrd", panel.volume, scene)

    assert main(["--dry-run", "simulate-us", "--labels", str(labels), "--reference", str(image), *pose, *options,
                 "--output", str(tmp_path / "x.nrrd")]) == 0
    line = estimateLine(capsys.readouterr())
    planned = MODULE.makeJob("ultrasound", MODULE.makeEngine(scene), p).resourceEstimate()
    assert (line["what"], line["note"], line["memoryBytes"]) == (planned.what, planned.note, planned.memoryBytes)
    assert line["fits"] and line["seconds"] > 0 and not (tmp_path / "x.nrrd").exists()
