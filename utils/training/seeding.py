"""Seeds and random-number state: what makes a training run reproducible and resumable bit for bit.

- ``derive_seed`` mixes integers (base seed, epoch, sample index, ...) into one seed.
- ``seed_everything`` seeds Python ``random``, numpy and torch.
- ``SeededSamples`` with ``EpochIndexSampler``: every training sample reseeds
  those three RNGs from (seed, epoch, index) before it is loaded, so its
  augmentation does not depend on NUM_WORKERS, on persistent workers, on the
  number of processes or on where a run was resumed. ``seed_worker`` is the
  DataLoader workers' start-up seeding.
- ``capture_rng_state`` / ``restore_rng_state``: the global RNG states as plain
  data for a checkpoint (loadable with ``torch.load(weights_only=True)``).
"""
import random
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = ['derive_seed', 'seed_everything', 'seed_worker', 'SeededSamples', 'EpochIndexSampler',
           'capture_rng_state', 'restore_rng_state']


def derive_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from integers (e.g. base seed, epoch, index)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, numpy and torch (all devices) with `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def seed_worker(worker_id: int) -> None:
    """DataLoader worker start-up: seed from the base seed, rank and worker id (samples reseed per item)."""
    info = torch.utils.data.get_worker_info()
    base = info.seed if info is not None else worker_id
    random.seed(base % 2 ** 32)
    np.random.seed(base % 2 ** 32)


class SeededSamples(Dataset):
    """Wraps a dataset so that item (epoch, index) is ``dataset[index]`` drawn with fixed seeds.

    Before loading, Python ``random``, numpy and torch are seeded from (seed,
    epoch, index), in the DataLoader worker or, with NUM_WORKERS 0, in the main
    process. Pair it with ``EpochIndexSampler``, which yields those keys.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]):
        epoch, index = key
        sample_seed = derive_seed(self.seed, epoch, index)
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        torch.manual_seed(sample_seed)
        return self.dataset[index]


class EpochIndexSampler(Sampler):
    """Yields (epoch, index) for each index of `sampler`; ``set_epoch`` reaches both.

    The epoch travels with the index because persistent DataLoader workers keep
    their own copy of the dataset and never see attributes set later.
    """

    def __init__(self, sampler: DistributedSampler):
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        return ((self.epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def capture_rng_state() -> Dict[str, Any]:
    """The global RNG states as plain lists, ints and tensors (loadable with weights_only=True)."""
    version, mt_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'python': [version, list(mt_state), gauss],
             'numpy': {'name': name, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                       'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
             'torch': torch.get_rng_state(), 'cuda': []}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``; CUDA states are restored when the device count matches."""
    version, mt_state, gauss = state['python']
    random.setstate((version, tuple(mt_state), gauss))
    n = state['numpy']
    np.random.set_state((n['name'], n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state['cuda'])
