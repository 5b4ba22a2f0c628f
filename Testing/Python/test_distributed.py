"""Scale-out: torchrun training equals one process, sharded resumable cohort inference, GUI batch jobs.

The multi-process tests launch ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m meddl``:
two real processes in a gloo group on the CPU, as on a cluster node without GPUs.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from conftest import makeVolume
from conftest import NAMES, addCase

from DLCommon.shardedbatches import ShardedBatches
from DLCommon.cli import main
from DLCommon.jobs import JobState
from DLCommon.storage import loadSegmentation, saveNode


def torchrun(*args: str, processes: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "meddl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def manifestRows(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def writeCases(scene, folder: Path, seeds, name="case") -> dict:
    """Phantom volumes (and their .seg.nrrd labels in folder/labels) as files; returns the labels by name."""
    truth = {}
    for seed in seeds:
        volume, segmentation, labels = addCase(scene, seed, name=name)
        saveNode(volume, folder / f"{name}{seed}.nrrd")
        saveNode(segmentation, folder / "labels" / f"{name}{seed}.seg.nrrd")
        truth[f"{name}{seed}"] = labels
    return truth


def saveUntrainedModel(path: Path, features: int = 8) -> Path:
    """A randomly initialised phantom-sized UNet checkpoint (inference cost is what these tests need)."""
    from DLCommon import ModelSpec, saveCheckpoint
    from DLSegmentLib.networks import buildNetwork

    torch.manual_seed(0)
    className, args, network = buildNetwork("unet", 1, 3, (16, 16, 16), features, "batch")
    spec = ModelSpec(name="phantom-untrained", task="segmentation", inputChannels=1, roiSize=[16, 16, 16],
                     labelNames=list(NAMES), normalization={"type": "zscore"})
    return saveCheckpoint(network.eval(), path, className, args, spec).with_suffix(".pt")


def test_sharded_batches_split_each_global_batch_between_processes():
    """What rank r of N draws in batch k is exactly its share of a single process's batch k."""
    def item(index, seed):
        return torch.tensor([index, seed % 1000]), torch.tensor(index)

    single = ShardedBatches(item, 12, 4, seed=3, shuffle=True)
    ranks = []
    for rank in range(2):
        batches = ShardedBatches(item, 12, 4, seed=3, shuffle=True)
        batches.rank, batches.worldSize = rank, 2
        ranks.append(batches)
    for epoch in range(2):  # a new shuffle per epoch, the same on every rank
        reference = [x for x, _ in single]
        shards = [[x for x, _ in batches] for batches in ranks]
        assert len(reference) == 3 and all(len(s) == 3 for s in shards)
        for k, batch in enumerate(reference):
            union = torch.cat([shards[0][k], shards[1][k]])
            assert sorted(map(tuple, union.tolist())) == sorted(map(tuple, batch.tolist()))  # same items, same seeds
    assert [x[:, 0].tolist() for x, _ in single] != reference  # a third epoch reshuffles


def test_two_process_training_matches_one_process(scene, tmp_path):
    """torchrun -m meddl train-segment with 2 gloo processes: the same loss curve as 1 process (same seed, global
    batch); rank 0 alone writes the model, its curves and history."""
    writeCases(scene, tmp_path / "data", (1, 2))
    images = [str(tmp_path / "data" / f"case{s}.nrrd") for s in (1, 2)]
    labels = [str(tmp_path / "data" / "labels" / f"case{s}.seg.nrrd") for s in (1, 2)]
    options = ["--images", *images, "--labels", *labels, "--patch", "16", "16", "16", "--epochs", "4",
               "--batches-per-epoch", "3", "--batch-size", "4", "--features", "8", "--norm", "instance",
               "--intensity-range", "0", "120", "--device", "cpu"]
    assert main(["train-segment", *options, "--output-model", str(tmp_path / "one")]) == 0
    result = torchrun("train-segment", *options, "--output-model", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "segmentation.history.json").read_text())
    two = json.loads((tmp_path / "two" / "segmentation.history.json").read_text())
    assert len(two["trainLoss"]) == 4
    np.testing.assert_allclose(two["trainLoss"], one["trainLoss"], rtol=1e-4)
    assert one["trainLoss"][-1] < one["trainLoss"][0]  # it did learn
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert result.stdout.count("Model: ") == 1  # only rank 0 reports


def test_sharded_cohort_inference_covers_every_item_once(scene, tmp_path):
    """Two ranks segment a folder: every item exactly once, a corrupt file fails alone, the manifest records all."""
    writeCases(scene, tmp_path / "cohort", range(1, 6))
    (tmp_path / "cohort" / "broken.nrrd").write_text("not a volume")
    model = saveUntrainedModel(tmp_path / "model.pt")
    out = tmp_path / "out"
    result = torchrun("segment", "--model", str(model), "--input", str(tmp_path / "cohort"), "--output", str(out),
                      "--device", "cpu")
    assert result.returncode == 1, result.stderr[-3000:]  # one item failed; the others are done
    rows = manifestRows(out / "manifest.csv")
    assert sorted(row["item"] for row in rows) == sorted(["broken"] + [f"case{s}" for s in range(1, 6)])
    assert {row["rank"] for row in rows} == {"0", "1"}
    failed = [row for row in rows if row["status"] == "failed"]
    assert [row["item"] for row in failed] == ["broken"] and "broken.nrrd" in failed[0]["error"]
    assert all(row["status"] == "done" for row in rows if row["item"] != "broken")
    for seed in range(1, 6):
        segmentation = loadSegmentation(out / f"case{seed}.seg.nrrd", scene)
        assert segmentation.GetSegmentation().GetNumberOfSegments() == 2
    assert not list(out.glob(".partial-*")) and not list(out.glob(".manifest*"))
    assert "5 done, 0 skipped (output exists), 1 failed" in result.stdout


def test_killed_run_resumes_with_only_the_missing_items(scene, tmp_path):
    """SIGKILL a cohort run mid-way; the same command then does only what was missing."""
    for index in range(10):
        image = np.random.default_rng(index).normal(50, 10, (96, 96, 96)).astype(np.float32)
        saveNode(makeVolume(scene, image, np.eye(4), name=f"vol{index}"), tmp_path / "cohort" / f"vol{index:02d}.nrrd")
    model = saveUntrainedModel(tmp_path / "model.pt", features=16)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "meddl", "segment", "--model", str(model), "--input", str(tmp_path / "cohort"),
               "--output", str(out), "--mirror", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(out.glob("vol*.seg.nrrd"))) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("vol*.seg.nrrd")}
    assert 2 <= len(finished) < 10, "the kill should land mid-run"
    assert not (out / "manifest.csv").exists()  # the killed run never got to write it

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = {row["item"]: row for row in manifestRows(out / "manifest.csv")}
    assert len(rows) == 10
    for name in (f"vol{i:02d}" for i in range(10)):
        assert rows[name]["status"] == ("skipped" if f"{name}.seg.nrrd" in finished else "done")
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime  # finished items were not redone
    assert not list(out.glob(".partial-*"))


def test_classify_cohort_from_csv_is_resumable(tmp_path, scene, capsys):
    """meddl classify on a CSV cohort: one results table; a second run reuses every item's rows."""
    model = _tinyClassifier(tmp_path)
    rows = ["input,name"]
    for seed in range(3):
        image = np.random.default_rng(seed).normal(0, 1, (1, 32, 32)).astype(np.float32) + seed
        saveNode(makeVolume(scene, image, np.eye(4), name=f"slice{seed}"), tmp_path / "in" / f"slice{seed}.nrrd")
        rows.append(f"in/slice{seed}.nrrd,case{seed}")
    (tmp_path / "cohort.csv").write_text("\n".join(rows) + "\n")
    assert main(["--dry-run", "classify", "--model", str(model), "--input", str(tmp_path / "cohort.csv"),
                 "--output", str(tmp_path / "results.csv"), "--device", "cpu"]) == 0
    estimates = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [Path(e["input"]).name for e in estimates] == [f"slice{s}.nrrd" for s in range(3)]
    assert all(e["what"] == "Classification" and e["fits"] for e in estimates)
    assert not (tmp_path / "results.csv").exists()
    for run in range(2):
        assert main(["classify", "--model", str(model), "--input", str(tmp_path / "cohort.csv"),
                     "--output", str(tmp_path / "results.csv"), "--device", "cpu"]) == 0
        manifest = manifestRows(tmp_path / "results_manifest.csv")
        assert [row["status"] for row in manifest] == (["done"] * 3 if run == 0 else ["skipped"] * 3)
        with open(tmp_path / "results.csv", newline="") as stream:
            results = list(csv.DictReader(stream))
        assert [row["input"] for row in results] == [f"slice{s}.nrrd" for s in range(3)]


def _tinyClassifier(folder: Path) -> Path:
    from DLClassifyLib.trainer import ClassificationTrainingConfig, trainClassifier

    images = torch.randn(8, 1, 32, 32)
    labels = torch.tensor([0, 1] * 4)
    images[labels == 1] += 2.0
    result = trainClassifier(images, labels, ["dark", "bright"], ClassificationTrainingConfig(
        architecture="tiny", inputSize=(32, 32), epochs=2, batchSize=4, device="cpu", calibrate=False),
        folder / "model", "tiny-classifier")
    return result.modelPath


def test_batch_job_over_scene_volumes_and_a_folder(scene, tmp_path):
    """The GUI batch: one job over checked volumes (a bad one fails alone, cancel stops the rest) and over a
    folder (each file loaded, saved, removed: the scene ends as it began)."""
    from DLCommon.batch import BatchJob, batchTable
    from DLSegmentLib.logic import SegmentationLogic

    model = saveUntrainedModel(tmp_path / "model.pt")
    logic = SegmentationLogic(scene)
    volumes = [addCase(scene, seed, name="batch")[0] for seed in (1, 2)]
    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")  # no image data: refused before its job
    before = scene.GetNumberOfNodes()

    batch = logic.batchJob([volumes[0], vector, volumes[1]], lambda v: logic.segmentJob(v, str(model), device="cpu"))
    assert isinstance(batch, BatchJob)
    batch.start()  # the widget's way: a worker thread per item, polled from the main thread
    deadline = time.monotonic() + 120
    while not batch.poll() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batch.state == JobState.SUCCEEDED and batch.fraction == 1.0
    assert [o.status for o in batch.outcomes] == ["done", "failed", "done"]
    assert "rgb" in batch.outcomes[1].error or "image" in batch.outcomes[1].error
    segmentations = [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                     for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    assert sorted(n.GetName() for n in segmentations if "phantom-untrained" in n.GetName()) == [
        "batch 1 phantom-untrained segmentation", "batch 2 phantom-untrained segmentation"]
    table = batchTable(scene, batch.outcomes)
    assert table.GetNumberOfRows() == 3 and table.GetCellText(1, 1) == "failed"
    scene.RemoveNode(table)
    count = scene.GetNumberOfNodes()
    assert count > before

    cancelled = logic.batchJob(volumes, lambda v: logic.segmentJob(v, str(model), device="cpu"))
    outcomes = cancelled.run(progress=lambda f, m: cancelled.cancel())
    assert cancelled.state == JobState.CANCELLED and [o.status for o in outcomes] == ["cancelled"]
    assert scene.GetNumberOfNodes() == count  # the cancelled item added nothing

    for seed in (3, 4):
        saveNode(addCase(scene, seed, name="file")[0], tmp_path / "folder" / f"file{seed}.nrrd")
    count = scene.GetNumberOfNodes()
    fromFolder = logic.batchJob(str(tmp_path / "folder"), lambda v: logic.segmentJob(v, str(model), device="cpu"),
                                tmp_path / "results")
    outcomes = fromFolder.run()
    assert [o.status for o in outcomes] == ["done", "done"]
    assert scene.GetNumberOfNodes() == count  # loaded for their turn, then removed with their outputs
    saved = sorted(p.name for p in (tmp_path / "results").iterdir() if p.name != "manifest.csv")
    assert saved == ["file3_phantom-untrained_segmentation.seg.nrrd", "file4_phantom-untrained_segmentation.seg.nrrd"]
    assert [row["status"] for row in manifestRows(tmp_path / "results" / "manifest.csv")] == ["done", "done"]
    segmentation = loadSegmentation(tmp_path / "results" / saved[0], scene)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 2


def test_module_entry_point_and_slurm_example():
    """python -m meddl is the command torchrun starts; the sbatch example is valid bash that launches it."""
    result = subprocess.run([sys.executable, "-m", "meddl", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("meddl ")
    script = Path(__file__).resolve().parents[2] / "Resources" / "Cluster" / "meddl.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "torch.distributed.run" in text and "-m meddl \"$@\"" in text and "--rdzv-backend c10d" in text


def test_register_and_synthesize_cohorts(scene, tmp_path):
    """meddl register --pairs CSV (items named moving_to_fixed) and meddl synthesize on a folder, with manifests."""
    writeCases(scene, tmp_path / "cases", (1, 2, 3))
    (tmp_path / "pairs.csv").write_text("fixed,moving\ncases/case1.nrrd,cases/case2.nrrd\n"
                                        "cases/case1.nrrd,cases/case3.nrrd\ncases/case2.nrrd,cases/case3.nrrd\n")
    assert main(["register", "--pairs", str(tmp_path / "pairs.csv"), "--output-transform", str(tmp_path / "reg"),
                 "--output-warped", str(tmp_path / "reg" / "warped"), "--affine-only", "--device", "cpu"]) == 0
    rows = manifestRows(tmp_path / "reg" / "manifest.csv")
    assert [(r["item"], r["status"]) for r in rows] == [("case2_to_case1", "done"), ("case3_to_case1", "done"),
                                                       ("case3_to_case2", "done")]
    assert sorted(p.name for p in (tmp_path / "reg" / "warped").iterdir()) == [
        "case2_to_case1.nrrd", "case3_to_case1.nrrd", "case3_to_case2.nrrd"]

    from DLCommon import tensorFromVolume
    from DLCommon.storage import loadVolume
    from DLSynthesizeLib.imagetoimage import ImageToImageConfig, saveImageToImageModel, trainImageToImage

    source = tensorFromVolume(loadVolume(tmp_path / "cases" / "case1.nrrd", scene))
    model = trainImageToImage([(source, source)],
                              ImageToImageConfig(dimensions=2, steps=10, patchSize=16, features=8, device="cpu"))
    path = saveImageToImageModel(model, tmp_path / "identity.ts", "identity", "test")
    assert main(["synthesize", "--model", str(path), "--input", str(tmp_path / "cases"),
                 "--output", str(tmp_path / "syn")]) == 0
    rows = manifestRows(tmp_path / "syn" / "manifest.csv")
    assert [(r["item"], r["status"]) for r in rows] == [(f"case{s}", "done") for s in (1, 2, 3)]
    synthesized = loadVolume(tmp_path / "syn" / "case2.nrrd", scene)
    assert synthesized.GetImageData().GetDimensions() == loadVolume(tmp_path / "cases" / "case2.nrrd",
                                                                    scene).GetImageData().GetDimensions()
