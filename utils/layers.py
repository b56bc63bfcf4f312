"""The layers MPRNet.py runs its inference pass with, beside the plain convolutions: residual sums
and products written into a temporary (``add_into``, ``mul_into``), the shared PReLU that works in
place on the CPU (``SharedPReLU``), and the nested-tensor batching of the patch stages
(``cat_tree``, ``split_tree``). Each computes the same float operations on the same operands in
the same order as the plain op, so outputs are the same bit for bit (tests/test_inplace_inference.py).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['add_into', 'mul_into', 'SharedPReLU', 'cat_tree', 'split_tree']


def add_into(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b. Without autograd recording, and when the sum has a's dtype, it is written into
    `a`, which must be a temporary of the caller's own: the same additions, bit for bit."""
    if torch.is_grad_enabled() or a.dtype != b.dtype:
        return a + b
    return a.add_(b)


def mul_into(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a * b, into `a` under the same conditions as ``add_into``."""
    if torch.is_grad_enabled() or a.dtype != b.dtype:
        return a * b
    return a.mul_(b)


def _cpu_autocast_dtype() -> Optional[torch.dtype]:
    """The CPU autocast dtype while autocast is on for the CPU, else None."""
    if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
        return torch.get_autocast_dtype('cpu') if torch.is_autocast_enabled('cpu') else None
    return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


_is_compiling = getattr(torch.compiler, 'is_compiling', lambda: False)


class SharedPReLU(nn.PReLU):
    """The network's one PReLU (a single slope shared by every channel-attention block).

    In inference on the CPU, in fp32 or bf16 (bf16 autocast included), it overwrites its
    input, like ``nn.ReLU(inplace=True)``: ``leaky_relu_`` with the slope PReLU would use
    computes the same ``x if x > 0 else slope * x`` bit for bit, without a new tensor. Its
    input is always a convolution's fresh output. Elsewhere (autograd recording, other
    dtypes, CUDA, where reading the slope would synchronise, torch.compile, torch.export and
    tracing, whose graphs must keep the slope a tensor) it is ``nn.PReLU``.
    """

    def _inplace_slope(self, x: torch.Tensor) -> Optional[float]:
        """The slope to apply to `x` in place, or None where the out-of-place PReLU must run."""
        if torch.is_grad_enabled() or not x.is_cpu:
            return None
        weight = self.weight
        # Under autocast PReLU runs in the autocast dtype, its slope rounded to that dtype.
        dtype = _cpu_autocast_dtype() or weight.dtype
        if (x.dtype != dtype or dtype not in (torch.float32, torch.bfloat16) or weight.numel() != 1
                or _is_compiling() or torch.jit.is_tracing()):  # a graph must keep the slope a tensor
            return None
        return (weight if weight.dtype == dtype else weight.to(dtype)).item()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope = self._inplace_slope(x)
        return F.prelu(x, self.weight) if slope is None else F.leaky_relu_(x, slope)


def cat_tree(items: Sequence, dim: int = 0):
    """Concatenate matching tensors of several equally structured (nested list/tuple) items."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(items), dim)
    return type(first)(cat_tree(group, dim) for group in zip(*items))


def split_tree(tree, parts: int, dim: int = 0) -> list:
    """Inverse of cat_tree: one nested structure -> `parts` structures."""
    if isinstance(tree, torch.Tensor):
        return list(tree.chunk(parts, dim))
    return [type(tree)(branch) for branch in zip(*(split_tree(t, parts, dim) for t in tree))]
