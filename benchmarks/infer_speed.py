"""Inference speed of MPRNet: the published code's behaviour against this project's paths, in one run.

For every model (each task preset, and the bundled compact models) and image
size, each variant restores the same natural-looking image with the same
weights. A row reports the median of repeated timed calls after warm-up
(CUDA events on a GPU, perf_counter on CPU), images per second, GFLOP/s
(convolution FLOPs counted once with FlopCounterMode), the speed-up over the
`published` row, peak memory, and how far the output is from the exact fp32
path (max absolute difference and PSNR). The table is printed last and
written as markdown with --out.

On the CPU, `published` (MPRNet.py's plain forward: the published order of
operations and allocations) and `exact-system-malloc` run each in a
fresh process of their own with MPRNET_ALLOCATOR=system, i.e. glibc's default malloc as
the published code gets it; the other rows run in this process after
utils.allocator.keep_freed_memory(), as the project's entry points do.

    python benchmarks/infer_speed.py --device cpu --threads 2 --out benchmarks/results/infer_cpu.md
    python benchmarks/infer_speed.py --device cuda --out benchmarks/results/infer_cuda.md
"""
import argparse
import copy
import ctypes
import datetime
import gc
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from MPRNet import PRESETS, MPRNet  # noqa: E402
from utils.allocator import ENV_SWITCH, keep_freed_memory  # noqa: E402
from utils.files.checkpoint import build_model  # noqa: E402
from utils.inference.restorer import Restorer, choose_precision  # noqa: E402
from utils.device import cpu_has_native_bf16, resolve_device  # noqa: E402
from utils.padding import pad_to_multiple  # noqa: E402
from benchmarks.common import (GIB, cpu_precision_description, device_description, fmt,  # noqa: E402
                               print_report, require_positive, timed_ms)
from utils.inference.cli import size_type, task_type  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """One way of running the model.

    `precision` 'auto' is the demo's choice (utils.inference.restorer.choose_precision): bf16 autocast
    where the device runs it natively (a GPU with bf16, a CPU with avx512_bf16 or amx_bf16),
    else fp32. `system_malloc` rows run, on the CPU, in a fresh process each under
    glibc's default allocator.
    """
    name: str            # command-line name
    label: str           # name in the table
    precision: str       # 'fp32' | 'bf16' | 'fp16' | 'auto' (autocast)
    fast: bool           # Restorer(fast=True): batched patches + channels-last + cudnn.benchmark
    batch_patches: bool  # stage-1 quadrants / stage-2 halves as one batched call
    about: str
    system_malloc: bool = False


VARIANTS = [
    Variant('published', 'published', 'fp32', False, False,
            'the published code\'s order of operations and allocations (MPRNet.py\'s plain forward), '
            'fp32, contiguous; on CPU with glibc\'s default malloc', system_malloc=True),
    Variant('exact-system-malloc', 'exact (default allocator)', 'fp32', False, False,
            'the exact path (Restorer defaults) in the same process as published: glibc\'s default malloc',
            system_malloc=True),
    Variant('exact', 'exact', 'fp32', False, False,
            'the exact path (Restorer defaults: fp32, published order, contiguous); on CPU after '
            'utils.allocator.keep_freed_memory(), as the project\'s scripts run it'),
    Variant('fp32+batched', 'fp32+batched', 'fp32', False, True, 'fp32, quadrants and halves batched'),
    Variant('fp32-fast', 'fast fp32', 'fp32', True, True,
            'Restorer(fast=True): batched + channels-last + cudnn.benchmark, fp32'),
    Variant('auto', 'auto', 'auto', True, True,
            'the demo\'s --precision auto (utils.inference.restorer.choose_precision): bf16 autocast + fast where '
            'the device has native bf16, else fast fp32'),
    Variant('bf16', 'bf16', 'bf16', False, False, 'bf16 autocast, per-quadrant loop, contiguous'),
    Variant('bf16-fast', 'bf16-fast', 'bf16', True, True, "Restorer(fast=True, precision='bf16')"),
    Variant('fp16', 'fp16', 'fp16', False, False, 'fp16 autocast, per-quadrant loop, contiguous'),
    Variant('fp16-fast', 'fp16-fast', 'fp16', True, True, "Restorer(fast=True, precision='fp16')"),
]
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}
CPU_DEFAULT_VARIANTS = ['published', 'exact-system-malloc', 'exact', 'fp32-fast', 'auto']
CUDA_DEFAULT_VARIANTS = ['published', 'fp32+batched', 'fp32-fast', 'bf16', 'bf16-fast', 'fp16', 'fp16-fast']

# Sizes as W x H: a 720p video frame for deblurring, a typical rain-dataset image, an SIDD block.
CUDA_SIZES = {'Deblurring': (1280, 720), 'Deraining': (480, 320), 'Denoising': (256, 256)}
CPU_SIZES = [(256, 256), (480, 320)]
# The compact configuration of the bundled weights (pretrained_models/synthetic/training.yml).
COMPACT = dict(n_feat=24, scale_unetfeats=12, scale_orsnetfeats=8, num_cab=4)


def bundled_compact_path(task: str) -> str:
    return os.path.join(ROOT, 'pretrained_models', 'synthetic', f'model_{task.lower()}_synthetic.pth')


@dataclass
class Row:
    task: str                 # the model's name in the table: 'Deraining' or 'Deraining compact'
    size: Tuple[int, int]
    variant: Variant
    median_ms: float = math.nan
    images_per_s: float = math.nan
    gflops_per_s: float = math.nan
    peak_gib: Optional[float] = None
    max_abs_diff: float = math.nan
    psnr_db: float = math.nan
    finite: bool = True  # False: the variant's output held inf or NaN (e.g. fp16 overflow)
    error: str = ''
    resolved: str = ''   # what an 'auto' row ran, e.g. 'bf16 + fast'


@dataclass
class Measured:
    """One variant's raw results: the first warm-up call's output and the timed calls."""
    out: Optional[torch.Tensor] = None
    times_ms: List[float] = field(default_factory=list)
    peak_gib: Optional[float] = None
    error: str = ''


# ---------------------------------------------------------------- inputs and models



def natural_input(size: Tuple[int, int], batch: int) -> torch.Tensor:
    """(batch, 3, H, W) in [0, 1]: scikit-image's astronaut photo resized to W x H
    (later images of a batch are mirrored copies) rather than noise, so activations
    have the magnitudes of real use."""
    # Deliberately lazy: scikit-image's import is slow and only this source of photos needs it.
    from skimage import data
    w, h = size
    photo = data.astronaut()
    shrinking = w * h < photo.shape[0] * photo.shape[1]
    img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    x = torch.from_numpy(np.clip(img.astype(np.float32) / 255.0, 0, 1)).permute(2, 0, 1)
    return torch.stack([x if i % 2 == 0 else x.flip(-1) for i in range(batch)])


def make_model(task: str, weights_dir: Optional[str], seed: int) -> Tuple[MPRNet, str]:
    """The task's preset with official weights if found in `weights_dir`, else a seeded random init."""
    if weights_dir:
        path = os.path.join(weights_dir, f'model_{task.lower()}.pth')
        if not os.path.isfile(path):
            raise FileNotFoundError(f'--weights {weights_dir}: no {os.path.basename(path)} there '
                                    f'(expected the official file name for {task})')
        return build_model(task, weights=path).eval(), path
    torch.manual_seed(seed)
    return MPRNet.for_task(task).eval(), f'random init (default PyTorch init, seed {seed})'


def make_compact_model(task: str, mode: str, seed: int) -> Tuple[Optional[MPRNet], str]:
    """The bundled compact model of `task` ('bundled'; None with a reason if its file is missing),
    or the compact configuration with seeded random weights ('random')."""
    if mode == 'random':
        torch.manual_seed(seed)
        return MPRNet(**COMPACT).eval(), f'compact {COMPACT}, random init (seed {seed})'
    path = bundled_compact_path(task)
    if not os.path.isfile(path):
        return None, (f'{os.path.relpath(path, ROOT)} not found, compact {task} skipped '
                      '(--compact random times the same configuration with random weights)')
    return build_model(task, weights=path).eval(), os.path.relpath(path, ROOT)


def count_flops(config: dict, padded_hw: Tuple[int, int], batch: int) -> int:
    """FLOPs of one forward (convolutions; a multiply-add counts 2), counted on the meta device."""
    with torch.device('meta'):
        model = MPRNet(**config).eval()
        x = torch.empty(batch, 3, *padded_hw)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops()


# ---------------------------------------------------------------- measuring

def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _rss_bytes() -> Optional[int]:
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def _release_freed_memory() -> None:
    """Return freed heap to the OS (glibc), so the next RSS baseline is not inflated by caches."""
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block: CUDA max_memory_allocated (weights, input and activations), or on
    CPU the growth of the resident set above its level at entry, sampled every millisecond by a
    thread (PyTorch ops release the GIL). `gib` is None where it cannot be measured."""

    def __init__(self, device: torch.device):
        self.device, self.gib = device, None
        self._stop = threading.Event()

    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _release_freed_memory()
            self._base = self._peak = _rss_bytes()
            if self._base is not None:
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        return self

    def restart_cuda_peak(self):
        """Forget the CUDA peak so far (the first call's cuDNN autotuning workspaces)."""
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)

    def _sample(self):
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            self.gib = torch.cuda.max_memory_allocated(self.device) / GIB
        elif self._base is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
            self.gib = (self._peak - self._base) / GIB
        return False


def faithfulness(out: torch.Tensor, reference: torch.Tensor) -> Tuple[float, float]:
    """Max absolute difference and PSNR (peak 1) of `out` against `reference`, both in [0, 1]."""
    diff = out.double() - reference.double()
    mse = diff.pow(2).mean().item()
    return diff.abs().max().item(), (math.inf if mse == 0 else 10 * math.log10(1.0 / mse))


def set_tf32(enabled: bool) -> None:
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


def exact_reference(model: MPRNet, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The exact path's output on CPU: fp32, published order, TF32 off (true fp32 convolutions)."""
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    set_tf32(False)
    try:
        return Restorer(copy.deepcopy(model), device)(x.to(device)).cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def resolve_precision(variant: Variant, device: torch.device) -> Tuple[str, bool]:
    """(autocast precision, fast) a variant runs; 'auto' asks the demo's own choice (choose_precision)."""
    if variant.precision != 'auto':
        return variant.precision, variant.fast
    precision, fast, _ = choose_precision('auto', variant.fast, device)
    return precision, fast


def measure(variant: Variant, task: str, model: MPRNet, x: torch.Tensor, device: torch.device, warmup: int,
            repeats: int, on_call: Callable[[], None] = lambda: None) -> Measured:
    """Warm-up calls (memory watched, first output kept), then timed calls, of one variant."""
    result = Measured()
    # PyTorch's defaults (TF32 convolutions, no autotuning) for everything but the fast rows.
    torch.backends.cudnn.benchmark = False
    model = copy.deepcopy(model)
    model.batch_patches = variant.batch_patches
    x = x.to(device)
    try:
        # Memory is watched over the warm-up calls only, so the sampling never touches the timings.
        with PeakMemory(device) as memory:
            precision, fast = resolve_precision(variant, device)
            # Made ready in place (it is this function's own copy), so the Restorer runs it without another.
            model = model.to(device).eval()
            if fast:
                model.batch_patches = True
                model = model.to(memory_format=torch.channels_last)
            restorer = Restorer(model, device, precision=precision, fast=fast)
            result.out = restorer(x).cpu()  # the first warm-up call, kept for faithfulness
            on_call()
            if warmup > 1:
                memory.restart_cuda_peak()
            for _ in range(warmup - 1):
                restorer(x)
                on_call()
            synchronize(device)
        for _ in range(repeats):
            result.times_ms.append(timed_ms(lambda: restorer(x), device))
            on_call()
    except torch.cuda.OutOfMemoryError:
        result.error = 'out of memory'
    finally:
        torch.backends.cudnn.benchmark = False
    result.peak_gib = memory.gib if not result.error else None
    return result


# ---------------------------------------------------------------- the default-allocator process

def _child_environment() -> Dict[str, str]:
    """This environment with the project's allocator setting off and glibc's malloc variables removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('MALLOC_') and k != 'GLIBC_TUNABLES'}
    env[ENV_SWITCH] = 'system'
    return env


def measure_in_system_malloc_process(variants: List[Variant], task: str, model: MPRNet, x: torch.Tensor,
                                     device: torch.device, warmup: int, repeats: int) -> Dict[str, Measured]:
    """measure() each variant in its own fresh Python process that runs glibc's default malloc
    (mallopt settings cannot be undone in this process). Same weights, input and thread count.

    One process per variant: under the default malloc the heap a previous variant left behind
    changes the next one's page faults, and two variants timed one after the other in one
    process differed by up to 15% depending on which went first.
    """
    return {v.name: _measure_in_fresh_process(v, task, model, x, device, warmup, repeats) for v in variants}


def _measure_in_fresh_process(variant: Variant, task: str, model: MPRNet, x: torch.Tensor, device: torch.device,
                              warmup: int, repeats: int) -> Measured:
    with tempfile.TemporaryDirectory(prefix='mprnet_bench_') as tmp:
        request, answer = os.path.join(tmp, 'request.pt'), os.path.join(tmp, 'answer.pt')
        torch.save({'task': task, 'config': dict(model.config), 'state_dict': model.state_dict(), 'input': x,
                    'variant': variant.name, 'device': str(device), 'warmup': warmup,
                    'repeats': repeats, 'threads': torch.get_num_threads()}, request)
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker', request, answer],
                              env=_child_environment(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f'the default-allocator process failed (exit {proc.returncode}):\n'
                               f'{proc.stderr[-3000:]}')
        results = torch.load(answer, weights_only=True)
    if results['allocator'] != 'off':
        raise RuntimeError(f"the default-allocator process ran with allocator state {results['allocator']!r}")
    r = results['row']
    return Measured(r['out'], r['times_ms'], r['peak_gib'], r['error'])


def worker_main(request_path: str, answer_path: str) -> None:
    """The fresh process's side of _measure_in_fresh_process: one variant, then exit."""
    state = keep_freed_memory()  # 'off': MPRNET_ALLOCATOR=system is set by the parent
    request = torch.load(request_path, weights_only=True)
    torch.set_num_threads(request['threads'])
    model = MPRNet(**request['config']).eval()
    model.load_state_dict(request['state_dict'], strict=True)
    m = measure(VARIANT_BY_NAME[request['variant']], request['task'], model, request['input'],
                torch.device(request['device']), request['warmup'], request['repeats'])
    torch.save({'allocator': state,
                'row': {'out': m.out, 'times_ms': m.times_ms, 'peak_gib': m.peak_gib, 'error': m.error}},
               answer_path)


# ---------------------------------------------------------------- the table

def _speedup(base_ms: float, ms: float) -> str:
    return '-' if math.isnan(base_ms) or math.isnan(ms) else f'{base_ms / ms:.2f}x'


def markdown_table(rows: List[Row], device: torch.device) -> str:
    mem_label = 'peak GiB (allocated)' if device.type == 'cuda' else 'peak RSS growth GiB'
    lines = [f'| model | size (WxH) | variant | median ms | images/s | GFLOP/s | speed-up | {mem_label} | '
             'max abs diff | PSNR vs exact dB |',
             '|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
    published = {(r.task, r.size): r.median_ms for r in rows if r.variant.name == 'published'}
    for r in rows:
        size = f'{r.size[0]}x{r.size[1]}'
        label = r.variant.label + (f' ({r.resolved})' if r.resolved else '')
        if r.error:
            lines.append(f'| {r.task} | {size} | {label} | {r.error} | - | - | - | - | - | - |')
            continue
        base = published.get((r.task, r.size), math.nan)
        faithful = (f'{fmt(r.max_abs_diff, ".2e")} | {fmt(r.psnr_db, ".1f")}' if r.finite
                    else 'non-finite output | -')
        lines.append(f'| {r.task} | {size} | {label} | {fmt(r.median_ms, ".1f")} | '
                     f'{fmt(r.images_per_s, ".2f")} | {fmt(r.gflops_per_s, ".0f")} | {_speedup(base, r.median_ms)} | '
                     f'{fmt(r.peak_gib, ".2f")} | {faithful} |')
    return '\n'.join(lines)


def report(rows: List[Row], args, device: torch.device, weights: Dict[str, str], flops: Dict[tuple, int],
           allocator: str, notes: List[str]) -> str:
    variants = sorted({r.variant.name: r.variant for r in rows}.values(), key=VARIANTS.index)
    on_cuda = device.type == 'cuda'
    memory_note = ('torch.cuda.max_memory_allocated over the warm-up calls after the first (which '
                   'also autotunes): weights, input and activations' if on_cuda else
                   'growth of the resident set above its level before the variant ran, sampled every '
                   'millisecond over the warm-up calls after returning freed heap to the OS (glibc '
                   'malloc_trim); approximate')
    head = [
        '# MPRNet inference speed',
        '',
        f'- Device: {device_description(device, torch.get_num_threads())}',
    ]
    if not on_cuda:
        head += [
            f'- CPU features (read from /proc/cpuinfo and asked of oneDNN): {cpu_precision_description()}',
            f'- Allocator: this process ran utils.allocator.keep_freed_memory() -> {allocator!r}; the rows '
            'published and exact (default allocator) ran each in a fresh process with '
            'MPRNET_ALLOCATOR=system and no MALLOC_* variables: glibc\'s default malloc.',
        ]
    head += [
        f'- PyTorch {torch.__version__}, Python {platform.python_version()}, '
        f'{datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}',
        f'- Command: `python {shlex.join(sys.argv)}`',
        f'- Batch {args.batch}; {args.warmup} warm-up and {args.repeats} timed calls per row, one row after '
        'another; median reported; ' + ('CUDA-event timing.' if on_cuda else 'perf_counter timing.'),
        '- Each call is the whole `Restorer` path: pad to a multiple of 8, forward, crop, clamp.',
        '- GFLOP/s: the convolution FLOPs of one call (torch.utils.flop_counter.FlopCounterMode, a '
        'multiply-add counts 2) over the median time. FLOPs per call: '
        + '; '.join(f'{task} {w}x{h}: {n / 1e9:.1f} G' for (task, (w, h)), n in flops.items()) + '.',
        f'- Peak memory: {memory_note}.',
        '- Faithfulness: max |difference| and PSNR (peak 1) against the exact path\'s output on the same '
        'input and weights: fp32, published order' + (', TF32 off. On CUDA the published row itself '
                                                      'differs from it because PyTorch runs fp32 convolutions '
                                                      'in TF32 by default.' if on_cuda else '.'),
        '- Weights: ' + '; '.join(f'{task}: {src}' for task, src in weights.items()),
        '- Input: scikit-image astronaut photo resized to each size.',
        '',
        '| variant | what runs |',
        '|---|---|',
        *[f'| {v.label} | {v.about} |' for v in variants],
        '',
    ]
    return '\n'.join(head + [f'- Note: {n}' for n in notes] + ([''] if notes else []) +
                     [markdown_table(rows, device), ''])


# ---------------------------------------------------------------- command line

def default_variants(device: torch.device) -> Tuple[List[Variant], List[str]]:
    """On CUDA every precision; on CPU the allocator and precision rows of docs/PERFORMANCE.md."""
    if device.type == 'cuda':
        return [VARIANT_BY_NAME[n] for n in CUDA_DEFAULT_VARIANTS], []
    notes = []
    if not cpu_has_native_bf16():
        notes.append('this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag), so the auto row runs fast '
                     'fp32: bf16 autocast would fall back to a reference convolution tens of times slower')
    return [VARIANT_BY_NAME[n] for n in CPU_DEFAULT_VARIANTS], notes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--device', default='auto', help="'auto' (CUDA if available), 'cuda', 'cuda:1' or 'cpu'")
    p.add_argument('--tasks', nargs='+', default=list(PRESETS), type=task_type,
                   help='tasks to time: Deblurring Deraining Denoising')
    p.add_argument('--presets', action=argparse.BooleanOptionalAction, default=True,
                   help="time each task's published preset")
    p.add_argument('--compact', choices=['bundled', 'random', 'none'], default='bundled',
                   help="also time each task's compact model: 'bundled' loads "
                        'pretrained_models/synthetic/model_<task>_synthetic.pth where it exists, '
                        f"'random' builds the compact configuration {COMPACT} with seeded random weights")
    p.add_argument('--sizes', nargs='+', type=size_type, default=None,
                   help='image sizes WIDTHxHEIGHT; every model runs at every size. Default: on CPU 256x256 '
                        'and 480x320; on CUDA Deblurring 1280x720, Deraining 480x320, Denoising 256x256')
    p.add_argument('--variants', nargs='+', choices=list(VARIANT_BY_NAME), default=None,
                   help=f'rows to run (default on CPU: {" ".join(CPU_DEFAULT_VARIANTS)}; '
                        f'on CUDA: {" ".join(CUDA_DEFAULT_VARIANTS)})')
    p.add_argument('--batch', type=int, default=1, help='images per call')
    p.add_argument('--warmup', type=int, default=None,
                   help='untimed calls before timing, at least 1 (default: 10 on CUDA, 1 on CPU)')
    p.add_argument('--repeats', type=int, default=None,
                   help='timed calls; the median is reported (default: 30 on CUDA, 3 on CPU)')
    p.add_argument('--threads', type=int, default=None,
                   help='CPU threads for PyTorch (torch.set_num_threads), also in the default-allocator '
                        "process; default: PyTorch's choice")
    p.add_argument('--weights', default=None,
                   help='folder with the official model_deblurring.pth / model_deraining.pth / '
                        'model_denoising.pth for the presets; default: seeded random weights')
    p.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    p.add_argument('--out', default=None, help='write the report (markdown) to this file as well')
    p.add_argument('--worker', nargs=2, default=None, metavar=('REQUEST', 'ANSWER'), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    require_positive(p, args, ('batch', 'warmup', 'repeats', 'threads'))
    return args


def _models(args, notes: List[str]):
    """(name in the table, task, model, weights description) for every model to time."""
    for task in args.tasks:
        if args.presets:
            model, source = make_model(task, args.weights, args.seed)
            yield task, task, model, source
        if args.compact != 'none':
            model, source = make_compact_model(task, args.compact, args.seed)
            if model is None:
                notes.append(source)
            else:
                yield f'{task} compact', task, model, source


def main(argv=None) -> List[Row]:
    args = parse_args(argv)
    if args.worker:
        worker_main(*args.worker)
        return []
    device = resolve_device(args.device)
    on_cuda = device.type == 'cuda'
    # The project's allocator setting, as its scripts apply it (the published rows run elsewhere).
    allocator = keep_freed_memory() if not on_cuda else 'not used on CUDA'
    if args.threads:
        torch.set_num_threads(args.threads)
    args.warmup = args.warmup or (10 if on_cuda else 1)
    args.repeats = args.repeats or (30 if on_cuda else 3)
    if args.variants:
        variants, notes = [VARIANT_BY_NAME[n] for n in args.variants], []
    else:
        variants, notes = default_variants(device)
    if 'published' not in {v.name for v in variants}:
        notes.append('the published row was not run, so there is no speed-up column baseline')
    if not on_cuda and allocator != 'kept':
        notes.append(f'keep_freed_memory() returned {allocator!r}: the in-process rows did not run with the '
                     'project\'s allocator settings')
    # On the CPU, rows under glibc's default malloc run first, each in a fresh process.
    separate = [v for v in variants if v.system_malloc and not on_cuda]
    here = [v for v in variants if v not in separate]

    models = list(_models(args, notes))
    cases = [(name, task, model, source, size) for name, task, model, source in models
             for size in (args.sizes or ([CUDA_SIZES[task]] if on_cuda else CPU_SIZES))]
    rows, weights, flops = [], {}, {}
    calls_per_row = args.warmup + args.repeats
    with tqdm(total=len(cases) * len(variants) * calls_per_row, desc='benchmark', unit='call') as progress:
        for name, task, model, source, size in cases:
            weights[name] = source
            x = natural_input(size, args.batch)
            padded_hw = tuple(pad_to_multiple(x[:1])[0].shape[-2:])
            flops[(name, size)] = count_flops(model.config, padded_hw, args.batch)
            measured: Dict[str, Measured] = {}
            if separate:
                progress.set_postfix_str(f'{name} {size[0]}x{size[1]} default-allocator process')
                measured.update(measure_in_system_malloc_process(separate, task, model, x, device,
                                                                 args.warmup, args.repeats))
                progress.update(len(separate) * calls_per_row)
            for variant in here:
                progress.set_postfix_str(f'{name} {size[0]}x{size[1]} {variant.name}')
                measured[variant.name] = measure(variant, task, model, x, device, args.warmup, args.repeats,
                                                 progress.update)
                _release_freed_memory()
                if on_cuda:
                    torch.cuda.empty_cache()
            # The exact fp32 output: the exact row's own on the CPU; on CUDA recomputed with TF32 off.
            exact = next((measured[n].out for n in ('exact', 'exact-system-malloc')
                          if n in measured and measured[n].out is not None), None)
            if exact is None or on_cuda:
                progress.set_postfix_str(f'{name} {size[0]}x{size[1]} exact reference')
                exact = exact_reference(model, x, device)
            for variant in variants:
                rows.append(_row(name, task, size, variant, measured[variant.name], exact, flops[(name, size)],
                                 x.shape[0], device))

    text = report(rows, args, device, weights, flops, allocator, notes)
    print_report(text, args.out)
    return rows


def _row(name: str, task: str, size, variant: Variant, m: Measured, exact: torch.Tensor, flops: int, batch: int,
         device: torch.device) -> Row:
    row = Row(name, size, variant, error=m.error)
    if variant.precision == 'auto':
        precision, fast = resolve_precision(variant, device)
        row.resolved = precision + (' + fast' if fast else '')
    if m.error:
        return row
    row.median_ms = statistics.median(m.times_ms)
    row.images_per_s = batch / (row.median_ms / 1e3)
    row.gflops_per_s = flops / 1e9 / (row.median_ms / 1e3)
    row.peak_gib = m.peak_gib
    row.finite = bool(torch.isfinite(m.out).all())
    if row.finite:
        row.max_abs_diff, row.psnr_db = faithfulness(m.out, exact)
    return row


if __name__ == '__main__':
    main()
