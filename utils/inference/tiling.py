"""Tiled inference: run a model on overlapping tiles and blend them back without seams.

An image whose sides are multiples of 8 is covered by tiles of ``tile`` x ``tile``
pixels (multiples of 8, so MPRNet accepts every tile) that overlap by at least
``overlap`` pixels. Each tile's output is weighted by a window that drops the
outer quarter of each overlap (pixels whose receptive field crosses the tile
edge and sees zero padding instead of image) and ramps linearly across its
middle half; the windows are normalised
to sum to 1 at every pixel, so overlaps cross-fade instead of showing a seam,
and a per-pixel model gives its whole-image output to float rounding.
Only one tile is on the device at a time: peak device memory follows the tile
size, not the image size.

The memory estimate that chooses a tile automatically was measured as the peak
bytes of live tensors in one fp32 inference pass (benchmarks/tiling_measure.py's
LiveTensorPeak, 128x128 input, proportional to the pixel count): 11.9-12.4 x
(n_feat + scale_orsnetfeats) x 4 bytes per pixel for the Deraining preset, the
bundled compact models and the tests' tiny model (half that under CPU bf16
autocast), e.g. about 6,300 bytes per pixel for Deblurring, 26 GB for a 2048x2048 photo.
"""
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import torch

from utils.padding import MULTIPLE

__all__ = ['DEFAULT_OVERLAP', 'TilePlan', 'check_tile_options', 'tile_starts', 'axis_weights', 'tile_windows',
           'tiled_forward', 'estimate_peak_bytes', 'free_memory_bytes', 'largest_tile']

# Peak bytes per pixel = factor x stage-3 channels x bytes per float (measured 11.9-12.4 with
# MPRNet.py's out-of-place operators, see the module docstring; rounded up for the allocator's
# slack and cuDNN workspaces).
_PEAK_FACTOR = 13


DEFAULT_OVERLAP = 32


def check_tile_options(tile: int, overlap: int) -> None:
    """Raise ValueError unless `tile` is a positive multiple of 8 and `overlap` leaves a stride of 8 or more."""
    if not isinstance(tile, int) or tile < MULTIPLE or tile % MULTIPLE:
        raise ValueError(f'tile size must be a positive multiple of {MULTIPLE} (got {tile}), e.g. 256 or 512')
    if not isinstance(overlap, int) or overlap < 0 or tile - overlap < MULTIPLE:
        raise ValueError(f'tile overlap must be between 0 and tile - {MULTIPLE} = {tile - MULTIPLE} '
                         f'(got {overlap} for tile {tile})')


@dataclass(frozen=True)
class TilePlan:
    """How a Restorer splits images; construction checks every field (ValueError).

    size: tiles of this many pixels (a multiple of 8), blended back; None: whole images.
    overlap: minimum overlap of neighbouring tiles, in pixels.
    auto: with size None, tiles where the whole image's estimated memory exceeds the device's
        free memory or `memory_budget`, and after an out-of-memory error tiles half the size.
        The tiled result differs slightly from the whole-image one (docs/USAGE.md).
    memory_budget: bytes one image may use before `auto` splits it (None: only the free memory
        counts; on a CPU that is shared with everything else, so the demo sets a few GB).
    """
    size: Optional[int] = None
    overlap: int = DEFAULT_OVERLAP
    auto: bool = False
    memory_budget: Optional[int] = None

    def __post_init__(self):
        if self.size is not None:
            check_tile_options(self.size, self.overlap)
        elif not isinstance(self.overlap, int) or self.overlap < 0:
            raise ValueError(f'tile overlap must be at least 0, got {self.overlap}')
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(f'memory budget must be a positive number of bytes, got {self.memory_budget}')


def tile_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of the tiles along one side of `length` pixels (a multiple of 8).

    Tiles are ``min(tile, length)`` long; all starts are multiples of 8, the
    first is 0 and the last ends at `length`. The tiles are spread evenly, so
    consecutive ones overlap by at least `overlap` (more where the side does
    not divide evenly), never by less.
    """
    check_tile_options(tile, overlap)
    if length <= 0 or length % MULTIPLE:
        raise ValueError(f'side length must be a positive multiple of {MULTIPLE}, got {length}: pad first')
    if length <= tile:
        return [0]
    # Work in units of 8 px: span = room for the starts, stride = the longest allowed step.
    span, stride = (length - tile) // MULTIPLE, (tile - overlap) // MULTIPLE
    steps = math.ceil(span / stride)
    return [(k * span // steps) * MULTIPLE for k in range(steps + 1)]


def _ramp(offsets: np.ndarray, overlap: int) -> np.ndarray:
    """Window across an overlap of `overlap` px, at pixel-centre `offsets` from the tile's edge:
    0 in the outer quarter, a linear ramp across the middle half, 1 beyond.

    A tile's outermost pixels see zero padding instead of their neighbours and
    are its least accurate, so they are left to the neighbouring tile.
    """
    margin = overlap / 4
    return np.clip((offsets - margin) / (overlap - 2 * margin), 0.0, 1.0)


def axis_weights(length: int, starts: List[int], size: int) -> np.ndarray:
    """Blending weights (n_tiles, size) for tiles of `size` at `starts` on a side of `length`.

    Each tile's raw window is 1 inside and ramps (``_ramp``) across its
    overlap with each neighbour; where two tiles overlap their ramps sum to 1
    (a linear cross-fade). Dividing by the sum over the tiles covering a
    pixel makes the weights a partition of unity wherever tiles meet.
    """
    raw = np.ones((len(starts), size), dtype=np.float64)
    offsets = np.arange(size, dtype=np.float64) + 0.5
    for k, start in enumerate(starts):
        if k > 0 and starts[k - 1] + size > start:
            raw[k] = np.minimum(raw[k], _ramp(offsets, starts[k - 1] + size - start))
        if k < len(starts) - 1 and start + size > starts[k + 1]:
            raw[k] = np.minimum(raw[k], _ramp(size - offsets, start + size - starts[k + 1]))
    # Never exactly 0, so every pixel keeps a positive total even where several margins meet.
    raw = np.maximum(raw, 1e-6)
    total = np.zeros(length, dtype=np.float64)
    for k, start in enumerate(starts):
        total[start:start + size] += raw[k]
    return np.stack([raw[k] / total[start:start + size] for k, start in enumerate(starts)])


def tile_windows(height: int, width: int, tile: int, overlap: int) -> Iterator[Tuple[slice, slice, torch.Tensor]]:
    """Every tile of an image of (height, width) as (row slice, column slice, weight (h, w) float32).

    The 2-D weight is the outer product of the row and column weights, so the
    weights of all tiles sum to 1 at every pixel. Made one tile at a time:
    a huge image's weights are never all in memory.
    """
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    th, tw = min(tile, height), min(tile, width)
    wy, wx = axis_weights(height, rows, th), axis_weights(width, cols, tw)
    for i, y in enumerate(rows):
        for j, x in enumerate(cols):
            yield slice(y, y + th), slice(x, x + tw), torch.from_numpy(np.outer(wy[i], wx[j]).astype(np.float32))


def tiled_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int,
                  overlap: int, on_tile: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """Blend fn over overlapping tiles of x: (N, C, H, W), H and W multiples of 8 -> (N, C', H, W).

    `fn` maps a tile (N, C, h, w) to (N, C', h, w) on any device; the result
    is assembled in float32 on x's device, so only one tile's activations
    are on fn's device at a time. `on_tile(done, total)` is called after each tile.
    """
    height, width = x.shape[-2:]
    total = len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))
    out = None
    for done, (rows, cols, weight) in enumerate(tile_windows(height, width, tile, overlap), 1):
        pred = fn(x[..., rows, cols]).to(x.device, torch.float32)
        if out is None:
            out = torch.zeros(*pred.shape[:2], height, width, dtype=torch.float32, device=x.device)
        out[..., rows, cols] += pred * weight.to(x.device)
        if on_tile is not None:
            on_tile(done, total)
    return out


def estimate_peak_bytes(model: torch.nn.Module, height: int, width: int, batch: int = 1,
                        element_bytes: int = 4) -> Optional[int]:
    """Estimated peak memory of one inference pass of an MPRNet on (batch, 3, height, width).

    None for a model without an MPRNet ``config`` (nothing to estimate from).
    """
    config = getattr(model, 'config', None)
    if not isinstance(config, dict) or 'n_feat' not in config or 'scale_orsnetfeats' not in config:
        return None
    channels = config['n_feat'] + config['scale_orsnetfeats']
    return _PEAK_FACTOR * channels * element_bytes * batch * height * width


def largest_tile(model: torch.nn.Module, budget_bytes: float, batch: int = 1, element_bytes: int = 4,
                 minimum: int = 64) -> int:
    """Largest square tile (multiple of 8, at least `minimum`) whose estimated peak fits in `budget_bytes`."""
    per_pixel = estimate_peak_bytes(model, 1, 1, batch, element_bytes)
    side = int(math.sqrt(max(budget_bytes, 0) / per_pixel)) if per_pixel else minimum
    return max(minimum, side // MULTIPLE * MULTIPLE)


def _available_ram() -> Optional[int]:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages; None if unknown."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


def free_memory_bytes(device: torch.device) -> Optional[int]:
    """Memory a model could still use on `device`: free GPU memory plus PyTorch's cached
    blocks, or the available RAM for the CPU; None where it cannot be told."""
    device = torch.device(device)
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == 'cpu':
        return _available_ram()
    return None
