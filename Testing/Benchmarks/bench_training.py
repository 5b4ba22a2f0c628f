"""Benchmark: training step throughput of MedDL's loop and data pipeline against plain MONAI / PyTorch, one run.

    .venv/bin/python Testing/Benchmarks/bench_training.py          # as in RESULTS.md

Two comparisons, each alternating the two contenders (A B A B ...) and taking the median seconds per step:

  loop   DLCommon.trainModel vs a plain PyTorch loop (zero_grad, forward, DiceCELoss, backward, Adam step,
         loss.item()) on the same precomputed batches: the cost of MedDL's loop (progress, history, finite-loss
         check, best-state bookkeeping).
  data   DLSegment's PatchBatches (class-balanced crops + augmentations, every patch seeded by its index so
         torchrun processes draw the same patches) vs the same MONAI transforms applied by a plain loop with one
         random state: the cost of the per-patch seeding.

Goal: MedDL / plain >= 0.95 (throughput), i.e. at most 5 % slower.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLSegment")]

import torch  # noqa: E402


def network():
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(3, 1, 3, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2, norm="batch")


def loopSeconds(steps: int, patch: int, batch: int, rounds: int) -> dict:
    from monai.losses import DiceCELoss

    from DLCommon.training import TrainingConfig, trainModel

    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn((batch, 1) + (patch,) * 3, generator=generator),
                torch.randint(0, 3, (batch, 1) + (patch,) * 3, generator=generator)) for _ in range(steps)]
    lossFunction = DiceCELoss(to_onehot_y=True, softmax=True)

    def plain() -> float:
        net = network()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        net.train()
        started = time.perf_counter()
        for inputs, targets in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = lossFunction(net(inputs), targets)
            loss.backward()
            optimizer.step()
            loss.item()
        return (time.perf_counter() - started) / steps

    def ours() -> float:
        net = network()
        started = time.perf_counter()
        trainModel(net, batches, lossFunction, TrainingConfig(epochs=1, seed=None, device="cpu"))
        return (time.perf_counter() - started) / steps

    times = {"plain": [], "ours": []}
    for _ in range(rounds):
        times["plain"].append(plain())
        times["ours"].append(ours())
    return {name: statistics.median(values) for name, values in times.items()}


def dataSeconds(items: int, patch: int, rounds: int) -> dict:
    from DLCommon.sampledata import mni152Tissue
    from DLSegmentLib.data import AUGMENTATIONS, PatchBatches, SegmentationSample

    image, labels = mni152Tissue(2.0)
    sample = SegmentationSample(image, labels)
    batches = PatchBatches([sample], (patch,) * 3, 3, batchSize=1, batchesPerEpoch=items,
                           augmentations=AUGMENTATIONS, seed=0)
    transform = batches.transform  # the same MONAI transforms, one random state for the whole run
    source = {"image": image.as_tensor(), "label": labels[None].float()}

    def plain() -> float:
        transform.set_random_state(seed=0)
        started = time.perf_counter()
        for _ in range(items):
            out = transform(dict(source))[0]
            torch.as_tensor(out["image"]).float(), torch.as_tensor(out["label"]).round().long()
        return (time.perf_counter() - started) / items

    def ours() -> float:
        started = time.perf_counter()
        for _ in batches:
            pass
        return (time.perf_counter() - started) / items

    times = {"plain": [], "ours": []}
    for _ in range(rounds):
        times["plain"].append(plain())
        times["ours"].append(ours())
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--items", type=int, default=150)  # augmentation costs vary per patch: many
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    loop = loopSeconds(args.steps, args.patch, args.batch, args.rounds)
    data = dataSeconds(args.items, args.patch, args.rounds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; UNet (16-128, batch norm), "
          f"patch {args.patch}^3, batch {args.batch}, DiceCE, Adam; medians of {args.rounds} alternating rounds")
    print("| comparison | plain (s / step) | MedDL (s / step) | MedDL throughput / plain | goal |")
    print("|---|---|---|---|---|")
    for name, result in (("training loop (trainModel vs plain PyTorch loop)", loop),
                         ("patch pipeline (per-patch seeded PatchBatches vs plain MONAI transforms)", data)):
        print(f"| {name} | {result['plain']:.4f} | {result['ours']:.4f} | {result['plain'] / result['ours']:.3f}x "
              f"| >= 0.95x |")


if __name__ == "__main__":
    main()
