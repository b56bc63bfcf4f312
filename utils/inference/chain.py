"""Several tasks on one image in one run, for photos that are blurry and noisy at once:
``--task Denoising,Deblurring`` reads each image once, runs the models one after the other in
memory (each with its own tiling and memory budget) and writes once.

Between stages the image stays in float: no 8-bit rounding as when the result of one run is
the input of the next, so a chain differs from that by at most that rounding's effect.
"""
from typing import Sequence, Tuple

import torch

from utils.tasks import canonical_task
from utils.inference.restorer import Restored, Restorer

__all__ = ['parse_task_chain', 'chain_label', 'ChainRestorer']


def parse_task_chain(text: str) -> Tuple[str, ...]:
    """'denoising, Deblurring' -> ('Denoising', 'Deblurring'): canonical names in the given order,
    each task at most once. ValueError names an unknown, empty or repeated task."""
    names = [name.strip() for name in str(text).split(',')]
    if not all(names):
        raise ValueError(f'task {text!r} has an empty name: separate the tasks with single commas, '
                         'e.g. Denoising,Deblurring')
    tasks = tuple(canonical_task(name) for name in names)
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:
        raise ValueError(f"task {text!r} names {', '.join(repeated)} twice: each task runs at most once in a chain")
    return tasks


def chain_label(tasks: Sequence[str]) -> str:
    """'Denoising -> Deblurring' (one task: its name)."""
    return ' -> '.join(tasks)


class ChainRestorer:
    """Callable as a Restorer is: the stages' Restorers applied in turn, the image kept in memory.

    ``restore(x)`` returns the image with the tiling of the first stage that used tiles (each
    stage reports its own tiles to its progress callback while it runs).
    """

    def __init__(self, stages: Sequence[Restorer]):
        if not stages:
            raise ValueError('a chain needs at least one stage')
        self.stages = list(stages)
        self.device = self.stages[0].device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.restore(x).image

    def restore(self, x: torch.Tensor) -> Restored:
        tilings = []
        for stage in self.stages:
            x, how = stage.restore(x)
            tilings.append(how)
        return Restored(x, next((t for t in tilings if t.tile), tilings[0]))
