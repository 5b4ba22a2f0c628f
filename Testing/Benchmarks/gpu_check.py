"""GPU check of the registration and synthesis engines on CUDA (results in RESULTS.md).

A GPU machine may have PyTorch but not slicer-core / VTK, so the data is prepared where MedDL is installed:

    .venv/bin/python Testing/Benchmarks/gpu_check.py --save-data mni2mm.pt      # here (MNI152 at 2 mm, 6 copies)
    python3 Testing/Benchmarks/gpu_check.py --data mni2mm.pt                  # on the GPU machine (needs monai)
"""
import argparse
import math
import sys
import time
import types
import warnings
from pathlib import Path

warnings.simplefilter("ignore")
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLRegister"), str(ROOT / "DLSynthesize"), str(ROOT / "DLSegment")]
import torch  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--save-data", help="write the MNI152 test data to this .pt file and stop")
parser.add_argument("--data", help="the .pt file written by --save-data")
parser.add_argument("--parts", nargs="+", default=["register", "synthesize", "segment"])
args = parser.parse_args()
if args.save_data:
    from DLCommon.sampledata import mni152Tissue, randomCopy

    image, labels = mni152Tissue(2.0)
    copies = [randomCopy(image, labels, seed, bias=False, contrast=False) for seed in range(6)]
    torch.save({"affine": torch.as_tensor(image.affine), "image": image.as_tensor(),
                "copies": [(c[0].as_tensor(), c[1].to(torch.uint8)) for c in copies]}, args.save_data)
    sys.exit(0)
# DLCommon's node converters import slicer / VTK at the top; the tensor engines checked here never call them
for name in ("slicer", "vtk", "vtk.util", "vtk.util.numpy_support"):
    sys.modules.setdefault(name, types.ModuleType(name))
sys.modules["vtk"].util = sys.modules["vtk.util"]
sys.modules["vtk.util"].numpy_support = sys.modules["vtk.util.numpy_support"]
from monai.data import MetaTensor  # noqa: E402

print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
data = torch.load(args.data)
affine = data["affine"]
copies = [(MetaTensor(i, affine=affine), l.long()) for i, l in data["copies"]]


def checkRegistration():
    from DLRegisterLib.optimisation import RegistrationConfig, registerImages
    from DLRegisterLib.warping import warpLabels
    from DLRegisterLib.quality import labelDice
    (mov, ml), (fix, fl) = copies[1], copies[2]
    for device in ("cpu", "cuda", "cuda"):
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = registerImages(fix, mov, RegistrationConfig(device=device))
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        d = labelDice(warpLabels(ml, mov.affine, r.displacement), fl, [1, 2])
        print(f"register {device}: {dt:.1f} s, Dice GM {d[0]:.3f} WM {d[1]:.3f}, folding {r.report['foldingPercent']:.3f}%, report device {r.report['device']}", flush=True)
    r = registerImages(fix, mov, RegistrationConfig(device="cuda", fieldModel="svf", similarity="mi"))
    print("register svf+mi cuda:", round(r.report["after"], 3), r.report["seconds"], "s folding", r.report["foldingPercent"], flush=True)
    from DLRegisterLib.trainer import RegistrationTrainingConfig, trainRegistrationModel
    from DLRegisterLib.network import predictDisplacement
    t = time.perf_counter()
    res = trainRegistrationModel([c[0] for c in copies[:5]], RegistrationTrainingConfig(shape=(64, 72, 64), epochs=30, device="cuda", labelWeight=1.0, batchSize=4),
                                 "/tmp/regmodel", "gpu", labels=[c[1] for c in copies[:5]])
    A0, b = predictDisplacement(res.model.network, copies[5][0], copies[0][0], (64, 72, 64), device="cuda")
    rr = registerImages(copies[5][0], copies[0][0], RegistrationConfig(affine=False, deformable=False, device="cuda"), initialAffine=A0, initialDisplacement=b)
    print(f"train-register cuda (AMP): {time.perf_counter() - t:.1f} s, losses {[round(x, 3) for x in res.history.trainLoss[::6]]}, "
          f"held-out Dice before {labelDice(copies[0][1], copies[5][1], [1, 2])} after {labelDice(warpLabels(copies[0][1], copies[0][0].affine, rr.displacement), copies[5][1], [1, 2])}", flush=True)


def checkSynthesis():
    from DLSynthesizeLib.superresolution import SuperResolutionConfig, degradeAlongAxis, superResolve, upsampleAlongAxis
    image = data["image"][0]
    count = (image.shape[2] - 1) // 2 * 2 + 1
    truth = image[:, :, :count]
    aff = affine.clone(); aff[:3, 2] *= 2
    low = degradeAlongAxis(truth, 2, 2)
    t = time.perf_counter()
    sr = superResolve(MetaTensor(low[None], affine=aff), SuperResolutionConfig(steps=600, device="cuda"))
    mask = truth > 10
    psnr = lambda e: 10 * math.log10(255 ** 2 / float(((e - truth)[mask] ** 2).mean()))
    print(f"super-resolve cuda (AMP): {time.perf_counter() - t:.1f} s, PSNR {psnr(sr.image[0].as_tensor()):.2f} vs cubic {psnr(upsampleAlongAxis(low, 2, 2)):.2f}", flush=True)
    from DLSynthesizeLib.pix2pix import Pix2PixConfig, trainPix2Pix
    from DLSynthesizeLib.imagetoimage import applyImageToImage
    src = copies[0][0]
    tgt = MetaTensor(torch.where(src > 30, 255 * (1 - src / 255).clamp(0, 1) ** 2, torch.zeros_like(src)), affine=affine)
    t = time.perf_counter()
    g = trainPix2Pix([(src, tgt)], Pix2PixConfig(steps=300, device="cuda"))
    out = applyImageToImage(g, copies[1][0])
    print(f"pix2pix cuda: {time.perf_counter() - t:.1f} s, L1 {[round(x, 4) for x in g.history.l1Loss]}, output device ok {out.shape}", flush=True)
    from DLSynthesizeLib.denoise import DenoiseConfig, denoise
    g2 = torch.Generator().manual_seed(0)
    noisy = torch.sqrt((image + torch.randn(image.shape, generator=g2) * 12.75) ** 2 + (torch.randn(image.shape, generator=g2) * 12.75) ** 2)
    t = time.perf_counter()
    dn = denoise(MetaTensor(noisy[None], affine=affine), DenoiseConfig(steps=1200, device="cuda"))
    m2 = image > 10
    ps = lambda e: 10 * math.log10(255 ** 2 / float(((e - image)[m2] ** 2).mean()))
    print(f"denoise cuda: {time.perf_counter() - t:.1f} s, PSNR {ps(dn.image[0].as_tensor()):.2f} vs noisy {ps(noisy):.2f}", flush=True)


def checkSegmentation():
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES
    from DLSegmentLib.data import SegmentationSample
    from DLSegmentLib.segmenter import dicePerLabel, predictProbabilities
    from DLSegmentLib.trainer import SegmentationTrainingConfig, trainSegmentationModel

    samples = [SegmentationSample(image=c[0], labels=c[1]) for c in copies[:4]]
    config = SegmentationTrainingConfig(epochs=30, features=16, patchSize=(64, 64, 64), batchesPerEpoch=16, batchSize=4,
                                        learningRate=2e-3, device="cuda")
    t = time.perf_counter()
    result = trainSegmentationModel(samples, TISSUE_NAMES, TISSUE_COLORS, config, "/tmp/segmodel", "gpu")
    trained = time.perf_counter() - t
    t = time.perf_counter()
    probabilities = predictProbabilities(result.model, copies[5][0], device="cuda")
    dice = dicePerLabel(probabilities.argmax(0), copies[5][1], 2)
    print(f"segment cuda (AMP): training {trained:.1f} s (30 epochs), inference {time.perf_counter() - t:.2f} s, "
          f"held-out Dice GM {dice[0]:.3f} WM {dice[1]:.3f}", flush=True)


parts = {"register": checkRegistration, "synthesize": checkSynthesis, "segment": checkSegmentation}
for part in args.parts:
    parts[part]()
