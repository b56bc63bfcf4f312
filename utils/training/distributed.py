"""Single-process or torchrun multi-process training: process-group setup and a few collectives.

``torchrun --nproc_per_node N <Task>/train.py`` sets RANK, LOCAL_RANK and
WORLD_SIZE; without them everything here runs as one process and the
collectives are no-ops, so the engine has a single code path.
"""
import os
from dataclasses import dataclass
from typing import Iterator, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from utils.device import resolve_device

__all__ = ['DistInfo', 'init_distributed', 'shutdown_distributed', 'all_reduce_sum', 'ShardSampler',
           'select_gpus']


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits among the training processes."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, logs and writes checkpoints."""
        return self.rank == 0


def select_gpus(gpu_ids: Sequence[int]) -> None:
    """Expose only `gpu_ids` (from the config's GPU list) unless CUDA_VISIBLE_DEVICES is already set.

    Must run before CUDA is first touched; an explicit environment wins over the config.
    """
    if 'CUDA_VISIBLE_DEVICES' not in os.environ and gpu_ids:
        os.environ.setdefault('CUDA_DEVICE_ORDER', 'PCI_BUS_ID')
        os.environ['CUDA_VISIBLE_DEVICES'] = ','.join(str(int(i)) for i in gpu_ids)


def init_distributed(device_name: str = 'auto') -> Tuple[DistInfo, torch.device]:
    """Join the torchrun process group if there is one; returns (DistInfo, this process's device).

    CUDA uses NCCL with one GPU per process (cuda:LOCAL_RANK); CPU uses gloo.
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    device = resolve_device(device_name)
    if world_size <= 1:
        return DistInfo(), device
    info = DistInfo(rank=int(os.environ['RANK']), world_size=world_size,
                    local_rank=int(os.environ.get('LOCAL_RANK', '0')))
    if device.type == 'cuda':
        visible = torch.cuda.device_count()
        if info.local_rank >= visible:
            raise RuntimeError(f'process with LOCAL_RANK {info.local_rank} has no GPU: only {visible} visible. '
                               'Start at most that many processes per node (torchrun --nproc_per_node), '
                               'or make more GPUs visible (CUDA_VISIBLE_DEVICES)')
        device = torch.device('cuda', info.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group('nccl', device_id=device)
    else:
        dist.init_process_group('gloo')
    return info, device


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all processes, in place; unchanged in a single process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class ShardSampler(Sampler):
    """Indices rank, rank + world, rank + 2 world, ... of a dataset of `length` items.

    Unlike DistributedSampler nothing is padded or repeated, so sums reduced
    over the processes cover every item exactly once (validation means).
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))
