"""Which device to run on and what its CPU computes natively: probes that the inference, the
training and the benchmarks ask alike, so they sit below every package of utils."""
from typing import FrozenSet, Optional

import torch

__all__ = ['resolve_device', 'cpu_flags', 'cpu_has_native_bf16', 'has_native_bf16']


def resolve_device(name: str = 'auto') -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error, not a silent CPU run."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda was asked for but no CUDA GPU is visible; use --device cpu')
    return device


def cpu_flags() -> Optional[FrozenSet[str]]:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where it cannot be read."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), read from /proc/cpuinfo.

    Without it bf16 autocast is emulated and slower than fp32; where the flags
    cannot be read (not Linux) the answer is False, which keeps fp32.
    """
    return bool((cpu_flags() or frozenset()) & {'avx512_bf16', 'amx_bf16'})


def has_native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or
    AMX-BF16 (cpu_has_native_bf16). The precision choice of inference and training ask this alike."""
    if device.type == 'cuda':
        return torch.cuda.is_bf16_supported()
    return device.type == 'cpu' and cpu_has_native_bf16()
