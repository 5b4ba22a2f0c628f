"""Training batches that are the same whether one process or N processes draw them.

Item ``n`` of epoch ``e`` is made by ``makeItem(n, seed)`` with a seed derived from ``(seed, e, n)`` only,
so an item (its random patch, its augmentation) does not depend on which process makes it. The items of an
epoch are ordered by :class:`torch.utils.data.DistributedSampler` (the same shuffle on every process) and
each process takes every ``worldSize``-th one, in batches of ``batchSize / worldSize``: the union of the
processes' k-th batches is the k-th batch of a single-process run. With a loss that averages over the batch,
DistributedDataParallel's averaged gradients then equal the single-process gradients (same seed, same global
batch).
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from .distributed import distributedContext
from .errors import DLError

__all__ = ["ShardedBatches", "itemSeed"]

Item = tuple[torch.Tensor, torch.Tensor]


def itemSeed(seed: int, epoch: int, index: int) -> int:
    """A 31-bit seed for item ``index`` of ``epoch`` (independent streams via NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0] >> 1)


class ShardedBatches:
    """Re-iterable ``(inputs (b, ...), targets (b, ...))`` batches, ``b = batchSize / worldSize``.

    Args:
        makeItem: ``makeItem(index, seed) -> (input, target)``, one item without batch axis.
        length: items per epoch (e.g. the number of samples, or batches per epoch x batch size for random
            patches).
        batchSize: the global batch size; it must divide among the processes.
        seed: the base seed.
        shuffle: a new order each epoch (the same on every process).
        fixed: every pass yields the same items (validation).
        what: names the data in errors.
    """

    def __init__(self, makeItem: Callable[[int, int], Item], length: int, batchSize: int, seed: int = 0,
                 shuffle: bool = False, fixed: bool = False, what: str = "Training data"):
        context = distributedContext()
        if length < 1:
            raise DLError("yielded no item", node=what, fix="give at least one sample")
        if batchSize % context.worldSize:
            raise DLError(f"has a batch size of {batchSize}, which does not divide among {context.worldSize} "
                          "processes", node=what, fix="use a batch size that is a multiple of --nproc-per-node")
        self.makeItem, self.length, self.batchSize = makeItem, int(length), int(batchSize)
        self.seed, self.shuffle, self.fixed = int(seed), shuffle, fixed
        self.rank, self.worldSize = context.rank, context.worldSize
        self.epoch = 0

    @property
    def localBatchSize(self) -> int:
        return self.batchSize // self.worldSize

    def indices(self, epoch: int) -> list[int]:
        """This process's item indices for ``epoch``, in order."""
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(self.length), num_replicas=self.worldSize, rank=self.rank,
                                     shuffle=self.shuffle, seed=self.seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    def __len__(self) -> int:
        return -(-len(self.indices(0)) // self.localBatchSize)

    def __iter__(self) -> Iterator[Item]:
        epoch = 0 if self.fixed else self.epoch
        if not self.fixed:
            self.epoch += 1
        indices = self.indices(epoch)
        for start in range(0, len(indices), self.localBatchSize):
            items = [self.makeItem(n, itemSeed(self.seed, epoch, n)) for n in indices[start:start + self.localBatchSize]]
            yield torch.stack([i[0] for i in items]), torch.stack([torch.as_tensor(i[1]) for i in items])
