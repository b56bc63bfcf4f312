"""The published learning-rate curve, as a closed form: linear warm-up, then cosine annealing.

The published scripts build it from ``GradualWarmupScheduler`` wrapped around
``CosineAnnealingLR``. On the PyTorch of the paper that gives, for epoch e
(counted from 1) with W warm-up epochs and a cosine period T::

    e <= W:  lr = base * e / W
    e >  W:  lr = min + (base - min) * (1 + cos(pi * (e - W - 1) / T)) / 2

(T = NUM_EPOCHS - W, plus 40 for Denoising). On current PyTorch the same two
schedulers put epoch W + 1 above ``base`` and shift the cosine by one epoch,
because ``CosineAnnealingLR`` became recursive. Here the learning rate is a
function of the epoch alone, so resuming at any epoch gives the same value.
"""
import math
from typing import Any, Dict

import torch

__all__ = ['warmup_cosine_lr', 'WarmupCosineSchedule']


def warmup_cosine_lr(epoch: int, base_lr: float, min_lr: float, warmup_epochs: int,
                     cosine_epochs: int) -> float:
    """Learning rate of `epoch` (1-based) on the curve described in the module docstring."""
    if epoch < 1:
        raise ValueError(f'epochs are counted from 1, got {epoch}')
    if warmup_epochs > 0 and epoch <= warmup_epochs:
        return base_lr * epoch / warmup_epochs
    if cosine_epochs <= 0:
        raise ValueError(f'epoch {epoch} is past the warm-up but the cosine period is {cosine_epochs}: '
                         'OPTIM.NUM_EPOCHS - OPTIM.WARMUP_EPOCHS + OPTIM.COSINE_EXTRA_EPOCHS must be positive')
    t = epoch - warmup_epochs - 1  # 0 in the first epoch after warm-up: the full base rate
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * t / cosine_epochs)) / 2


class WarmupCosineSchedule:
    """Sets an optimizer's learning rate for each epoch from ``warmup_cosine_lr``.

    Call ``apply(epoch)`` at the start of every epoch. The state is only the
    curve's parameters and the last epoch applied, so a resumed run continues
    on exactly the same curve.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, min_lr: float,
                 warmup_epochs: int, cosine_epochs: int):
        # A run shorter than the warm-up (a smoke test) never reaches the cosine, whose
        # period may then be <= 0; lr() complains only if such an epoch is asked for.
        if warmup_epochs < 0:
            raise ValueError(f'OPTIM.WARMUP_EPOCHS must be >= 0, got {warmup_epochs}')
        self.optimizer = optimizer
        self.base_lr, self.min_lr = float(base_lr), float(min_lr)
        self.warmup_epochs, self.cosine_epochs = int(warmup_epochs), int(cosine_epochs)
        self.last_epoch = 0

    @classmethod
    def from_config(cls, optimizer: torch.optim.Optimizer, cfg) -> 'WarmupCosineSchedule':
        """The schedule that the OPTIM section of a training config describes."""
        o = cfg.OPTIM
        return cls(optimizer, o.LR_INITIAL, o.LR_MIN, o.WARMUP_EPOCHS,
                   o.NUM_EPOCHS - o.WARMUP_EPOCHS + o.COSINE_EXTRA_EPOCHS)

    def lr(self, epoch: int) -> float:
        return warmup_cosine_lr(epoch, self.base_lr, self.min_lr, self.warmup_epochs, self.cosine_epochs)

    def apply(self, epoch: int) -> float:
        """Set every parameter group's learning rate for `epoch`; returns it."""
        value = self.lr(epoch)
        for group in self.optimizer.param_groups:
            group['lr'] = value
        self.last_epoch = epoch
        return value

    def state_dict(self) -> Dict[str, Any]:
        return dict(base_lr=self.base_lr, min_lr=self.min_lr, warmup_epochs=self.warmup_epochs,
                    cosine_epochs=self.cosine_epochs, last_epoch=self.last_epoch)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the last epoch applied. The curve itself comes from the current config, so a
        run can be extended; ``differences`` says what changed against a saved state."""
        self.last_epoch = int(state['last_epoch'])

    def differences(self, state: Dict[str, Any]) -> Dict[str, tuple]:
        """{name: (saved, current)} for every curve parameter that differs from `state`."""
        own = self.state_dict()
        return {k: (state[k], own[k]) for k in own if k != 'last_epoch' and k in state and state[k] != own[k]}
