"""Apply a trained classifier: calibrated class probabilities, and saliency maps on the input's grid.

Saliency: Grad-CAM (MONAI ``GradCAM``) on the architecture's last feature map, for the log-probability of the
chosen class (so it works for every encoding); a ViT has no feature map and gets MONAI's occlusion
sensitivity instead (how much the class probability drops when a patch is hidden). Either map is computed on
the classifier's input grid and resampled onto the input volume's voxels, so it overlays it exactly.
"""

from __future__ import annotations

import torch
from monai.data import MetaTensor

from DLCommon import DLError
from DLCommon.devices import pickDevice
from DLCommon.models import LoadedModel
from DLCommon.sampling import sampleAtWorld, worldGrid

from .architectures import camLayer
from .data import checkImage, normaliseImages, prepareImage
from .encodings import Encoding, encodingFor, logitsOf

__all__ = ["prepareFor", "predictLogits", "encodingOf", "temperatureOf", "inputSizeOf", "classProbabilities", "saliencyMap",
           "checkClassifier", "estimateClassification"]


def checkClassifier(model: LoadedModel) -> None:
    """Refuse a model whose spec lacks what classification needs (encoding, input size, classes)."""
    options = model.spec.options or {}
    if model.spec.task not in ("classification", "other") or "inputSize" not in options or not model.spec.labelNames:
        raise DLError("is not a MedDL classifier (its spec needs task 'classification', labelNames and "
                      "options.inputSize)", node=f"Model '{model.spec.name}'",
                      fix="pick a model trained by DLClassify, or add those entries to its JSON spec")


def encodingOf(model: LoadedModel) -> Encoding:
    return encodingFor(model.spec.options.get("encoding", "nominal"), len(model.spec.labelNames))


def temperatureOf(model: LoadedModel) -> float:
    return float(model.spec.options.get("temperature", 1.0))


def inputSizeOf(model: LoadedModel) -> list[int]:
    return [int(n) for n in model.spec.options["inputSize"]]


def prepareFor(model: LoadedModel, image: MetaTensor, name: str = "image") -> MetaTensor:
    """``image`` ``(C, I, J, K)`` as this model's input.

    A plane model (spec option ``plane``: trained on slice-view planes) sees a single-slice volume as a slice view
    would show it: at its field of view and spacing, with the view's in-plane axes. Other models see the image
    fitted into their input grid (:func:`~.data.prepareImage`).
    """
    plane = (model.spec.options or {}).get("plane")
    checkImage(image, inputSizeOf(model), int(model.spec.inputChannels), name)
    if not plane:
        return prepareImage(image, inputSizeOf(model), int(model.spec.inputChannels), name)
    from .planes import planeAffine, samplePlane, slicePoses, smoothForPlanes

    size, spacing = int(plane["size"]), float(plane["spacing"])
    pose = slicePoses(image.affine, image.shape[1:], [n for n in image.shape[1:]].index(1))[0][0]
    smooth = smoothForPlanes(image.as_tensor(), image.affine, spacing)
    values = normaliseImages(samplePlane(smooth, image.affine, pose, size, spacing), 2)
    return MetaTensor(values, affine=planeAffine(pose, size, spacing), meta={"name": name})


def predictLogits(network: torch.nn.Module, images: torch.Tensor, device=None, batchSize: int = 64) -> torch.Tensor:
    """Network outputs ``(N, outputs)`` (CPU float32) for ``images`` ``(N, C, *S)``, in eval mode."""
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network = network.to(device).eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batchSize):
            batch = torch.as_tensor(images[start:start + batchSize]).float().to(device)
            outputs.append(logitsOf(network(batch)).float().cpu())
    return torch.cat(outputs) if outputs else torch.zeros((0, 1))


def estimateClassification(model: LoadedModel, images, device: str | torch.device = "auto", saliency: bool = False,
                           heldBytes: int = 0):
    """Memory and time of classifying ``images`` (``(C, I, J, K)`` each) in one batch, plus a forward and backward
    pass per image for its saliency map; ``heldBytes``: other buffers the run holds (e.g. a smoothed volume)."""
    import math

    from DLCommon.resources import estimateForward

    shape = (int(model.spec.inputChannels), *inputSizeOf(model))
    volumes = heldBytes + sum(4 * (image.numel() + math.prod(shape)) + (8 * image.numel() if saliency else 0)
                              for image in images)
    return estimateForward(model.network, shape, pickDevice(device) if isinstance(device, str) else device,
                           len(images), 1 + (3 if saliency else 0), volumes, "Classification")


def classProbabilities(model: LoadedModel, images: torch.Tensor, device: str = "auto",
                       calibrated: bool = True) -> torch.Tensor:
    """Class probabilities ``(N, K)`` of prepared ``images`` ``(N, C, *S)``, temperature-scaled by default."""
    checkClassifier(model)
    logits = predictLogits(model.network, images, pickDevice(device))
    return encodingOf(model).probabilities(logits, temperatureOf(model) if calibrated else 1.0)


class _LogProbabilities(torch.nn.Module):
    """Network -> log class probabilities, so saliency targets a class under any encoding."""

    def __init__(self, network: torch.nn.Module, encoding: Encoding, temperature: float):
        super().__init__()
        self.network, self.encoding, self.temperature = network, encoding, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.encoding.probabilities(self.network(x), self.temperature).clamp(min=1e-12))


def saliencyMap(model: LoadedModel, prepared: MetaTensor, image: MetaTensor | None = None,
                classIndex: int | None = None, device: str = "auto") -> MetaTensor:
    """Where the classifier looked: a map in [0, 1] for class ``classIndex`` (default: the predicted class).

    Args:
        prepared: the classifier input ``(C, *inputSize)`` with its grid affine (:func:`~.data.prepareImage`).
        image: the original ``(C, I, J, K)`` volume; the map is resampled onto its voxels. None: the map
            stays on the input grid.

    Returns:
        MetaTensor ``(1, I, J, K)`` with ``image``'s affine (or ``(1, *grid)`` with the grid's).
    """
    checkClassifier(model)
    device = pickDevice(device)
    encoding = encodingOf(model)
    # temperature 1: a calibration temperature < 1 saturates the probabilities and flattens the gradients
    wrapper = _LogProbabilities(model.network, encoding, 1.0).to(device).eval()
    x = (prepared.as_tensor() if isinstance(prepared, MetaTensor) else torch.as_tensor(prepared)).float()[None].to(device)
    with torch.no_grad():
        logProbabilities = wrapper(x)
    target = int(logProbabilities.argmax(1)) if classIndex is None else int(classIndex)
    layer = camLayer(model.spec.options.get("architecture"))
    if layer is not None:
        from monai.visualize import GradCAM

        with torch.enable_grad():
            cam = GradCAM(nn_module=wrapper, target_layers=f"network.{layer}")(x, class_idx=target)
    else:
        from monai.visualize import OcclusionSensitivity

        probabilities = _Probabilities(wrapper)
        # coarse masks keep it to ~200 (2D) / ~500 (3D) forward passes
        threeD = x.ndim == 5
        occlusion, _ = OcclusionSensitivity(nn_module=probabilities, overlap=0.25 if threeD else 0.5,
                                            mask_size=max(4, min(x.shape[2:]) // (4 if threeD else 8)),
                                            n_batch=16, verbose=False)(x)
        # MONAI 1.6 returns (B, classes, *spatial): the class probability with each patch hidden
        drop = float(logProbabilities[0, target].exp()) - occlusion[0, target]
        drop = drop.clamp(min=0)
        cam = (drop / drop.max().clamp(min=1e-12))[None, None]
    cam = cam.detach().float().cpu()[0]  # (1, *S)
    cam = cam.as_tensor() if isinstance(cam, MetaTensor) else cam
    gridAffine = prepared.affine.double()
    if cam.ndim == 3:  # a 2D input's map lies on its (h, w, 1) grid
        cam = cam[..., None]
    if image is None:
        return MetaTensor(cam, affine=gridAffine)
    values, _ = sampleAtWorld(cam[None], gridAffine, worldGrid(image.affine, image.shape[1:]), padding="zeros")
    return MetaTensor(values[0], affine=image.affine.clone(), meta={"name": "saliency"})


class _Probabilities(torch.nn.Module):
    def __init__(self, logProbabilities: torch.nn.Module):
        super().__init__()
        self.logProbabilities = logProbabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logProbabilities(x).exp()
