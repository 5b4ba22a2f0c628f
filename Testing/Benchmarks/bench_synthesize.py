"""Synthesis quality on the embedded MNI152 T1: super-resolution vs cubic B-splines; paired translation.

    .venv/bin/python Testing/Benchmarks/bench_synthesize.py                 # everything
    .venv/bin/python Testing/Benchmarks/bench_synthesize.py --parts sr --axes 2 --steps 300

Denoising (``--parts denoise``): the 1 mm T1 with Rician noise (3, 5, 10 % of the maximum); PSNR inside the
head for the best of several Gaussian smoothings, scikit-image non-local means (``pip install
scikit-image==0.26.0``; skipped if missing) and DLSynthesize's self-supervised denoiser (2 x ``--steps``).

Paired translation (``--parts paired``): T1 -> a T2-like tissue contrast (CSF bright, grey > white matter,
from the GM / WM labels, blurred by 1 voxel: not a voxel-wise function of the T1) at 2 mm; trained on 3
random copies (deformation, bias, noise), tested on 3 held-out copies: MAE and PSNR inside the head for a
U-Net (L1), pix2pix, and a baseline lookup table (the mean target per T1 intensity bin on the training pairs).

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
sys.path[:0] = [str(ROOT), str(ROOT / "DLSynthesize"), str(ROOT / "DLRegister")]

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


def t2Like(image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """T2-like contrast from tissue labels: CSF / fluid inside the head bright, GM 110, WM 70, background 0."""
    from DLRegisterLib.space import smoothImage

    head = image > 30
    target = torch.zeros_like(image)
    target[head] = 220.0
    target[labels == 1] = 110.0
    target[labels == 2] = 70.0
    return smoothImage(target[None, None], [1.0, 1.0, 1.0])[0, 0]


def pairedTranslation(steps: int) -> list[dict]:
    from monai.data import MetaTensor

    from DLCommon.sampledata import mni152Tissue, randomCopy
    from DLSynthesizeLib.imagetoimage import ImageToImageConfig, applyImageToImage, trainImageToImage
    from DLSynthesizeLib.pix2pix import Pix2PixConfig, trainPix2Pix

    image, labels = mni152Tissue(2.0)

    def pair(seed):
        source, sourceLabels = randomCopy(image, labels, seed)
        return source, MetaTensor(t2Like(source.as_tensor()[0], sourceLabels)[None], affine=source.affine)

    train = [pair(seed) for seed in range(3)]
    test = [pair(100 + seed) for seed in range(3)]
    bins = torch.linspace(0, float(max(s.max() for s, _ in train)), 65)
    sums, counts = torch.zeros(64), torch.zeros(64)
    for source, target in train:
        index = torch.bucketize(source.as_tensor().reshape(-1), bins[1:-1])
        sums.index_add_(0, index, target.as_tensor().reshape(-1))
        counts.index_add_(0, index, torch.ones_like(index, dtype=torch.float32))
    table = sums / counts.clamp(min=1)
    methods = {
        "lookup table": lambda s: table[torch.bucketize(s.as_tensor(), bins[1:-1])],
    }
    timings = {}
    started = time.perf_counter()
    unet = trainImageToImage(train, ImageToImageConfig(steps=steps, loss="l1", device="cpu"))
    timings["U-Net (L1)"] = time.perf_counter() - started
    methods["U-Net (L1)"] = lambda s: applyImageToImage(unet, s).as_tensor()
    started = time.perf_counter()
    gan = trainPix2Pix(train, Pix2PixConfig(steps=steps, device="cpu"))
    timings["pix2pix"] = time.perf_counter() - started
    methods["pix2pix"] = lambda s: applyImageToImage(gan, s).as_tensor()
    rows = []
    for name, method in methods.items():
        maes, psnrs = [], []
        for source, target in test:
            mask = source.as_tensor()[0] > 30
            estimate = method(source)[0]
            maes.append(float((estimate - target.as_tensor()[0])[mask].abs().mean()))
            psnrs.append(psnr(estimate, target.as_tensor()[0], mask))
        rows.append({"method": name, "mae": sum(maes) / len(maes), "psnr": sum(psnrs) / len(psnrs),
                     "seconds": timings.get(name, 0.0)})
        print(f"paired {name}: MAE {rows[-1]['mae']:.2f}, PSNR {rows[-1]['psnr']:.2f} dB", flush=True)
    return rows


def rician(truth: torch.Tensor, level: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    real = truth + torch.randn(truth.shape, generator=generator) * level
    imaginary = torch.randn(truth.shape, generator=generator) * level
    return torch.sqrt(real ** 2 + imaginary ** 2)


def denoising(levels, steps: int) -> list[dict]:
    import slicer
    from monai.data import MetaTensor

    from DLCommon import tensorFromVolume
    from DLCommon.sampledata import mni152Paths
    from DLCommon.storage import loadVolume
    from DLRegisterLib.space import smoothImage
    from DLSynthesizeLib.denoise import DenoiseConfig, denoise

    t1 = tensorFromVolume(loadVolume(mni152Paths()["t1"], slicer.vtkMRMLScene()))
    truth = t1.as_tensor()[0]
    mask = truth > 10
    rows = []
    for level in levels:
        noisy = rician(truth, level * 255.0, seed=int(1000 * level))
        row = {"level": level, "noisy": psnr(noisy, truth, mask)}
        row["gaussian"], row["sigma"] = max((psnr(smoothImage(noisy[None, None], [s] * 3)[0, 0], truth, mask), s)
                                            for s in (0.4, 0.5, 0.6, 0.8, 1.0, 1.2))
        try:
            from skimage.restoration import denoise_nl_means

            started = time.perf_counter()
            sigma = level * 255.0
            nlm = denoise_nl_means(noisy.numpy(), patch_size=3, patch_distance=3, h=0.8 * sigma, sigma=sigma,
                                   fast_mode=True, channel_axis=None)
            row["nlm"], row["nlm seconds"] = psnr(torch.from_numpy(nlm).float(), truth, mask), time.perf_counter() - started
        except ImportError:
            row["nlm"], row["nlm seconds"] = float("nan"), 0.0
        started = time.perf_counter()
        result = denoise(MetaTensor(noisy[None], affine=t1.affine), DenoiseConfig(steps=steps, device="cpu"))
        row["ours"], row["seconds"] = psnr(result.image.as_tensor()[0], truth, mask), time.perf_counter() - started
        rows.append(row)
        print(f"denoise {100 * level:.0f}%: noisy {row['noisy']:.2f}, Gaussian {row['gaussian']:.2f} "
              f"(sigma {row['sigma']}), NLM {row['nlm']:.2f}, MedDL {row['ours']:.2f} dB", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["sr", "paired", "denoise"], choices=["sr", "paired", "denoise"])
    parser.add_argument("--levels", type=float, nargs="+", default=[0.03, 0.05, 0.1], help="Rician noise / max")
    parser.add_argument("--axes", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if "sr" in args.parts:
        rows = superResolution(args.axes, args.steps)
        print("\n| slice axis | cubic B-spline PSNR / SSIM | MedDL PSNR / SSIM | gain dB | time s |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['axis']} | {r['cubic psnr']:.2f} / {r['cubic ssim']:.4f} | {r['ours psnr']:.2f} / "
                  f"{r['ours ssim']:.4f} | {r['ours psnr'] - r['cubic psnr']:+.2f} | {r['seconds']:.0f} |")
    if "paired" in args.parts:
        rows = pairedTranslation(args.steps)
        print("\n| T1 -> T2-like (3 held-out copies) | MAE | PSNR dB | training s |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['method']} | {r['mae']:.2f} | {r['psnr']:.2f} | {r['seconds']:.0f} |")
    if "denoise" in args.parts:
        rows = denoising(args.levels, 2 * args.steps)
        print("\n| Rician noise | noisy | Gaussian (best sigma) | NLM (scikit-image) | MedDL self-supervised | MedDL s |"
              "\n|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {100 * r['level']:.0f} % | {r['noisy']:.2f} | {r['gaussian']:.2f} ({r['sigma']}) | {r['nlm']:.2f} | "
                  f"{r['ours']:.2f} | {r['seconds']:.0f} |")
    print(f"\nmachine: {os.cpu_count()} cores, torch {torch.__version__}, {args.steps} training steps")


if __name__ == "__main__":
    main()
