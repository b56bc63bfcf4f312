"""Pad images to the multiple of 8 that MPRNet needs, and crop results back."""
from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ['MULTIPLE', 'pad_to_multiple', 'crop_to', 'pad_reflect']

# MPRNet halves its input three times (stage 1's quadrants, then two levels of its U-Net), so
# every side it is given is a multiple of 8: images are padded to it, tiles and patches cut in it.
MULTIPLE = 8


def _pad_end(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Reflect-pad the end of dimension `dim` (-2 or -1) by `pad`, however short the side."""
    while pad > 0:
        side = x.shape[dim]
        # torch's reflect needs pad < side: go in steps, mirroring the padded image again;
        # a side of length 1 has nothing to mirror and is replicated.
        step = pad if side == 1 else min(pad, side - 1)
        widths = (0, step, 0, 0) if dim == -1 else (0, 0, 0, step)
        x = F.pad(x, widths, mode='replicate' if side == 1 else 'reflect')
        pad -= step
    return x


def pad_reflect(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Reflect-pad the bottom and right of (N, C, H, W) by (pad_h, pad_w), at any size."""
    return _pad_end(_pad_end(x, pad_h, -2), pad_w, -1)


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Reflect-pad (N, C, H, W) at the bottom and right up to multiples of `multiple`.

    Returns the padded tensor and the original (H, W) for ``crop_to``. Sizes
    that are already multiples come back unchanged (the same tensor).
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = pad_reflect(x, pad_h, pad_w)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Crop (..., H', W') back to the top-left (H, W) = size."""
    return x[..., :size[0], :size[1]]
