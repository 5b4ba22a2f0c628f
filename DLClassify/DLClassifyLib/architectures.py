"""Classification networks from ``monai.networks.nets``, 2D or 3D, and the seed's architecture table.

The seed compares ImageNet models by size, parameters and depth; :func:`architectureTable` reports the same
for the networks MedDL builds (ImageNet accuracy does not apply: every model here is trained from scratch on
the user's data; RESULTS.md records their accuracy on MedDL's own tasks).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

__all__ = ["ARCHITECTURES", "Architecture", "architectureArgs", "buildClassifier", "architectureTable",
           "camLayer", "countParameters", "weightLayerDepth", "defaultLearningRate"]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A named network: the MONAI class, its fixed arguments, the layer Grad-CAM looks at, and the Adam
    learning rate it trains well with from scratch."""

    className: str
    args: dict
    camLayer: str | None  # None: no convolutional feature map (ViT): occlusion sensitivity instead
    description: str
    learningRate: float = 2e-3


# MONAI's EfficientNet keeps TensorFlow's batch-norm momentum (0.01): its running statistics lag far behind the
# weights in a short training from scratch, and eval mode then predicts one class; PyTorch's usual 0.1 does not
_EFFICIENTNET_NORM = ["batch", {"eps": 1e-3, "momentum": 0.1}]

ARCHITECTURES: dict[str, Architecture] = {
    "tiny": Architecture("DenseNet", {"init_features": 16, "growth_rate": 8, "block_config": [2, 2, 2]},
                         "class_layers.relu", "small DenseNet (3 blocks) for CPU training"),
    "densenet121": Architecture("DenseNet121", {}, "class_layers.relu", "DenseNet-121"),
    "densenet169": Architecture("DenseNet169", {}, "class_layers.relu", "DenseNet-169"),
    "densenet201": Architecture("DenseNet201", {}, "class_layers.relu", "DenseNet-201"),
    "resnet18": Architecture("ResNet", {"block": "basic", "layers": [2, 2, 2, 2],
                                        "block_inplanes": [64, 128, 256, 512]}, "layer4", "ResNet-18"),
    "resnet50": Architecture("ResNet", {"block": "bottleneck", "layers": [3, 4, 6, 3],
                                        "block_inplanes": [64, 128, 256, 512]}, "layer4", "ResNet-50"),
    "seresnet50": Architecture("SEResNet50", {}, "layer4", "squeeze-and-excitation ResNet-50"),
    "efficientnet-b0": Architecture("EfficientNetBN", {"model_name": "efficientnet-b0", "pretrained": False,
                                                        "norm": _EFFICIENTNET_NORM},
                                    "_bn1", "EfficientNet-B0"),
    "efficientnet-b1": Architecture("EfficientNetBN", {"model_name": "efficientnet-b1", "pretrained": False,
                                                        "norm": _EFFICIENTNET_NORM},
                                    "_bn1", "EfficientNet-B1"),
    "efficientnet-b2": Architecture("EfficientNetBN", {"model_name": "efficientnet-b2", "pretrained": False,
                                                        "norm": _EFFICIENTNET_NORM},
                                    "_bn1", "EfficientNet-B2"),
    "vit": Architecture("ViT", {"hidden_size": 384, "mlp_dim": 1536, "num_layers": 6, "num_heads": 6,
                                "classification": True, "post_activation": None},
                        None, "vision transformer (6 layers, 384 wide)", learningRate=3e-4),  # diverges at 2e-3
}


def _architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {name!r}.")
    return ARCHITECTURES[name]


def architectureArgs(name: str, spatialDims: int, inChannels: int, outputs: int,
                     inputSize: Sequence[int]) -> tuple[str, dict[str, Any]]:
    """``(monai class name, constructor arguments)`` of architecture ``name`` (JSON-serialisable, so a
    checkpoint spec can rebuild it)."""
    architecture = _architecture(name)
    if spatialDims not in (2, 3):
        raise ValueError(f"spatialDims must be 2 or 3, got {spatialDims}.")
    args = dict(architecture.args)
    className = architecture.className
    if className == "ResNet":
        args.update(spatial_dims=spatialDims, n_input_channels=inChannels, num_classes=outputs)
    elif className in ("SEResNet50", "EfficientNetBN"):
        args.update(spatial_dims=spatialDims, in_channels=inChannels, num_classes=outputs)
    elif className == "ViT":
        patch = 16 if min(inputSize) >= 64 else 8
        if any(s % patch for s in inputSize):
            raise ValueError(f"the ViT needs an input size divisible by {patch}, got {list(inputSize)}.")
        args.update(spatial_dims=spatialDims, in_channels=inChannels, num_classes=outputs,
                    img_size=list(inputSize), patch_size=patch)
    else:  # DenseNet family
        args.update(spatial_dims=spatialDims, in_channels=inChannels, out_channels=outputs)
    return className, args


def buildClassifier(name: str, spatialDims: int, inChannels: int, outputs: int,
                    inputSize: Sequence[int]) -> tuple[str, dict[str, Any], torch.nn.Module]:
    """Build architecture ``name``; returns ``(class name, arguments, network)``.

    The network maps ``(B, inChannels, *inputSize)`` to logits ``(B, outputs)`` (a ViT: ``(logits, hidden)``).
    """
    import monai.networks.nets as nets

    className, args = architectureArgs(name, spatialDims, inChannels, outputs, inputSize)
    return className, args, getattr(nets, className)(**args)


def defaultLearningRate(name: str) -> float:
    """The learning rate architecture ``name`` trains well with from scratch."""
    return _architecture(name).learningRate


def camLayer(name: str | None) -> str | None:
    """The layer whose activations Grad-CAM weighs, for an architecture name (None: no feature map)."""
    return _architecture(name).camLayer if name in ARCHITECTURES else None


def countParameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def weightLayerDepth(network: torch.nn.Module) -> int:
    """Depth as the number of convolution and fully connected layers (the seed's "depth" column)."""
    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)
    return sum(1 for m in network.modules() if isinstance(m, kinds))


def architectureTable(spatialDims: int = 2, inChannels: int = 1, outputs: int = 5,
                      inputSize: Sequence[int] | None = None, names: Sequence[str] | None = None) -> list[dict]:
    """One row per architecture: ``name``, ``network`` (MONAI class), ``parameters``, ``sizeMB`` (float32
    weights on disk), ``depth`` (conv + linear layers), ``description``."""
    inputSize = list(inputSize or [64] * spatialDims)
    rows = []
    for name in names or ARCHITECTURES:
        className, _, network = buildClassifier(name, spatialDims, inChannels, outputs, inputSize)
        parameters = countParameters(network)
        rows.append({"name": name, "network": className, "parameters": parameters,
                     "sizeMB": round(4 * parameters / 2**20, 1), "depth": weightLayerDepth(network),
                     "description": ARCHITECTURES[name].description})
    return rows
