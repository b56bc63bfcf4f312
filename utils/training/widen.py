"""Start a wider MPRNet from a narrower one's weights, computing exactly what the narrower one did.

``TRAINING.INIT_WIDEN True`` with ``TRAINING.INIT_WEIGHTS narrow.pth`` and larger ``MODEL.N_FEAT``,
``MODEL.SCALE_UNETFEATS`` or ``MODEL.SCALE_ORSNETFEATS``: every feature map of the narrow network
becomes the leading channels of the same feature map in the wide one, and the added channels
start with fresh weights whose way back into the old channels is zero. The wide network's output
therefore equals the narrow one's (to float rounding) at the first step, and the gradient
reaches the zero blocks from there on, so added capacity is learnt without first losing what the
narrow model knew (a fresh start would relearn it for CPU-hours).

Why the mapping is exact: every layer of MPRNet is a convolution, a per-channel operation
(PReLU with one slope, sigmoid, bilinear resampling, residual sums) or channel attention, which
is two 1x1 convolutions on pooled features. For a convolution of the wide network, the rows of
old output channels read the old input channels with the narrow weights and the added input
channels with zeros; so old channels never see added ones. Two convolutions read a
concatenation of two n_feat-wide maps (``concat12``, ``concat23``), whose second half starts at
n_feat in the narrow network and at the wide network's n_feat in the wide one.
"""
from collections import OrderedDict
from typing import Dict, Mapping

import torch

from MPRNet import MPRNet
from utils.files.checkpoint import CheckpointMismatchError, check_finite, extract_state_dict, load_checkpoint_file

__all__ = ['widened_state_dict', 'load_widened']

# Convolutions whose input is [first map (n_feat), second map (n_feat)] concatenated.
_CONCATENATED_INPUTS = ('concat12.weight', 'concat23.weight')


def _embed(key: str, narrow: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """`fresh` (the wide model's own initial tensor) with `narrow` in the old rows and zeros where
    old rows would read added input channels."""
    if narrow.shape == fresh.shape:
        return narrow.to(fresh.dtype).clone()
    if narrow.dim() != 4 or fresh.dim() != 4 or narrow.shape[2:] != fresh.shape[2:]:
        raise CheckpointMismatchError(f'{key}: {tuple(narrow.shape)} cannot be widened to {tuple(fresh.shape)} '
                                      '(only the channel counts of convolutions may grow)')
    if any(n > w for n, w in zip(narrow.shape[:2], fresh.shape[:2])):
        raise CheckpointMismatchError(f'{key}: the file has {tuple(narrow.shape)}, more channels than the model '
                                      f'{tuple(fresh.shape)}; widening only adds channels')
    out = fresh.clone()
    old_out, old_in = narrow.shape[:2]
    out[:old_out] = 0
    narrow = narrow.to(fresh.dtype)
    if key in _CONCATENATED_INPUTS:
        if old_in % 2 or fresh.shape[1] % 2:
            raise CheckpointMismatchError(f'{key}: expected an even number of input channels, got {tuple(narrow.shape)}')
        half, wide_half = old_in // 2, fresh.shape[1] // 2
        out[:old_out, :half] = narrow[:, :half]
        out[:old_out, wide_half:wide_half + half] = narrow[:, half:]
    else:
        out[:old_out, :old_in] = narrow
    return out


def widened_state_dict(narrow: Mapping[str, torch.Tensor], model: MPRNet,
                       source_name: str = 'checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """`model`'s state dict with `narrow` (a narrower MPRNet's tensors, same depth) embedded.

    Added output channels keep `model`'s current (initial) weights; the blocks through which old
    channels would read added ones are zero. Raises CheckpointMismatchError when the key sets
    differ (another depth: MODEL.NUM_CAB) or a tensor cannot be embedded (narrower model, other
    kernel size).
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(narrow))
    unexpected = sorted(set(narrow) - set(own))
    if missing or unexpected:
        detail = ', '.join((missing or unexpected)[:3])
        raise CheckpointMismatchError(f'{source_name} has {len(unexpected)} key(s) the model lacks and lacks '
                                      f'{len(missing)} it has (e.g. {detail}): widening adds channels, not '
                                      'blocks; use the MODEL.NUM_CAB the file was trained with')
    widened = OrderedDict()
    for key, fresh in own.items():
        try:
            widened[key] = _embed(key, narrow[key], fresh)
        except CheckpointMismatchError as err:
            raise CheckpointMismatchError(f'{source_name}: {err}') from None
    return widened


def load_widened(model: MPRNet, path: str) -> Dict[str, int]:
    """Load the file at `path` into `model`, widening it where `model` is wider.

    Returns the numbers of tensors copied as they are and widened.
    """
    narrow = extract_state_dict(load_checkpoint_file(path))
    check_finite(narrow, path)
    state = widened_state_dict(narrow, model, path)
    model.load_state_dict(state, strict=True)
    widened = sum(narrow[k].shape != v.shape for k, v in state.items())
    return {'copied': len(state) - widened, 'widened': widened}
