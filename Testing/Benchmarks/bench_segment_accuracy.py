"""Accuracy benchmark: GM / WM / background from the embedded MNI152 maps, per segmentation loss.

    .venv/bin/python Testing/Benchmarks/bench_segment_accuracy.py                  # all five losses
    .venv/bin/python Testing/Benchmarks/bench_segment_accuracy.py --losses dicece  # one

Data (DLCommon.sampledata): the MNI152 T1 resampled to 2 mm; labels from its GM / WM probability maps.
Training: the template and 4 randomly deformed / biased / noisy copies (seeds 0-3) plus the augmentations
of the training pipeline; validation (best epoch): copy 100. Test: 5 held-out copies (seeds 1000-1004),
whole-volume sliding-window inference. The same split for every loss. Goal (dicece): Dice WM >= 0.90,
GM >= 0.80 with training <= 15 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLSegment")]


def run(loss: str, epochs: int, features: int) -> dict:
    from DLCommon.sampledata import TISSUE_COLORS, TISSUE_NAMES, mni152Tissue, randomCopy
    from DLSegmentLib.data import SegmentationSample
    from DLSegmentLib.segmenter import dicePerLabel, predictProbabilities
    from DLSegmentLib.trainer import SegmentationTrainingConfig, trainSegmentationModel

    image, labels = mni152Tissue(2.0)
    train = [SegmentationSample(image, labels)] + [SegmentationSample(*randomCopy(image, labels, s)) for s in range(4)]
    validation = [SegmentationSample(*randomCopy(image, labels, 100))]
    test = [randomCopy(image, labels, 1000 + s) for s in range(5)]
    config = SegmentationTrainingConfig(loss=loss, epochs=epochs, features=features, patchSize=(64, 64, 64),
                                        batchesPerEpoch=16, batchSize=4, learningRate=2e-3, device="cpu")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        result = trainSegmentationModel(train, TISSUE_NAMES, TISSUE_COLORS, config, folder, f"mni-{loss}",
                                        validationSamples=validation)
    seconds = time.perf_counter() - started
    scores = [dicePerLabel(predictProbabilities(result.model, i, device="cpu").argmax(0), l, 2) for i, l in test]
    mirrored = [dicePerLabel(predictProbabilities(result.model, i, device="cpu", mirror=True).argmax(0), l, 2)
                for i, l in test]
    return {"loss": loss, "seconds": seconds, "gm": [s[0] for s in scores], "wm": [s[1] for s in scores],
            "gmMirror": [s[0] for s in mirrored], "wmMirror": [s[1] for s in mirrored],
            "bestEpoch": result.history.bestEpoch + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", nargs="+", default=["dicece", "ce", "wce", "dice", "dl2"])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--features", type=int, default=16)
    args = parser.parse_args()
    print(f"MNI152 2 mm, UNet (features {args.features}, batch norm), patch 64^3, {args.epochs} epochs x 16 batches "
          "of 4, 5 held-out copies")
    print("| loss | Dice GM mean (min) | Dice WM mean (min) | with mirror TTA: GM / WM mean (min) | training | "
          "best epoch |")
    print("|---|---|---|---|---|---|")
    for loss in args.losses:
        r = run(loss, args.epochs, args.features)
        print(f"| {r['loss']} | {statistics.mean(r['gm']):.3f} ({min(r['gm']):.3f}) | "
              f"{statistics.mean(r['wm']):.3f} ({min(r['wm']):.3f}) | {statistics.mean(r['gmMirror']):.3f} "
              f"({min(r['gmMirror']):.3f}) / {statistics.mean(r['wmMirror']):.3f} ({min(r['wmMirror']):.3f}) | "
              f"{r['seconds'] / 60:.1f} min | {r['bestEpoch']} |",
              flush=True)


if __name__ == "__main__":
    main()
