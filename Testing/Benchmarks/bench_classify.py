"""DLClassify benchmarks on the embedded MNI152 T1 (deformed copies; nothing downloaded).

Parts:

- ``planes``: standard-plane recognition (4 standard planes + other). Training planes come from the MNI152
  T1 and 3 randomly deformed copies, test planes from 4 other deformed copies. Each architecture's held-out
  accuracy, calibration error before / after temperature scaling, parameters, size, depth and training time,
  against a baseline measured in the same run: nearest class mean (correlation with each class's mean
  training plane).
- ``quality``: image-quality grading (grades 0-3 of noise / blur / motion-like artefacts) with the ordinal
  encoding against the nominal encoding of the same classes (same network, data and seeds): MAE in grades,
  accuracy, and how often a prediction is off by 2 or more grades.

Usage::

    .venv/bin/python Testing/Benchmarks/bench_classify.py --parts planes quality \\
        [--archs tiny resnet18 densenet121 efficientnet-b0 vit] [--epochs 10] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLClassify")]

from DLCommon.sampledata import mni152Tissue, randomCopy  # noqa: E402
from DLClassifyLib.architectures import architectureTable  # noqa: E402
from DLClassifyLib.calibration import expectedCalibrationError  # noqa: E402
from DLClassifyLib.classifier import classProbabilities, encodingOf, predictLogits, temperatureOf  # noqa: E402
from DLClassifyLib.data import normaliseImages  # noqa: E402
from DLClassifyLib.metrics import classificationReport  # noqa: E402
from DLClassifyLib.planes import PLANE_CLASSES, planeDataset  # noqa: E402
from DLClassifyLib.quality import QUALITY_GRADES, qualityDataset  # noqa: E402
from DLClassifyLib.trainer import ClassificationTrainingConfig, trainClassifier  # noqa: E402


def copies(seeds, noise=True):
    image, labels = mni152Tissue(2.0)
    volumes = [(randomCopy(image, labels, seed, noise=noise)[0].as_tensor(), image.affine) for seed in seeds]
    return image, volumes


def nearestClassMean(trainImages, trainLabels, testImages, classes: int) -> torch.Tensor:
    """Baseline: the class whose mean training image correlates best with the test image."""
    flat = normaliseImages(trainImages, 2).flatten(1)
    means = torch.stack([flat[trainLabels == c].mean(0) for c in range(classes)])
    means = (means - means.mean(1, keepdim=True)) / means.std(1, keepdim=True)
    test = normaliseImages(testImages, 2).flatten(1)
    return (test @ means.T).argmax(1)


def benchPlanes(args) -> None:
    image, train = copies(range(args.copies))
    train = [(image.as_tensor(), image.affine)] + train
    _, test = copies(range(100, 104))
    images, labels = planeDataset(train, args.per_class, seed=0)
    testImages, testLabels = planeDataset(test, 40, seed=1)
    print(f"standard planes: {len(labels)} training planes (MNI152 + {args.copies} deformed copies), {len(testLabels)} "
          f"test planes (4 other deformed copies), classes {PLANE_CLASSES}")
    baseline = classificationReport(nearestClassMean(images, labels, testImages, 5), testLabels, 5)
    print(f"| nearest class mean (baseline) | - | - | - | {baseline['accuracy']:.3f} | "
          f"{baseline['balancedAccuracy']:.3f} | - | - |")
    sizes = {row["name"]: row for row in architectureTable(2, outputs=5, names=args.archs)}
    print("| architecture | parameters | size MB | depth | held-out accuracy | balanced | ECE before -> after | "
          "training s | accuracy / baseline |")
    for arch in args.archs:
        config = ClassificationTrainingConfig(architecture=arch, epochs=args.epochs, device=args.device)
        started = time.monotonic()
        result = trainClassifier(normaliseImages(images, 2), labels, PLANE_CLASSES, config, "/tmp/bench-classify",
                                 f"planes-{arch}")
        seconds = time.monotonic() - started
        probabilities = classProbabilities(result.model, normaliseImages(testImages, 2), args.device)
        report = classificationReport(probabilities.argmax(1), testLabels, 5)
        logits = predictLogits(result.model.network, normaliseImages(testImages, 2))
        encoding = encodingOf(result.model)
        eceBefore = expectedCalibrationError(encoding.probabilities(logits), testLabels)
        eceAfter = expectedCalibrationError(encoding.probabilities(logits, temperatureOf(result.model)), testLabels)
        row = sizes[arch]
        print(f"| {arch} | {row['parameters']:,} | {row['sizeMB']:.1f} | {row['depth']} | {report['accuracy']:.3f} | "
              f"{report['balancedAccuracy']:.3f} | {eceBefore:.3f} -> {eceAfter:.3f} | {seconds:.0f} | "
              f"{report['accuracy'] / baseline['accuracy']:.2f}x |", flush=True)


def benchQuality(args) -> None:
    image, train = copies(range(3), noise=False)
    train = [(image.as_tensor(), image.affine)] + train
    _, test = copies(range(100, 103), noise=False)
    images, grades = qualityDataset(train, 100, seed=0)
    testImages, testGrades = qualityDataset(test, 100, seed=1)
    print(f"quality grading: {len(grades)} training slices, {len(testGrades)} test slices (3 other deformed copies), "
          f"grades {QUALITY_GRADES}")
    print("| encoding | architecture | MAE (grades) | accuracy | off by >= 2 | seeds |")
    results = {}
    for encoding in ("ordinal", "nominal"):
        maes, accuracies, far = [], [], []
        for seed in args.seeds:
            config = ClassificationTrainingConfig(encoding=encoding, architecture=args.quality_arch, epochs=args.epochs,
                                                  augment=False, seed=seed, device=args.device)
            result = trainClassifier(normaliseImages(images, 2), grades, QUALITY_GRADES, config, "/tmp/bench-classify",
                                     f"quality-{encoding}")
            logits = predictLogits(result.model.network, normaliseImages(testImages, 2))
            predicted = encodingOf(result.model).predict(logits, temperatureOf(result.model))
            report = classificationReport(predicted, testGrades, 4)
            maes.append(report["mae"])
            accuracies.append(report["accuracy"])
            far.append(float(((predicted - testGrades).abs() >= 2).float().mean()))
        results[encoding] = statistics.mean(maes)
        spread = statistics.stdev(maes) if len(maes) > 1 else 0.0
        print(f"| {encoding} | {args.quality_arch} | {statistics.mean(maes):.3f} +- {spread:.3f} | "
              f"{statistics.mean(accuracies):.3f} | {statistics.mean(far):.3f} | {len(args.seeds)} |", flush=True)
    print(f"ordinal / nominal MAE: {results['ordinal'] / results['nominal']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=("planes", "quality"), default=["planes", "quality"])
    parser.add_argument("--archs", nargs="+", default=["tiny", "resnet18", "densenet121", "efficientnet-b0", "vit"])
    parser.add_argument("--copies", type=int, default=6, help="deformed training copies (the logic's default: 6)")
    parser.add_argument("--per-class", type=int, default=50, help="training planes per class and volume (default 50)")
    parser.add_argument("--quality-arch", default="tiny")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if "planes" in args.parts:
        benchPlanes(args)
    if "quality" in args.parts:
        benchQuality(args)


if __name__ == "__main__":
    main()
