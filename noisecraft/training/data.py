"""The trainer's data side: a deterministic, resumable order of examples, and where batches come from.

Data order. The dataset is read as an endless stream: epoch ``e`` is the permutation drawn from
``numpy.random.default_rng([seed, e])`` and the stream is the concatenation of epochs. The whole data position is then
one integer, ``samples_seen``: its epoch is ``samples_seen // len(dataset)`` and its offset the remainder. Each
micro-batch takes the next ``batch_size * world_size`` indices of the stream, and rank ``r`` keeps the ``r``-th
``batch_size`` of them.

Two sources deliver the batches of that order: a ``DataLoader`` (items read, and possibly rendered, by worker
processes every time they are used), or a :class:`DeviceCache` that reads every item once and then serves batches by
indexing tensors that already live on the training device. Both give the same batches, so switching between them
changes speed, not results; the cache pays off when the data fits in memory and reading it is the bottleneck.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm


def epoch_permutation(num_items: int, *, seed: int, epoch: int) -> np.ndarray:
    """Order of the dataset in ``epoch``: a pure function of ``(seed, epoch)``, so any position can be revisited."""
    return np.random.default_rng([seed, epoch]).permutation(num_items)


def index_batches(*, num_items: int, seed: int, start: int, batch_size: int, rank: int = 0,
                  world_size: int = 1) -> Iterator[list[int]]:
    """Endless per-rank batches of dataset indices from global stream position ``start`` (see module docstring)."""

    def stream() -> Iterator[int]:
        epoch, offset = divmod(start, num_items)
        while True:
            yield from epoch_permutation(num_items, seed=seed, epoch=epoch)[offset:].tolist()
            epoch, offset = epoch + 1, 0

    indices = stream()
    while True:
        global_batch = [next(indices) for _ in range(batch_size * world_size)]
        yield global_batch[rank * batch_size:(rank + 1) * batch_size]


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor inside (dicts, lists, tuples, namedtuples) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(value, device) for value in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)  # namedtuples unpack
    return batch


class DeviceCache:
    """Every item of a dataset, collated once and kept on ``device``; ``cache[indices]`` is the batch of those items.

    Batches must be dicts whose values are tensors (stacked along the first axis, as ``default_collate`` does) or
    lists (e.g. captions). Indexing gives exactly what collating the same items would, so training with the cache
    is bit-identical to training from the loader.
    """

    def __init__(self, dataset: Any, *, collate_fn: Callable, device: torch.device, num_workers: int = 0,
                 chunk_size: int = 256, progress: bool = False):
        # Modest chunks: worker processes hand them over through shared memory, which containers often keep small.
        loader = DataLoader(dataset, batch_size=chunk_size, shuffle=False, collate_fn=collate_fn,
                            num_workers=num_workers, generator=torch.Generator().manual_seed(0))  # not the global RNG
        chunks: dict[str, list] = {}
        for batch in tqdm(loader, desc="caching data", unit="chunk", disable=not progress, leave=False):
            if not isinstance(batch, Mapping):
                raise TypeError(f"cache_on_device needs batches that are dicts, got {type(batch).__name__}; "
                                "turn cache_on_device off for this dataset")
            for key, value in batch.items():
                if not isinstance(value, (torch.Tensor, list)):
                    raise TypeError(f"cache_on_device cannot cache batch[{key!r}] of type {type(value).__name__} "
                                    "(only tensors and lists); turn cache_on_device off for this dataset")
                # Tensors move chunk by chunk, so the host never holds the whole data set.
                chunks.setdefault(key, []).append(value.to(device) if isinstance(value, torch.Tensor) else value)
        self.fields = {key: torch.cat(values) if isinstance(values[0], torch.Tensor)
                       else [item for chunk in values for item in chunk] for key, values in chunks.items()}
        self.device = device
        self.num_items = len(dataset)

    def __getitem__(self, indices: list[int]) -> dict[str, Any]:
        index = torch.as_tensor(indices, device=self.device)
        return {key: value.index_select(0, index) if isinstance(value, torch.Tensor) else [value[i] for i in indices]
                for key, value in self.fields.items()}

    def nbytes(self) -> int:
        return sum(value.numel() * value.element_size() for value in self.fields.values()
                   if isinstance(value, torch.Tensor))


def batch_stream(dataset: Any, *, collate_fn: Callable, device: torch.device, seed: int, start: int, batch_size: int,
                 rank: int, world_size: int, num_workers: int, cache: DeviceCache | None = None) -> Iterator[Any]:
    """Endless batches of the resumable order above, on ``device``: from ``cache`` when given, else from a
    ``DataLoader`` with ``num_workers`` worker processes."""
    indices = index_batches(num_items=len(dataset), seed=seed, start=start, batch_size=batch_size, rank=rank,
                            world_size=world_size)
    if cache is not None:
        return (cache[batch] for batch in indices)
    loader = DataLoader(dataset, collate_fn=collate_fn, num_workers=num_workers, pin_memory=device.type == "cuda",
                        # its own generator: creating the iterator must not draw from the global torch RNG
                        generator=torch.Generator().manual_seed(seed + rank), batch_sampler=indices)
    return (to_device(batch, device) for batch in loader)
