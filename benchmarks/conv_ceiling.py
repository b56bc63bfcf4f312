"""How fast CPU inference can get without changing the function: the convolution ceiling.

MPRNet on a CPU spends nearly all its time in convolutions. This script
measures, in one process and for one preset and image size:

- the published-order fp32 forward (the benchmarks' baseline; MPRNet.py's
  forward is the published one), the exact path (the same forward through
  a second copy), the fp32 fast path and bf16 autocast + fast path (the demo's `auto`
  on CPUs with native bf16): median wall time;
- for the fast fp32 and bf16 paths, the time inside convolution kernels
  (torch.profiler: aten::mkldnn_convolution and aten::_slow_conv2d_forward)
  and its share of the forward;
- the ceiling: published time / bf16 convolution time, the speed-up `auto`
  would reach if everything but the convolutions took no time at all. No
  exact rewrite of the network can beat it; only faster convolution kernels
  (hardware, or a oneDNN that uses it better) or fewer FLOPs can.

    python benchmarks/conv_ceiling.py --task Deblurring --size 256x256 --threads 2
"""
import argparse
import copy
import os
import statistics
import sys
from typing import Callable, Dict

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from MPRNet import MPRNet  # noqa: E402
from benchmarks.common import cpu_name, cpu_precision_description, timed_ms  # noqa: E402
from utils.inference.cli import size_type, task_type  # noqa: E402
from utils.allocator import keep_freed_memory  # noqa: E402
from utils.inference.restorer import Restorer  # noqa: E402

CONV_OPS = ('aten::mkldnn_convolution', 'aten::_slow_conv2d_forward')


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernels on the first call
    return statistics.median(timed_ms(fn, torch.device('cpu')) for _ in range(repeats))


def conv_ms(fn: Callable[[], object]) -> float:
    """Milliseconds one call of fn spends in convolution kernels (self time, as the profiler sees it)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in CONV_OPS) / 1e3


def measure(task: str, height: int, width: int, repeats: int) -> Dict[str, float]:
    torch.manual_seed(0)
    model = MPRNet.for_task(task).eval()
    x = torch.rand(1, 3, height, width)
    cpu = torch.device('cpu')
    # All four through a Restorer (pad, forward, crop, clamp), as infer_speed.py times them; each on
    # its own copy, since the fast path switches its model to channels-last and batched patches.
    paths = {'published': Restorer(copy.deepcopy(model), cpu),  # MPRNet.py's forward is the published one
             'exact': Restorer(copy.deepcopy(model), cpu),
             'fp32 fast': Restorer(copy.deepcopy(model), cpu, fast=True),
             'bf16 fast': Restorer(copy.deepcopy(model), cpu, precision='bf16', fast=True)}
    times = {name: median_ms(lambda r=r: r(x), repeats) for name, r in paths.items()}
    convs = {name: conv_ms(lambda r=paths[name]: r(x)) for name in ('fp32 fast', 'bf16 fast')}
    return {'times': times, 'convs': convs}


def report(task: str, size: str, threads: int, result: Dict) -> str:
    times, convs = result['times'], result['convs']
    base = times['published']
    lines = [f'{task} {size}, {threads} threads, {cpu_name()} ({cpu_precision_description()})', '',
             '| path | time (ms) | speed-up | in convolutions (ms) | share |', '|---|---:|---:|---:|---:|']
    for name, ms in times.items():
        conv = convs.get(name)
        conv_cells = f'{conv:.0f} | {100 * conv / ms:.0f}%' if conv is not None else '- | -'
        lines.append(f'| {name} | {ms:.0f} | {base / ms:.2f}x | {conv_cells} |')
    lines += ['', f'bf16 / fp32 convolution speed: {convs["fp32 fast"] / convs["bf16 fast"]:.2f}x. '
              f'Ceiling of bf16 + fast against published (convolutions only, everything else free): '
              f'{base / convs["bf16 fast"]:.2f}x; measured {base / times["bf16 fast"]:.2f}x.']
    return '\n'.join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', type=task_type, default='Deblurring', help='preset to measure (default: %(default)s)')
    parser.add_argument('--size', type=size_type, default='256x256', help='HxW of the input image (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads (default: %(default)s)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls per path after one warm-up (default: %(default)s)')
    args = parser.parse_args(argv)
    height, width = args.size
    if args.threads < 1 or args.repeats < 1:
        parser.error('--threads and --repeats must be at least 1')
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    text = report(args.task, f'{height}x{width}', args.threads, measure(args.task, height, width, args.repeats))
    print(text)
    return text


if __name__ == '__main__':
    main()
