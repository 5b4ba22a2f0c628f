"""Benchmark: volume node -> float32 tensor -> back into the node, against plain NumPy, in one run.

    .venv/bin/python Testing/Benchmarks/bench_volumes.py            # 512 x 512 x 400 int16, as in RESULTS.md

Measures (median of --repeats):
  ours        tensorFromVolume (int16 -> float32) + updateVolumeFromTensor(keepScalarType=True) (float32 -> int16
              into the node's existing buffer)
  numpy       the same two conversions in plain NumPy: a.astype(float32); np.copyto(int16 array, f, 'unsafe')
  np.copy     one int16 copy of the volume (memcpy)
  slicer.util.updateVolumeFromArray(node, int16 array)
and prints ratios. Goal: ours / numpy <= 1.2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def timeit(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(shape=(400, 512, 512), repeats: int = 5) -> dict[str, float]:
    import slicer
    import torch
    import vtk

    from DLCommon import tensorFromVolume, updateVolumeFromTensor

    vtk.vtkObject.GlobalWarningDisplayOff()
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    array = np.random.default_rng(0).integers(-1024, 3071, size=shape, dtype=np.int16)  # (K, J, I)
    node = slicer.util.addVolumeFromArray(array.copy(), name="bench")
    scratch = np.empty_like(array)

    def ours():
        tensor = tensorFromVolume(node)
        updateVolumeFromTensor(node, tensor, keepScalarType=True)

    def plainNumpy():
        floats = array.astype(np.float32)
        np.copyto(scratch, floats, casting="unsafe")

    ours()  # warm-up (and a correctness check of the round trip)
    assert np.array_equal(slicer.util.arrayFromVolume(node), array)
    results = {
        "ours": timeit(ours, repeats),
        "numpy": timeit(plainNumpy, repeats),
        "np.copy": timeit(lambda: np.copy(array), repeats),
        "updateVolumeFromArray": timeit(lambda: slicer.util.updateVolumeFromArray(node, array), repeats),
    }
    results["threads"] = torch.get_num_threads()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 400], metavar=("I", "J", "K"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    i, j, k = args.shape
    r = run((k, j, i), args.repeats)
    print(f"volume {i}x{j}x{k} int16, median of {args.repeats}, torch threads {r['threads']}")
    for key in ("ours", "numpy", "np.copy", "updateVolumeFromArray"):
        print(f"  {key:24s} {1000 * r[key]:8.1f} ms")
    print(f"  ratio ours / numpy                    {r['ours'] / r['numpy']:.2f}  (goal <= 1.2)")
    print(f"  ratio ours / np.copy                  {r['ours'] / r['np.copy']:.2f}")
    print(f"  ratio updateVolumeFromArray / np.copy {r['updateVolumeFromArray'] / r['np.copy']:.2f}")


if __name__ == "__main__":
    main()
