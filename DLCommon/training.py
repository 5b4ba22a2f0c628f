"""One training loop for all MedDL modules.

Epochs over re-iterable batches, optional validation with early stopping on a metric, the best weights
kept (and saved as a ``weights_only``-loadable state dict), the loss history for plots, automatic mixed
precision on CUDA, seeded determinism, and progress / cancel through a callback.

Under ``torchrun`` (see :mod:`DLCommon.distributed`) the same loop trains with DistributedDataParallel:
give it :class:`~DLCommon.shardedbatches.ShardedBatches` so every process sees its share of each global batch;
losses and validation scores are averaged over the processes, and only rank 0 saves checkpoints, reports
progress and calls ``onEpoch``.

Example::

    result = trainModel(net, trainBatches, DiceCELoss(softmax=True, to_onehot_y=True),
                        TrainingConfig(epochs=100, patience=10, seed=0),
                        validationBatches=valBatches, metric=diceMetric, metricMode="max")
    plot(result.history.trainLoss)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

from .distributed import allReduceSums, broadcastBuffers, distributedContext, distributedDevice, wrapForTraining
from .errors import SettingError, JobCancelled

__all__ = ["TrainingConfig", "TrainingHistory", "TrainingResult", "trainModel", "saveTrainedModel"]

Batch = tuple[torch.Tensor, torch.Tensor]
ProgressCallback = Callable[[float, str], None]


@dataclasses.dataclass
class TrainingConfig:
    """Options of :func:`trainModel`.

    Attributes:
        epochs: maximum number of passes over the training batches.
        learningRate: Adam learning rate (used when no optimizer is given).
        weightDecay: Adam weight decay.
        validationInterval: validate every this many epochs.
        patience: stop after this many validations without improvement (None: never stop early).
        seed: seeds Python, NumPy and torch (MONAI ``set_determinism``); None leaves RNGs alone.
        amp: mixed precision (float16 autocast + grad scaling), applied on CUDA only.
        device: ``"auto"`` (see :func:`~DLCommon.devices.pickDevice`), ``"cpu"``, ``"cuda"``...
        checkpointPath: where to save the best state dict (atomically), if anywhere.
        gradientClip: max gradient norm, if any.
        schedule: ``"constant"`` learning rate, or ``"cosine"`` annealing to zero over ``epochs``.
    """

    epochs: int = 10
    learningRate: float = 1e-3
    weightDecay: float = 0.0
    validationInterval: int = 1
    patience: int | None = None
    seed: int | None = 0
    amp: bool = True
    device: str = "auto"
    checkpointPath: str | Path | None = None
    gradientClip: float | None = None
    schedule: str = "constant"

    def validate(self) -> None:
        if self.epochs < 1:
            raise SettingError("epochs", self.epochs, "at least 1")
        if self.learningRate <= 0:
            raise SettingError("learningRate", self.learningRate, "above 0")
        if self.validationInterval < 1:
            raise SettingError("validationInterval", self.validationInterval, "at least 1")
        if self.schedule not in ("constant", "cosine"):
            raise SettingError("schedule", self.schedule, "'constant' or 'cosine'")
        if self.patience is not None and self.patience < 1:
            raise SettingError("patience", self.patience, "at least 1, or None")


@dataclasses.dataclass
class TrainingHistory:
    """Per-epoch curves (for plots) and how training ended."""

    trainLoss: list[float] = dataclasses.field(default_factory=list)
    validationEpochs: list[int] = dataclasses.field(default_factory=list)
    validationLoss: list[float] = dataclasses.field(default_factory=list)
    validationMetric: list[float] = dataclasses.field(default_factory=list)
    bestEpoch: int = -1
    bestMetric: float | None = None
    stoppedEarly: bool = False
    seconds: float = 0.0

    def snapshot(self) -> "TrainingHistory":
        """A copy whose lists the training thread no longer appends to (for a GUI's live plot)."""
        return dataclasses.replace(self, trainLoss=list(self.trainLoss), validationEpochs=list(self.validationEpochs),
                                   validationLoss=list(self.validationLoss),
                                   validationMetric=list(self.validationMetric))


@dataclasses.dataclass
class TrainingResult:
    network: torch.nn.Module
    history: TrainingHistory
    bestState: dict[str, torch.Tensor]
    device: torch.device


def trainModel(network: torch.nn.Module, trainBatches: Iterable[Batch], lossFunction: Callable,
               config: TrainingConfig | None = None, validationBatches: Iterable[Batch] | None = None,
               metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None, metricMode: str = "min",
               optimizer: torch.optim.Optimizer | None = None,
               progress: ProgressCallback | None = None,
               onEpoch: Callable[[TrainingHistory], None] | None = None) -> TrainingResult:
    """Train ``network`` and return it with the best weights loaded.

    Args:
        network: the model; moved to the chosen device.
        trainBatches: re-iterable of ``(input, target)`` batches, e.g. a DataLoader; input ``(B, C, ...)``.
        lossFunction: ``loss(prediction, target) -> scalar tensor``.
        config: :class:`TrainingConfig`.
        validationBatches: re-iterable of ``(input, target)`` batches; enables best-model selection and
            early stopping. Without it, the training loss selects the best epoch.
        metric: ``metric(prediction, target) -> float`` averaged over validation batches; default: the
            validation loss.
        metricMode: ``"min"`` (loss-like) or ``"max"`` (Dice-like) for ``metric``.
        optimizer: default Adam with ``config.learningRate``.
        progress: ``progress(fraction, message)``; it may raise :class:`JobCancelled` to stop
            (e.g. :meth:`JobContext.report`). Cancellation propagates; the best checkpoint saved so far stays.
        onEpoch: ``onEpoch(history)`` after every epoch, for live curves (it runs on the training thread:
            copy what you need, e.g. ``dataclasses.replace(history)``).

    Returns:
        :class:`TrainingResult`; ``history`` holds the curves.
    """
    config = config or TrainingConfig()
    config.validate()
    if metricMode not in ("min", "max"):
        raise ValueError(f"metricMode must be 'min' or 'max', got {metricMode!r}.")
    if metric is None:
        metricMode = "min"
    if config.seed is not None:
        from monai.utils import set_determinism

        set_determinism(seed=config.seed)
    device = distributedDevice(config.device)
    network = network.to(device)
    trainable = wrapForTraining(network, device)  # DistributedDataParallel under torchrun, else network itself
    network = getattr(trainable, "module", trainable)
    isMain = distributedContext().isMain
    optimizer = optimizer or torch.optim.Adam(network.parameters(), lr=config.learningRate,
                                              weight_decay=config.weightDecay)
    useAmp = bool(config.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=useAmp)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
                 if config.schedule == "cosine" else None)
    history = TrainingHistory()
    bestState = _cpuState(network)
    better = (lambda new, old: new < old) if metricMode == "min" else (lambda new, old: new > old)
    validationsWithoutImprovement = 0
    started = time.monotonic()
    report = (progress if isMain else None) or (lambda fraction, message: None)

    try:
        for epoch in range(config.epochs):
            trainable.train()
            total, count = 0.0, 0
            for inputs, targets in trainBatches:
                inputs, targets = inputs.to(device), targets.to(device)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=useAmp):
                    loss = lossFunction(trainable(inputs), targets)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"The training loss became {loss.item()} at epoch {epoch + 1}. "
                        "Fix: lower the learning rate or check the inputs for NaN / extreme values.")
                scaler.scale(loss).backward()
                if config.gradientClip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(network.parameters(), config.gradientClip)
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach())
                count += 1
            if count == 0:
                raise ValueError("trainBatches yielded no batch. Fix: give at least one training sample.")
            total, count = allReduceSums([total, count])
            history.trainLoss.append(total / count)
            broadcastBuffers(network)
            if scheduler is not None:
                scheduler.step()
            message = f"epoch {epoch + 1}/{config.epochs}: loss {history.trainLoss[-1]:.4f}"

            score = None
            if validationBatches is not None and (epoch + 1) % config.validationInterval == 0:
                validationLoss, validationMetric = _validate(network, validationBatches, lossFunction, metric,
                                                             device, useAmp)
                history.validationEpochs.append(epoch)
                history.validationLoss.append(validationLoss)
                history.validationMetric.append(validationMetric)
                score = validationMetric
                message += f", validation {'metric' if metric else 'loss'} {validationMetric:.4f}"
            elif validationBatches is None:
                score = history.trainLoss[-1]

            if score is not None:
                if history.bestMetric is None or better(score, history.bestMetric):
                    history.bestMetric, history.bestEpoch = score, epoch
                    bestState = _cpuState(network)
                    validationsWithoutImprovement = 0
                    if config.checkpointPath and isMain:
                        _atomicSave(bestState, Path(config.checkpointPath))
                else:
                    validationsWithoutImprovement += 1
            history.seconds = time.monotonic() - started
            if onEpoch is not None and isMain:
                onEpoch(history)
            report((epoch + 1) / config.epochs, message)
            if config.patience is not None and validationsWithoutImprovement >= config.patience:
                history.stoppedEarly = True
                break
    except JobCancelled:
        network.load_state_dict(bestState)
        raise
    network.load_state_dict(bestState)
    history.seconds = time.monotonic() - started
    return TrainingResult(network=network, history=history, bestState=bestState, device=device)


def saveTrainedModel(network: torch.nn.Module, outputDir: str | Path, modelName: str, spec, networkDef: dict | None,
                     details: dict, addToCatalog: bool = False, example: torch.Tensor | None = None
                     ) -> tuple[Path, str | None]:
    """Write a trained model where :func:`trainModel` left it, once per job (rank 0 under torchrun).

    ``<modelName>.pt`` + ``.json`` (a checkpoint, when ``networkDef = {"name", "args"}`` names the MONAI class)
    or ``<modelName>.ts`` (TorchScript, traced with ``example`` if given), ``<modelName>.history.json``
    (``details``: the curves and anything else worth keeping), and optionally a catalog entry; the best-epoch
    checkpoint ``.<modelName>.best.pt`` is removed.

    Returns:
        ``(model path, catalog id or None)``; other processes get the same path and write nothing.
    """
    from .catalog import ModelCatalog
    from .models import saveCheckpoint, saveTorchScript

    outputDir = Path(outputDir)
    if networkDef is not None:
        modelPath = outputDir / f"{modelName}.pt"
    else:
        modelPath = outputDir / f"{modelName}.ts"
    if not distributedContext().isMain:
        return modelPath, None
    if networkDef is not None:
        saveCheckpoint(network, modelPath, networkDef["name"], networkDef["args"], spec)
    else:
        saveTorchScript(network, modelPath, spec,
                        example=None if isinstance(network, torch.jit.ScriptModule) else example)
    (outputDir / f".{modelName}.best.pt").unlink(missing_ok=True)
    (outputDir / f"{modelName}.history.json").write_text(json.dumps(details, indent=2))
    catalogId = None
    if addToCatalog:
        catalogId = ModelCatalog().importFile(modelPath, modelId=modelName, title=modelName, spec=spec).id
    return modelPath, catalogId


def _validate(network, batches, lossFunction, metric, device, useAmp) -> tuple[float, float]:
    network.eval()
    losses, metrics = [], []
    with torch.no_grad():
        for inputs, targets in batches:
            inputs, targets = inputs.to(device), targets.to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=useAmp):
                prediction = network(inputs)
                losses.append(float(lossFunction(prediction, targets)))
            if metric is not None:  # (a network may return a tuple, e.g. MONAI's ViT: (logits, hidden states))
                prediction = prediction.float() if isinstance(prediction, torch.Tensor) else prediction
                metrics.append(float(metric(prediction, targets)))
    if not losses:
        raise ValueError("validationBatches yielded no batch. Fix: give at least one validation sample.")
    lossSum, metricSum, count = allReduceSums([sum(losses), sum(metrics), len(losses)])  # over all processes
    meanLoss = lossSum / count
    return meanLoss, (metricSum / count if metrics else meanLoss)


def _cpuState(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}


def _atomicSave(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name("." + path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)
