"""Training losses as published: Charbonnier and the Laplacian-pyramid edge loss.

Both work on any device and dtype: the edge loss keeps its 5x5 Gaussian in a
small per-(device, dtype) cache instead of pinning it to CUDA at construction.
"""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['CharbonnierLoss', 'EdgeLoss', 'gaussian_kernel_5', 'laplacian']


class CharbonnierLoss(nn.Module):
    """mean(sqrt((x - y)^2 + eps^2)): a smooth L1."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = x - y
        return torch.mean(torch.sqrt(diff * diff + self.eps * self.eps))


def gaussian_kernel_5() -> torch.Tensor:
    """outer([.05, .25, .4, .25, .05]) as a (1, 1, 5, 5) float32 kernel; it sums to 1."""
    k = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])
    return torch.outer(k, k)[None, None]


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 5x5 blur with replicate padding: (N, C, H, W) -> same."""
    channels = x.shape[1]
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode='replicate'), kernel.expand(channels, 1, 5, 5),
                    groups=channels)


def laplacian(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """One Laplacian-pyramid level: x - G(up(down(G(x)))).

    down keeps every second pixel; up writes 4x those values back at the
    same positions of a zero image (the 4 restores the mean lost to zeros).
    """
    blurred = _blur(x, kernel)
    sparse = torch.zeros_like(blurred)
    sparse[:, :, ::2, ::2] = blurred[:, :, ::2, ::2] * 4
    return x - _blur(sparse, kernel)


class EdgeLoss(nn.Module):
    """Charbonnier distance between the Laplacians of x and y."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.charbonnier = CharbonnierLoss(eps)
        self._base = gaussian_kernel_5()
        self._kernels: Dict[Tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _kernel(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._kernels:
            self._kernels[key] = self._base.to(device=like.device, dtype=like.dtype)
        return self._kernels[key]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kernel = self._kernel(x)
        return self.charbonnier(laplacian(x, kernel), laplacian(y, kernel))
