"""Output encodings of a classifier (the seed's "output encoding": nominal / one-hot, binary, ordinal).

An encoding says how many outputs the network has, how class labels become training targets, which loss
trains them, and how outputs become class probabilities and a decision. Labels are class indices
``0..K-1`` (``(B,)`` int64); network outputs are logits ``(B, outputs)``.

- :class:`NominalEncoding`: K outputs, one-hot targets, softmax cross-entropy (optionally class-balanced).
- :class:`BinaryEncoding`: 1 output, sigmoid binary cross-entropy; ``p(class 1) = sigmoid(logit)``.
- :class:`OrdinalEncoding`: K-1 outputs for ordered classes (low < medium < high), trained as conditional
  binary tasks "is y > k given y > k-1" (CORN, Shi et al. 2021). The cumulative probabilities
  ``P(y > k) = prod_{j <= k} sigmoid(logit_j)`` are monotone by construction (rank-consistent), so the class
  probabilities ``P(y = k) = P(y > k-1) - P(y > k)`` are non-negative and sum to 1.

All of them accept a temperature ``T`` (logits / T) for calibrated probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ENCODINGS  # defined once there (torch-free: the CLI and the panels list them)

__all__ = ["Encoding", "NominalEncoding", "BinaryEncoding", "OrdinalEncoding", "ENCODINGS", "encodingFor",
           "logitsOf"]

def logitsOf(output) -> torch.Tensor:
    """The logits of a network output (MONAI's ViT returns ``(logits, hidden_states)``)."""
    return output[0] if isinstance(output, (tuple, list)) else output


class Encoding:
    """Base class; see the module docstring.

    Args:
        numClasses: K, the number of classes.
        classWeights: ``(K,)`` weights of the classes in the loss (e.g. inverse frequencies), or None.
    """

    name = "base"

    def __init__(self, numClasses: int, classWeights: torch.Tensor | None = None):
        if numClasses < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {numClasses}.")
        self.numClasses = int(numClasses)
        self.classWeights = None if classWeights is None else torch.as_tensor(classWeights, dtype=torch.float32)

    @property
    def outputs(self) -> int:
        """Number of network outputs."""
        raise NotImplementedError

    def encode(self, labels: torch.Tensor) -> torch.Tensor:
        """Targets ``(B, outputs)`` float for labels ``(B,)``."""
        raise NotImplementedError

    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        """Labels ``(B,)`` from targets or from their probabilities ``(B, outputs)``."""
        raise NotImplementedError

    def loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        """Scalar training loss of network ``output`` (logits ``(B, outputs)``) for labels ``(B,)``."""
        raise NotImplementedError

    def probabilities(self, output, temperature: float = 1.0) -> torch.Tensor:
        """Class probabilities ``(B, K)`` (rows sum to 1) from logits, divided by ``temperature`` first."""
        raise NotImplementedError

    def predict(self, output, temperature: float = 1.0) -> torch.Tensor:
        """Decided labels ``(B,)``."""
        return self.probabilities(output, temperature).argmax(1)

    def _weights(self, device) -> torch.Tensor | None:
        return None if self.classWeights is None else self.classWeights.to(device)


class NominalEncoding(Encoding):
    """Unordered classes: one-hot targets, softmax, cross-entropy."""

    name = "nominal"

    @property
    def outputs(self) -> int:
        return self.numClasses

    def encode(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels.long(), self.numClasses).float()

    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        return encoded.argmax(1)

    def loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        logits = logitsOf(output).float()
        return F.cross_entropy(logits, labels.long(), weight=self._weights(logits.device))

    def probabilities(self, output, temperature: float = 1.0) -> torch.Tensor:
        return torch.softmax(logitsOf(output).float() / temperature, dim=1)


class BinaryEncoding(Encoding):
    """Two classes with one output: ``p(class 1) = sigmoid(logit)``."""

    name = "binary"

    def __init__(self, numClasses: int = 2, classWeights: torch.Tensor | None = None):
        if numClasses != 2:
            raise ValueError(f"the binary encoding has exactly 2 classes, got {numClasses}.")
        super().__init__(2, classWeights)

    @property
    def outputs(self) -> int:
        return 1

    def encode(self, labels: torch.Tensor) -> torch.Tensor:
        return labels.float().reshape(-1, 1)

    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        return (encoded.reshape(-1) > 0.5).long()

    def loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        logits = logitsOf(output).float().reshape(-1)
        weights = self._weights(logits.device)
        # pos_weight balances class 1 against class 0, like the nominal encoding's class weights
        positive = None if weights is None else (weights[1] / weights[0]).reshape(1)
        return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=positive)

    def probabilities(self, output, temperature: float = 1.0) -> torch.Tensor:
        p = torch.sigmoid(logitsOf(output).float().reshape(-1) / temperature)
        return torch.stack([1.0 - p, p], dim=1)


class OrdinalEncoding(Encoding):
    """Ordered classes 0 < 1 < ... < K-1 with K-1 outputs (CORN: conditional binary tasks).

    Targets are cumulative: label ``y`` encodes as ``[y > 0, y > 1, ..., y > K-2]`` (e.g. 2 of 4 -> 1 1 0).
    """

    name = "ordinal"

    @property
    def outputs(self) -> int:
        return self.numClasses - 1

    def encode(self, labels: torch.Tensor) -> torch.Tensor:
        thresholds = torch.arange(self.numClasses - 1, device=labels.device)
        return (labels.long()[:, None] > thresholds[None]).float()

    def decode(self, encoded: torch.Tensor) -> torch.Tensor:
        """Labels from cumulative targets / probabilities ``P(y > k)``: the number of thresholds passed
        (with monotone cumulative probabilities this is the median class)."""
        return (encoded > 0.5).sum(1)

    def cumulative(self, output, temperature: float = 1.0) -> torch.Tensor:
        """``P(y > k)`` for ``k = 0..K-2``, ``(B, K-1)``, non-increasing in ``k``."""
        return torch.cumprod(torch.sigmoid(logitsOf(output).float() / temperature), dim=1)

    def loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        """CORN loss: task k ("y > k") is trained on the samples with ``y > k-1`` (all samples for k = 0)."""
        logits = logitsOf(output).float()
        labels = labels.long()
        thresholds = torch.arange(self.numClasses - 1, device=logits.device)
        eligible = (labels[:, None] >= thresholds[None]).float()  # y > k-1
        targets = (labels[:, None] > thresholds[None]).float()
        terms = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        weights = eligible
        if self.classWeights is not None:
            weights = weights * self._weights(logits.device)[labels][:, None]
        return (terms * weights).sum() / eligible.sum().clamp(min=1.0)

    def probabilities(self, output, temperature: float = 1.0) -> torch.Tensor:
        cumulative = self.cumulative(output, temperature)
        ones = torch.ones_like(cumulative[:, :1])
        zeros = torch.zeros_like(cumulative[:, :1])
        upper = torch.cat([ones, cumulative], dim=1)   # P(y > k-1), with P(y > -1) = 1
        lower = torch.cat([cumulative, zeros], dim=1)  # P(y > k),   with P(y > K-1) = 0
        return (upper - lower).clamp(min=0.0)

    def predict(self, output, temperature: float = 1.0) -> torch.Tensor:
        return self.decode(self.cumulative(output, temperature))


_CLASSES = {"nominal": NominalEncoding, "binary": BinaryEncoding, "ordinal": OrdinalEncoding}


def encodingFor(name: str, numClasses: int, classWeights: torch.Tensor | None = None) -> Encoding:
    """The encoding called ``name`` (``nominal``, ``binary`` or ``ordinal``) for ``numClasses`` classes."""
    if name not in _CLASSES:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {name!r}.")
    return _CLASSES[name](numClasses, classWeights)
