"""Restoring whole images with a loaded model: one code path for demo, test scripts and validation.

``Restorer`` pads to a multiple of 8, runs the model, keeps the stage-3
output, crops back and clamps to [0, 1]. ``precision`` and ``fast`` select
the optional speed-ups; the default (fp32, no speed-ups) is the exact path
that reproduces the published numbers. ``tiles`` (a ``TilePlan``) runs large
images in overlapping tiles (``utils.inference.tiling``) so memory follows the tile size.
The model passed in is never changed (a copy runs where it needs another device, eval mode or
the fast path's layout), nor are global settings (cuDNN autotuning is on only during a call).
"""
import contextlib
import copy
from typing import Callable, NamedTuple, Optional, Tuple

import torch

from utils.device import has_native_bf16
from utils.inference import tiling
from utils.inference.tiling import TilePlan
from utils.inference.options import PRECISION_CHOICES
from utils.padding import MULTIPLE, crop_to, pad_to_multiple

__all__ = ['Restorer', 'Restored', 'Tiling', 'TilePlan', 'PRECISIONS', 'PRECISION_CHOICES', 'choose_precision',
           'OutOfMemoryError', 'NonFiniteOutputError']

PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
# torch.OutOfMemoryError is new in torch 2.5; older versions only raise the CUDA one.
OutOfMemoryError = getattr(torch, 'OutOfMemoryError', torch.cuda.OutOfMemoryError)
# Share of the free memory a whole-image pass may plan to use before auto-tiling takes over.
MEMORY_FRACTION = 0.8
MIN_AUTO_TILE = 64


class Tiling(NamedTuple):
    """How one call ran: `tile` the tile size (None: the whole image at once), `reason` why tiles
    were chosen automatically (None: they were not, or the caller asked for them)."""
    tile: Optional[int] = None
    reason: Optional[str] = None


class Restored(NamedTuple):
    """What ``Restorer.restore`` returns: the restored batch and how it was tiled."""
    image: torch.Tensor
    tiling: Tiling


class NonFiniteOutputError(RuntimeError):
    """The model gave NaN or infinite values: a failure of that image, never a result (clamping
    would write NaN as black and infinity as white)."""


def choose_precision(precision: str, fast: bool, device: torch.device) -> Tuple[str, bool, str]:
    """(precision, fast, description) for a --precision choice; 'auto' picks per device.

    exact: fp32 in the published order (InferenceOptions refuses it with fast).

    auto: bf16 autocast with the fast path on a GPU with bf16, or on a CPU with native bf16,
    for every task: each measurement kept bf16 above the 45 dB PSNR against fp32 that the fast
    path must keep (docs/PERFORMANCE.md; a model that falls short is measured with
    benchmarks/infer_speed.py --weights). fp32 with the fast path otherwise. fp16 on a CPU is
    refused: it is emulated there, about 100x slower.
    """
    device = torch.device(device)
    if precision == 'exact':
        return 'fp32', False, 'exact'
    if precision == 'auto':
        if has_native_bf16(device):
            return 'bf16', True, 'bf16 autocast + fast path (auto)'
        return 'fp32', True, 'fp32 fast path (auto)'
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if precision == 'fp16' and device.type == 'cpu':
        raise ValueError('--precision fp16 on the CPU is emulated and about 100x slower than fp32; use '
                         'bf16 (native on recent CPUs), fp32, or auto')
    if precision == 'fp32' and not fast:
        return 'fp32', False, 'fp32 exact path'
    return precision, fast, f'{precision}{" autocast" if precision != "fp32" else ""}{" + fast path" if fast else ""}'


class Restorer:
    """Callable: (N, 3, H, W) float in [0, 1], any H and W -> restored (N, 3, H, W) in [0, 1].

    Args:
        model: an MPRNet (any module returning a list whose first item is the final image).
        device: where to run; the model is moved there.
        precision: 'fp32' (exact), 'fp16' or 'bf16' autocast.
        fast: channels-last memory format, batched stage-1/2 patches and cuDNN autotuning;
            the same function computed in another order.
        tiles: whole images (the default, the exact path) or tiles, fixed or where memory asks
            (``TilePlan``).
        progress: called as progress(done, total, tiling) after each tile of a tiled image
            (`tiling`: the call's ``Tiling``).
        refuse_non_finite: raise NonFiniteOutputError when the output holds NaN or infinity,
            instead of clamping it (what writes result files sets it; validation during
            training keeps the published clamp and lets PSNR show the damage).

    ``restore(x)`` returns the image with how it was tiled (``Restored``); calling the Restorer
    returns the image alone. The model passed in is left as it is: where it must change (another
    device, eval mode, the fast path's layout) a copy runs.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device = torch.device('cpu'),
                 precision: str = 'fp32', fast: bool = False, tiles: TilePlan = TilePlan(),
                 progress: Optional[Callable[[int, int, Tiling], None]] = None, refuse_non_finite: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.tiles, self.progress, self.refuse_non_finite = tiles, progress, refuse_non_finite
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        self.fast = fast
        self.model = _prepared(model, self.device, fast)

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _autotune(self):
        """cuDNN autotuning (the fast path on a GPU) for the length of a call, then as it was."""
        if not (self.fast and self.device.type == 'cuda'):
            return contextlib.nullcontext()
        return _cudnn_benchmark()

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Model output (stage 3) for an input whose sides are already multiples of 8."""
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autotune(), self._autocast():
            return self.model(x)[0].float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.restore(x).image

    @torch.inference_mode()
    def restore(self, x: torch.Tensor) -> Restored:
        """The restored batch and how it was tiled."""
        if self.tiles.size is None and not self.tiles.auto:
            x = x.to(self.device, torch.float32)
            padded, size = pad_to_multiple(x)
            return Restored(self._clamped(crop_to(self.forward_padded(padded), size)), Tiling())
        # The image stays where it is (usually CPU); only tiles travel to the device.
        padded, size = pad_to_multiple(x.to(torch.float32))
        out, how = self._forward_large(padded)
        return Restored(self._clamped(crop_to(out, size)).to(self.device), how)

    def _clamped(self, out: torch.Tensor) -> torch.Tensor:
        """`out` clamped to [0, 1] in place; with refuse_non_finite, NonFiniteOutputError when it
        holds NaN or infinity (checked before the clamp, which turns infinity into 0 or 1)."""
        if self.refuse_non_finite:
            bad = int((~torch.isfinite(out)).sum())
            if bad:
                raise NonFiniteOutputError(f'the restored image holds {bad} NaN or infinite values of {out.numel()}; '
                                           'nothing was written (try --precision fp32, or check the weights)')
        return out.clamp_(0, 1)

    def _element_bytes(self) -> int:
        # CPU autocast keeps many activations (norms, additions, the attention tails) in float32:
        # counting bf16 as 2 bytes there let a 12-megapixel photo reach 7.6 GB under a 3 GB budget.
        return 2 if self.dtype is not None and self.device.type == 'cuda' else 4

    def _tile_for_memory(self, padded: torch.Tensor) -> Tiling:
        """A tile size and why when the whole padded image would not fit in free device memory or
        the memory budget, else Tiling() (the whole image)."""
        n, _, height, width = padded.shape
        need = tiling.estimate_peak_bytes(self.model, height, width, n, self._element_bytes())
        free = tiling.free_memory_bytes(self.device)
        limits = [(MEMORY_FRACTION * free, f'{free / 2**30:.1f} GiB free on {self.device}')] if free else []
        cap = self.tiles.memory_budget
        if cap is not None:
            limits.append((cap, f'the memory budget is {cap / 2**30:.1f} GiB'))
        if need is None or not limits:
            return Tiling()
        budget, why = min(limits)
        if need <= budget:
            return Tiling()
        tile = tiling.largest_tile(self.model, budget, n, self._element_bytes(), MIN_AUTO_TILE)
        return Tiling(tile, f'the whole {height}x{width} image needs about {need / 2**30:.1f} GiB, {why}')

    def _run_tiles(self, padded: torch.Tensor, how: Tiling) -> torch.Tensor:
        tile = how.tile
        if tile is None:
            return self.forward_padded(padded.to(self.device))
        # A tile chosen here (not the caller's) keeps an overlap in proportion to its size.
        overlap = self.tiles.overlap if tile == self.tiles.size else min(self.tiles.overlap, tile // 4)
        progress = self.progress
        on_tile = None if progress is None else (lambda done, total: progress(done, total, how))
        return tiling.tiled_forward(lambda t: self.forward_padded(t.to(self.device)), padded, tile, overlap,
                                    on_tile=on_tile)

    def _forward_large(self, padded: torch.Tensor) -> Tuple[torch.Tensor, Tiling]:
        """Whole image or tiles (explicit, or chosen for memory) and how; with tiles.auto, an
        out-of-memory error is retried with tiles half the size, down to MIN_AUTO_TILE."""
        how = Tiling(self.tiles.size) if self.tiles.size is not None else self._tile_for_memory(padded)
        while True:
            tile = how.tile
            side = tile or max(padded.shape[-2:])
            smaller = side // 2 // MULTIPLE * MULTIPLE
            try:
                return self._run_tiles(padded, how), how
            except OutOfMemoryError as err:
                if not self.tiles.auto or smaller < MIN_AUTO_TILE:
                    what = f'{side}x{side} tiles' if tile else 'the whole image'
                    raise OutOfMemoryError(f'out of memory on {self.device} with {what}; run on the CPU, '
                                           'at a lower precision or with smaller tiles') from err
            # Outside the except block the failed pass's tensors are freed with its traceback.
            if self.device.type == 'cuda':
                torch.cuda.empty_cache()
            how = Tiling(smaller, f'out of memory with {f"tiles of {tile}" if tile else "the whole image"}')


def _prepared(model: torch.nn.Module, device: torch.device, fast: bool) -> torch.nn.Module:
    """`model` on `device` in eval mode (with `fast`: batched patches, channels-last weights): the
    model itself when it is so already, else a copy, so that the caller's model is never changed."""
    tensors = list(model.parameters()) + list(model.buffers())
    ready = all(t.device == device for t in tensors) and not any(m.training for m in model.modules())
    if fast:
        ready = ready and getattr(model, 'batch_patches', True) is True and all(
            t.is_contiguous(memory_format=torch.channels_last) for t in tensors if t.dim() == 4)
    if ready:
        return model
    model = copy.deepcopy(model).to(device).eval()
    if fast:
        if hasattr(model, 'batch_patches'):
            model.batch_patches = True
        model = model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def _cudnn_benchmark():
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved
