"""Synthesis quality on the embedded MNI152 T1: through-plane super-resolution against cubic B-splines.

    .venv/bin/python Testing/Benchmarks/bench_synthesize.py                 # all three slice directions
    .venv/bin/python Testing/Benchmarks/bench_synthesize.py --axes 2 --steps 300

The 1 mm T1 is turned into a 4 mm thick-slice acquisition along one axis (Gaussian slice profile of FWHM
4 mm, every 4th slice), then brought back to 1 mm by (a) cubic B-spline interpolation (scipy
``map_coordinates(order=3)``) and (b) DLSynthesize's self-supervised super-resolution, trained only on the
thick-slice volume's own in-plane slices. Both are compared with the original 1 mm voxels at the same
positions, inside the head (T1 > 10): PSNR (peak 255) and SSIM (MONAI ``SSIMMetric``, 3D, 7-voxel window).
Goal: >= +2 dB over cubic.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLSynthesize")]

import numpy as np  # noqa: E402
import torch  # noqa: E402


def psnr(estimate: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor, peak: float = 255.0) -> float:
    mse = float(((estimate - truth)[mask] ** 2).mean())
    return 10.0 * math.log10(peak ** 2 / mse)


def ssim(estimate: torch.Tensor, truth: torch.Tensor, peak: float = 255.0) -> float:
    from monai.metrics import SSIMMetric

    metric = SSIMMetric(spatial_dims=3, data_range=peak, win_size=7)
    return float(metric(estimate.clamp(0, peak)[None, None], truth[None, None]).mean())


def bsplineUpsample(low: torch.Tensor, axis: int, factor: int, shape) -> torch.Tensor:
    import scipy.ndimage as ndimage

    coordinates = list(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    coordinates[axis] = coordinates[axis] / factor
    return torch.from_numpy(ndimage.map_coordinates(low.numpy().astype(np.float64), coordinates, order=3,
                                                    mode="nearest")).float()


def superResolution(axes, steps: int, factor: int = 4) -> list[dict]:
    import slicer
    from monai.data import MetaTensor

    from DLCommon import tensorFromVolume
    from DLCommon.sampledata import mni152Paths
    from DLCommon.storage import loadVolume
    from DLSynthesizeLib.superresolution import SuperResolutionConfig, degradeAlongAxis, superResolve

    scene = slicer.vtkMRMLScene()
    t1 = tensorFromVolume(loadVolume(mni152Paths()["t1"], scene))
    rows = []
    for axis in axes:
        count = (t1.shape[1 + axis] - 1) // factor * factor + 1
        truth = t1[0].as_tensor().narrow(axis, 0, count)
        low = degradeAlongAxis(truth, axis, factor)
        affine = torch.as_tensor(t1.affine).clone()
        affine[:3, axis] *= factor
        mask = truth > 10
        cubic = bsplineUpsample(low, axis, factor, truth.shape)
        started = time.perf_counter()
        result = superResolve(MetaTensor(low[None], affine=affine), SuperResolutionConfig(steps=steps, device="cpu"))
        seconds = time.perf_counter() - started
        ours = result.image[0].as_tensor()
        row = {"axis": "IJK"[axis], "cubic psnr": psnr(cubic, truth, mask), "ours psnr": psnr(ours, truth, mask),
               "cubic ssim": ssim(cubic, truth), "ours ssim": ssim(ours, truth), "seconds": seconds}
        rows.append(row)
        print(f"axis {row['axis']}: cubic B-spline {row['cubic psnr']:.2f} dB / SSIM {row['cubic ssim']:.4f}, "
              f"ours {row['ours psnr']:.2f} dB / SSIM {row['ours ssim']:.4f} "
              f"(+{row['ours psnr'] - row['cubic psnr']:.2f} dB), {seconds:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--axes", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = superResolution(args.axes, args.steps)
    print("\n| slice axis | cubic B-spline PSNR / SSIM | MedDL PSNR / SSIM | gain dB | time s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['axis']} | {r['cubic psnr']:.2f} / {r['cubic ssim']:.4f} | {r['ours psnr']:.2f} / "
              f"{r['ours ssim']:.4f} | {r['ours psnr'] - r['cubic psnr']:+.2f} | {r['seconds']:.0f} |")
    print(f"\nmachine: {os.cpu_count()} cores, torch {torch.__version__}, {args.steps} training steps")


if __name__ == "__main__":
    main()
