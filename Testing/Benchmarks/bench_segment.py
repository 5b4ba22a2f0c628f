"""Benchmark: DLSegment's end-to-end segmentation vs raw MONAI sliding_window_inference, one run each.

    .venv/bin/python Testing/Benchmarks/bench_segment.py                 # 512 x 512 x 400, as in RESULTS.md
    .venv/bin/python Testing/Benchmarks/bench_segment.py --shape 256 256 200

Both variants use the same network (a UNet saved as a checkpoint and loaded through DLCommon), roi and
overlap, on the same random int16 volume. Each runs in its own process so peak memory (max RSS above the
process's baseline after the volume is loaded; Linux /proc peak counter) is measured separately:

  ours   volume node -> DLSegmentLogic.segment (tensorFromVolume, sliding window, softmax, argmax,
         segmentation node)
  monai  tensor -> monai.inferers.sliding_window_inference -> argmax (no nodes, no probabilities)

Goals: ours / monai time <= 1.05; ours peak <= 3x the input as float32 plus the model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLSegment")]

from peakmemory import peakRssBytes, resetPeak  # noqa: E402 - this folder's helper

ROI, OVERLAP, WINDOW_BATCH = (64, 64, 64), 0.25, 4


def makeModel(folder: Path) -> Path:
    import torch

    from DLCommon import ModelSpec, saveCheckpoint
    from DLSegmentLib.networks import buildNetwork

    torch.manual_seed(0)
    className, args, network = buildNetwork("unet", 1, 2, ROI, features=8)
    spec = ModelSpec(name="bench", task="segmentation", roiSize=list(ROI), labelNames=["object"])
    return saveCheckpoint(network, folder / "bench.pt", className, args, spec)


def variant(name: str, shape, modelPath: str) -> dict:
    import numpy as np
    import torch
    import vtk

    import slicer
    from DLCommon import loadModel

    vtk.vtkObject.GlobalWarningDisplayOff()
    torch.set_grad_enabled(False)
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    i, j, k = shape
    array = np.random.default_rng(0).integers(-1000, 2000, size=(k, j, i), dtype=np.int16)
    node = slicer.util.addVolumeFromArray(array, name="bench")
    del array
    model = loadModel(modelPath)
    baseline = resetPeak()
    start = time.perf_counter()
    if name == "ours":
        from DLSegmentLib.logic import SegmentationLogic

        result = SegmentationLogic(scene).segment(node, model, device="cpu", overlap=OVERLAP)
        assert result.segmentation.GetSegmentation().GetNumberOfSegments() == 1
    else:
        from monai.inferers import sliding_window_inference

        from DLCommon import tensorFromVolume

        image = tensorFromVolume(node).as_tensor()[None]
        output = sliding_window_inference(image, ROI, WINDOW_BATCH, model.network, overlap=OVERLAP, mode="gaussian")
        labels = output.argmax(1)
        assert labels.shape[1:] == (i, j, k)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peakBytes": peakRssBytes() - baseline,
            "modelBytes": sum(p.numel() * p.element_size() for p in model.network.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 400], metavar=("I", "J", "K"))
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (fastest kept)")
    parser.add_argument("--variant", choices=["ours", "monai"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(variant(args.variant, args.shape, args.model)))
        return
    with tempfile.TemporaryDirectory() as folder:
        modelPath = makeModel(Path(folder))
        results = {}
        for _ in range(args.repeats):  # alternate the variants; keep each one's fastest run (VM timing noise)
            for name in ("monai", "ours"):
                run = subprocess.run([sys.executable, __file__, "--variant", name, "--model", str(modelPath),
                                      "--shape", *map(str, args.shape)], capture_output=True, text=True, check=True)
                result = json.loads(run.stdout.strip().splitlines()[-1])
                if name not in results or result["seconds"] < results[name]["seconds"]:
                    results[name] = result
    i, j, k = args.shape
    inputFloatBytes = i * j * k * 4
    print(f"volume {i}x{j}x{k} int16, UNet (2 classes), roi {ROI}, overlap {OVERLAP}, CPU, "
          f"fastest of {args.repeats} alternating runs each")
    for name, r in results.items():
        print(f"  {name:6s} {r['seconds']:8.1f} s   peak +{r['peakBytes'] / 2**30:6.2f} GiB "
              f"({r['peakBytes'] / inputFloatBytes:.2f}x the input as float32)")
    print(f"  ratio ours / monai time   {results['ours']['seconds'] / results['monai']['seconds']:.2f}  (goal <= 1.05)")
    budget = 3 * inputFloatBytes + results["ours"]["modelBytes"]
    print(f"  ours peak / (3x input float32 + model) {results['ours']['peakBytes'] / budget:.2f}  (goal <= 1.0)")


if __name__ == "__main__":
    main()
