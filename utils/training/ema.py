"""OPTIM.EMA: an exponential moving average of the weights, the model that validates and ships.

After every optimizer step each floating-point tensor moves towards the trained one,
``average = decay * average + (1 - decay) * weights``; integer tensors are copied. The average is
a second MPRNet, so validation and checkpoints use it without touching the model being trained.
"""
import copy
from typing import List, Tuple

import torch
import torch.nn as nn

__all__ = ['WeightAverage']


class WeightAverage:
    """A copy of `model` (in eval mode, no gradients) that follows it with weight `1 - decay` per update."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f'the weight-average decay must lie strictly between 0 and 1, got {decay}')
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _pairs(self, model: nn.Module) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        # parameters() and buffers() list a shared tensor once (MPRNet's one PReLU sits under many
        # state-dict keys): averaging state_dict() entries would move it once per key.
        ours = [*self.model.parameters(), *self.model.buffers()]
        theirs = [*model.parameters(), *model.buffers()]
        return list(zip(ours, theirs))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards `model`'s current weights."""
        floats: List[torch.Tensor] = []
        targets: List[torch.Tensor] = []
        for mine, theirs in self._pairs(model):
            if mine.is_floating_point():
                floats.append(mine)
                targets.append(theirs.detach())
            else:
                mine.copy_(theirs)
        if floats:
            # lerp: average + (1 - decay) * (weights - average), one fused pass over all tensors.
            torch._foreach_lerp_(floats, targets, 1.0 - self.decay)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Start the average again from `model`'s weights (a fresh run from INIT_WEIGHTS, or a resume
        from a checkpoint that holds no average)."""
        for mine, theirs in self._pairs(model):
            mine.copy_(theirs)
