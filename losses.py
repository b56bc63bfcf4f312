"""Training losses as published: Charbonnier, the Laplacian-pyramid edge loss, and their
sum over MPRNet's three stage outputs (``MultiStageLoss``, OPTIM.LOSS).

All work on any device and dtype: the edge loss keeps its 5x5 Gaussian in a
small per-(device, dtype) cache instead of pinning it to CUDA at construction.
"""
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.errors import ConfigError  # not utils.training.config: importing the losses needs no yacs or PyYAML

__all__ = ['CharbonnierLoss', 'EdgeLoss', 'MultiStageLoss', 'LOSSES', 'gaussian_kernel_5', 'laplacian']

LOSSES = ('charbonnier_edge', 'charbonnier_clamped')  # the values of OPTIM.LOSS


class CharbonnierLoss(nn.Module):
    """mean(sqrt((x - y)^2 + eps^2)): a smooth L1."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = x - y
        return torch.mean(torch.sqrt(diff * diff + self.eps * self.eps))


def gaussian_kernel_5(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """outer([.05, .25, .4, .25, .05]) as a (1, 1, 5, 5) kernel of `dtype`; it sums to 1."""
    # Built in float64 so that a float64 kernel is not a rounded float32 one.
    k = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05], dtype=torch.float64)
    return torch.outer(k, k)[None, None].to(dtype)


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 5x5 blur with replicate padding: (N, C, H, W) -> same.

    `kernel` is (1, 1, 5, 5), shared by every channel, or already (C, 1, 5, 5).
    """
    channels = x.shape[1]
    if kernel.shape[0] != channels:
        kernel = kernel.expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode='replicate'), kernel, groups=channels)


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
        self._base = gaussian_kernel_5(torch.float64)
        self._kernels: Dict[Tuple[torch.device, torch.dtype, int], torch.Tensor] = {}

    def _kernel(self, like: torch.Tensor) -> torch.Tensor:
        """The (C, 1, 5, 5) kernel for `like`'s device, dtype and channels, built once."""
        key = (like.device, like.dtype, like.shape[1])
        if key not in self._kernels:
            # Contiguous per-channel copy: an expanded (stride-0) weight would be
            # copied again inside every convolution.
            self._kernels[key] = self._base.to(device=like.device, dtype=like.dtype).repeat(
                like.shape[1], 1, 1, 1)
        return self._kernels[key]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kernel = self._kernel(x)
        return self.charbonnier(laplacian(x, kernel), laplacian(y, kernel))


class MultiStageLoss(nn.Module):
    """The published loss over the three stage outputs, computed in float32.

    charbonnier_edge:    sum_s Charbonnier(out_s, y) + edge_weight * sum_s Edge(out_s, y)
                         (Deblurring, Deraining)
    charbonnier_clamped: sum_s Charbonnier(clamp(out_s, 0, 1), y) (Denoising)
    """

    def __init__(self, kind: str = 'charbonnier_edge', edge_weight: float = 0.05):
        super().__init__()
        if kind not in LOSSES:
            raise ConfigError(f"OPTIM.LOSS must be one of {', '.join(LOSSES)}, got {kind!r}")
        self.kind, self.edge_weight = kind, edge_weight
        self.charbonnier = CharbonnierLoss()
        self.edge = EdgeLoss()

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        outputs = [o.float() for o in outputs]
        target = target.float()
        if self.kind == 'charbonnier_clamped':
            return sum(self.charbonnier(o.clamp(0, 1), target) for o in outputs)
        char = sum(self.charbonnier(o, target) for o in outputs)
        edge = sum(self.edge(o, target) for o in outputs)
        return char + self.edge_weight * edge
