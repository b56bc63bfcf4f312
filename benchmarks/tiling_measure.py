"""What benchmarks/tiling_error.py and tests/test_tiling.py share: a smooth test image and a meter
of the peak memory held by live tensors (independent of utils.inference.tiling's estimate it is checked against).

Not to be confused with benchmarks/infer_speed.py's PeakMemory, which measures a whole process
(CUDA allocator peak, or resident-set growth on the CPU).
"""
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode  # documented in "Extending PyTorch"

__all__ = ['smooth_image', 'LiveTensorPeak']


def smooth_image(size: int, seed: int = 1) -> torch.Tensor:
    """A smooth colour image with slight noise, (1, 3, size, size) in [0, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing='ij')
    img = torch.stack([0.5 + 0.3 * torch.sin(6 * xx + 3 * yy), 0.1 + 0.8 * yy,
                       0.4 + 0.2 * torch.cos(9 * xx * yy)])[None]
    noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(seed))
    return (img + 0.03 * noise).clamp(0, 1)


class LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of live tensor storages created while active: ``with LiveTensorPeak() as m: ...; m.peak``.

    Every operator's outputs are counted once per storage until the storage is
    freed. Works on any device, the CPU included (torch.cuda's allocator
    statistics cover CUDA only).
    """

    def __init__(self):
        super().__init__()
        self.live, self.peak, self.storages = 0, 0, set()

    def _freed(self, key, nbytes):
        self.live -= nbytes
        self.storages.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in self.storages and storage.nbytes():
                self.storages.add(key)
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._freed, key, storage.nbytes())
        return out


def _tensors(out):
    """The tensors in an operator's output: a tensor, or tuples and lists of them (and other values)."""
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for item in out:
            yield from _tensors(item)
