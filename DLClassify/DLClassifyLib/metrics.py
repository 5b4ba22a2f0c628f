"""Classification metrics on class indices: accuracy, balanced accuracy, confusion matrix, ordinal MAE."""

from __future__ import annotations

import torch

__all__ = ["confusionMatrix", "accuracy", "balancedAccuracy", "meanAbsoluteError", "classificationReport"]


def confusionMatrix(predicted: torch.Tensor, reference: torch.Tensor, numClasses: int) -> torch.Tensor:
    """``(K, K)`` int64 counts; row = reference class, column = predicted class."""
    index = reference.long().reshape(-1) * numClasses + predicted.long().reshape(-1)
    return torch.bincount(index, minlength=numClasses * numClasses).reshape(numClasses, numClasses)


def accuracy(predicted: torch.Tensor, reference: torch.Tensor) -> float:
    return float((predicted.reshape(-1) == reference.reshape(-1)).float().mean())


def balancedAccuracy(predicted: torch.Tensor, reference: torch.Tensor, numClasses: int) -> float:
    """Mean recall over the classes present in ``reference`` (robust to class imbalance)."""
    matrix = confusionMatrix(predicted, reference, numClasses).double()
    support = matrix.sum(1)
    present = support > 0
    return float((matrix.diagonal()[present] / support[present]).mean())


def meanAbsoluteError(predicted: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean ``|predicted - reference|`` in classes (for ordinal grades: 1.0 = one grade off on average)."""
    return float((predicted.reshape(-1).double() - reference.reshape(-1).double()).abs().mean())


def classificationReport(predicted: torch.Tensor, reference: torch.Tensor, numClasses: int) -> dict:
    """``{"accuracy", "balancedAccuracy", "mae", "confusion": [[...]]}`` (JSON-serialisable)."""
    return {"accuracy": accuracy(predicted, reference),
            "balancedAccuracy": balancedAccuracy(predicted, reference, numClasses),
            "mae": meanAbsoluteError(predicted, reference),
            "confusion": confusionMatrix(predicted, reference, numClasses).tolist()}
