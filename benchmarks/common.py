"""What the inference and training benchmarks share: timing, parsing, formatting, device names."""
import argparse
import math
import os
import platform
import sys
import time
from typing import Optional

import torch

from utils.device import cpu_flags
from utils.files.atomic import write_atomically

GIB = 2 ** 30


def timed_ms(fn, device: torch.device) -> float:
    """Duration of fn() in ms: CUDA events on a GPU (device time), perf_counter on CPU."""
    if device.type == 'cuda':
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def fmt(value: Optional[float], spec: str) -> str:
    """A table cell: '-' for a missing or NaN value, 'exact' for infinity (e.g. PSNR of identical outputs)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    if math.isinf(value):
        return 'exact'
    return format(value, spec)


def cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# /proc/cpuinfo flags that decide how fast reduced precision runs on a CPU.
CPU_PRECISION_FLAGS = ('avx512f', 'avx512_bf16', 'amx_bf16', 'avx512_fp16', 'amx_fp16')


def onednn_native(precision: str) -> bool:
    """Whether PyTorch's oneDNN runs `precision` ('bf16' or 'fp16') convolutions natively on this CPU."""
    try:
        return bool(getattr(torch.ops.mkldnn, f'_is_mkldnn_{precision}_supported')())
    except (AttributeError, RuntimeError):
        return False


def cpu_precision_description() -> str:
    """'avx512f yes, avx512_bf16 yes, amx_bf16 no, ...; oneDNN native bf16 yes, fp16 no': what was read, not assumed."""
    flags = cpu_flags()
    if flags is None:
        listed = 'CPU flags unreadable (no /proc/cpuinfo)'
    else:
        listed = ', '.join(f'{name} {"yes" if name in flags else "no"}' for name in CPU_PRECISION_FLAGS)
    return (f'{listed}; oneDNN native bf16 {"yes" if onednn_native("bf16") else "no"}, '
            f'fp16 {"yes" if onednn_native("fp16") else "no"}')


def device_description(device: torch.device, threads: Optional[int] = None) -> str:
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        return (f'{props.name} ({props.total_memory / GIB:.0f} GiB), CUDA {torch.version.cuda}, '
                f'cuDNN {torch.backends.cudnn.version()}')
    threads = threads or torch.get_num_threads()
    return f'CPU {cpu_name()}, {threads} threads ({os.cpu_count()} cores visible)'


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, names) -> None:
    """parser.error for any of the integer options `names` given below 1 (None = not given)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name} must be at least 1, got {value}')


def print_report(text: str, out: Optional[str]) -> None:
    """Print the report; with --out also write it there (atomically, saying whether it replaced a file)."""
    if out:
        replaced = os.path.exists(out)
        write_atomically(out, lambda f: f.write(text.encode()))
        print(f'{"replaced" if replaced else "wrote"} {out}', file=sys.stderr)
    print(text)
