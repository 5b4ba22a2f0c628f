"""Benchmark: MedDL's run of a MONAI Model Zoo bundle vs MONAI's own bundle workflow, model loaded, same image.

    .venv/bin/python Testing/Benchmarks/bench_bundles.py                       # the default bundles below
    .venv/bin/python Testing/Benchmarks/bench_bundles.py --bundles spleen_ct_segmentation brats_mri_segmentation

The bundles are the Model Zoo's own configs (Testing/Data/modelzoo) with seeded random weights, on the phantoms of
Testing/Python/test_bundles.py (stored LPS, away from the bundle's spacing). Each side runs in a process of its own,
loads the bundle first (not timed), then runs twice; the faster run is reported (and the ratio of the first runs,
where MedDL's plan measures the network once), with the peak RSS above the process's baseline after loading (Linux
/proc peak counter):

  meddl  volume node(s) -> SegmentationLogic.segment(LoadedModel) -> segmentation node: the plan, the bundle's
         preprocessing, inferer and postprocessing, the segmentation node
  monai  monai.bundle.ConfigWorkflow, initialised once (weights loaded), ``run()``: its DataLoader reads the file(s),
         its evaluator runs the same pipeline, its writer saves the labels

Agreement: the labels of both (Dice of every label, equal voxels). Goal: meddl / monai time <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLSegment"), str(ROOT / "Testing" / "Python")]

from peakmemory import peakRssBytes, resetPeak  # noqa: E402 - this folder's helper

DEFAULT = ("spleen_ct_segmentation", "prostate_mri_anatomy", "ventricular_short_axis_3label",
           "renalStructures_CECT_segmentation")


def prepare(name: str, folder: Path) -> dict:
    """The bundle (trusted, random weights) and its input files: ``{"root", "inputs": name -> path, "data"}``."""
    import test_bundles as zoo

    folder.mkdir(parents=True, exist_ok=True)
    if name in zoo.MULTI:
        paths = zoo.multiPhantom(name, "LPS", folder)
        root = zoo.makeBundle(name, folder, zoo.multiData(name, paths))
        names = list(zoo.MULTI[name][0])
        return {"root": str(root), "inputs": {n: str(paths[n]) for n in names},
                "data": zoo.multiData(name, paths), "multi": True}
    image = zoo.phantom(zoo.BUNDLES[name][0], "LPS", name, folder)
    root = zoo.makeBundle(name, folder, image)
    return {"root": str(root), "inputs": {"image": str(image)}, "data": str(image), "multi": False}


def runMeddl(case: dict, output: Path) -> dict:
    import numpy as np
    import slicer

    from DLCommon import loadModel, tensorFromSegmentation
    from DLCommon.bundletrust import trustBundle
    from DLCommon.storage import loadVolume
    from DLSegmentLib.logic import SegmentationLogic

    trustBundle(case["root"])
    scene = slicer.vtkMRMLScene()
    volumes = {name: loadVolume(path, scene) for name, path in case["inputs"].items()}
    first = next(iter(volumes))
    others = {n: v for n, v in volumes.items() if n != first} or None
    model = loadModel(case["root"])
    baseline, seconds, result = resetPeak(), [], None
    for _ in range(2):
        if result is not None:
            scene.RemoveNode(result.segmentation)
        started = time.perf_counter()
        result = SegmentationLogic(scene).segment(volumes[first], model, device="cpu", otherInputs=others)
        seconds.append(time.perf_counter() - started)
    labels, names, _ = tensorFromSegmentation(result.segmentation, volumes[first])
    np.save(output, labels.numpy())
    return {"seconds": min(seconds), "first": seconds[0], "peakMB": (peakRssBytes() - baseline) / 2**20,
            "names": names}


def runMonai(case: dict, output: Path, name: str) -> dict:
    from monai.bundle import ConfigWorkflow

    import test_bundles as zoo

    root = Path(case["root"])
    overrides = {"output_dir": str(output), "device": "$torch.device('cpu')"}
    if name == "brats_mri_segmentation":
        overrides["test_datalist"] = [case["data"]]
    elif case["multi"]:
        overrides.update({"dataset#data": [case["data"]], "dataset_dir": str(Path(case["inputs"]["artery"]).parent),
                          "run_id": "inference"})
    else:
        overrides["datalist"] = [case["data"]]
        overrides["run_id"] = zoo.RUN_IDS.get(name, "run")
    workflow = ConfigWorkflow(config_file=str(root / "configs" / "inference.json"),
                              meta_file=str(root / "configs" / "metadata.json"), workflow_type="infer",
                              bundle_root=str(root), **overrides)
    workflow.initialize()  # the network and its weights: loaded, as MedDL's model is
    baseline, seconds = resetPeak(), []
    for _ in range(2):
        shutil.rmtree(output, ignore_errors=True)
        started = time.perf_counter()
        workflow.run()
        seconds.append(time.perf_counter() - started)
    workflow.finalize()
    return {"seconds": min(seconds), "first": seconds[0], "peakMB": (peakRssBytes() - baseline) / 2**20}


def agreement(ours: Path, theirs: Path, names: list[str], case: dict) -> dict:
    import nibabel as nib
    import numpy as np

    import test_bundles as zoo

    first = Path(next(iter(case["inputs"].values()))).name.replace(".nii.gz", "")
    written = [p for p in theirs.rglob("*.nii.gz") if p.name.startswith(first)]  # not the label writer's file
    reference = np.rint(np.asarray(nib.load(str(written[0])).dataobj)).astype(np.int64)
    labels = np.load(ours)
    if all(n.startswith("label ") for n in names):  # values named by value (brats)
        labels = np.array([0] + [int(n.split()[-1]) for n in names])[labels]
    dice = zoo.dicePerLabel(labels, reference)
    return {"labels": len(dice), "minDice": round(min(dice.values()), 4) if dice else None,
            "equalVoxels": round(float((labels == reference).mean()), 6)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="+", default=list(DEFAULT))
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "CASE_JSON", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, caseFile, output = args.child
        case = json.loads(Path(caseFile).read_text())
        result = runMeddl(case, Path(output)) if side == "meddl" else runMonai(case, Path(output), case["name"])
        print(json.dumps(result))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        os.environ["MEDDL_HOME"] = str(folder / "home")  # the trust file and catalog of this run, inherited
        for name in args.bundles:
            case = {**prepare(name, folder / name), "name": name}
            caseFile = folder / f"{name}.json"
            caseFile.write_text(json.dumps(case))
            results = {}
            for side, output in (("monai", folder / f"{name}_monai"), ("meddl", folder / f"{name}_meddl.npy")):
                answer = subprocess.run([sys.executable, __file__, "--child", side, str(caseFile), str(output)],
                                        capture_output=True, text=True, check=True)
                results[side] = json.loads(answer.stdout.strip().splitlines()[-1])
            agree = agreement(folder / f"{name}_meddl.npy", folder / f"{name}_monai", results["meddl"]["names"], case)
            row = {"bundle": name, "inputs": len(case["inputs"]), **agree,
                   "meddl_s": round(results["meddl"]["seconds"], 2), "monai_s": round(results["monai"]["seconds"], 2),
                   "ratio": round(results["meddl"]["seconds"] / results["monai"]["seconds"], 3),
                   "first_ratio": round(results["meddl"]["first"] / results["monai"]["first"], 3),
                   "meddl_peak_MB": round(results["meddl"]["peakMB"]), "monai_peak_MB": round(results["monai"]["peakMB"])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| bundle | inputs | labels | min Dice | equal voxels | MedDL s | MONAI s | ratio | first-run ratio | "
          "MedDL peak MB | MONAI peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bundle']} | {r['inputs']} | {r['labels']} | {r['minDice']} | {r['equalVoxels']:.4%} | {r['meddl_s']} | "
              f"{r['monai_s']} | {r['ratio']} | {r['first_ratio']} | {r['meddl_peak_MB']} | {r['monai_peak_MB']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
