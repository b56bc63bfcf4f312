"""Restoring whole images with a loaded model: one code path for demo, test scripts and validation.

``Restorer`` pads to a multiple of 8, runs the model, keeps the stage-3
output, crops back and clamps to [0, 1]. ``precision`` and ``fast`` select
the optional speed-ups; the default (fp32, no speed-ups) is the exact path
that reproduces the published numbers.
"""
import contextlib
from typing import Optional

import torch

from utils.padding import crop_to, pad_to_multiple

__all__ = ['Restorer', 'resolve_device', 'PRECISIONS']

PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def resolve_device(name: str = 'auto') -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error, not a silent CPU run."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda was asked for but no CUDA GPU is visible; use --device cpu')
    return device


class Restorer:
    """Callable: (N, 3, H, W) float in [0, 1], any H and W -> restored (N, 3, H, W) in [0, 1].

    Args:
        model: an MPRNet (any module returning a list whose first item is the final image).
        device: where to run; the model is moved there.
        precision: 'fp32' (exact), 'fp16' or 'bf16' autocast.
        fast: channels-last memory format, batched stage-1/2 patches and cuDNN autotuning;
            the same function computed in another order.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device = torch.device('cpu'),
                 precision: str = 'fp32', fast: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        self.fast = fast
        self.model = model.to(self.device).eval()
        if fast:
            if hasattr(self.model, 'batch_patches'):
                self.model.batch_patches = True
            self.model = self.model.to(memory_format=torch.channels_last)
            if self.device.type == 'cuda':
                torch.backends.cudnn.benchmark = True

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Model output (stage 3) for an input whose sides are already multiples of 8."""
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            return self.model(x)[0].float()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        padded, size = pad_to_multiple(x)
        return crop_to(self.forward_padded(padded), size).clamp_(0, 1)
