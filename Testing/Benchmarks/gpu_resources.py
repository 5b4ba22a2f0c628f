"""GPU check of DLCommon.resources: estimates against measured CUDA memory / time, and the automatic switch.

The device machine has PyTorch and CUDA but not slicer-core / VTK (the engines checked here never call them):

    python3 Testing/Benchmarks/gpu_resources.py        # on a CUDA machine with MONAI installed

1. For volumes from 128^3 to 384^3, :func:`estimateSlidingWindow` (window batch 4, U-Net 64^3 windows, class
   scores and labels-only outputs) is compared with the allocator's peak and the wall time of the real run.
2. A blocker tensor leaves little GPU memory free; :func:`planInference` must then pick a smaller window batch or
   the CPU, and the run with the plan's settings must finish without running out of memory.
3. :func:`estimateTraining` of one training step against a measured step.
"""
import sys
import time
import types
import warnings
from pathlib import Path

warnings.simplefilter("ignore")
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLSegment")]
for name in ("slicer", "vtk", "vtk.util", "vtk.util.numpy_support"):
    sys.modules.setdefault(name, types.ModuleType(name))
sys.modules["vtk"].util = sys.modules["vtk.util"]
sys.modules["vtk.util"].numpy_support = sys.modules["vtk.util.numpy_support"]
import torch  # noqa: E402
from monai.data import MetaTensor  # noqa: E402

from DLCommon.inference import slidingWindowInference  # noqa: E402
from DLCommon.models import ModelSpec  # noqa: E402
from DLCommon.resources import (estimateSlidingWindow, estimateTraining, fitOrSwitch, formatBytes,  # noqa: E402
                                planInference)
from DLCommon.segmentations import labelsFromScores  # noqa: E402
from DLSegmentLib.networks import buildNetwork  # noqa: E402

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a quick dry check of this script
CUDA = device.type == "cuda"
print("torch", torch.__version__, torch.cuda.get_device_name(0) if CUDA else "CPU", flush=True)
if not CUDA:
    for name in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
        setattr(torch.cuda, name, lambda *a: None)
    torch.cuda.memory_allocated = torch.cuda.max_memory_allocated = lambda *a: 0
_, _, network = buildNetwork("unet", 1, 3, (64, 64, 64), features=16)
network = network.to(device).eval()
spec = ModelSpec(task="segmentation", roiSize=[64, 64, 64], labelNames=["GM", "WM"],
                 normalization={"type": "zscore", "nonzero": True})


def measured(image, labelsOnly, batch):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    started = time.perf_counter()
    reduce = (lambda scores: labelsFromScores(scores)[None]) if labelsOnly else None
    slidingWindowInference(network, image, spec, device=device, windowBatchSize=batch, reduce=reduce)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base, time.perf_counter() - started


print("\n| volume | output | estimate: GPU memory | measured GPU peak | estimate: system memory | estimate time | measured time |")
print("|---|---|---|---|---|---|---|")
for size in (128, 256, 384) if CUDA else (64,):
    image = MetaTensor(torch.rand(1, size, size, size) * 100, affine=torch.eye(4, dtype=torch.float64))
    for labelsOnly in (False, True):
        estimate = estimateSlidingWindow(network, image, spec, device, 4, labelsOnly=labelsOnly)
        measured(image, labelsOnly, 4)  # warm-up: cuDNN picks its kernels on the first run
        peak, seconds = measured(image, labelsOnly, 4)
        print(f"| {size}^3 | {'labels' if labelsOnly else 'scores'} | {formatBytes(estimate.memoryBytes)} | "
              f"{formatBytes(peak)} | {formatBytes(estimate.hostBytes)} | {estimate.seconds:.2f} s | {seconds:.2f} s |",
              flush=True)

_, _, trainNet = buildNetwork("unet", 1, 3, (64, 64, 64), features=16)
estimate = estimateTraining(trainNet, (1, 64, 64, 64), 4, 100, device)
trainNet = trainNet.to(device).train()
optimizer = torch.optim.Adam(trainNet.parameters())
batch = torch.rand(4, 1, 64, 64, 64, device=device)
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
base = torch.cuda.memory_allocated()
started = time.perf_counter()
for _ in range(100 if CUDA else 2):
    optimizer.zero_grad()
    trainNet(batch).mean().backward()
    optimizer.step()
torch.cuda.synchronize()
print(f"\ntraining 100 steps of 4 x 64^3: estimate {formatBytes(estimate.memoryBytes)}, {estimate.seconds:.1f} s; "
      f"measured peak {formatBytes(torch.cuda.max_memory_allocated() - base)}, {time.perf_counter() - started:.1f} s",
      flush=True)

image = MetaTensor(torch.rand(1, 256, 256, 256) * 100, affine=torch.eye(4, dtype=torch.float64))
for leave in (1 * 2**30, 100 * 2**20, 8 * 2**20) if CUDA else ():
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info()[0]
    blocker = torch.empty(max(0, free - leave), dtype=torch.uint8, device=device)
    try:
        plan = planInference(network, image, spec, device, windowBatchSize=8, labelsOnly=True)
        started = time.perf_counter()
        out = slidingWindowInference(network, image, spec, device=torch.device(plan.device),
                                     windowBatchSize=plan.windowBatchSize,
                                     reduce=lambda scores: labelsFromScores(scores)[None])
        print(f"\n{formatBytes(leave)} left free: plan {plan.device} batch {plan.windowBatchSize} "
              f"({plan.describe()}); ran in {time.perf_counter() - started:.1f} s, output {tuple(out.shape)}", flush=True)
        _, _, trainNet = buildNetwork("unet", 1, 3, (64, 64, 64), features=16)
        training = fitOrSwitch(lambda d: estimateTraining(trainNet, (1, 64, 64, 64), 4, 100, d), device,
                               "Volume", "use a smaller patch")
        print(f"  training plan: {training.describe()}", flush=True)
    except Exception as exc:  # a refusal is a valid outcome: print it
        print(f"\n{formatBytes(leave)} left free: {type(exc).__name__}: {exc}", flush=True)
    del blocker
    torch.cuda.empty_cache()  # give the blocker's memory back to the driver

