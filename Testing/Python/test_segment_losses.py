"""The seed's segmentation losses against NumPy implementations of their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DLSegmentLib.losses import LOG_EPS, diceLoss, dl2Loss, inverseFrequencyWeights, voxelCrossEntropy, weightedCrossEntropy


def logClamped(p):
    return np.log(np.clip(p, LOG_EPS, 1 - LOG_EPS))


def npCE(p, r):
    if p.shape[1] == 1:
        return -np.mean(r * logClamped(p) + (1 - r) * logClamped(1 - p))
    return -np.mean(np.sum(r * logClamped(p), axis=1))


def npWCE(p, r, w):
    if p.shape[1] == 1:
        return -np.mean(w * r * logClamped(p) + (1 - r) * logClamped(1 - p))
    w = np.asarray(w).reshape(1, -1, *([1] * (p.ndim - 2)))
    return -np.mean(np.sum(w * r * logClamped(p), axis=1))


def foregroundChannels(p, r):
    return (p, r) if p.shape[1] == 1 else (p[:, 1:], r[:, 1:])


def npDice(p, r, eps=1e-5):
    p, r = foregroundChannels(p, r)
    losses = [1 - (2 * np.sum(p[:, c] * r[:, c]) + eps) / (np.sum(p[:, c]) + np.sum(r[:, c]) + eps)
              for c in range(p.shape[1])]
    return np.mean(losses)


def npDL2(p, r, eps=1e-5):
    p, r = foregroundChannels(p, r)
    losses = []
    for c in range(p.shape[1]):
        pc, rc = p[:, c], r[:, c]
        losses.append(1 - (np.sum(pc * rc) + eps) / (np.sum(pc + rc) + eps)
                      - (np.sum((1 - pc) * (1 - rc)) + eps) / (np.sum(2 - pc - rc) + eps))
    return np.mean(losses)


def randomCase(channels, seed, shape=(2, 6, 7, 5)):
    rng = np.random.default_rng(seed)
    batch, *spatial = shape
    if channels == 1:
        p = rng.random((batch, 1, *spatial))
        r = (rng.random((batch, 1, *spatial)) < 0.3).astype(np.float64)
    else:
        logits = rng.normal(size=(batch, channels, *spatial))
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = rng.integers(0, channels, size=(batch, *spatial))
        r = np.moveaxis(np.eye(channels)[labels], -1, 1)
    return p, r


CASES = [(channels, seed) for channels in (1, 3) for seed in range(3)]


@pytest.mark.parametrize("channels,seed", CASES)
def test_losses_match_their_formulas(channels, seed):
    p, r = randomCase(channels, seed)
    tp, tr = torch.from_numpy(p), torch.from_numpy(r)
    assert abs(voxelCrossEntropy(tp, tr).item() - npCE(p, r)) < 1e-6
    w = 4.0 if channels == 1 else [0.2, 1.5, 3.0]
    assert abs(weightedCrossEntropy(tp, tr, w).item() - npWCE(p, r, w)) < 1e-6
    assert abs(diceLoss(tp, tr).item() - npDice(p, r)) < 1e-6
    assert abs(dl2Loss(tp, tr).item() - npDL2(p, r)) < 1e-6


def test_default_weights_are_inverse_class_frequency():
    p, r = randomCase(1, 0)
    fraction = r.mean()
    expected = (1 - fraction) / fraction
    assert abs(inverseFrequencyWeights(torch.from_numpy(r)).item() - expected) < 1e-9
    assert abs(weightedCrossEntropy(torch.from_numpy(p), torch.from_numpy(r)).item() - npWCE(p, r, expected)) < 1e-6
    p3, r3 = randomCase(3, 0)
    counts = r3.sum(axis=(0, 2, 3, 4))
    np.testing.assert_allclose(inverseFrequencyWeights(torch.from_numpy(r3)).numpy(), counts.sum() / (3 * counts))


@pytest.mark.parametrize("loss", [voxelCrossEntropy, weightedCrossEntropy, diceLoss, dl2Loss])
@pytest.mark.parametrize("channels", [1, 3])
def test_gradients_exist_and_minimum_is_at_p_equals_r(loss, channels):
    p, r = randomCase(channels, 5)
    tp = torch.from_numpy(p).requires_grad_(True)
    tr = torch.from_numpy(r)
    value = loss(tp, tr)
    value.backward()
    assert tp.grad is not None and torch.isfinite(tp.grad).all() and tp.grad.abs().sum() > 0
    atReference = loss(tr.clone(), tr).item()
    assert atReference < value.item()
    assert abs(atReference) < 1e-4 or loss in (voxelCrossEntropy, weightedCrossEntropy) and atReference < 1e-5
    # a small step from p = r in any direction does not decrease the loss
    for seed in range(3):
        noise = torch.from_numpy(np.random.default_rng(seed).random(r.shape)) * 0.05
        nudged = (tr + noise) if channels == 1 else (tr + noise) / (tr + noise).sum(1, keepdim=True)
        assert loss(nudged.clamp(0, 1), tr).item() >= atReference - 1e-9


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        dl2Loss(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="one weight per class"):
        weightedCrossEntropy(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), [1.0, 2.0])


@pytest.mark.parametrize("loss", [voxelCrossEntropy, weightedCrossEntropy, diceLoss, dl2Loss],
                         ids=lambda f: f.__name__)
def test_each_loss_trains_a_segmentation_network(loss):
    from monai.networks.utils import one_hot
    from conftest import blobBatches, dice, makeNetwork

    from DLCommon import TrainingConfig, trainModel

    def trainingLoss(logits, labels):
        return loss(torch.softmax(logits, dim=1), one_hot(labels, num_classes=2))

    result = trainModel(makeNetwork(), blobBatches(6, 0), trainingLoss,
                        TrainingConfig(epochs=15, learningRate=1e-2, seed=0, device="cpu"),
                        validationBatches=blobBatches(3, 1), metric=dice, metricMode="max")
    assert result.history.bestMetric > 0.8
