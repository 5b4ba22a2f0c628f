"""Conditional GAN (pix2pix, Isola et al. CVPR 2017): the seed's GANs for paired image translation.

A U-Net generator ``G`` (:func:`.imagetoimage.buildNetwork`) maps a source slice to a target slice; a
PatchGAN discriminator ``D`` (``monai.networks.nets.PatchDiscriminator``) sees ``(source, image)`` pairs and
judges each patch real or generated. Both are trained in turn, with MONAI's least-squares
``PatchAdversarialLoss``::

    loss_D = (adv(D(s, t), real) + adv(D(s, G(s)), fake)) / 2
    loss_G = adv(D(s, G(s)), real) + l1Weight * |G(s) - t|

The result is an :class:`~.imagetoimage.ImageToImageModel` (applied by ``applyImageToImage``) whose history
holds both players' curves.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
from monai.data import MetaTensor

from DLCommon.distributed import (allReduceSums, averageGradients, broadcastBuffers, distributedContext,
                                  distributedDevice)

from .config import Pix2PixConfig  # defined there (torch-free, with what the faces show); re-exported
from .imagetoimage import (ImageToImageModel, PatchPairs, buildNetwork, checkPairs,
                           prepareTargets)

__all__ = ["Pix2PixConfig", "GanHistory", "trainPix2Pix"]


@dataclasses.dataclass
class GanHistory:
    """Per-epoch mean losses of both players (``trainLoss`` = the generator's total, for the live plot)."""

    trainLoss: list = dataclasses.field(default_factory=list)
    discriminatorLoss: list = dataclasses.field(default_factory=list)
    l1Loss: list = dataclasses.field(default_factory=list)

    def curves(self) -> dict:
        epochs = list(range(1, len(self.trainLoss) + 1))
        return {"generator loss": (epochs, list(self.trainLoss)),
                "discriminator loss": (epochs, list(self.discriminatorLoss)),
                "generator L1": (epochs, list(self.l1Loss))}

    def snapshot(self) -> "GanHistory":
        return GanHistory(list(self.trainLoss), list(self.discriminatorLoss), list(self.l1Loss))


def trainPix2Pix(pairs: Sequence[tuple[MetaTensor, MetaTensor]], config: Pix2PixConfig | None = None,
                 progress: Callable[[float, str], None] | None = None,
                 onEpoch: Callable[[GanHistory], None] | None = None) -> ImageToImageModel:
    """Train a pix2pix generator on ``(source, target)`` pairs on the same grids (2D slice-wise)."""
    from monai.losses import PatchAdversarialLoss
    from monai.networks.nets import PatchDiscriminator

    config = config or Pix2PixConfig()
    config = dataclasses.replace(config, dimensions=2)
    config.validate()
    checkPairs(pairs)
    targetRange, prepared = prepareTargets(pairs)
    torch.manual_seed(config.seed)
    device = distributedDevice(config.device)
    isMain = distributedContext().isMain
    generator = buildNetwork(2, config.features, residual=False).to(device)
    discriminator = PatchDiscriminator(spatial_dims=2, channels=config.features, in_channels=2, num_layers_d=3).to(device)
    adversarial = PatchAdversarialLoss(criterion="least_squares")
    l1 = torch.nn.L1Loss()
    optimiserG = torch.optim.Adam(generator.parameters(), lr=config.learningRate, betas=(0.5, 0.999))
    optimiserD = torch.optim.Adam(discriminator.parameters(), lr=config.discriminatorLearningRate, betas=(0.5, 0.999))
    perEpoch = 25
    epochs = max(1, math.ceil(config.steps / perEpoch))
    batches = PatchPairs(prepared, config, perEpoch)
    history = GanHistory()
    report = progress or (lambda fraction, message: None)
    for epoch in range(epochs):
        generator.train()
        discriminator.train()
        sums = [0.0, 0.0, 0.0]
        for source, target in batches:
            source, target = source.to(device), target.to(device)
            fake = generator(source)
            optimiserD.zero_grad(set_to_none=True)
            real = discriminator(torch.cat([source, target], 1))[-1]
            generated = discriminator(torch.cat([source, fake.detach()], 1))[-1]
            lossD = 0.5 * (adversarial(real, target_is_real=True, for_discriminator=True)
                           + adversarial(generated, target_is_real=False, for_discriminator=True))
            lossD.backward()
            averageGradients(discriminator)  # under torchrun: the global batch's gradient, as in one process
            optimiserD.step()
            optimiserG.zero_grad(set_to_none=True)
            fooled = discriminator(torch.cat([source, fake], 1))[-1]
            lossL1 = l1(fake, target)
            lossG = adversarial(fooled, target_is_real=True, for_discriminator=False) + config.l1Weight * lossL1
            lossG.backward()
            averageGradients(generator)
            optimiserG.step()
            for index, value in enumerate((lossG, lossD, lossL1)):
                sums[index] += float(value.detach())
        sums = allReduceSums(sums + [perEpoch])
        sums, count = sums[:3], sums[3]
        for network in (generator, discriminator):
            broadcastBuffers(network)
        history.trainLoss.append(sums[0] / count)
        history.discriminatorLoss.append(sums[1] / count)
        history.l1Loss.append(sums[2] / count)
        if not isMain:
            continue
        if onEpoch is not None:
            onEpoch(history)
        report((epoch + 1) / epochs, f"pix2pix epoch {epoch + 1}/{epochs}: G {history.trainLoss[-1]:.3f}, "
                                     f"D {history.discriminatorLoss[-1]:.3f}, L1 {history.l1Loss[-1]:.4f}")
    return ImageToImageModel(network=generator.eval(), config=config, targetRange=targetRange, history=history)
