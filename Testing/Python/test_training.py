"""The shared training loop: it learns, is deterministic, stops early, saves a safe checkpoint."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from conftest import blobBatches, dice, makeNetwork

from DLCommon import TrainingConfig, loadModel, saveCheckpoint, trainModel


def test_learns_selects_best_and_saves_safe_checkpoint(tmp_path):
    train, validation = blobBatches(6, 0), blobBatches(3, 1)
    config = TrainingConfig(epochs=15, learningRate=1e-2, seed=0, device="cpu",
                            checkpointPath=tmp_path / "best.pt")
    fractions = []
    result = trainModel(makeNetwork(), train, DiceCELoss(to_onehot_y=True, softmax=True), config,
                        validationBatches=validation, metric=dice, metricMode="max",
                        progress=lambda f, m: fractions.append(f))
    history = result.history
    assert len(history.trainLoss) == 15 and fractions[-1] == 1.0
    assert history.trainLoss[-1] < 0.5 * history.trainLoss[0]
    assert history.bestMetric == max(history.validationMetric) and history.bestMetric > 0.8
    # the returned network holds the best weights, and the checkpoint loads with weights_only
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    for key, value in result.network.state_dict().items():
        assert torch.equal(state[key], value)
    specPath = saveCheckpoint(result.network, tmp_path / "export.pt", "UNet",
                              {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [8, 16],
                               "strides": [2], "num_res_units": 1})
    reloaded = loadModel(specPath).network
    result.network.eval()
    with torch.no_grad():
        assert dice(reloaded(validation[0][0]), validation[0][1]) == dice(result.network(validation[0][0]), validation[0][1])


def test_same_seed_same_history():
    def run():
        config = TrainingConfig(epochs=3, seed=42, device="cpu")
        return trainModel(makeNetwork(), blobBatches(2, 0), DiceCELoss(to_onehot_y=True, softmax=True), config).history

    assert run().trainLoss == run().trainLoss  # bit for bit: seeded determinism (same machine) is the promise


def test_early_stopping():
    batches = blobBatches(2, 0)
    config = TrainingConfig(epochs=50, learningRate=1e-9, patience=2, seed=0, device="cpu")
    # with a learning rate this small the metric cannot improve after the first epoch
    history = trainModel(makeNetwork(), batches, DiceCELoss(to_onehot_y=True, softmax=True), config,
                         validationBatches=batches, metric=lambda p, t: 0.5, metricMode="max").history
    assert history.stoppedEarly and len(history.trainLoss) == 3 and history.bestEpoch == 0


def test_bad_config_and_nan_loss():
    from DLCommon.errors import DLError, SettingError

    with pytest.raises(SettingError) as refused:  # a DLError (what the front ends show) and a ValueError
        trainModel(makeNetwork(), [], torch.nn.MSELoss(), TrainingConfig(epochs=0))
    assert isinstance(refused.value, DLError) and isinstance(refused.value, ValueError)
    assert str(refused.value) == "Setting 'epochs' is 0; it must be at least 1. Fix: change the setting."
    batch = [(torch.full((1, 1, 16, 16, 16), float("nan")), torch.zeros(1, 2, 16, 16, 16))]
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        trainModel(makeNetwork(), batch, torch.nn.MSELoss(), TrainingConfig(epochs=1, device="cpu"))
