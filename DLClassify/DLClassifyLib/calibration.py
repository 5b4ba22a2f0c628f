"""Calibrated probabilities: temperature scaling (Guo et al. 2017) and the expected calibration error."""

from __future__ import annotations

import torch

from .encodings import Encoding

__all__ = ["expectedCalibrationError", "fitTemperature"]


def expectedCalibrationError(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: the confidence-vs-accuracy gap, averaged over equal-width confidence bins weighted by their size.

    Args:
        probabilities: ``(N, K)`` class probabilities.
        labels: ``(N,)`` reference classes.
        bins: number of confidence bins on [0, 1].
    """
    confidence, predicted = probabilities.float().max(1)
    correct = (predicted == labels.long()).float()
    edges = torch.linspace(0.0, 1.0, bins + 1)
    error = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:]):
        inBin = (confidence > low) & (confidence <= high)
        if inBin.any():
            error += inBin.float().mean() * (confidence[inBin].mean() - correct[inBin].mean()).abs()
    return float(error)


def fitTemperature(logits: torch.Tensor, labels: torch.Tensor, encoding: Encoding,
                   iterations: int = 100) -> float:
    """The temperature ``T`` minimising the negative log-likelihood of ``labels`` under
    ``encoding.probabilities(logits / T)`` (held-out validation data, not the training data).

    Validation data without a single error would drive ``T`` to 0 (ever more confident); a weak prior on
    ``log T`` (standard normal, weighted as one sample) and the bounds ``[0.25, 10]`` keep it finite then.

    Args:
        logits: ``(N, outputs)`` network outputs on the validation samples.
        labels: ``(N,)`` their classes.
    """
    logits, labels = logits.detach().float(), labels.long()
    logTemperature = torch.zeros((), requires_grad=True)  # T = exp(.) stays positive
    optimizer = torch.optim.LBFGS([logTemperature], lr=0.1, max_iter=iterations, line_search_fn="strong_wolfe")

    def negativeLogLikelihood() -> torch.Tensor:
        optimizer.zero_grad()
        probabilities = encoding.probabilities(logits, temperature=logTemperature.exp())
        loss = -torch.log(probabilities.gather(1, labels[:, None]).clamp(min=1e-12)).mean()
        loss = loss + logTemperature ** 2 / (2 * len(labels))
        loss.backward()
        return loss

    optimizer.step(negativeLogLikelihood)
    temperature = float(logTemperature.detach().exp())
    return min(max(temperature, 0.25), 10.0)
